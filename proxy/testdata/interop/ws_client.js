// A WebSocket client on the node "ws" package, run against the echo
// backend through tlsfront: text, binary, 1 MiB (random and
// compressible), a fragmented message, and every close code a peer may
// send, each answered with the same code. Exits 0 and prints "ok" when
// everything came back as sent.
//
// usage: node ws_client.js wss://localhost:PORT/path ca.pem
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const WebSocket = require('ws');

const [url, caFile] = process.argv.slice(2);
const opts = { ca: fs.readFileSync(caFile), servername: 'localhost', perMessageDeflate: true, maxPayload: 64 << 20 };

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error('upgrade answered ' + res.statusCode)));
  });
}

function nextMessage(ws) {
  return new Promise((resolve, reject) => {
    const onClose = (code) => reject(new Error('closed with ' + code + ' while waiting for a message'));
    ws.once('close', onClose);
    ws.once('message', (data, isBinary) => {
      ws.off('close', onClose);
      resolve({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary });
    });
  });
}

function closed(ws) {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function echo(ws, name, payload, binary) {
  ws.send(payload, { binary });
  const m = await nextMessage(ws);
  check(m.isBinary === binary, name + ': binary=' + m.isBinary);
  check(Buffer.compare(m.data, Buffer.from(payload)) === 0, name + ': ' + m.data.length + ' bytes back, ' + Buffer.from(payload).length + ' sent, or different');
}

async function main() {
  const ws = await open();
  check(String(ws.extensions).includes('permessage-deflate'), 'permessage-deflate not negotiated: ' + ws.extensions);
  await echo(ws, 'text', 'hello tlsfront ✓', false);
  await echo(ws, 'binary', crypto.randomBytes(1000), true);
  await echo(ws, '1 MiB random', crypto.randomBytes(1 << 20), true);
  await echo(ws, '1 MiB compressible', Buffer.alloc(1 << 20, 'a'), true);

  // One message in three fragments comes back whole.
  const parts = [crypto.randomBytes(3000), crypto.randomBytes(10), crypto.randomBytes(70000)];
  const whole = nextMessage(ws);
  ws.send(parts[0], { binary: true, fin: false });
  ws.send(parts[1], { binary: true, fin: false });
  ws.send(parts[2], { binary: true, fin: true });
  const m = await whole;
  check(Buffer.compare(m.data, Buffer.concat(parts)) === 0, 'fragmented message came back different');

  const end = closed(ws);
  ws.close(1000, 'done');
  const c = await end;
  check(c.code === 1000 && c.reason === 'done', 'normal close came back as ' + c.code + ' ' + c.reason);

  const codes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
  for (const code of codes) {
    const ws = await open();
    const end = closed(ws);
    ws.close(code, 'bye ' + code);
    const c = await end;
    check(c.code === code && c.reason === 'bye ' + code, 'close ' + code + ' came back as ' + c.code + ' "' + c.reason + '"');
  }
  console.log('ok');
}

const timer = setTimeout(() => { console.error('timed out'); process.exit(1); }, 60000);
main().then(() => { clearTimeout(timer); process.exit(0); }, (e) => { console.error(e.stack || e); process.exit(1); });
