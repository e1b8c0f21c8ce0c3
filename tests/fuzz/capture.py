#!/usr/bin/env python3
"""Records real WebSocket exchanges on 127.0.0.1 and turns them into the fuzz seeds.

    python3 tests/fuzz/capture.py --examples DIR [--out tests/fuzz/seeds]
    python3 tests/fuzz/capture.py --godot3 [--out tests/fuzz/seeds]

DIR holds the built wspeer examples (echo_server, client). Each capture puts a recording
TCP proxy between a real client and a real server and keeps both byte streams:

  client -> server  seeds/server_handshake/NAME   (upgrade request + masked frames)
                    seeds/server_frames/NAME      (the same, after the request head)
  server -> client  seeds/client_handshake/NAME   (101 or refusal + unmasked frames)
                    seeds/client_frames/NAME      (the same, after the response head)

Clients: wspeer's `client` example, Python `websockets` (sync API), Node `ws` (from
tests/interop/node_modules, if installed), headless Chromium (if installed), curl (a
plain HTTP request). Servers: wspeer's `echo_server` example and a Python `websockets`
echo server. A client or server that is not installed is skipped with a note.
Only loopback addresses are used; every wait is bounded.

--godot3 captures the multiplayer_packets seeds named `godot3-captured_*` from the real
Godot 3.2 engine (Debian's `godot3-server`, headless): a Godot `WebSocketServer` and two
Godot `WebSocketClient`s in multiplayer mode (`gd_mp_api = true`), each client connected
through a recording proxy, run tests/fuzz/godot3/capture_bot.gd (system messages, RAW
packets to the server / everyone / a peer / all but a peer, RPCs, rsets, the RPC path
cache). The recorded streams are split into WebSocket messages here (an independent
parser: it shares no code with wspeer), and the first message of each kind and direction
is kept, named `godot3-captured_<c2s|s2c>_<kind>[_<addressing>]`. The fuzz target
(fuzz_targets/multiplayer_packets.rs) checks every such file against wspeer's decoder
and encoder on start. Godot's peer ids are random, so a new capture changes the bytes,
not the names. The other multiplayer_packets seeds (scene_*, godot4_id, godot3_raw,
godot3_sys_*) are the byte layouts documented in src/multiplayer/wire.rs, written by hand.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIMEOUT = 20


class Recording:
    """What went each way over one proxied connection, and whether it has ended."""

    def __init__(self):
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.done = threading.Event()

    def relay(self, client, upstream_port):
        """Connects `client` to the upstream port and copies both ways, recording, until
        both directions end."""
        server = socket.create_connection(("127.0.0.1", upstream_port), timeout=TIMEOUT)
        for s in (client, server):
            s.settimeout(TIMEOUT)
        a = threading.Thread(target=pump, args=(client, server, self.c2s))
        b = threading.Thread(target=pump, args=(server, client, self.s2c))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()
        self.done.set()


def pump(src, dst, log):
    """Copies `src` to `dst` until `src` ends, appending what passed to `log`."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            log.extend(data)
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class Recorder(Recording):
    """A one-connection TCP proxy that keeps what went each way."""

    def __init__(self, upstream_port):
        super().__init__()
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.listener.settimeout(TIMEOUT)
        try:
            client, _ = self.listener.accept()
        except OSError:
            self.done.set()
            return
        self.relay(client, self.upstream_port)

    def wait(self):
        if not self.done.wait(TIMEOUT):
            print("  (capture timed out; keeping what arrived)", file=sys.stderr)


def head_split(data):
    end = data.find(b"\r\n\r\n")
    return (data, b"") if end < 0 else (data[: end + 4], data[end + 4 :])


def save(out, name, rec):
    c2s, s2c = bytes(rec.c2s), bytes(rec.s2c)
    if not c2s and not s2c:
        print(f"  {name}: nothing recorded, skipped", file=sys.stderr)
        return
    parts = {
        "server_handshake": c2s,
        "server_frames": head_split(c2s)[1],
        "client_handshake": s2c,
        "client_frames": head_split(s2c)[1],
    }
    for target, data in parts.items():
        if data:
            os.makedirs(os.path.join(out, target), exist_ok=True)
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)
    print(f"  {name}: {len(c2s)} bytes client->server, {len(s2c)} bytes server->client")


# ----- servers -----


def start_wspeer_server(examples):
    proc = subprocess.Popen(
        [os.path.join(examples, "echo_server"), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("Listening on ws://"):
        proc.kill()
        raise SystemExit(f"echo_server did not start: {line!r}")
    return proc, int(line.strip().rsplit(":", 1)[1])


def start_python_server():
    from websockets.sync.server import serve

    def echo(ws):
        try:
            for message in ws:
                ws.send(message)
        except Exception:
            pass

    server = serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.socket.getsockname()[1]


# ----- clients -----


def wspeer_client(examples, port):
    subprocess.run(
        [os.path.join(examples, "client"), f"ws://127.0.0.1:{port}/chat?room=1"],
        stdout=subprocess.DEVNULL,
        timeout=TIMEOUT,
        check=False,
    )


def python_client(port, compression=None):
    from websockets.sync.client import connect

    with connect(
        f"ws://127.0.0.1:{port}/python", compression=compression, open_timeout=TIMEOUT
    ) as ws:
        ws.send("hello from python ✓")
        ws.recv(timeout=TIMEOUT)
        ws.send(bytes(range(256)))
        ws.recv(timeout=TIMEOUT)
        ws.send(["frag", "mented ", "text"])  # one message in three frames
        ws.recv(timeout=TIMEOUT)
        ws.send([b"\x00\x01", b"\x02"])
        ws.recv(timeout=TIMEOUT)
        ws.ping(b"are you there").wait(TIMEOUT)
        ws.send("x" * 300)  # 16-bit length
        ws.recv(timeout=TIMEOUT)
        ws.close(4001, "python bye ✓")


def node_client(port):
    ws_dir = os.path.join(ROOT, "tests", "interop", "node_modules", "ws")
    if not shutil.which("node") or not os.path.isdir(ws_dir):
        print("  node or tests/interop/node_modules/ws missing: skipped", file=sys.stderr)
        return False
    script = f"""
const WebSocket = require({ws_dir!r});
const ws = new WebSocket('ws://127.0.0.1:{port}/node', {{ perMessageDeflate: true }});
let n = 0;
ws.on('open', () => {{
  ws.send('hello from node');
  ws.send(Buffer.from([0, 255, 1, 254]));
  ws.ping('node ping');
}});
ws.on('message', () => {{ if (++n === 2) ws.close(1000, 'node done'); }});
ws.on('close', () => process.exit(0));
setTimeout(() => process.exit(1), {TIMEOUT * 1000});
"""
    subprocess.run(["node", "-e", script], timeout=TIMEOUT + 5, check=False)
    return True


def chromium_client(port, rec):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome"
    )
    if not browser:
        print("  no Chromium: skipped", file=sys.stderr)
        return False
    page = f"""<!doctype html><script>
const ws = new WebSocket('ws://127.0.0.1:{port}/browser?v=1');
ws.binaryType = 'arraybuffer';
let n = 0;
ws.onopen = () => {{
  ws.send('hello from chromium');
  ws.send(new Uint8Array([1, 2, 3, 255]));
  ws.send('\u00e9\u20ac\U0001F600');
}};
ws.onmessage = () => {{ if (++n === 3) ws.close(1000, 'browser done'); }};
</script>"""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "page.html")
        with open(path, "w") as f:
            f.write(page)
        proc = subprocess.Popen(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={os.path.join(tmp, 'profile')}",
                "file://" + path,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            rec.wait()
        finally:
            proc.kill()
            proc.wait()
    return True


def curl_client(port):
    if not shutil.which("curl"):
        print("  no curl: skipped", file=sys.stderr)
        return False
    subprocess.run(
        ["curl", "-s", "-m", str(TIMEOUT), f"http://127.0.0.1:{port}/index.html"],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    return True


# ----- Godot 3 multiplayer traffic -----


class MultiRecorder:
    """A TCP proxy that records each of up to `count` connections (both directions)."""

    def __init__(self, upstream_port, count):
        self.recorders = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(count)
        self.port = self.listener.getsockname()[1]
        self.upstream_port = upstream_port
        self.count = count
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.listener.settimeout(TIMEOUT)
        for _ in range(self.count):
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            rec = Recording()
            self.recorders.append(rec)
            threading.Thread(
                target=rec.relay, args=(client, self.upstream_port), daemon=True
            ).start()


def ws_messages(stream):
    """The data messages (opcode, payload) of a WebSocket byte stream after its head:
    unmasked, continuation frames joined, control frames left out. RFC 6455 section 5.2."""
    messages, i, opcode, parts = [], 0, None, []
    while i + 2 <= len(stream):
        b0, b1 = stream[i], stream[i + 1]
        fin, op, masked, length = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        j = i + 2
        if length == 126:
            length, j = int.from_bytes(stream[j : j + 2], "big"), j + 2
        elif length == 127:
            length, j = int.from_bytes(stream[j : j + 8], "big"), j + 8
        key = b""
        if masked:
            key, j = stream[j : j + 4], j + 4
        if j + length > len(stream):
            break  # cut off at the end of the capture
        payload = bytes(stream[j : j + length])
        if masked:
            payload = bytes(c ^ key[k % 4] for k, c in enumerate(payload))
        i = j + length
        if op >= 8:
            continue  # close, ping, pong
        if op != 0:
            opcode, parts = op, []
        parts.append(payload)
        if fin:
            messages.append((opcode, b"".join(parts)))
    return messages


# Godot 3.2 core/io/multiplayer_api.h and modules/websocket/websocket_multiplayer_peer.h.
G3_SYS = {1: "sys-add", 2: "sys-del", 3: "sys-id"}
G3_COMMANDS = {0: "rpc", 1: "rset", 2: "simplify-path", 3: "confirm-path", 4: "raw"}


def godot3_kind(direction, message):
    """A name for a Godot 3 multiplayer message, from its bytes (None if not one)."""
    if len(message) < 9:
        return None
    kind = message[0]
    frm = int.from_bytes(message[1:5], "little", signed=True)
    to = int.from_bytes(message[5:9], "little", signed=True)
    if kind in G3_SYS:
        peer = int.from_bytes(message[9:13], "little", signed=True)
        name = G3_SYS[kind]
        if kind == 1:
            name += "_server" if peer == 1 else "_peer"
        return name
    if kind != 0 or len(message) < 10 or message[9] not in G3_COMMANDS:
        return None
    name = G3_COMMANDS[message[9]]
    if to == 1:
        name += "_to-server"
    elif to == 0:
        name += "_to-all"
    elif to < 0:
        name += "_to-all-but"
    else:
        name += "_to-peer"
    if direction == "s2c":
        name += "_from-server" if frm == 1 else "_relayed"
    return name


def godot3_capture(out):
    engine = shutil.which("godot3-server")
    if not engine:
        raise SystemExit(
            "godot3-server not found: install it with `apt-get update && apt-get install -y "
            "godot3-server` (or bash tests/interop/setup.sh)"
        )
    project = os.path.join(HERE, "godot3")
    home = tempfile.mkdtemp(prefix="g3capture")
    env = dict(os.environ, LANG="en_US.UTF-8", HOME=home, XDG_DATA_HOME=home,
               XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home)

    def bot(*args):
        return subprocess.Popen(
            [engine, "--path", project, "-s", "capture_bot.gd", "--limit", str(TIMEOUT), *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )

    with socket.socket() as probe:  # a free port for the Godot server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = [bot("--role", "server", "--port", str(port))]
    try:
        line = procs[0].stdout.readline()
        while line and not line.startswith("listening"):
            line = procs[0].stdout.readline()
        if not line:
            raise SystemExit("the Godot 3 server bot did not start")
        proxy = MultiRecorder(port, 2)
        url = f"ws://127.0.0.1:{proxy.port}/"
        procs.append(bot("--role", "client", "--url", url, "--linger", "2"))
        time.sleep(0.5)  # the first client gets its id first
        procs.append(bot("--role", "client", "--url", url, "--linger", "1"))
        for proc in procs:
            proc.wait(TIMEOUT + 5)
        logs = [proc.stdout.read() for proc in procs]
        if any(proc.returncode != 0 for proc in procs):
            for log in logs:
                print(log, file=sys.stderr)
            raise SystemExit("a Godot 3 bot failed (logs above)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)
    for rec in proxy.recorders:
        rec.done.wait(TIMEOUT)

    target_dir = os.path.join(out, "multiplayer_packets")
    os.makedirs(target_dir, exist_ok=True)
    for old in os.listdir(target_dir):
        if old.startswith("godot3-captured_"):
            os.remove(os.path.join(target_dir, old))
    kept = {}
    for rec in proxy.recorders:
        for direction, stream in (("c2s", rec.c2s), ("s2c", rec.s2c)):
            for opcode, message in ws_messages(head_split(bytes(stream))[1]):
                kind = godot3_kind(direction, message)
                if opcode != 2 or kind is None:
                    raise SystemExit(f"not a Godot 3 binary message: {opcode} {message.hex()}")
                kept.setdefault(f"godot3-captured_{direction}_{kind}", message)
    for name, message in sorted(kept.items()):
        with open(os.path.join(target_dir, name), "wb") as f:
            f.write(message)
        print(f"  {name}: {len(message)} bytes: {message[:24].hex()}")
    wanted = ["sys-id", "sys-add_server", "sys-add_peer", "sys-del", "raw_", "rpc_", "rset_",
              "simplify-path", "confirm-path", "_relayed"]
    missing = [w for w in wanted if not any(w in name for name in kept)]
    if missing:
        raise SystemExit(f"the capture lacks {missing}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", help="directory of the built examples")
    parser.add_argument("--godot3", action="store_true",
                        help="capture the Godot 3 multiplayer seeds instead")
    parser.add_argument("--out", default=os.path.join(HERE, "seeds"))
    args = parser.parse_args()
    if args.godot3:
        godot3_capture(args.out)
        return
    if not args.examples:
        parser.error("--examples DIR is needed (or --godot3)")

    wspeer, wspeer_port = start_wspeer_server(args.examples)
    pyserver, py_port = start_python_server()
    try:
        captures = [
            ("wspeer-client_to_wspeer", wspeer_port, lambda p, r: wspeer_client(args.examples, p)),
            ("wspeer-client_to_python", py_port, lambda p, r: wspeer_client(args.examples, p)),
            ("python-client_to_wspeer", wspeer_port, lambda p, r: python_client(p)),
            ("python-client_to_python", py_port, lambda p, r: python_client(p, None)),
            (
                "python-deflate_to_python",
                py_port,
                lambda p, r: python_client(p, "deflate"),
            ),
            ("node-client_to_wspeer", wspeer_port, lambda p, r: node_client(p)),
            ("node-client_to_python", py_port, lambda p, r: node_client(p)),
            ("chromium_to_wspeer", wspeer_port, chromium_client),
            ("chromium_to_python", py_port, chromium_client),
            ("curl_to_wspeer", wspeer_port, lambda p, r: curl_client(p)),
        ]
        for name, upstream, run in captures:
            rec = Recorder(upstream)
            try:
                ran = run(rec.port, rec)
            except Exception as e:  # a failing client still leaves a useful capture
                print(f"  {name}: client error {e!r}", file=sys.stderr)
                ran = True
            if ran is False:
                rec.listener.close()
                continue
            rec.wait()
            save(args.out, name, rec)
    finally:
        wspeer.kill()
        wspeer.wait()
        pyserver.shutdown()


if __name__ == "__main__":
    main()
