#!/usr/bin/env bash
# The TLS feature matrix (Cargo.toml [features]), run by tests/run.sh:
# 1. `--no-default-features`: no rustls, ring, aws-lc or webpki-roots among the library's
#    normal dependencies (`cargo tree -e normal`; rcgen, a dev-dependency, may bring its own);
#    clippy-clean; wss:// fails naming the feature (tests/tls_disabled.rs); the unit tests
#    pass; `tls` without a provider or roots fails naming the features.
# 2. Every other feature set passes clippy with warnings denied: `tls` alone (provider
#    installed by the application), `tls-ring` + `platform-roots` (also its unit test),
#    `tls-aws-lc-rs`, everything.
# 3. The TLS tests (tests/tls.rs, tests/tls_misuse.rs) with aws-lc-rs instead of ring.
# Measured on 2 busy cores: about 10 s with a warm target directory; the first run also
# builds aws-lc (C, through cc; no cmake needed on Linux x86_64): about 80 s in all.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(cargo tree -e normal --no-default-features -p wspeer --prefix none)
if grep -Ei '^(rustls|ring|aws-lc-rs|aws-lc-sys|webpki-roots|rustls-native-certs) ' <<<"$tree"; then
  echo "features.sh: a TLS crate in the --no-default-features dependency tree (above)" >&2
  exit 1
fi
cargo clippy -p wspeer --no-default-features --lib -- -D warnings
cargo test -p wspeer --no-default-features --test tls_disabled
# The unit tests without TLS (peer ids from getrandom), then `tls` with no provider
# installed and no root feature: errors that name the features (src/tls.rs).
cargo test -p wspeer --no-default-features --lib
cargo test -p wspeer --no-default-features --features tls --lib tls::
# The system's trust store alone (rustls-native-certs).
cargo test -p wspeer --no-default-features --features tls-ring,platform-roots --lib tls::

for features in tls "tls-ring,platform-roots" "tls-aws-lc-rs,webpki-roots"; do
  cargo clippy -p wspeer --lib --no-default-features --features "$features" -- -D warnings
done
cargo clippy -p wspeer --lib --all-features -- -D warnings

cargo test -p wspeer --no-default-features --features tls-aws-lc-rs,webpki-roots \
  --test tls --test tls_misuse
