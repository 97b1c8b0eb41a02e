// A WebSocket backend on the node "ws" package: every message back as it
// came (text or binary), permessage-deflate on for every size, and every
// close frame answered with the same code and reason (ws does that).
// Prints {"port": N} once listening on 127.0.0.1.
'use strict';
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: { threshold: 0 },
  maxPayload: 64 << 20,
});
wss.on('listening', () => console.log(JSON.stringify({ port: wss.address().port })));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
// The test closes stdin when it is done.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
