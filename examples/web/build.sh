#!/usr/bin/env bash
# Builds the browser example into examples/web/pkg/ (index.html loads it): adds the
# wasm32-unknown-unknown target if missing, installs wasm-bindgen-cli at exactly the
# wasm-bindgen version of this crate's Cargo.lock (skipped when that version is on PATH),
# builds in release and generates the JavaScript glue. Serve examples/web/ over HTTP and
# open index.html?url=ws://HOST:PORT/ (docs/web.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
target=wasm32-unknown-unknown

if ! rustup target list --installed | grep -qx "$target"; then
  echo "web example: rustup target add $target"
  rustup target add "$target"
fi

# The CLI must match the library exactly: the glue it writes is tied to that version.
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$version" ]; then
  echo "web example: no wasm-bindgen in examples/web/Cargo.lock" >&2
  exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$version" ]; then
  echo "web example: cargo install wasm-bindgen-cli $version"
  # With the CLI's own lock file; a registry (or mirror) that lacks one of its locked
  # versions gets the newest compatible ones instead.
  if ! cargo install --locked --quiet wasm-bindgen-cli --version "$version"; then
    echo "web example: retrying without --locked"
    cargo install --quiet wasm-bindgen-cli --version "$version"
  fi
fi

# Its own target directory: never the one of a cargo command that runs this script (a test
# holds that one's lock).
export CARGO_TARGET_DIR="$here/target"
cargo build --locked --release --target "$target"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
  --out-dir pkg \
  "$CARGO_TARGET_DIR/$target/release/wspeer_web_example.wasm"
echo "web example: built $here/pkg/ ($(wc -c <pkg/wspeer_web_example_bg.wasm) bytes of wasm)"
