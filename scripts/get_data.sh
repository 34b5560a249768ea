#!/bin/sh
# Make Fashion-MNIST available: a copy already found is used; otherwise download
# it from the official mirrors; if that fails on Debian as root, install Debian's
# dataset-fashion-mnist package; otherwise stop with the instructions.
set -u
DLHW=${1:-.venv/bin/dlhw}
if "$DLHW" data info fashion-mnist >/dev/null 2>&1; then
    echo "fashion-mnist: found ($("$DLHW" data info fashion-mnist | head -n 1))"
    exit 0
fi
echo "fashion-mnist: not found locally; downloading ..."
if "$DLHW" data fetch fashion-mnist; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fashion-mnist: download failed; installing Debian's dataset-fashion-mnist package ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
        && "$DLHW" data info fashion-mnist | head -n 1 && exit 0
fi
cat >&2 <<'MSG'
error: could not get Fashion-MNIST. Do one of:
  - on Debian:  sudo apt-get install dataset-fashion-mnist   (files go to /usr/share/datasets/fashion-mnist)
  - anywhere:   copy the four *-ubyte.gz files into data/fashion-mnist/  (or set DLHW_DATA=/path/to/folder)
  - with network access: .venv/bin/dlhw data fetch fashion-mnist
MSG
exit 1
