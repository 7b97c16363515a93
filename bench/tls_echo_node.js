// bench/tls_echo_node.js - examples/tls-echo-server.c with Node's tls, for
// bench/tls-limit.sh: a greeting line once the handshake is done, the
// bytes echoed (pausing on backpressure), "goodbye" and close_notify
// after the peer's. Node has no knob for the number of TLS 1.3 tickets
// (OpenSSL's default, 2, is sent).
//
//   node tls_echo_node.js CERT KEY PORT
'use strict';
const tls = require('tls');
const fs = require('fs');

const [cert, key, port] = process.argv.slice(2);
const server = tls.createServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
}, (s) => {
  s.write(`hello stranger (${s.getProtocol()})\r\n`);
  s.on('data', (d) => { if (!s.write(d)) s.pause(); });
  s.on('drain', () => s.resume());
  s.on('end', () => s.end('goodbye\r\n'));
  s.on('error', () => {});
});
server.listen(Number(port), '127.0.0.1', 4096, () => console.log('listening'));
