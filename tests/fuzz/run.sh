#!/usr/bin/env bash
# A short, bounded run of every fuzz target; fails on any crash.
#
#   bash tests/fuzz/run.sh                 # FUZZ_SECONDS=5 per target (default)
#   FUZZ_SECONDS=600 FUZZ_PROFILE=release bash tests/fuzz/run.sh   # a real campaign
#   FUZZ_SECONDS=120 FUZZ_PROFILE=release FUZZ_RECORD=1 bash tests/fuzz/run.sh
#                                          # ... and append its record to the repository
#   FUZZ_TARGETS="server_frames client_frames" bash tests/fuzz/run.sh   # only these
#
# FUZZ_RECORD=1 appends one line per target to docs/fuzz/campaigns.csv (FUZZ_RECORD_FILE
# to write elsewhere): date, commit (+dirty when src/, tests/fuzz/ or the manifests differ
# from it; taken as each target's run starts), target, profile, seconds asked, wall seconds, executions, executions per
# second, corpus entries before and after (tests/fuzz/corpus/<target>), libFuzzer's corpus
# and coverage at the end, peak RSS, crashes, toolchain, cargo-fuzz version, cores. A run
# that crashes is recorded too (crashes 1) before the script fails. Off by default, so the
# short run inside tests/run.sh leaves the tree clean. docs/fuzz/README.md explains it.
#
# Installs cargo-fuzz with cargo install when missing. The targets need nightly-only compiler
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
TARGETS=(server_handshake server_frames client_handshake client_frames multiplayer_packets variant_decode rpc_packets proxy_header)
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
fi
FUZZ_RECORD="${FUZZ_RECORD:-0}"
RECORD_FILE="${FUZZ_RECORD_FILE:-docs/fuzz/campaigns.csv}"
RECORD_HEADER="date_utc,commit,target,profile,seconds,wall_s,executions,exec_per_s,corpus_before,corpus_after,libfuzzer_corpus,coverage_edges,peak_rss_mb,crashes,toolchain,cargo_fuzz,cores"
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

# The commit fuzzed, "+dirty" when the working tree differs from it where it matters.
commit_now() {
  local c
  c=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain -- src tests/fuzz Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    c="$c+dirty"
  fi
  echo "$c"
}

if [ "$FUZZ_RECORD" = 1 ]; then
  toolchain=$(rustc --version | tr ',' ' ')
  cargo_fuzz=$(cargo fuzz --version | awk '{print $2}')
  mkdir -p "$(dirname "$RECORD_FILE")"
  if [ ! -s "$RECORD_FILE" ]; then
    echo "$RECORD_HEADER" >"$RECORD_FILE"
  elif [ "$(head -n 1 "$RECORD_FILE")" != "$RECORD_HEADER" ]; then
    echo "fuzz: $RECORD_FILE does not start with the expected header; not appending" >&2
    exit 1
  fi
fi

# One CSV line for `target` from its libFuzzer log (FUZZ_RECORD=1 only).
record() {
  local target=$1 log=$2 wall=$3 before=$4 crashes=$5
  [ "$FUZZ_RECORD" = 1 ] || return 0
  local after corp cov
  fstat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
  after=$(find "$FUZZ_DIR/corpus/$target" -type f | wc -l)
  # A crash while loading the corpus leaves no `corp:`/`cov:` line: recorded empty.
  corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | awk '{print $2}' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}' || true)
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$commit,$target,$FUZZ_PROFILE,$FUZZ_SECONDS,$wall,$(fstat number_of_executed_units),$(fstat average_exec_per_sec),$before,$after,$corp,$cov,$(fstat peak_rss_mb),$crashes,$toolchain,$cargo_fuzz,$(nproc)" >>"$RECORD_FILE"
  echo "fuzz: recorded $target in $RECORD_FILE"
}

summary=()
for target in "${TARGETS[@]}"; do
  mkdir -p "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/artifacts/$target"
  log=$(mktemp)
  before=$(find "$FUZZ_DIR/corpus/$target" -type f | wc -l)
  # `cargo fuzz run` rebuilds first if anything changed: this is the commit it fuzzes.
  [ "$FUZZ_RECORD" = 1 ] && commit=$(commit_now)
  t_start=$(date +%s)
  # libFuzzer exits non-zero on a crash, a panic, a timeout or an out-of-memory.
  if ! cargo fuzz run "${build[@]}" "$target" \
      "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/seeds/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -max_len=16384 -timeout=10 -rss_limit_mb=1024 \
      -print_final_stats=1 >"$log" 2>&1; then
    record "$target" "$log" "$(($(date +%s) - t_start))" "$before" 1
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (artifacts in $FUZZ_DIR/artifacts/$target)"
    echo "fuzz: replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build[*]} $target FILE"
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  record "$target" "$log" "$(($(date +%s) - t_start))" "$before" 0
  summary+=("$target: ${runs:-?} executions, 0 crashes, $cov")
  rm -f "$log"
done
end=$(date +%s)

for line in "${summary[@]}"; do
  echo "fuzz: $line"
done
echo "fuzz: build $((built - start)) s, fuzzing $((end - built)) s, total $((end - start)) s"
