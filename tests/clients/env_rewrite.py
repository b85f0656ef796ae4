#!/usr/bin/env python3
"""Proves that a process's environment is read at connect time, not later from /proc.

Started with DB_CLUSTER_NAME=at-connect-time. It connects to IMDS, then rewrites its own
initial environment block in place (same length, through /proc/self/mem), so that from then on
/proc/<pid>/environ says DB_CLUSTER_NAME=rewritten-later; only then does it send a tokenless
GET, and it stays alive a while after the answer. An agent that looked the environment up in
/proc at any point after the connect would report the rewritten value.

Prints "rewritten <status>".
"""

import http.client
import time

BEFORE = b"DB_CLUSTER_NAME=at-connect-time"
AFTER = b"DB_CLUSTER_NAME=rewritten-later"
STAY_ALIVE_SECONDS = 2.0


def env_block() -> tuple[int, int]:
    """(env_start, env_end) from /proc/self/stat: fields 50 and 51, counted from 1."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat.rsplit(b")", 1)[1].split()  # fields[0] is field 3 (state)
    return int(fields[50 - 3]), int(fields[51 - 3])


def rewrite_environment() -> None:
    assert len(BEFORE) == len(AFTER)
    start, end = env_block()
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        block = mem.read(end - start)
        offset = block.index(BEFORE)
        mem.seek(start + offset)
        mem.write(AFTER)
    with open("/proc/self/environ", "rb") as f:
        environ = f.read()
    if AFTER not in environ or BEFORE in environ:
        raise SystemExit("rewriting the environment block did not show in /proc/self/environ")


def main() -> int:
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=10)
    conn.connect()
    rewrite_environment()
    conn.request("GET", "/latest/meta-data/instance-id")
    response = conn.getresponse()
    response.read()
    conn.close()
    print("rewritten", response.status, flush=True)
    time.sleep(STAY_ALIVE_SECONDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
