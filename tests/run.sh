#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine, as root: checks (and installs with
# apt-get) the system needs (tests/setup-system.sh), checks that the crate builds with the
# Rust version it claims (tests/msrv.sh), installs the independent peers the interop tests
# talk to (tests/interop/setup.sh), runs each fuzz target briefly, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The hostile-client and soak tests hold over a thousand sockets at once: lift the soft
# open-file limit to the hard one (never fails the run if the shell refuses).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Compilers, iproute2, procps, python3/pip, node/npm, godot3-server, chromium, root,
# /dev/net/tun, rustup: each installed or reported missing with what needs it.
bash tests/setup-system.sh
# rust-version in Cargo.toml, checked with that toolchain (installed by rustup if missing).
bash tests/msrv.sh
# Windows: the library, examples and tests type-check for x86_64-pc-windows-gnu, warnings
# denied (tests that only work on Linux are cfg-gated, each saying why). Target and
# MinGW-w64 compiler (ring's build script) come from tests/setup-system.sh. Only wspeer:
# the benchmark crate reads /proc and calls getrusage/setrlimit, Linux only by design.
# Measured on 2 busy cores: 31 s the first time (42 s with an empty target directory),
# about 4 s after an edit in src/, under a second when nothing changed.
RUSTFLAGS="-D warnings" cargo check --target x86_64-pc-windows-gnu -p wspeer --all-targets
# The browser (docs/web.md): the library for wasm32-unknown-unknown (the target comes from
# tests/setup-system.sh) with warnings denied, its documentation, then the example page
# that tests/web_chromium.rs opens in headless Chromium (build.sh installs
# wasm-bindgen-cli).
cargo clippy --target wasm32-unknown-unknown -p wspeer -- -D warnings
# Its documentation too: no link to an item that is native only (about a second).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --target wasm32-unknown-unknown -p wspeer
bash examples/web/build.sh
# TLS is a Cargo feature (README "Cargo features"). Without default features the library's
# normal dependencies hold no rustls, ring, aws-lc or webpki-roots, it builds warning-free,
# and wss:// fails with an error naming the feature (tests/tls_disabled.rs). Then the other
# combinations type-check, and the TLS tests run with aws-lc-rs instead of ring.
bash tests/features.sh
if [ -f tests/interop/setup.sh ]; then
  bash tests/interop/setup.sh
fi
# A short bounded run of every fuzz target (installs cargo-fuzz when missing).
bash tests/fuzz/run.sh
# Tests drive the real example binaries (echo_server, client, ...) and the macroquad game
# (tests/engine_example.rs, about 2 s): build them first. The game's first build (macroquad,
# miniquad, glam, fontdue, image) took 37 s from an empty target directory on an idle 2-core
# machine, 89-119 s after the examples on a busy one; then 2 s after an edit in src/, 0.3 s
# when nothing changed.
cargo build --examples
cargo build -p wspeer-macroquad-game
cargo test --all-targets
cargo test --doc
# The game's own unit tests: the race's rules and its packets.
cargo test -p wspeer-macroquad-game
# The room bus crate (bus/): unit tests, and its tests against a real redis-server
# (bus/tests/redis.rs, each with a server of its own on a free loopback port): about 1 s.
cargo test -p wspeer-bus
