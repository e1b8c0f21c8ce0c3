#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the independent peers the interop
# tests talk to (tests/interop/setup.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f tests/interop/setup.sh ]; then
  bash tests/interop/setup.sh
fi
# Tests drive the real example binaries (echo_server, client, ...): build them first.
cargo build --examples
cargo test --all-targets
cargo test --doc
