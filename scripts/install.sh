#!/usr/bin/env bash
# Creates .venv and installs the pinned dependencies (idempotent; a second run is fast).
# Works on a fresh Debian bookworm with Python 3.11. Set EGOX_TORCH to install another torch
# (e.g. EGOX_TORCH="torch==2.13.0 --index-url <your CUDA wheel index>") on GPU machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

apt_need=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || apt_need+=(libusb-1.0-0)   # open3d-cpu at import
"$PYTHON" -m venv --help >/dev/null 2>&1 && "$PYTHON" -c 'import ensurepip' 2>/dev/null || apt_need+=(python3-venv)
command -v unshare >/dev/null || apt_need+=(util-linux)
command -v ip >/dev/null || apt_need+=(iproute2)
if [ ${#apt_need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[install] apt-get install ${apt_need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}"
  else
    echo "[install] WARNING: not root; please install: ${apt_need[*]}" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --disable-pip-version-check "pip==25.3"
$PIP install -q --disable-pip-version-check ${EGOX_TORCH:-torch==2.13.0}
# requirements-ros.txt: the ROS 2 client libraries as PyPI wheels (this venv has no ROS install)
$PIP install -q --disable-pip-version-check -c constraints.txt -r requirements.txt \
  -r requirements-ros.txt
$PIP install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "[install] .venv ready"
