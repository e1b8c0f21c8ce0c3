#!/usr/bin/env bash
# A short, bounded run of every fuzz target; fails on any crash.
#
#   bash tests/fuzz/run.sh                 # FUZZ_SECONDS=5 per target (default)
#   FUZZ_SECONDS=600 FUZZ_PROFILE=release bash tests/fuzz/run.sh   # a real campaign
#
# Installs cargo-fuzz from crates.io when missing. The targets need nightly-only compiler
# flags (sanitizer coverage); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Built without a sanitizer (`-s none`): the code under test is safe Rust, and ASan would
# double the first build. Seeds (tests/fuzz/seeds, real captures) are read-only; new
# inputs go to tests/fuzz/corpus and crashes to tests/fuzz/artifacts (both ignored by git).
# The connection targets run in process (tests/fuzz/src/lib.rs: no sockets, threads or
# clock), so a crash file replays the same calls in the same order:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz -s none --dev TARGET FILE
# (FUZZ_TRACE=1 in front prints a one-line summary of the run.)
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS="${FUZZ_SECONDS:-5}"
FUZZ_PROFILE="${FUZZ_PROFILE:-dev}"
FUZZ_DIR=tests/fuzz
TARGETS=(server_handshake server_frames client_handshake client_frames multiplayer_packets)
export RUSTC_BOOTSTRAP=1

start=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

profile_flag=(--dev)
if [ "$FUZZ_PROFILE" = release ]; then
  profile_flag=(-O)
fi
build=(--fuzz-dir "$FUZZ_DIR" -s none "${profile_flag[@]}")
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  build+=(--target-dir "$FUZZ_TARGET_DIR")
fi

cargo fuzz build "${build[@]}"
built=$(date +%s)

summary=()
for target in "${TARGETS[@]}"; do
  mkdir -p "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/artifacts/$target"
  log=$(mktemp)
  # libFuzzer exits non-zero on a crash, a panic, a timeout or an out-of-memory.
  if ! cargo fuzz run "${build[@]}" "$target" \
      "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/seeds/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -max_len=16384 -timeout=10 -rss_limit_mb=1024 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (artifacts in $FUZZ_DIR/artifacts/$target)"
    echo "fuzz: replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build[*]} $target FILE"
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  summary+=("$target: ${runs:-?} executions, 0 crashes, $cov")
  rm -f "$log"
done
end=$(date +%s)

for line in "${summary[@]}"; do
  echo "fuzz: $line"
done
echo "fuzz: build $((built - start)) s, fuzzing $((end - built)) s, total $((end - start)) s"
