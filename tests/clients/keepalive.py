#!/usr/bin/env python3
"""Keep-alive IMDS client (http.client, like botocore): on ONE connection, a token PUT,
a GET with the token (IMDSv2), then a GET without it (IMDSv1).

Prints one JSON line: {"statuses": [...], "local_ports": [...]} (never the token);
equal local ports prove the requests shared the connection.
"""

from __future__ import annotations

import argparse
import http.client
import json


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="169.254.169.254")
    parser.add_argument("--path", default="/latest/meta-data/instance-id")
    args = parser.parse_args()

    conn = http.client.HTTPConnection(args.host, 80, timeout=10)
    statuses, ports = [], []

    def request(method: str, path: str, headers: dict[str, str]) -> bytes:
        conn.request(method, path, headers=headers)
        ports.append(conn.sock.getsockname()[1])
        response = conn.getresponse()
        statuses.append(response.status)
        return response.read()

    token = request("PUT", "/latest/api/token",
                    {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}).decode()
    request("GET", args.path, {"X-aws-ec2-metadata-token": token})
    request("GET", args.path, {})
    conn.close()
    print(json.dumps({"statuses": statuses, "local_ports": ports}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
