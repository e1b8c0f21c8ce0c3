#!/usr/bin/env python3
"""Interop peer for wspeer: Python `websockets` (asyncio API), as client or server.

Runs the two-session script of tests/interop/harness.rs:
  peer.py client BASE_URL --sizes 0,1,... [--ca CA.pem]
  peer.py server --sizes 0,1,... [--cert CERT.pem --key KEY.pem]   (prints "READY <port>")
Exits 0 after printing PASS, or 1 after printing "FAIL: ...".
"""

import argparse
import asyncio
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

PROTOCOL = "wspeer-interop"
OFFERED = ["bogus", PROTOCOL]
PEER_CLOSE = (4001, "peer bye ✓")
WSPEER_CLOSE = (4002, "wspeer bye ✓")
STEP_TIMEOUT = 20

TOKENS = [None, "é".encode(), "€".encode(), "😀".encode()]


class Fail(Exception):
    pass


def payload(kind, size, seed):
    """The generator of harness.rs, byte for byte."""
    if kind == "binary":
        # byte i = (i*31 + seed*17 + (i >> 9)) & 0xFF; within a 512-byte block k the
        # pattern is the block-0 pattern plus k (mod 256).
        base = bytes((j * 31 + seed * 17) & 0xFF for j in range(512))
        blocks = []
        for k in range((size + 511) // 512):
            table = bytes((b + k) & 0xFF for b in range(256))
            blocks.append(base.translate(table))
        return b"".join(blocks)[:size]
    # Text: tokens j = seed, seed+1, ... (period 104 in j), as many whole ones as fit.
    period = b"".join(
        bytes([0x41 + ((j >> 2) % 26)]) if j % 4 == 0 else TOKENS[j % 4]
        for j in range(seed, seed + 104)
    )
    stream = period * (size // len(period) + 2)
    cut = size
    while (stream[cut] & 0xC0) == 0x80:  # inside a multi-byte character
        cut -= 1
    return stream[:cut] + b"-" * (size - cut)


def messages(sizes):
    return [(kind, size) for size in sizes for kind in ("text", "binary")]


def check(got, kind, size, seed, what):
    is_text = isinstance(got, str)
    if is_text != (kind == "text"):
        raise Fail(f"{what}: expected a {kind} message, got {'text' if is_text else 'binary'}")
    data = got.encode("utf-8") if is_text else bytes(got)
    expected = payload(kind, size, seed)
    if data != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(data, expected)) if a != b),
            min(len(data), len(expected)),
        )
        raise Fail(f"{what}: got {len(data)} bytes, expected {len(expected)}; first difference at byte {first}")


def as_message(kind, data):
    return data.decode("utf-8") if kind == "text" else data


async def session(ws, index, sizes):
    if ws.subprotocol != PROTOCOL:
        raise Fail(f"session {index}: selected sub-protocol {ws.subprotocol!r}")
    msgs = messages(sizes)
    seed_a, seed_b = 10 * index + 1, 10 * index + 2
    for i, (kind, size) in enumerate(msgs):
        got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        check(got, kind, size, seed_a, f"session {index}: wspeer's message {i} ({kind}, {size} bytes)")
        await ws.send(got)
    for i, (kind, size) in enumerate(msgs):
        await ws.send(as_message(kind, payload(kind, size, seed_b)))
        got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        check(got, kind, size, seed_b, f"session {index}: wspeer's echo of message {i} ({kind}, {size} bytes)")
    if index == 0:
        await asyncio.wait_for(ws.close(*PEER_CLOSE), STEP_TIMEOUT)
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            raise Fail("session 0: wspeer did not answer the close frame")
        print(f"session 0: closed with {PEER_CLOSE[0]} {PEER_CLOSE[1]!r}; wspeer answered {rcvd.code} {rcvd.reason!r}", flush=True)
    else:
        try:
            extra = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
            raise Fail(f"session 1: expected wspeer's close, got a {len(extra)}-long message")
        except ConnectionClosed as closed:
            rcvd, sent = closed.rcvd, closed.sent
            if rcvd is None or sent is None:
                raise Fail(f"session 1: no clean close handshake: received {rcvd}, sent {sent}")
            if (rcvd.code, rcvd.reason) != WSPEER_CLOSE:
                raise Fail(f"session 1: wspeer closed with {rcvd.code} {rcvd.reason!r}, expected {WSPEER_CLOSE}")
            print(f"session 1: wspeer closed with {rcvd.code} {rcvd.reason!r}; answered {sent.code} {sent.reason!r}", flush=True)


async def run_client(args, sizes):
    ctx = ssl.create_default_context(cafile=args.ca) if args.ca else None
    for index in (0, 1):
        url = f"{args.base}session{index}"
        async with connect(url, subprotocols=OFFERED, ssl=ctx, open_timeout=STEP_TIMEOUT, close_timeout=STEP_TIMEOUT) as ws:
            await session(ws, index, sizes)


async def run_server(args, sizes):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0

    async def handler(ws):
        nonlocal count
        index = count
        count += 1
        try:
            if ws.request.path != f"/session{index}":
                raise Fail(f"session {index}: request path {ws.request.path!r}")
            await session(ws, index, sizes)
            if index == 1 and not done.done():
                done.set_result(None)
        except Exception as e:  # report anything, including ConnectionClosed
            if not done.done():
                done.set_exception(e)

    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    async with serve(handler, "127.0.0.1", 0, subprotocols=[PROTOCOL], ssl=ctx, close_timeout=STEP_TIMEOUT) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"READY {port}", flush=True)
        await asyncio.wait_for(done, 2 * STEP_TIMEOUT)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["client", "server"])
    parser.add_argument("base", nargs="?")
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"python {sys.version.split()[0]}, websockets {websockets.__version__}", flush=True)
    try:
        asyncio.run(run_client(args, sizes) if args.role == "client" else run_server(args, sizes))
    except Exception as e:
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
