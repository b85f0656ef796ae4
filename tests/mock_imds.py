#!/usr/bin/env python3
"""A mock EC2 instance metadata service (IMDS) for the imds-agent end-to-end tests.

Standard library only. HTTP/1.1 with keep-alive; every response carries Content-Length.
Meant to run inside a network namespace created by the test harness, where
169.254.169.254 and fd00:ec2::254 are local addresses:

    ip netns exec NS python3 tests/mock_imds.py [--mode optional|required] ...

Token semantics follow the EC2 User Guide:
  * PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds: N (1..21600)
    -> 200, body = a fresh random token
  * a PUT carrying X-Forwarded-For -> 403; a PUT without (or with a bad) TTL -> 400
  * GET/HEAD with a valid X-aws-ec2-metadata-token -> 200; with an invalid one -> 401
  * tokenless GET/HEAD -> 200 in --mode optional, 401 (Connection: close) in --mode required

Other clouds sharing the link-local address (GCP, Azure, OCI) answer 200 JSON when the
request carries their flavour header.

Prints "mock-imds ready" on stdout once every listener is bound. Logs one line per request
on stderr (method, path, status) and never logs header values, so tokens never appear.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READY_LINE = "mock-imds ready"

INSTANCE_ID = "i-0123456789abcdef0"
ROLE_NAME = "imds-e2e-role"
TOKEN_PATH = "api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL_SECONDS = 21600

# `/latest/...` or a dated API version such as `/2009-04-04/...`.
AWS_PATH = re.compile(r"^/(latest|\d{4}-\d{2}-\d{2})(/.*)?$")

META_DATA_LISTING = "\n".join(
    [
        "ami-id",
        "hostname",
        "iam/",
        "instance-id",
        "instance-type",
        "local-ipv4",
        "placement/",
    ]
)

META_DATA = {
    "meta-data/instance-id": INSTANCE_ID,
    "meta-data/ami-id": "ami-0abcdef1234567890",
    "meta-data/hostname": "ip-10-0-0-1.ec2.internal",
    "meta-data/instance-type": "t3.micro",
    "meta-data/local-ipv4": "10.0.0.1",
    "meta-data/placement/": "availability-zone\nregion",
    "meta-data/placement/availability-zone": "us-east-1a",
    "meta-data/placement/region": "us-east-1",
    "meta-data/iam/": "info\nsecurity-credentials/",
    "meta-data/iam/security-credentials/": ROLE_NAME,
}


def fake_credentials() -> str:
    return json.dumps(
        {
            "Code": "Success",
            "LastUpdated": "2024-01-01T00:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAEXAMPLEEXAMPLE00",
            "SecretAccessKey": "fake/secret/key/for/the/imds/agent/e2e/tests",
            "Token": "FAKE-SESSION-TOKEN",
            "Expiration": "2099-01-01T00:00:00Z",
        },
        indent=2,
    )


class TokenStore:
    """Issued tokens and their expiry (monotonic seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}

    def issue(self, ttl: int) -> str:
        token = "AQAEA" + secrets.token_urlsafe(42)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()


class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        self.required: bool = args.mode == "required"
        self.put_response_ttl: int | None = args.put_response_ttl
        self.ignore_put: bool = args.ignore_put
        self.tokens = TokenStore()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    # A stuck client must not pin a thread forever (the harness kills us anyway).
    timeout = 120

    @property
    def config(self) -> Config:
        return self.server.config  # type: ignore[attr-defined]

    # -- plumbing -------------------------------------------------------------------------

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by base
        # Only the request line and status; never header values (tokens live there).
        sys.stderr.write("mock-imds: %s %s\n" % (self.address_string(), format % args))

    def log_request(self, code="-", size="-") -> None:
        method = getattr(self, "command", None) or "-"
        path = getattr(self, "path", None) or "-"
        self.log_message("%s %s -> %s", method, path[:200], code)

    def send_text(self, status: int, body: str, content_type: str = "text/plain",
                  close: bool = False) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_error(self, code, message=None, explain=None):  # noqa: D401 - base override
        # Garbage and malformed requests: a short plain-text answer with Content-Length,
        # then close (the stream can no longer be trusted). Garbage leaves request_version
        # at HTTP/0.9, which would suppress the status line: answer as HTTP/1.1.
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        try:
            self.send_text(code, f"{code} {message or ''}".strip() + "\n", close=True)
        except OSError:
            self.close_connection = True

    def discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            remaining = int(length)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)

    def set_response_ttl(self, ttl: int) -> None:
        sock = self.connection
        # The socket may be IPv4 or IPv6; set whichever applies. It stays set for the rest
        # of the connection, so retransmissions of the answer also carry the low TTL.
        if sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)

    # -- verbs ----------------------------------------------------------------------------

    def do_PUT(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        match = AWS_PATH.match(path)
        rest = (match.group(2) or "/")[1:] if match else None
        if rest != TOKEN_PATH:
            self.discard_body()
            self.send_text(405 if match else 404, "Method Not Allowed\n" if match else "Not Found\n")
            return
        if self.config.ignore_put:
            # Never answer; hold the connection until the client gives up and closes it.
            self.close_connection = True
            try:
                while self.rfile.read1(65536):
                    pass
            except OSError:
                pass
            self.log_message("%s %s -> (ignored)", self.command, path)
            return
        self.discard_body()
        if self.headers.get("X-Forwarded-For") is not None:
            self.send_text(403, "Forbidden\n")
            return
        ttl_text = (self.headers.get(TTL_HEADER) or "").strip()
        if not ttl_text.isdigit() or not 1 <= int(ttl_text) <= MAX_TTL_SECONDS:
            self.send_text(400, "Bad Request\n")
            return
        ttl = int(ttl_text)
        token = self.config.tokens.issue(ttl)
        if self.config.put_response_ttl is not None:
            self.set_response_ttl(self.config.put_response_ttl)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(token)))
        self.send_header(TTL_HEADER, str(ttl))
        self.end_headers()
        self.wfile.write(token.encode())
        self.wfile.flush()

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self.discard_body()
        path, _, _query = self.path.partition("?")
        match = AWS_PATH.match(path)
        if match:
            self.serve_aws((match.group(2) or "/")[1:])
        elif path.startswith("/computeMetadata/v1"):
            self.serve_flavoured("Metadata-Flavor", "Google", 403,
                                 {"id": 1234567890123456789, "zone": "projects/1/zones/us-central1-a"})
        elif path.startswith("/metadata/"):
            self.serve_flavoured("Metadata", "true", 400,
                                 {"compute": {"vmId": "00000000-0000-0000-0000-000000000000",
                                              "location": "eastus"}})
        elif path.startswith("/opc/v1/") or path.startswith("/opc/v2/"):
            self.serve_flavoured("Authorization", "Bearer Oracle", 401,
                                 {"id": "ocid1.instance.oc1..example", "region": "iad"})
        else:
            self.send_text(404, "Not Found\n")

    def serve_flavoured(self, header: str, expected: str, refusal: int, body: dict) -> None:
        value = (self.headers.get(header) or "").strip()
        if value.lower() != expected.lower():
            self.send_text(refusal, "Missing or bad %s header\n" % header)
            return
        self.send_text(200, json.dumps(body), content_type="application/json")

    def serve_aws(self, rest: str) -> None:
        token = self.headers.get(TOKEN_HEADER)
        if token is not None:
            if not self.config.tokens.valid(token.strip()):
                self.send_text(401, "Unauthorized\n", close=True)
                return
        elif self.config.required:
            self.send_text(401, "Unauthorized\n", close=True)
            return
        if rest == TOKEN_PATH:
            self.send_text(405, "Method Not Allowed\n")
        elif rest in ("meta-data", "meta-data/"):
            self.send_text(200, META_DATA_LISTING)
        elif rest in META_DATA:
            self.send_text(200, META_DATA[rest])
        elif rest == "meta-data/iam/security-credentials/" + ROLE_NAME:
            self.send_text(200, fake_credentials())
        elif rest in ("", "/"):
            self.send_text(200, "dynamic\nmeta-data\nuser-data")
        else:
            self.send_text(404, "Not Found\n")


class Server4(ThreadingHTTPServer):
    address_family = socket.AF_INET
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, config: Config) -> None:
        self.config = config
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind: its getfqdn() may try DNS; we need no server_name.
        socket_bind(self)


class Server6(Server4):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # Only IPv6 here: IPv4 (including v4-mapped peers) is served by the IPv4 listener.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        socket_bind(self)


def socket_bind(server: ThreadingHTTPServer) -> None:
    if server.allow_reuse_address:
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.socket.bind(server.server_address)
    server.server_address = server.socket.getsockname()
    server.server_name = str(server.server_address[0])
    server.server_port = server.server_address[1]


def parse_listen(value: str, default_port: int) -> tuple[str, int]:
    """`ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT`."""
    if value.startswith("["):
        host, _, tail = value[1:].partition("]")
        return host, int(tail[1:]) if tail.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", action="append", metavar="ADDR[:PORT]",
                        help="address to serve on, repeatable (default: 0.0.0.0 and [::])")
    parser.add_argument("--port", type=int, default=80, help="default port (default 80)")
    parser.add_argument("--mode", choices=("optional", "required"), default="optional",
                        help="HttpTokens: are tokenless requests allowed (default optional)")
    parser.add_argument("--put-response-ttl", type=int, metavar="N",
                        help="IP TTL / IPv6 unicast hops for token PUT answers "
                             "(emulates HttpPutResponseHopLimit)")
    parser.add_argument("--ignore-put", action="store_true",
                        help="never answer token PUTs (hold the connection until the client closes)")
    args = parser.parse_args()
    config = Config(args)

    listens = args.listen or ["0.0.0.0", "[::]"]
    servers = []
    for item in listens:
        host, port = parse_listen(item, args.port)
        cls = Server6 if ":" in host else Server4
        servers.append(cls((host, port), config))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    print(READY_LINE, flush=True)
    while not stop.wait(0.5):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
