#!/usr/bin/env python3
"""Sends bytes that are not HTTP (a TLS ClientHello-like prefix and binary noise) to
169.254.169.254:80, then reads whatever comes back until the server closes."""

from __future__ import annotations

import socket


def main() -> int:
    sock = socket.create_connection(("169.254.169.254", 80), timeout=10)
    sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(0, 256, 7)) + b"\r\n\r\n")
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    sock.close()
    print(received.split(b"\r\n", 1)[0].decode("latin-1"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
