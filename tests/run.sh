#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the independent peers the interop
# tests talk to (tests/interop/setup.sh), runs each fuzz target briefly, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f tests/interop/setup.sh ]; then
  bash tests/interop/setup.sh
fi
# A short bounded run of every fuzz target (installs cargo-fuzz when missing).
bash tests/fuzz/run.sh
# Tests drive the real example binaries (echo_server, client, ...): build them first.
cargo build --examples
cargo test --all-targets
cargo test --doc
