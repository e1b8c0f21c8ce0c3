#!/usr/bin/env bash
# The system needs of the test command (tests/run.sh), on a fresh Debian machine: checks
# each one and installs what is missing with apt-get (as root, or through sudo), after an
# `apt-get update`, and the Windows target with rustup. Idempotent and quick when
# everything is there: nothing is fetched then.
#
#   need                    command checked          Debian package   used by
#   C compiler              cc                       gcc, libc6-dev   ring (rustls), every build
#   C++ compiler            c++                      g++              libFuzzer (tests/fuzz, libfuzzer-sys)
#   MinGW-w64 C compiler    x86_64-w64-mingw32-gcc   gcc-mingw-w64-x86-64
#                                                                     ring (rustls) in the Windows check (tests/run.sh)
#   iproute2                ip                       iproute2         tests/faults.rs (network namespaces)
#   procps                  kill                     procps           tests/examples.rs, multiplayer_examples.rs (signals)
#   Python 3 with pip       python3, python3 -m pip  python3-pip      interop/embed tests, tests/fuzz/capture.py
#   Node.js with npm        node, npm                nodejs, npm      tests/interop_node.rs (ws@8)
#   Godot 3.2 headless      godot3-server            godot3-server    interop_godot.rs, multiplayer_godot3.rs
#   Chromium headless       chromium                 chromium         interop_chromium.rs, web_chromium.rs
#   tinyproxy               tinyproxy                tinyproxy        tests/proxy.rs (HTTP CONNECT proxy)
#   Redis server            redis-server             redis-server     bus/tests/redis.rs, tests/cluster*.rs (the room bus)
#   HAProxy                 haproxy                  haproxy          tests/cluster_proxies.rs (examples/cluster/haproxy.cfg)
#   nginx                   nginx                    nginx            tests/cluster_proxies.rs (examples/cluster/nginx.conf)
#   Xvfb, run by xvfb-run   xvfb-run, xauth          xvfb, xauth      tests/engine_example.rs (the macroquad
#                                                                     game, headless)
#   Mesa's software OpenGL, (dpkg-query)             libgl1-mesa-dri, tests/engine_example.rs: what
#   Xlib and XInput                                  libglx-mesa0,    miniquad loads when its window
#                                                    libx11-6, libxi6 opens (libGL, libX11, libXi)
#   root                    id -u = 0                -                tests/faults.rs (ip netns, setns)
#   TUN device              /dev/net/tun             (kernel)         tests/faults.rs (the userspace netem wire)
#   rustup                  rustup                   (rustup.rs)      the MSRV build step (tests/msrv.sh)
#   Windows target          rustup target list       (rustup)         the Windows check (tests/run.sh):
#                                                                     `rustup target add x86_64-pc-windows-gnu`
#   wasm32 target           rustup target list       (rustup)         the wasm32 clippy and the web page
#                                                                     (tests/run.sh, tests/web_chromium.rs):
#                                                                     `rustup target add wasm32-unknown-unknown`
#   open files              ulimit -Hn >= 2048       (system)         tests/hostile.rs (1000 connections)
#
# Not checked here because their own step installs them: Python `websockets` and Node `ws`
# (tests/interop/setup.sh), cargo-fuzz (tests/fuzz/run.sh), the MSRV toolchain
# (tests/msrv.sh), wasm-bindgen-cli (examples/web/build.sh).
#
# SETUP_INSTALL=0 only checks (no apt-get): every missing need is listed, then it fails.
set -euo pipefail

install="${SETUP_INSTALL:-1}"
windows_target=x86_64-pc-windows-gnu
wasm_target=wasm32-unknown-unknown
missing_pkgs=()
missing_what=()

need_pkg() { # need_pkg PACKAGE WHAT: a library, installed as that Debian package
  if [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" != "install ok installed" ]; then
    missing_pkgs+=("$1")
    missing_what+=("$2 (Debian package $1)")
  fi
}

need_cmd() { # need_cmd PACKAGE WHAT COMMAND...
  local pkg=$1 what=$2
  shift 2
  local c
  for c in "$@"; do
    if ! type -P "$c" >/dev/null 2>&1; then
      missing_pkgs+=("$pkg")
      missing_what+=("$what ($c, Debian package $pkg)")
      return
    fi
  done
}

check_all() {
  missing_pkgs=()
  missing_what=()
  need_cmd gcc "a C compiler, for ring" cc
  # gcc without the C library headers cannot build ring: libc6-dev brings them.
  if command -v cc >/dev/null 2>&1 && ! echo '#include <stdio.h>' | cc -E - >/dev/null 2>&1; then
    missing_pkgs+=(libc6-dev)
    missing_what+=("the C library headers (stdio.h, Debian package libc6-dev)")
  fi
  need_cmd g++ "a C++ compiler, for libFuzzer in tests/fuzz" c++
  # `cargo check --target x86_64-pc-windows-gnu` runs ring's build script, which compiles
  # its C and assembly for Windows: a check needs the cross compiler too.
  need_cmd gcc-mingw-w64-x86-64 "a MinGW-w64 C compiler, for ring in the Windows check" \
    x86_64-w64-mingw32-gcc
  need_cmd iproute2 "iproute2, for the network namespaces of tests/faults.rs" ip
  need_cmd procps "procps, for the signals sent by the example tests" kill
  need_cmd python3 "Python 3, for the interop and embed tests" python3
  if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    missing_pkgs+=(python3-pip)
    missing_what+=("pip for Python 3 (python3 -m pip, Debian package python3-pip)")
  fi
  need_cmd nodejs "Node.js, for tests/interop_node.rs" node
  need_cmd npm "npm, to install ws@8 for tests/interop_node.rs" npm
  need_cmd godot3-server "Godot 3.2 headless, for the Godot 3 interop tests" godot3-server
  need_cmd chromium "Chromium, for tests/interop_chromium.rs and tests/web_chromium.rs" chromium
  need_cmd tinyproxy "tinyproxy, the HTTP proxy of tests/proxy.rs" tinyproxy
  need_cmd redis-server "a Redis server, for the room bus tests (bus/tests/redis.rs, tests/cluster*.rs)" redis-server
  need_cmd haproxy "HAProxy, the load balancer of tests/cluster_proxies.rs" haproxy
  need_cmd nginx "nginx, the reverse proxy of tests/cluster_proxies.rs" nginx
  need_cmd xvfb "Xvfb, the X server of tests/engine_example.rs" xvfb-run Xvfb
  need_cmd xauth "xauth, which xvfb-run needs" xauth
  # miniquad (macroquad's window) loads these when the window opens, not at build time.
  need_pkg libgl1-mesa-dri "Mesa's software OpenGL driver, for the game of tests/engine_example.rs"
  need_pkg libglx-mesa0 "Mesa's GLX, for the game of tests/engine_example.rs"
  need_pkg libx11-6 "Xlib, for the game of tests/engine_example.rs"
  need_pkg libxi6 "the X Input library, for the game of tests/engine_example.rs"
}

check_all
if [ "${#missing_pkgs[@]}" -gt 0 ] && [ "$install" = 1 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    sudo=(none)
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "system setup: no apt-get on this machine: install these yourself:" >&2
  elif [ "${sudo[*]}" = none ]; then
    echo "system setup: not root and no sudo: cannot apt-get install ${missing_pkgs[*]}" >&2
  else
    # Sorted and unique: gcc and libc6-dev may both be listed, npm twice never.
    mapfile -t pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
    echo "system setup: apt-get update && apt-get install ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    check_all
  fi
fi

problems=("${missing_what[@]}")
if [ "$(id -u)" -ne 0 ]; then
  problems+=("root: tests/faults.rs creates network namespaces (ip netns add, setns): run the test command as root")
fi
if [ ! -c /dev/net/tun ]; then
  problems+=("/dev/net/tun: tests/faults.rs forwards packets through TUN devices (modprobe tun, or give the container the device)")
fi
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 2048 ]; then
  problems+=("an open-file hard limit of at least 2048 (now $hard): tests/hostile.rs holds 1000 Slowloris connections, both ends in one process (raise it in /etc/security/limits.conf or the container's nofile ulimit)")
fi
if ! command -v rustup >/dev/null 2>&1; then
  problems+=("rustup: the MSRV step (tests/msrv.sh) installs its toolchain with it; see https://rustup.rs")
else
  # The standard libraries of the Windows check and of the browser build, for the
  # toolchain cargo uses in this repository.
  has_target() {
    local installed
    installed=$(cd "$(dirname "$0")/.." && rustup target list --installed 2>/dev/null) || return 1
    grep -qx "$1" <<<"$installed"
  }
  for target in "$windows_target" "$wasm_target"; do
    if ! has_target "$target" && [ "$install" = 1 ]; then
      echo "system setup: rustup target add $target"
      if ! out=$(cd "$(dirname "$0")/.." && rustup target add "$target" 2>&1); then
        printf '%s\n' "$out" | tail -n 5 >&2
      fi
    fi
  done
  if ! has_target "$windows_target"; then
    problems+=("the $windows_target Rust target, for the Windows check in tests/run.sh (rustup target add $windows_target)")
  fi
  if ! has_target "$wasm_target"; then
    problems+=("the $wasm_target Rust target, for the browser build in tests/run.sh and tests/web_chromium.rs (rustup target add $wasm_target)")
  fi
fi
if [ "${#problems[@]}" -gt 0 ]; then
  echo "system setup: the test command needs, and this machine lacks:" >&2
  for p in "${problems[@]}"; do
    echo "  - $p" >&2
  done
  [ "$install" = 1 ] || echo "  (SETUP_INSTALL=0: nothing was installed)" >&2
  exit 1
fi
echo "system setup: cc, c++, x86_64-w64-mingw32-gcc + the $windows_target target, the $wasm_target target, ip, kill, python3 + pip, node + npm, godot3-server, chromium, tinyproxy, redis-server, haproxy, nginx, xvfb-run + Mesa GL, root, /dev/net/tun, open files, rustup: ready"
