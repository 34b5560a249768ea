#!/bin/sh
# Create the virtualenv and install dlhw into it. On a fresh Debian machine the
# venv module lives in the python3-venv package: install it when we can (root).
set -eu
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; install Python >= 3.10 (Debian: apt-get install python3)" >&2
    exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing python3-venv (Debian package) ..." >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "error: '$PYTHON -m venv' is not available; on Debian run: sudo apt-get install python3-venv" >&2
        exit 1
    fi
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test,dask]'  # dask: the cluster tests run too
