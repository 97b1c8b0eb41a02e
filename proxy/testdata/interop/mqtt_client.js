// MQTT.js under node over wss: connect, subscribe, publish to itself,
// receive, disconnect cleanly. Exits 0 and prints "ok" on success.
//
// usage: node mqtt_client.js wss://localhost:PORT/mqtt ca.pem topic
'use strict';
const fs = require('fs');
const mqtt = require('mqtt');

const [url, caFile, topic] = process.argv.slice(2);
const want = 'hello from mqtt.js under node';
const timer = setTimeout(() => { console.error('timed out'); process.exit(1); }, 30000);
const c = mqtt.connect(url, {
  ca: fs.readFileSync(caFile),
  servername: 'localhost',
  clientId: 'mqttjs-node-' + process.pid,
  keepalive: 60,
  reconnectPeriod: 0,
  connectTimeout: 10000,
});
c.on('error', (e) => { console.error(e.stack || e); process.exit(1); });
c.on('connect', () => {
  c.subscribe(topic, { qos: 1 }, (err) => {
    if (err) { console.error(err); process.exit(1); }
    c.publish(topic, want, { qos: 1 });
  });
});
c.on('message', (t, payload) => {
  if (payload.toString() !== want) return;
  c.end(false, () => { clearTimeout(timer); console.log('ok'); process.exit(0); });
});
