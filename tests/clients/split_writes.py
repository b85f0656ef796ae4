#!/usr/bin/env python3
"""Split-write IMDS client: TCP_NODELAY, the request line and every header in separate
send() calls with a pause between them, so each lands in its own TCP segment.

  split_writes.py v1  -> tokenless GET
  split_writes.py v2  -> token PUT, then GET with the token, on the same connection
  --mid-header        -> also split inside header names (`X-aws-ec2-meta` | `data-token...`)

Prints one JSON line: {"statuses": [...]} (never the token).
"""

from __future__ import annotations

import argparse
import json
import socket
import time

from httpraw import read_response


def send_split(sock: socket.socket, lines: list[str], delay: float, mid_header: bool) -> None:
    pieces: list[bytes] = []
    for line in lines:
        raw = (line + "\r\n").encode()
        if mid_header and line.lower().startswith("x-aws-ec2-metadata-token"):
            pieces += [raw[:13], raw[13:]]
        else:
            pieces.append(raw)
    pieces.append(b"\r\n")
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(delay)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("version", choices=("v1", "v2"))
    parser.add_argument("--host", default="169.254.169.254")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--path", default="/latest/meta-data/instance-id")
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--mid-header", action="store_true")
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host = "Host: %s" % args.host
    statuses = []
    headers = [host, "User-Agent: imds-e2e-split-writes/1.0", "Accept: */*"]
    if args.version == "v2":
        send_split(sock, ["PUT /latest/api/token HTTP/1.1", *headers,
                          "X-aws-ec2-metadata-token-ttl-seconds: 21600", "Content-Length: 0"],
                   args.delay, args.mid_header)
        status, _, body = read_response(sock)
        statuses.append(status)
        token = body.decode()
        send_split(sock, ["GET %s HTTP/1.1" % args.path, *headers,
                          "X-aws-ec2-metadata-token: %s" % token],
                   args.delay, args.mid_header)
    else:
        send_split(sock, ["GET %s HTTP/1.1" % args.path, *headers], args.delay, args.mid_header)
    status, _, _ = read_response(sock)
    statuses.append(status)
    sock.close()
    print(json.dumps({"statuses": statuses}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
