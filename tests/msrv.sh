#!/usr/bin/env bash
# Checks that the crate, its tests, examples and benches build with the oldest Rust it
# claims (`rust-version` in Cargo.toml): `cargo +MSRV check -p wspeer --all-targets`, then
# its doc tests built and run (`cargo +MSRV test --doc`), with the lock file as committed,
# in target/msrv. Installs that toolchain with rustup (minimal
# profile) when missing, and fails with a clear message when it cannot.
#
# Measured on a 2-core machine: first run about 20 s (toolchain download) + 26-107 s
# (check from scratch, idle to busy machine) + 22 s (doc tests); later runs, nothing
# changed, about 2 s (the doc tests are rebuilt every time); after an edit in src/, a few
# seconds more.
#
# The fuzz crate (tests/fuzz) needs Rust 1.88 (let chains); it is built by the default
# toolchain in tests/fuzz/run.sh, and cargo refuses an older one there, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
if [ -z "$msrv" ]; then
  echo "msrv: no rust-version in Cargo.toml" >&2
  exit 1
fi
if ! command -v rustup >/dev/null 2>&1; then
  echo "msrv: rustup not found: it is needed to install Rust $msrv, the oldest toolchain the" >&2
  echo "msrv: crate claims (rust-version in Cargo.toml). Install rustup (https://rustup.rs)" >&2
  echo "msrv: or put it on PATH." >&2
  exit 1
fi
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  echo "msrv: installing Rust $msrv (rustup toolchain install $msrv --profile minimal)"
  if ! rustup toolchain install "$msrv" --profile minimal >/tmp/msrv-install.$$ 2>&1; then
    tail -n 20 /tmp/msrv-install.$$ >&2
    rm -f /tmp/msrv-install.$$
    echo "msrv: cannot install Rust $msrv with rustup (output above): the test command checks" >&2
    echo "msrv: that the crate builds with the Rust version it claims (rust-version = \"$msrv\")," >&2
    echo "msrv: so it needs that toolchain. Install it by hand (rustup toolchain install $msrv)" >&2
    echo "msrv: or give this machine access to the Rust toolchain server." >&2
    exit 1
  fi
  rm -f /tmp/msrv-install.$$
fi
start=$(date +%s)
if ! cargo "+$msrv" check -p wspeer --all-targets --locked --target-dir target/msrv --quiet; then
  echo "msrv: wspeer (lib, tests, examples, benches) does not build with Rust $msrv, the" >&2
  echo "msrv: rust-version in Cargo.toml: use only what $msrv has, or raise rust-version" >&2
  echo "msrv: (and the README's statement) to the version that has it." >&2
  exit 1
fi
if ! cargo "+$msrv" test --doc -p wspeer --locked --target-dir target/msrv --quiet >/tmp/msrv-doc.$$ 2>&1; then
  tail -n 40 /tmp/msrv-doc.$$ >&2
  rm -f /tmp/msrv-doc.$$
  echo "msrv: wspeer's doc tests fail with Rust $msrv, the rust-version in Cargo.toml (output above)." >&2
  exit 1
fi
rm -f /tmp/msrv-doc.$$
echo "msrv: wspeer builds (and its doc tests pass) with Rust $msrv ($(rustup run "$msrv" rustc --version)) in $(($(date +%s) - start)) s"
