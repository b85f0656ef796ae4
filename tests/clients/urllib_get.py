#!/usr/bin/env python3
"""Tokenless IMDS GET with urllib (IMDSv1), like old scripts do. Prints the body."""

import sys
import urllib.request

URL = sys.argv[1] if len(sys.argv) > 1 else "http://169.254.169.254/latest/meta-data/instance-id"

with urllib.request.urlopen(URL, timeout=10) as response:
    print(response.read().decode())
