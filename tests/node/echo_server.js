// echo_server.js - a Node.js `net` server for weft clients.
//
//   node echo_server.js            echo mode
//   node echo_server.js end-first  the server ends first
//
// Listens on 127.0.0.1, a free port, and prints "PORT <n>" on stdout.
// Serves one connection with allowHalfOpen, then exits: 0 once that
// connection closed cleanly, 1 on a socket error, 2 on a timeout.
//
// echo: echoes every byte as it comes (pausing while its own writes back
//   up); when the client ends its side, writes "\nbytes=<n>\n" (the count
//   it received) and ends too.
// end-first: writes "greeting\n" and ends at once, keeps reading; when
//   the client ends, prints "GOT <n> <fnv1a32 hex>" of what it received.
'use strict';
const net = require('net');

const mode = process.argv[2] || 'echo';
const timer = setTimeout(() => {
  console.error('echo_server: timed out');
  process.exit(2);
}, 15000);

// FNV-1a, 32 bits: the C side computes the same over what it sent.
function fnv1a32(h, buf) {
  for (let i = 0; i < buf.length; i++) {
    h ^= buf[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const server = net.createServer({ allowHalfOpen: true }, (sock) => {
  server.close();
  let n = 0;
  let h = 0x811c9dc5;
  if (mode === 'end-first') {
    sock.end('greeting\n');
  }
  sock.on('data', (d) => {
    n += d.length;
    if (mode === 'end-first') {
      h = fnv1a32(h, d);
    } else if (!sock.write(d)) {
      sock.pause();
      sock.once('drain', () => sock.resume());
    }
  });
  sock.on('end', () => {
    if (mode === 'end-first')
      process.stdout.write(`GOT ${n} ${h.toString(16).padStart(8, '0')}\n`);
    else
      sock.end(`\nbytes=${n}\n`);
  });
  sock.on('error', (e) => {
    console.error('echo_server: error', e.code, e.message);
    process.exit(1);
  });
  sock.on('close', (hadError) => {
    clearTimeout(timer);
    process.exit(hadError ? 1 : 0);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
