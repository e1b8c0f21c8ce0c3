#!/usr/bin/env bash
# The echo benchmark in one command: builds the servers, the load generator and wspeer's
# examples/echo_server in release mode, installs Node's ws into bench/node when npm is
# present, raises the open-file limit, then runs the `bench` binary, which writes the raw
# records docs/bench/<run-id>.jsonl and, from them, docs/performance.md and .svg.
#
#   bash bench/run.sh            # full run: 5 rotated rounds of 5 s (about 40 minutes on 2 cores)
#   bash bench/run.sh --quick    # smoke check (about 3 minutes), written into target/bench/
#   bash bench/run.sh --help     # the runner's flags (see bench/README.md)
#
# The exit status is 1 when any echo differed from what was sent (after writing everything).
#
# Honours CARGO_TARGET_DIR. Everything runs on 127.0.0.1; Ctrl-C stops every process.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}

cargo build --release --example echo_server
cargo build --release -p wspeer-bench --bins

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  && [ ! -f bench/node/node_modules/ws/package.json ]; then
  (cd bench/node && npm install --no-audit --no-fund --no-package-lock --loglevel=error) \
    || echo "note: npm install ws failed; the Node row will be skipped" >&2
fi

# 10 000 idle connections: one descriptor each in the server and in the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The exact command, for the report (arguments with spaces single-quoted).
command="bash bench/run.sh"
for arg in "$@"; do
  if [[ $arg =~ ^[A-Za-z0-9_./,:=+-]+$ ]]; then
    command+=" $arg"
  else
    command+=" '${arg//\'/\'\\\'\'}'"
  fi
done
export BENCH_COMMAND="$command"
exec "$target/release/bench" --echo-server "$target/release/examples/echo_server" "$@"
