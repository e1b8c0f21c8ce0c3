#!/usr/bin/env bash
# Installs the independent peers that the interop tests (tests/interop_*.rs) talk to, on a
# fresh Debian machine: Godot 3.2 headless and Chromium (apt), Python `websockets` (pip),
# Node `ws@8` (npm, into tests/interop/node_modules from the committed lock file).
# Idempotent and quick when everything is already there: nothing is fetched then.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# --- Debian packages -----------------------------------------------------------------
apt_missing=()
command -v godot3-server >/dev/null 2>&1 || apt_missing+=(godot3-server)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
# The machine normally has python3 with pip and Node.js with npm; Debian's are the fallback.
python3 -m pip --version >/dev/null 2>&1 || apt_missing+=(python3-pip)
command -v npm >/dev/null 2>&1 || apt_missing+=(nodejs npm)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "interop setup: apt-get install ${apt_missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "interop setup: no apt-get on this machine: install ${apt_missing[*]} yourself" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "interop setup: not root and no sudo: cannot apt-get install ${apt_missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
fi

# --- Python websockets ---------------------------------------------------------------
if ! python3 -c 'import sys, websockets; v = int(websockets.__version__.split(".")[0]); sys.exit(0 if 15 <= v < 18 else 1)' >/dev/null 2>&1; then
  echo "interop setup: python3 -m pip install 'websockets>=15,<18'"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'websockets>=15,<18' \
    || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages 'websockets>=15,<18' \
    || { echo "interop setup: cannot pip install websockets (tests/interop_python.rs and tests/embed.rs need it): is PyPI reachable?" >&2; exit 1; }
fi

# --- Node ws@8 -----------------------------------------------------------------------
if ! (cd "$here" && node -e 'const v = require("ws/package.json").version; process.exit(v.startsWith("8.") ? 0 : 1)') >/dev/null 2>&1; then
  echo "interop setup: npm ci (ws@8) in tests/interop"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "interop setup: npm ci failed (tests/interop_node.rs needs ws@8): is the npm registry reachable?" >&2; exit 1; }
fi

echo "interop setup: godot3-server, chromium, python websockets $(python3 -c 'import websockets; print(websockets.__version__)'), node ws $(cd "$here" && node -p 'require("ws/package.json").version') ready"
