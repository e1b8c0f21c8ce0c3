#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the independent peers the interop
# tests talk to (tests/interop/setup.sh), runs each fuzz target briefly, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The hostile-client and soak tests hold over a thousand sockets at once: lift the soft
# open-file limit to the hard one (never fails the run if the shell refuses).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ -f tests/interop/setup.sh ]; then
  bash tests/interop/setup.sh
fi
# A short bounded run of every fuzz target (installs cargo-fuzz when missing).
bash tests/fuzz/run.sh
# Tests drive the real example binaries (echo_server, client, ...): build them first.
cargo build --examples
cargo test --all-targets
cargo test --doc
