#!/usr/bin/env bash
# System calls per echoed message of examples/echo_server (issue #11).
#
#   bash bench/syscalls.sh LABEL [ECHO_SERVER_BINARY]
#
# Builds examples/echo_server (unless ECHO_SERVER_BINARY is given) and bench's `loadgen`
# (unless LOADGEN=path is set) in release mode, and for each scenario
#
#   lat         1 connection × 32 B text ping-pong
#   c100x20     100 connections × 20 B, one in flight each
#   c100x16x64  100 connections × 16 in flight × 64 B
#
# runs a fresh echo_server on 127.0.0.1 pinned to CPU 0 and loadgen pinned to CPU 1
# (`--warmup 0 --secs SYSCALL_SECS`, default 6) twice:
#
# 1. under `strace -f -C` (the -c summary plus the trace, read for the results of
#    epoll_wait), attached to the server before loadgen starts and detached after it
#    exits. ptrace makes the server many times slower, so more messages arrive per
#    readiness event than at full speed;
# 2. at full speed, counted in the kernel: `perf stat` on the syscalls:sys_enter_*
#    tracepoints of the calls below, and `perf record -e syscalls:sys_{enter,exit}_epoll_wait`
#    for the number of readiness events (the sum of epoll_wait's results) and of empty
#    polls (timeout 0) and idle waits (a timeout > 0 that ran out).
#
# It writes docs/bench/profile/LABEL-syscalls-<scenario>.txt: the commands, the revision,
# loadgen's RESULT lines, the strace summary, and per echo and per readiness event the
# reads (recvfrom, read, recvmsg), writes (writev, sendto, write, sendmsg), epoll_wait and
# epoll_ctl. The echo count is loadgen's `count` (every echo after all connections are open
# and sending); the calls include the connections' opening handshakes and closes, a few
# per connection. bench/profiles-md.sh turns the files into docs/bench/profiles.md.
#
# Environment: CARGO_TARGET_DIR (default target/profile), LOADGEN, LOADGEN_REV, SERVER_REV,
# SCENARIOS and QUIET_WAIT as in bench/profile.sh; SYSCALL_SECS (default 6). About 1.5
# minutes after the build on a quiet machine. Needs strace, perf, taskset and python3.
# Everything runs on 127.0.0.1; each child is stopped by its own PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/profile-lib.sh
source "$root/bench/profile-lib.sh"

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 2
fi
label=$1
server_bin=${2:-}
[[ $label =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "bad LABEL $label" >&2; exit 2; }
secs=${SYSCALL_SECS:-6}
scenarios=${SCENARIOS:-"lat c100x20 c100x16x64"}
out_dir=$root/docs/bench/profile
mkdir -p "$out_dir"
for tool in strace perf taskset python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

# ----- build (same flags as bench/profile.sh, so both share one build) -----
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
server_bin=$(realpath "$server_bin")
loadgen=$(realpath "$loadgen")

revisions
script_command="bash bench/syscalls.sh $label${2:+ $(show_path "$server_bin")}"

tmp=$(mktemp -d)
server_pid=""
loadgen_pid=""
tracer_pids=""
cleanup() {
  for pid in $tracer_pids $loadgen_pid $server_pid; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# run_loadgen OUT: loadgen against the running server, pinned to CPU 1, bounded in time.
run_loadgen() {
  taskset -c 1 timeout $((secs + 60)) "$loadgen" "${lg_args[@]}" --addr "127.0.0.1:$port" \
    --server-pid "$server_pid" >"$1" 2>&1 &
  loadgen_pid=$!
  wait "$loadgen_pid" || true
  loadgen_pid=""
}

# stop_tracers: SIGINT to each tracer (strace detaches and prints its summary; perf
# writes its data), then waits for them.
stop_tracers() {
  for pid in $tracer_pids; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in $tracer_pids; do wait "$pid" 2>/dev/null || true; done
  tracer_pids=""
}

result_of() { grep -E '^(RESULT|NOTE|MISMATCH|ERROR)' "$1" || echo "no RESULT from loadgen: $(tail -3 "$1" | tr '\n' ' ')"; }

calls="recvfrom read recvmsg writev write sendto sendmsg epoll_wait epoll_ctl"
tracepoints=$(for c in $calls; do printf 'syscalls:sys_enter_%s,' "$c"; done)
tracepoints=${tracepoints%,}

for scenario in $scenarios; do
  msg_type=binary
  case $scenario in
    lat) conns=1 size=32 inflight=1 msg_type=text ;;
    c100x20) conns=100 size=20 inflight=1 ;;
    c100x16x64) conns=100 size=64 inflight=16 ;;
    *) echo "unknown scenario $scenario (lat, c100x20, c100x16x64)" >&2; exit 2 ;;
  esac
  lg_args=(--mode echo --msg-type "$msg_type" --conns "$conns" --size "$size"
    --inflight "$inflight" --warmup 0 --secs "$secs")

  # 1. strace
  echo "== $label syscalls $scenario: strace" >&2
  wait_quiet
  start_server
  : >"$tmp/strace.err"
  taskset -c 0 strace -f -C -s 1 -o "$tmp/strace.out" -p "$server_pid" 2>"$tmp/strace.err" &
  tracer_pids=$!
  for _ in $(seq 100); do
    grep -q attached "$tmp/strace.err" && break
    sleep 0.05
  done
  run_loadgen "$tmp/loadgen-strace.out"
  stop_tracers
  stop_server

  # 2. perf tracepoints, full speed
  echo "== $label syscalls $scenario: perf tracepoints" >&2
  strace_quiet=$quiet_note
  wait_quiet
  start_server
  perf stat -x, -e "$tracepoints" -p "$server_pid" -o "$tmp/perf-stat.csv" 2>"$tmp/perf-stat.err" &
  tracer_pids=$!
  perf record -q -e syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait -m 1024 -p "$server_pid" -o "$tmp/epoll.data" \
    >"$tmp/perf-record.log" 2>&1 &
  tracer_pids+=" $!"
  sleep 0.5
  run_loadgen "$tmp/loadgen-perf.out"
  stop_tracers
  stop_server
  perf script -i "$tmp/epoll.data" -F event,trace 2>/dev/null >"$tmp/epoll.txt" || true

  file=$out_dir/$label-syscalls-$scenario.txt
  {
    echo "# syscalls: $label $scenario"
    echo "script:   $script_command"
    echo "server:   $(show_path "$server_bin") --port 0 --quiet, at $SERVER_REV"
    echo "loadgen:  $(show_path "$loadgen") at $bench_rev"
    echo "machine:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, kernel $(uname -r); server on CPU 0, loadgen on CPU 1 (taskset)"
    echo "loadgen command: taskset -c 1 loadgen ${lg_args[*]} --addr 127.0.0.1:PORT --server-pid SERVER_PID"
    echo
    echo "## 1. strace (the server under ptrace)"
    echo "command: taskset -c 0 strace -f -C -s 1 -o TRACE -p SERVER_PID   (attached before loadgen starts, SIGINT after it exits)"
    echo "quiet: $strace_quiet"
    result_of "$tmp/loadgen-strace.out"
    python3 - "$tmp/strace.out" "$tmp/loadgen-strace.out" strace <<'PY'
import re, sys
trace, lg, tool = sys.argv[1:4]
m = re.search(r"\bcount=(\d+)", open(lg).read())
echoes = int(m.group(1)) if m else 0
calls, errors, summary, in_summary = {}, {}, [], False
events = waits = empty = timeouts = 0
with open(trace, errors="replace") as f:
    for line in f:
        if line.startswith("% time"):
            in_summary = True
        if in_summary:
            summary.append(line.rstrip("\n"))
            cols = line.split()
            if cols and re.match(r"^[\d.]+$", cols[0]) and cols[-1] != "total":
                calls[cols[-1]] = int(cols[3])
                errors[cols[-1]] = int(cols[4]) if len(cols) == 6 else 0
            continue
        if "epoll_wait" in line:
            r = re.search(r", (-?\d+)\)\s+= (\d+)\s*$", line)
            if r:
                n = int(r.group(2))
                waits += 1
                events += n
                empty += n == 0 and r.group(1) == "0"
                timeouts += n == 0 and r.group(1) != "0"
print("strace summary (strace -c):")
print("\n".join(summary))
reads = sum(calls.get(c, 0) for c in ("recvfrom", "read", "recvmsg"))
writes = sum(calls.get(c, 0) for c in ("writev", "sendto", "write", "sendmsg"))
eagain = sum(errors.get(c, 0) for c in ("recvfrom", "read", "recvmsg"))
total = sum(calls.values())
def per(n, d):
    return f"{n / d:.3f}" if d else "nan"
print(f"echoes (loadgen count): {echoes}")
print(f"readiness events (sum of epoll_wait results): {events} in {waits} epoll_wait calls; "
      f"{empty} found nothing with timeout 0, {timeouts} waited out a timeout > 0")
print(f"failed reads (EAGAIN and other errors): {eagain}")
print("per echo:            "
      f"reads {per(reads, echoes)}  writes {per(writes, echoes)}  epoll_wait {per(calls.get('epoll_wait', 0), echoes)}  "
      f"epoll_ctl {per(calls.get('epoll_ctl', 0), echoes)}  all syscalls {per(total, echoes)}")
print("per readiness event: "
      f"reads {per(reads, events)}  writes {per(writes, events)}")
print(f"PER_ECHO tool={tool} echoes={echoes} events={events} reads={per(reads, echoes)} writes={per(writes, echoes)} "
      f"epoll_wait={per(calls.get('epoll_wait', 0), echoes)} epoll_ctl={per(calls.get('epoll_ctl', 0), echoes)} "
      f"all={per(total, echoes)} reads_per_event={per(reads, events)} writes_per_event={per(writes, events)} "
      f"failed_reads={per(eagain, echoes)}")
PY
    echo
    echo "## 2. perf tracepoints (full speed)"
    echo "command: perf stat -x, -e syscalls:sys_enter_{${calls// /,}} -p SERVER_PID"
    echo "         perf record -e syscalls:sys_{enter,exit}_epoll_wait -m 1024 -p SERVER_PID; perf script -F event,trace   (both from before loadgen starts to after it exits)"
    echo "quiet: $quiet_note"
    result_of "$tmp/loadgen-perf.out"
    grep -E 'lost|Lost' "$tmp/perf-record.log" || true
    python3 - "$tmp/perf-stat.csv" "$tmp/epoll.txt" "$tmp/loadgen-perf.out" perf <<'PY'
import re, sys
stat, epoll, lg, tool = sys.argv[1:5]
m = re.search(r"\bcount=(\d+)", open(lg).read())
echoes = int(m.group(1)) if m else 0
calls = {}
for line in open(stat):
    cols = line.strip().split(",")
    if len(cols) > 2 and cols[2].startswith("syscalls:sys_enter_"):
        calls[cols[2][len("syscalls:sys_enter_"):]] = int(cols[0]) if cols[0].isdigit() else 0
events = waits = empty = timeouts = 0
timeout = None
for line in open(epoll):
    cols = line.split()
    if not cols:
        continue
    if cols[0].startswith("syscalls:sys_enter_epoll_wait"):
        timeout = int(cols[-1], 16)
        continue
    n = int(cols[-1], 16)
    if n >= 1 << 63:  # an error such as EINTR
        continue
    waits += 1
    events += n
    empty += n == 0 and timeout == 0
    timeouts += n == 0 and timeout != 0
def per(n, d):
    return f"{n / d:.3f}" if d else "nan"
print("calls (perf stat, syscalls:sys_enter_*):")
for c, n in calls.items():
    print(f"  {c:<12} {n:>10}   {per(n, echoes)} per echo")
reads = sum(calls.get(c, 0) for c in ("recvfrom", "read", "recvmsg"))
writes = sum(calls.get(c, 0) for c in ("writev", "sendto", "write", "sendmsg"))
counted = sum(calls.values())
print(f"echoes (loadgen count): {echoes}")
print(f"readiness events (sum of epoll_wait results): {events} in {waits} epoll_wait calls; "
      f"{empty} found nothing with timeout 0, {timeouts} waited out a timeout > 0")
print("per echo:            "
      f"reads {per(reads, echoes)}  writes {per(writes, echoes)}  epoll_wait {per(calls.get('epoll_wait', 0), echoes)}  "
      f"epoll_ctl {per(calls.get('epoll_ctl', 0), echoes)}  these calls {per(counted, echoes)}")
print("per readiness event: "
      f"reads {per(reads, events)}  writes {per(writes, events)}")
print(f"PER_ECHO tool={tool} echoes={echoes} events={events} reads={per(reads, echoes)} writes={per(writes, echoes)} "
      f"epoll_wait={per(calls.get('epoll_wait', 0), echoes)} epoll_ctl={per(calls.get('epoll_ctl', 0), echoes)} "
      f"all={per(counted, echoes)} reads_per_event={per(reads, events)} writes_per_event={per(writes, events)}")
PY
  } >"$file"
  sed -i -e "s|$root/||g" -e "s|$tmp/||g" "$file"
  echo "wrote $(show_path "$file")" >&2
done
