#!/usr/bin/env python3
"""IMDSv1 GET over an AF_INET6 socket to the v4-mapped address ::ffff:169.254.169.254
(dual-stack clients reach the IPv4 endpoint this way). Prints the status code."""

from __future__ import annotations

import socket

from httpraw import read_response


def main() -> int:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(("::ffff:169.254.169.254", 80))
    sock.sendall(b"GET /latest/meta-data/instance-id HTTP/1.1\r\n"
                 b"Host: 169.254.169.254\r\nUser-Agent: imds-e2e-v4mapped/1.0\r\n\r\n")
    status, _, _ = read_response(sock)
    sock.close()
    print(status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
