#!/usr/bin/env node
// Interop peer for wspeer: Node.js `ws` 8, as client or server.
//
// Runs the two-session script of tests/interop/harness.rs:
//   node peer.js client BASE_URL --sizes 0,1,... [--ca CA.pem]
//   node peer.js server --sizes 0,1,... [--cert CERT.pem --key KEY.pem]   (prints "READY <port>")
// Exits 0 after printing PASS, or 1 after printing "FAIL: ...".
'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocket, WebSocketServer } = require('ws');

const PROTOCOL = 'wspeer-interop';
const OFFERED = ['bogus', PROTOCOL];
const PEER_CLOSE = [4001, 'peer bye ✓'];
const WSPEER_CLOSE = [4002, 'wspeer bye ✓'];
const STEP_TIMEOUT_MS = 20000;

const TOKENS = [null, Buffer.from('é'), Buffer.from('€'), Buffer.from('😀')];

// The generator of harness.rs, byte for byte.
function payload(kind, size, seed) {
  const out = Buffer.alloc(size);
  if (kind === 'binary') {
    for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 17 + (i >> 9)) & 0xff;
    return out;
  }
  let n = 0;
  for (let j = seed; ; j++) {
    const token = j % 4 === 0 ? Buffer.from([0x41 + ((j >> 2) % 26)]) : TOKENS[j % 4];
    if (n + token.length > size) break;
    token.copy(out, n);
    n += token.length;
  }
  out.fill(0x2d, n);
  return out;
}

function messages(sizes) {
  return sizes.flatMap((size) => [['text', size], ['binary', size]]);
}

class Fail extends Error {}

function check(msg, kind, size, seed, what) {
  const gotKind = msg.isBinary ? 'binary' : 'text';
  if (gotKind !== kind) throw new Fail(`${what}: expected a ${kind} message, got ${gotKind}`);
  const expected = payload(kind, size, seed);
  if (!msg.data.equals(expected)) {
    let first = 0;
    while (first < msg.data.length && first < expected.length && msg.data[first] === expected[first]) first++;
    throw new Fail(`${what}: got ${msg.data.length} bytes, expected ${expected.length}; first difference at byte ${first}`);
  }
}

// Turns a ws connection's events into awaitable messages and a close result.
class Conn {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiter = null;
    this.closed = null;
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      this.queue.push({ data: buf, isBinary });
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this.wake();
    });
    ws.on('error', (e) => {
      this.error = e;
      this.wake();
    });
  }

  wake() {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w();
    }
  }

  async until(what, ready) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!ready()) {
      if (this.error) throw new Fail(`${what}: ${this.error.message}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Fail(`${what}: timed out`);
      await new Promise((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, left);
      });
    }
  }

  async next(what) {
    await this.until(what, () => this.queue.length > 0 || this.closed);
    if (this.queue.length > 0) return this.queue.shift();
    throw new Fail(`${what}: the connection closed (${this.closed.code} ${JSON.stringify(this.closed.reason)})`);
  }
}

async function session(ws, conn, index, sizes) {
  if (ws.protocol !== PROTOCOL) throw new Fail(`session ${index}: selected sub-protocol ${JSON.stringify(ws.protocol)}`);
  const msgs = messages(sizes);
  const seedA = 10 * index + 1;
  const seedB = 10 * index + 2;
  for (const [i, [kind, size]] of msgs.entries()) {
    const what = `session ${index}: wspeer's message ${i} (${kind}, ${size} bytes)`;
    const msg = await conn.next(what);
    check(msg, kind, size, seedA, what);
    ws.send(msg.data, { binary: msg.isBinary });
  }
  for (const [i, [kind, size]] of msgs.entries()) {
    const what = `session ${index}: wspeer's echo of message ${i} (${kind}, ${size} bytes)`;
    ws.send(payload(kind, size, seedB), { binary: kind === 'binary' });
    const msg = await conn.next(what);
    check(msg, kind, size, seedB, what);
  }
  if (index === 0) {
    ws.close(PEER_CLOSE[0], PEER_CLOSE[1]);
    await conn.until('session 0: close', () => conn.closed);
    const { code, reason } = conn.closed;
    if (code === 1006 || code === 1005) throw new Fail(`session 0: wspeer answered the close with ${code}`);
    console.log(`session 0: closed with ${PEER_CLOSE[0]} ${JSON.stringify(PEER_CLOSE[1])}; wspeer answered ${code} ${JSON.stringify(reason)}`);
  } else {
    await conn.until('session 1: wspeer\'s close', () => conn.closed || conn.queue.length > 0);
    if (conn.queue.length > 0) throw new Fail('session 1: expected wspeer\'s close, got a message');
    const { code, reason } = conn.closed;
    if (code !== WSPEER_CLOSE[0] || reason !== WSPEER_CLOSE[1]) {
      throw new Fail(`session 1: wspeer closed with ${code} ${JSON.stringify(reason)}, expected ${JSON.stringify(WSPEER_CLOSE)}`);
    }
    console.log(`session 1: wspeer closed with ${code} ${JSON.stringify(reason)}`);
  }
}

async function runClient(args, sizes) {
  for (const index of [0, 1]) {
    const options = { handshakeTimeout: STEP_TIMEOUT_MS };
    if (args.ca) options.ca = fs.readFileSync(args.ca);
    const ws = new WebSocket(`${args.base}session${index}`, OFFERED, options);
    const conn = new Conn(ws);
    const opened = new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => reject(new Fail(`session ${index}: HTTP ${res.statusCode}`)));
    });
    await opened;
    await session(ws, conn, index, sizes);
  }
}

function runServer(args, sizes) {
  return new Promise((resolve, reject) => {
    let count = 0;
    const handleProtocols = (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false);
    let wss;
    let httpsServer = null;
    const listening = (port) => console.log(`READY ${port}`);
    if (args.cert) {
      httpsServer = https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) });
      wss = new WebSocketServer({ server: httpsServer, handleProtocols });
      httpsServer.listen(0, '127.0.0.1', () => listening(httpsServer.address().port));
    } else {
      wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols });
      wss.on('listening', () => listening(wss.address().port));
    }
    wss.on('connection', (ws, req) => {
      const index = count++;
      const conn = new Conn(ws);
      (async () => {
        if (req.url !== `/session${index}`) throw new Fail(`session ${index}: request path ${req.url}`);
        await session(ws, conn, index, sizes);
        if (index === 1) {
          wss.close();
          if (httpsServer) httpsServer.close();
          resolve();
        }
      })().catch(reject);
    });
    wss.on('error', reject);
  });
}

function parseArgs(argv) {
  const args = { role: argv[0] };
  for (let i = 1; i < argv.length; i++) {
    if (argv[i].startsWith('--')) args[argv[i].slice(2)] = argv[++i];
    else args.base = argv[i];
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const sizes = args.sizes.split(',').map(Number);
  console.log(`node ${process.version}, ws ${require('ws/package.json').version}`);
  const overall = setTimeout(() => {
    console.log('FAIL: timed out');
    process.exit(1);
  }, 3 * STEP_TIMEOUT_MS);
  try {
    if (args.role === 'client') await runClient(args, sizes);
    else await runServer(args, sizes);
  } catch (e) {
    console.log(`FAIL: ${e.stack || e}`);
    process.exit(1);
  }
  clearTimeout(overall);
  console.log('PASS');
  process.exit(0);
}

main();
