#!/usr/bin/env python3
"""Records real WebSocket exchanges on 127.0.0.1 and turns them into the fuzz seeds.

    python3 tests/fuzz/capture.py --examples DIR [--out tests/fuzz/seeds]

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

The multiplayer_packets seeds are not captured (no Godot binary on the project's
machines): they are the byte layouts documented in src/multiplayer/wire.rs, written once
by hand.
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


class Recorder:
    """A one-connection TCP proxy that keeps what went each way."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _pump(self, src, dst, log):
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

    def _run(self):
        self.listener.settimeout(TIMEOUT)
        try:
            client, _ = self.listener.accept()
        except OSError:
            self.done.set()
            return
        server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=TIMEOUT)
        for s in (client, server):
            s.settimeout(TIMEOUT)
        a = threading.Thread(target=self._pump, args=(client, server, self.c2s))
        b = threading.Thread(target=self._pump, args=(server, client, self.s2c))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()
        self.done.set()

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", required=True, help="directory of the built examples")
    parser.add_argument("--out", default=os.path.join(HERE, "seeds"))
    args = parser.parse_args()

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
