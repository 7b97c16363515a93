// node_tls_server.js - a Node.js `tls` server for weft TLS clients.
//
//   node node_tls_server.js CERT KEY CA
//
// Listens on 127.0.0.1, a free port, and prints "PORT <n>". Asks for a
// client certificate (checked against CA, not required). Serves one
// connection: first writes "authorized=<bool> cn=<client CN>\n", then
// echoes every byte; ends when the client ends. Exit 0 once that
// connection closed cleanly, 1 on an error, 2 on a timeout. A client
// that rejects our certificate is not an error here.
'use strict';
const tls = require('tls');
const fs = require('fs');

const [cert, key, ca] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.error('node_tls_server: timed out');
  process.exit(2);
}, 15000);

const server = tls.createServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  ca: fs.readFileSync(ca),
  requestCert: true,
  rejectUnauthorized: false,
}, (sock) => {
  server.close();
  const peer = sock.getPeerCertificate();
  const cn = peer && peer.subject ? peer.subject.CN : 'none';
  sock.write(`authorized=${sock.authorized} cn=${cn}\n`);
  sock.on('data', (d) => sock.write(d));
  sock.on('end', () => sock.end());
  sock.on('error', (e) => {
    console.error('node_tls_server: error', e.code, e.message);
    process.exit(1);
  });
  sock.on('close', (hadError) => {
    clearTimeout(timer);
    process.exit(hadError ? 1 : 0);
  });
});
server.on('tlsClientError', () => {
  clearTimeout(timer);
  server.close();
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
