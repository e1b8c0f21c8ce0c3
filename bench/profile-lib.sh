# Shell functions shared by bench/profile.sh and bench/syscalls.sh (sourced, not run):
# the revisions and paths the records show, waiting for a quiet machine, and starting
# and stopping the echo server under test. They use the caller's $root, $tmp, $server_bin,
# $server_pid and $port.

# Paths in the files: repository-relative, or just the file name for outside builds.
show_path() {
  case $1 in
    "$root"/*) echo "${1#"$root"/}" ;;
    *) echo "<outside build>/$(basename "$1")" ;;
  esac
}

# wait_quiet: waits (up to QUIET_WAIT seconds, default 90) for one second in which the
# machine is at most 10 % busy, so that other work (a build) does not share the two CPUs
# with the measurement; sets quiet_note to what it found.
wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_WAIT:-90})) a b busy
  while :; do
    a=$(head -1 /proc/stat)
    sleep 1
    b=$(head -1 /proc/stat)
    busy=$(python3 -c 'import sys
a = [int(x) for x in sys.argv[1].split()[1:8]]
b = [int(x) for x in sys.argv[2].split()[1:8]]
d = [y - x for x, y in zip(a, b)]
print(round(100 * (d[0] + d[1] + d[2] + d[5] + d[6]) / max(1, sum(d)), 1))' "$a" "$b")
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 10 else 1)' "$busy"; then
      quiet_note="machine ${busy} % busy in the second before the run"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      quiet_note="WARNING: machine still ${busy} % busy after waiting ${QUIET_WAIT:-90} s for it to be quiet"
      echo "$quiet_note" >&2
      return 0
    fi
  done
}

# start_server ARGS...: sets server_pid and port.
start_server() {
  : >"$tmp/server.log"
  taskset -c 0 "$server_bin" --port 0 --quiet "$@" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^Listening on wss*:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server.log")
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "echo_server did not start: $(cat "$tmp/server.log")" >&2
  exit 1
}

stop_server() {
  kill -INT "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# revisions: sets SERVER_REV (unless given) and bench_rev, what the records say was
# measured: the commit, marked when the measured files have uncommitted changes.
revisions() {
  if [ -z "${SERVER_REV:-}" ]; then
    SERVER_REV=$(git rev-parse HEAD)
    if [ -n "$(git status --porcelain -- src examples Cargo.toml Cargo.lock)" ]; then
      SERVER_REV+=" + uncommitted changes in src/, examples/ or Cargo files"
    fi
  fi
  bench_rev=$(git rev-parse HEAD)
  [ -z "$(git status --porcelain -- bench/src bench/Cargo.toml)" ] || bench_rev+=" + uncommitted changes in bench/"
  if [ -n "${LOADGEN:-}" ]; then
    bench_rev=${LOADGEN_REV:-"(prebuilt: LOADGEN was given)"}
  fi
}
