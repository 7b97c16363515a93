// node_tls_client.js - a Node.js `tls` client for a weft TLS server.
//
//   node node_tls_client.js PORT CA [CERT KEY]
//
// Connects to 127.0.0.1:PORT with servername "localhost", trusting only
// CA (and presenting CERT/KEY if given), sends one line and prints
// "authorized=<bool> cn=<server CN>" then what the server answered.
// Ends its side once the answer (a line ending in "\n" after "echo: ")
// is complete. Exit 0 on a clean close of an authorized connection, 1 on
// an error, 2 on a timeout.
'use strict';
const tls = require('tls');
const fs = require('fs');

const [port, ca, cert, key] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.error('node_tls_client: timed out');
  process.exit(2);
}, 15000);

const sock = tls.connect({
  host: '127.0.0.1',
  port: Number(port),
  servername: 'localhost',
  ca: fs.readFileSync(ca),
  cert: cert ? fs.readFileSync(cert) : undefined,
  key: key ? fs.readFileSync(key) : undefined,
});
let got = '';
let authorized = false;
sock.on('secureConnect', () => {
  authorized = sock.authorized;
  const peer = sock.getPeerCertificate();
  process.stdout.write(`authorized=${sock.authorized} cn=${peer.subject.CN}\n`);
  sock.write('hello from node\n');
});
sock.setEncoding('utf8');
sock.on('data', (d) => { got += d; });
sock.on('end', () => {
  process.stdout.write(got);
  sock.end();
});
sock.on('error', (e) => {
  console.error('node_tls_client: error', e.code, e.message);
  process.exit(1);
});
sock.on('close', (hadError) => {
  clearTimeout(timer);
  process.exit(!hadError && authorized && got.startsWith('echo: ') ? 0 : 1);
});
