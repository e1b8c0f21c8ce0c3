#!/usr/bin/env bash
# CPU profiles of examples/echo_server under the echo benchmark's loads (issue #11).
#
#   bash bench/profile.sh LABEL [ECHO_SERVER_BINARY]
#
# Builds examples/echo_server (unless ECHO_SERVER_BINARY is given) and bench's `loadgen`
# (unless LOADGEN=path is set) in release mode with line tables and frame pointers, starts
# echo_server on 127.0.0.1 pinned to CPU 0, drives it with loadgen pinned to CPU 1, and
# samples the server with `perf record -e cpu-clock -g` (frame-pointer call graphs) for
# PROFILE_SECS (default 8) seconds per scenario:
#
#   lat         1 connection × 32 B text ping-pong
#   c100x20     100 connections × 20 B, one in flight each
#   wss         100 connections × 1 KiB over TLS (a test CA and certificate from
#               `bench --write-pki`), one in flight each
#   c100x16x64  100 connections × 16 in flight × 64 B
#   c200x16k    200 connections × 16 KiB, one in flight each
#   c10x1m      10 connections × 1 MiB, one in flight each (server: --max-message 2097152)
#
# For each it writes docs/bench/profile/LABEL-<scenario>.txt: the commands, the revision,
# loadgen's RESULT line, time by shared object, the top self-time symbols
# (`perf report --no-children --sort symbol`), overall and in user space, and the top
# inclusive ones (`--children`).
# bench/profiles-md.sh turns those files into docs/bench/profiles.md.
#
# Environment:
#   CARGO_TARGET_DIR  where to build (default target/profile, so that the extra RUSTFLAGS
#                     never invalidate the ordinary target/ build)
#   LOADGEN           a prebuilt loadgen (skips building bench); LOADGEN_REV says what it
#                     was built from
#   SERVER_REV        what to call the server's revision in the files (default: this
#                     checkout's HEAD, with "+ uncommitted changes" when src/ or examples/
#                     differ from it); set it when ECHO_SERVER_BINARY comes from elsewhere
#   SCENARIOS         a subset, e.g. "c100x20 lat"
#   PROFILE_SECS      seconds sampled per scenario (default 8)
#   PROFILE_RETRIES   runs done again when other work and steal took > 10 % of the
#                     machine's CPU time while sampling (default 2)
#   QUIET_WAIT        before each scenario, wait up to this many seconds (default 90) for a
#                     second in which the machine is at most 10 % busy; each file says what
#                     it found and how busy the machine was while sampling
#   PERF_CALL_GRAPH   perf's --call-graph mode (default fp; "dwarf,16384" for binaries
#                     built without frame pointers)
#
# About 1 minute per run after the build (5 × (1 s quiet check + 1 s warm-up + 8 s +
# reports)) on a quiet machine. Everything
# listens and connects on 127.0.0.1 only; each child is stopped by its own PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/profile-lib.sh
source "$root/bench/profile-lib.sh"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  exit 2
fi
label=$1
server_bin=${2:-}
[[ $label =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "bad LABEL $label" >&2; exit 2; }
secs=${PROFILE_SECS:-8}
call_graph=${PERF_CALL_GRAPH:-fp}
scenarios=${SCENARIOS:-"c100x20 c100x16x64 c200x16k c10x1m lat wss"}
out_dir=$root/docs/bench/profile
mkdir -p "$out_dir"

command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is missing (util-linux)" >&2; exit 1; }

# ----- build -----
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/profile}
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
export RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes"
if [ -z "$server_bin" ]; then
  cargo build --release --example echo_server
  server_bin=$CARGO_TARGET_DIR/release/examples/echo_server
fi
loadgen=${LOADGEN:-}
if [ -z "$loadgen" ]; then
  cargo build --release -p wspeer-bench --bin loadgen
  loadgen=$CARGO_TARGET_DIR/release/loadgen
fi
# The test CA, certificate and key of the wss scenario come from the benchmark runner.
if [[ " $scenarios " == *" wss "* ]]; then
  cargo build --release -p wspeer-bench --bin bench
  pki_writer=$CARGO_TARGET_DIR/release/bench
fi
server_bin=$(realpath "$server_bin")
loadgen=$(realpath "$loadgen")

revisions
script_command="bash bench/profile.sh $label${2:+ $(show_path "$server_bin")}"
kernel=$(uname -r)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')

# ----- processes -----
tmp=$(mktemp -d)
server_pid=""
loadgen_pid=""
perf_pid=""
cleanup() {
  for pid in $perf_pid $loadgen_pid $server_pid; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# find_loadgen: the PID of loadgen itself, which runs under taskset and timeout.
find_loadgen() {
  local pid=$loadgen_pid
  while [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != loadgen ]; do
    pid=$(awk '{print $1}' "/proc/$pid/task/$pid/children" 2>/dev/null)
  done
  echo "${pid:-0}"
}

# SNAPSHOT (run by perf record as its workload, so that it brackets the sampling exactly):
# the machine's CPU time (/proc/stat's cpu line) and the server's and loadgen's own (user +
# system ticks from /proc/PID/stat, PIDs in $SERVER_PID and $LOADGEN_PID), separated by "|".
snapshot='echo "$(head -1 /proc/stat)|$(awk "{print \$14 + \$15}" /proc/$SERVER_PID/stat 2>/dev/null)|$(awk "{print \$14 + \$15}" /proc/$LOADGEN_PID/stat 2>/dev/null)"'

# machine_load SNAPSHOT_BEFORE SNAPSHOT_AFTER: the whole machine's CPU time over the sampled
# interval, next to the server's and loadgen's own over the same interval, so that a run
# disturbed by other work on the machine (or by the hypervisor: steal) shows; then, on a
# line of its own, that other work plus steal in percent of the machine's CPU time.
machine_load() {
  python3 - "$1" "$2" "$(getconf CLK_TCK)" <<'PY'
import sys
hz = int(sys.argv[3])
(a, sa, la), (b, sb, lb) = (x.split("|") for x in sys.argv[1:3])
d = [(int(y) - int(x)) / hz for x, y in zip(a.split()[1:], b.split()[1:])]
user, nice, system, idle, iowait, irq, softirq, steal = (d + [0] * 8)[:8]
busy = user + nice + system + irq + softirq
total = busy + idle + iowait + steal
try:
    server, client = (int(sb) - int(sa)) / hz, (int(lb) - int(la)) / hz
    own = server + client
    own_s = f"; server {server:.2f} s, loadgen {client:.2f} s, other work {busy - own:.2f} s"
except ValueError:
    own = 0.0
    own_s = "; server or loadgen CPU time unknown"
print(f"load:     while sampling the machine was busy {busy:.2f} CPU-s of {total:.2f} "
      f"(softirq {softirq:.2f}, steal {steal:.2f}){own_s}")
print(round(100 * (max(0.0, busy - own) + steal) / max(total, 1e-9)))
PY
}

# Keeps perf's table lines, without its comment lines, blank lines and empty IPC columns.
table() { sed -e '/^#/d' -e '/^[[:space:]]*$/d' -e 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' -e 's/[[:space:]]*$//'; }

for scenario in $scenarios; do
  server_args=()
  tls_args=()
  msg_type=binary
  case $scenario in
    lat) conns=1 size=32 inflight=1 msg_type=text ;;
    c100x20) conns=100 size=20 inflight=1 ;;
    c100x16x64) conns=100 size=64 inflight=16 ;;
    c200x16k) conns=200 size=16384 inflight=1 ;;
    c10x1m) conns=10 size=1048576 inflight=1 server_args=(--max-message 2097152) ;;
    wss)
      conns=100 size=1024 inflight=1
      [ -f "$tmp/pki/ca.pem" ] || "$pki_writer" --write-pki "$tmp/pki" >/dev/null 2>&1
      server_args=(--cert "$tmp/pki/cert.pem" --key "$tmp/pki/key.pem")
      tls_args=(--ca "$tmp/pki/ca.pem")
      ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  echo "== $label $scenario" >&2
  # A run during which other work and steal took more than 10 % of the machine is done
  # again (up to PROFILE_RETRIES more times, default 2); the file keeps the last one.
  for attempt in $(seq $((${PROFILE_RETRIES:-2} + 1))); do
    wait_quiet
    start_server "${server_args[@]}"
    warmup=1
    lg_args=(--addr "127.0.0.1:$port" --mode echo --msg-type "$msg_type" --conns "$conns"
      --size "$size" --inflight "$inflight" --warmup "$warmup" --secs "$((secs + 1))" --server-pid "$server_pid"
      "${tls_args[@]}")
    taskset -c 1 timeout 120 "$loadgen" "${lg_args[@]}" >"$tmp/loadgen.out" 2>&1 &
    loadgen_pid=$!
    # Sample `secs` seconds from the end of loadgen's warm-up (loadgen runs one second longer,
    # so that it is still running when the sampling ends). perf's workload is the sleep,
    # between two snapshots of the CPU time used.
    sleep "$warmup"
    SERVER_PID=$server_pid LOADGEN_PID=$(find_loadgen) \
      perf record -e cpu-clock -F 4000 --call-graph "$call_graph" -p "$server_pid" \
      -o "$tmp/perf.data" -- bash -c "$snapshot >'$tmp/before'; sleep $secs; $snapshot >'$tmp/after'" \
      >"$tmp/perf.log" 2>&1 &
    perf_pid=$!
    wait "$perf_pid" || { echo "perf record failed: $(cat "$tmp/perf.log")" >&2; exit 1; }
    perf_pid=""
    stat_before=$(cat "$tmp/before")
    stat_after=$(cat "$tmp/after")
    wait "$loadgen_pid" || true
    loadgen_pid=""
    pid=$server_pid
    stop_server
    result=$(grep -E '^(RESULT|NOTE|MISMATCH|ERROR)' "$tmp/loadgen.out" || true)
    [ -n "$result" ] || result="no RESULT from loadgen: $(tail -3 "$tmp/loadgen.out")"
    load_out=$(machine_load "$stat_before" "$stat_after")
    load_line=$(sed -n 1p <<<"$load_out")
    other_pct=$(sed -n 2p <<<"$load_out")
    [ "$other_pct" -le 10 ] && break
    echo "other work and steal took $other_pct % of the machine during $scenario (attempt $attempt)" >&2
  done
  attempts=$attempt

  report() { perf report -i "$tmp/perf.data" --stdio -g none --percent-limit 0.01 "$@" 2>/dev/null; }
  file=$out_dir/$label-$scenario.txt
  {
    echo "# profile: $label $scenario"
    echo "script:   $script_command"
    echo "server:   $(show_path "$server_bin") --port 0 --quiet${server_args[*]:+ ${server_args[*]}}, at $SERVER_REV"
    echo "loadgen:  $(show_path "$loadgen") at $bench_rev"
    echo "build:    cargo build --release, CARGO_PROFILE_RELEASE_DEBUG=line-tables-only RUSTFLAGS='-C force-frame-pointers=yes'"
    echo "machine:  $cpu, $(nproc) CPUs, kernel $kernel; server on CPU 0, loadgen on CPU 1 (taskset)"
    echo "loadgen command: taskset -c 1 loadgen ${lg_args[*]/127.0.0.1:$port/127.0.0.1:PORT}" | sed "s/--server-pid $pid\$/--server-pid SERVER_PID/"
    echo "perf command:    perf record -e cpu-clock -F 4000 --call-graph $call_graph -p SERVER_PID -- sleep $secs   (started after the ${warmup} s warm-up; the sleep between two snapshots of /proc/stat and the two processes' CPU time)"
    echo "$result"
    echo "quiet:    $quiet_note"
    echo "$load_line (attempt $attempts)"
    grep -E 'Captured|lost' "$tmp/perf.log" | sed "s|$tmp/||" || true
    report --no-children --sort dso | sed -n 's/^# \(Samples\|Total Lost\)/\1/p'
    echo
    echo "## time by shared object: perf report --no-children --sort dso"
    report --no-children --sort dso | table | sed -n 1,8p
    echo
    echo "## top self time (Overhead = self %): perf report --no-children --sort symbol"
    report --no-children --sort symbol | table | sed -n 1,30p
    echo
    echo "## top self time in user space (the [.] entries of the same report; % of all samples)"
    report --no-children --sort symbol | table | sed -n '/\[\.\]/p' | sed -n 1,20p
    echo
    echo "## top inclusive time (Children %, Self %): perf report --children --sort symbol"
    report --children --sort symbol | table | sed -n 1,40p
  } >"$file"
  # No absolute paths of this machine in the committed files.
  sed -i -e "s|$root/||g" -e "s|$tmp/||g" "$file"
  echo "wrote $(show_path "$file")" >&2
done
