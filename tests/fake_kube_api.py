#!/usr/bin/env python3
"""A fake Kubernetes API server for the end-to-end tests (stdlib only).

Plain HTTP/1.1 on 127.0.0.1, speaking the wire format the agent's kube-rs client expects
(the same as imds-agent/src/workload/k8s/fake.rs), for just what the pod cache uses:

- ``GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>``: a ``PodList`` of the pods of
  ``--node`` with ``metadata.resourceVersion``; with ``watch=true``, a chunked stream of
  newline-delimited watch events: a ``BOOKMARK`` first when ``allowWatchBookmarks=true``,
  then nothing (the pods never change) until ``timeoutSeconds`` pass or the client closes.
- ``GET /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>``: an object from the
  ``objects`` of the JSON file (Job, CronJob, ReplicaSet, Deployment, ...), or its
  ``PartialObjectMetadata`` when the ``Accept`` header asks for that.
- anything else: a 404 ``Status``.

A pod request without this node's field selector is refused with 400 and logged as a
``VIOLATION`` line, so the test can fail on it.

Usage: fake_kube_api.py --node NODE --objects FILE [--port N]

FILE is JSON: ``{"pods": [...], "objects": [...]}`` (a bare list means pods only).

Every served request is one line on stdout:
``request GET <target> accept=<Accept> -> <status>``; a watch also logs
``watch-closed <target>`` when it ends. Once listening it prints
``fake-kube-api ready port=<N>``.
"""

import argparse
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PARTIAL_METADATA = "as=PartialObjectMetadata"
RESOURCE_VERSION = "100"
# A watch without timeoutSeconds is held at most this long.
MAX_WATCH_SECONDS = 600

LOG_LOCK = threading.Lock()


def log(line):
    with LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def plural(kind):
    lower = kind.lower()
    return lower + "es" if lower.endswith("s") else lower + "s"


def object_path(obj):
    """The URL path a namespaced object is served at."""
    api_version = obj["apiVersion"]
    prefix = "/api/v1" if api_version == "v1" else "/apis/" + api_version
    md = obj["metadata"]
    return "%s/namespaces/%s/%s/%s" % (prefix, md["namespace"], plural(obj["kind"]), md["name"])


def status_body(code, reason, message):
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-api"

    def log_message(self, fmt, *args):  # silence the default stderr access log
        pass

    def _log(self, code):
        log("request %s %s accept=%s -> %d" % (
            self.command, self.path, self.headers.get("Accept", ""), code))

    def _json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self._log(code)

    def _status(self, code, reason, message):
        self._json(code, status_body(code, reason, message))

    def do_GET(self):  # noqa: N802 (http.server's naming)
        cfg = self.server.cfg
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        param = lambda name: (query.get(name) or [None])[0]  # noqa: E731
        segments = [s for s in url.path.strip("/").split("/") if s]

        if "pods" in segments:
            wanted = "spec.nodeName=" + cfg["node"]
            selectors = (param("fieldSelector") or "").split(",")
            if wanted not in selectors:
                log("VIOLATION %s" % self.path)
                self._status(400, "BadRequest", "fake: pod requests must select this node")
                return
            if segments != ["api", "v1", "pods"]:
                self._status(404, "NotFound", "fake: no route for %s" % url.path)
                return
            if param("watch") in ("true", "1"):
                self._watch(param("timeoutSeconds"), param("allowWatchBookmarks") == "true")
                return
            items = [p for p in cfg["pods"]
                     if p.get("spec", {}).get("nodeName") == cfg["node"]]
            self._json(200, {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": RESOURCE_VERSION},
                "items": items,
            })
            return

        obj = cfg["objects"].get(url.path)
        if obj is None:
            name = segments[-1] if segments else ""
            resource = segments[-2] if len(segments) > 1 else ""
            self._status(404, "NotFound", '%s "%s" not found' % (resource, name))
            return
        if PARTIAL_METADATA in self.headers.get("Accept", ""):
            self._json(200, {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": obj["metadata"],
            })
        else:
            self._json(200, obj)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, timeout_seconds, bookmarks):
        try:
            timeout = min(float(timeout_seconds), MAX_WATCH_SECONDS)
        except (TypeError, ValueError):
            timeout = MAX_WATCH_SECONDS
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self._log(200)
        try:
            if bookmarks:
                event = {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"resourceVersion": RESOURCE_VERSION},
                    },
                }
                self._chunk(json.dumps(event).encode() + b"\n")
            # Nothing changes: hold the stream open until the timeout or the client leaves.
            deadline = time.monotonic() + timeout
            sock = self.connection
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                readable, _, _ = select.select([sock], [], [], min(left, 1.0))
                if readable:
                    try:
                        if not sock.recv(1, socket.MSG_PEEK):
                            break  # the client closed
                    except OSError:
                        break
                    # The client sent something on a streaming connection; stop here.
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        log("watch-closed %s" % self.path)
        self.close_connection = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--objects", required=True,
                        help='JSON file: {"pods": [...], "objects": [...]} or a list of pods')
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    with open(args.objects, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        data = {"pods": data}
    cfg = {
        "node": args.node,
        "pods": data.get("pods", []),
        "objects": {object_path(o): o for o in data.get("objects", [])},
    }

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.cfg = cfg
    log("fake-kube-api ready port=%d" % server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
