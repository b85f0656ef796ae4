#!/usr/bin/env bash
# Installs the real AWS SDK clients the end-to-end tests run against the mock IMDS
# (tests/tests/sdk.rs). Idempotent: a stamp file records what was
# installed, and a second run with nothing changed returns at once.
#
#   tests/.venv-botocore-old   botocore 1.12.253: before IMDSv2 (1.13.25), tokenless only
#   tests/.venv-botocore-new   botocore 1.44.5:   token PUT first, v1 fallback on a timeout
#   tests/clients/node_modules aws-sdk 2.700.0 (alias aws-sdk-2.700.0, before 2.722.0),
#                              aws-sdk 2.1693.0 (last 2.x), @aws-sdk/credential-provider-imds 3.x
#
# Needs python3 (with venv/ensurepip) and npm; reaches only PyPI and the npm registry.
# Usage: tests/clients/install.sh [--force]
set -euo pipefail

clients_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tests_dir="$(dirname "$clients_dir")"

BOTOCORE_OLD=1.12.253
BOTOCORE_NEW=1.44.5
OLD_VENV="$tests_dir/.venv-botocore-old"
NEW_VENV="$tests_dir/.venv-botocore-new"
STAMP="$tests_dir/.clients-installed"

python=${PYTHON:-python3}
# What the stamp covers: this script, the npm manifests and the interpreter.
want_stamp="$(
    {
        cat "${BASH_SOURCE[0]}" "$clients_dir/package.json" "$clients_dir/package-lock.json"
        "$python" -c 'import sys; print(sys.executable, sys.version)'
        node --version 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
)"
if [[ ${1:-} != --force && -f $STAMP && $(cat "$STAMP") == "$want_stamp" \
    && -x $OLD_VENV/bin/python && -x $NEW_VENV/bin/python \
    && -d $clients_dir/node_modules/aws-sdk-2.700.0 ]]; then
    echo "test clients already installed ($STAMP)"
    exit 0
fi
rm -f "$STAMP"

# Debian splits ensurepip (needed by `python3 -m venv`) into python3-venv.
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        py_minor="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "python${py_minor}-venv" || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends python3-venv
    else
        echo "error: $python has no venv/ensurepip; install python3-venv" >&2
        exit 1
    fi
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
    else
        echo "error: node/npm are not on PATH (Node.js 18+ runs the JavaScript SDK clients)" >&2
        exit 1
    fi
fi

pip_args=(--disable-pip-version-check --no-input -q)

make_venv() { # dir botocore-version
    local dir=$1 version=$2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install "${pip_args[@]}" "botocore==$version"
}

echo "installing botocore $BOTOCORE_NEW into $NEW_VENV"
make_venv "$NEW_VENV" "$BOTOCORE_NEW" &
new_pid=$!

echo "installing botocore $BOTOCORE_OLD into $OLD_VENV"
make_venv "$OLD_VENV" "$BOTOCORE_OLD" &
old_pid=$!

echo "installing the JavaScript SDKs into $clients_dir/node_modules"
# `npm ci`: exactly the versions in package-lock.json.
(cd "$clients_dir" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error)

wait "$new_pid"
wait "$old_pid"

# botocore 1.12.x (and its vendored requests) still does `from collections import Mapping`,
# removed in Python 3.10. Restore those aliases for this venv only, at interpreter start
# (a .pth `import` line), so the old SDK runs unchanged on today's Python: what it sends
# to IMDS is its own code.
old_site="$("$OLD_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat >"$old_site/imds_e2e_collections_compat.py" <<'PY'
"""Python < 3.10 aliases in `collections` that botocore 1.12.x imports (test venv only)."""
import collections
import collections.abc

for _name in collections.abc.__all__:
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
PY
echo "import imds_e2e_collections_compat" >"$old_site/imds_e2e_collections_compat.pth"

# Smoke: each SDK loads and reports the version the tests expect.
check() { # what expected actual
    if [[ $2 != "$3" ]]; then
        echo "error: $1: expected $2, got $3" >&2
        exit 1
    fi
}
check "old botocore" "$BOTOCORE_OLD" \
    "$("$OLD_VENV/bin/python" -W ignore -c 'import botocore.session as s; print(s.get_session().user_agent().split()[0].split("/")[1])')"
check "new botocore" "$BOTOCORE_NEW" \
    "$("$NEW_VENV/bin/python" -c 'import botocore; print(botocore.__version__)')"
check "aws-sdk-2.700.0" 2.700.0 \
    "$(cd "$clients_dir" && node -e 'console.log(require("aws-sdk-2.700.0/package.json").version)')"
check "aws-sdk" 2.1693.0 \
    "$(cd "$clients_dir" && node -e 'console.log(require("aws-sdk/package.json").version)')"
(cd "$clients_dir" && node -e 'require("@aws-sdk/credential-provider-imds").fromInstanceMetadata')

echo "$want_stamp" >"$STAMP"
echo "test clients installed"
