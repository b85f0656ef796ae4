#!/usr/bin/env python3
"""Resolve credentials with botocore's default chain, as every boto3/botocore program does.

With no environment credentials and no config files, the chain ends at the instance
metadata provider: token PUT (botocore >= 1.13.24) or not, then the role name and its
credentials. Prints the access key id it got, or "none".
"""

import botocore.session


def main() -> int:
    credentials = botocore.session.get_session().get_credentials()
    print(credentials.access_key if credentials is not None else "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
