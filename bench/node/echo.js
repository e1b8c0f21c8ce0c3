// Node `ws` echo server for the optional row of wspeer's benchmark:
//   node bench/node/echo.js PORT
// Echoes text as text and binary as binary; no permessage-deflate, 64 MiB max message.
'use strict';
const { WebSocketServer } = require('ws');

const port = parseInt(process.argv[2] || '9080', 10);
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  console.log(`Listening on ws://127.0.0.1:${wss.address().port}`);
});
wss.on('error', (e) => {
  console.error(`Unable to start server: ${e.message}`);
  process.exit(1);
});
