"""An emulated Godot 4 client (SceneMultiplayer over WebSocketMultiplayerPeer), written from
the project reference godot-rpc.md (sections 1, 2.2, 4.2, 4.4, 4.5, 5), not from wspeer:
every byte it sends or expects is spelled out here, and the method ids and checksum are
computed here from the reference's rules (sorted names; MD5 of their concatenation).

It plays a client whose /root/Main declares `@rpc("any_peer") func echo(...)` and
`@rpc("any_peer") func echo_reply(...)`, with an auth_callback that sends `tok` and expects
`ok`. Against a wspeer server that hosts the same node and answers echo with echo_reply:
  1. the id message, then the authentication exchange (07 00 ...), both sides completing;
  2. echo("hi", 7) in full-path form; expects the server's SIMPLIFY_PATH for Main and
     echo_reply in full-path form, byte for byte; confirms the path;
  3. simplifies its own path (expects CONFIRM_PATH, valid), then echo("hi", 7) in cached
     form; expects echo_reply in cached form, byte for byte;
  4. echo() with one PackedByteArray (raw-bytes form) and with no arguments.
Prints `PASS` and exits 0, or prints `FAIL <why>` and exits 1.

Usage: python3 godot4_client.py ws://HOST:PORT/ [PROTOCOL] [--no-auth]
(--no-auth: a client without auth_callback, for a server without one: step 1 is the id
message alone.)
"""

import hashlib
import struct
import sys

from websockets.sync.client import connect

TIMEOUT = 10


def fail(why):
    print("FAIL", why, flush=True)
    sys.exit(1)


def expect(ws, wanted, what):
    got = ws.recv(timeout=TIMEOUT)
    if isinstance(got, str):
        fail(f"{what}: a text message {got!r}")
    if got != wanted:
        fail(f"{what}: expected {wanted.hex(' ')}, got {got.hex(' ')}")


def main():
    url = sys.argv[1]
    protocols = [sys.argv[2]] if len(sys.argv) > 2 and sys.argv[2] else None
    auth = "--no-auth" not in sys.argv[3:]

    # Section 5: ids follow the sorted names; the checksum is the MD5 of their concatenation.
    names = sorted(["echo_reply", "echo"])
    echo_id, reply_id = names.index("echo"), names.index("echo_reply")
    checksum = hashlib.md5("".join(names).encode()).hexdigest().encode()

    # Section 2.2: compressed arguments. "hi" is a plain String Variant; 7 is INT in one byte.
    hi = struct.pack("<II", 4, 2) + b"hi\x00\x00"
    seven = bytes([0x02, 0x07])
    args = bytes([2]) + hi + seven

    def full_path_call(method_id):
        # Meta 0x20: u32 node target with bit 31 = offset of the path; u8 method id.
        body = bytes([method_id]) + args
        offset = 1 + 4 + len(body)
        return bytes([0x20]) + struct.pack("<I", 0x80000000 | offset) + body + b"Main\x00"

    with connect(url, subprotocols=protocols, open_timeout=TIMEOUT) as ws:
        first = ws.recv(timeout=TIMEOUT)
        if not isinstance(first, bytes) or len(first) != 4:
            fail(f"the id message: {first!r}")
        my_id = struct.unpack("<i", first)[0]
        if my_id < 2:
            fail(f"id {my_id}")

        # Section 4.2, auth: my payload, the server's, then both "completed" markers.
        if auth:
            ws.send(b"\x07\x00tok")
            expect(ws, b"\x07\x00ok", "the server's auth payload")
            ws.send(b"\x07\x00")
            expect(ws, b"\x07\x00", "the server completing auth")

        # Full path: the server has never simplified Main for us, so it sends
        # SIMPLIFY_PATH (its ids start at 1) and then echo_reply with the full path.
        ws.send(full_path_call(echo_id))
        simplify = b"\x01" + checksum + b"\x00" + struct.pack("<I", 1) + b"Main\x00"
        expect(ws, simplify, "the server's SIMPLIFY_PATH")
        expect(ws, full_path_call(reply_id), "echo_reply in full-path form")
        ws.send(b"\x02\x01" + struct.pack("<I", 1))  # CONFIRM_PATH, 4.3+ form, valid

        # Cached: simplify our own path (id 1), wait for the confirmation, then call by id.
        ws.send(simplify)
        expect(ws, b"\x02\x01" + struct.pack("<I", 1), "CONFIRM_PATH for our path")
        ws.send(bytes([0x00, 1, echo_id]) + args)
        expect(ws, bytes([0x00, 1, reply_id]) + args, "echo_reply in cached form")

        # Meta bit 7: one PackedByteArray sent raw, then no arguments at all.
        ws.send(bytes([0x80, 1, echo_id]) + b"\x01\x02\x03")
        expect(ws, bytes([0x80, 1, reply_id]) + b"\x01\x02\x03", "echo_reply of raw bytes")
        ws.send(bytes([0x80, 1, echo_id]))
        expect(ws, bytes([0x80, 1, reply_id]), "echo_reply without arguments")
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
