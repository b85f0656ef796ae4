#!/usr/bin/env python3
"""Stands in for a Jupyter kernel (`python3 -m ipykernel_launcher -f .../kernel-<id>.json`):
ignores its arguments and does one tokenless urllib GET (IMDSv1), as notebook code does.
Prints the body.
"""

import urllib.request

URL = "http://169.254.169.254/latest/meta-data/instance-id"

with urllib.request.urlopen(URL, timeout=10) as response:
    print(response.read().decode())
