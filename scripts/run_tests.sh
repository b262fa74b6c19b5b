#!/usr/bin/env bash
# Runs the suite inside a private network namespace that has only loopback, so no test can
# send traffic off this machine. Falls back (with a warning) where that is impossible.
set -uo pipefail
cd "$(dirname "$0")/.."
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export RAY_USAGE_STATS_ENABLED=0
RUN_DIR=$(mktemp -d -t egox-test-XXXX)
export ROS_LOG_DIR="$RUN_DIR/ros_log" RAY_TMPDIR="$RUN_DIR/ray" MPLCONFIGDIR="$RUN_DIR/mpl"
# Ray 2.60 authenticates its RPCs by default; one token for every Ray of this run (Ray
# caches it per process), none written to ~/.ray/auth_token.
export RAY_AUTH_TOKEN=${RAY_AUTH_TOKEN:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME="$RUN_DIR/hf"
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider "$@")

if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  echo "[test] running in a private network namespace (loopback only), ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
  unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${PYTEST[@]}"
  rc=$?
else
  echo "[test] WARNING: cannot create a network namespace (need root + unshare);" \
       "running with localhost-only DDS discovery instead" >&2
  "${PYTEST[@]}"
  rc=$?
fi
rm -rf "$RUN_DIR"
if [ $rc = 5 ]; then echo "[test] ERROR: no tests ran" >&2; exit 1; fi
exit $rc
