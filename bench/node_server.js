'use strict';
// bench/node_server.js - the Node 20 `net` peer. Same protocol as the C
// servers (bench/common.h holds the C copy of the replies): count complete
// requests per 'data' chunk, answer with one write of prebuilt replies.
//
// usage: node node_server.js pong|http|sink PORT|PATH

const net = require('net');

const PONG_REPLY = '+PONG\r\n';
const HTTP_REPLY =
  'HTTP/1.1 200 OK\r\n' +
  'Content-Type: text/plain\r\n' +
  'Content-Length: 13\r\n' +
  'Connection: keep-alive\r\n' +
  '\r\n' +
  'Hello, World!';
const MAX_BATCH = 1024;

const [mode, addr] = process.argv.slice(2);
if (!['pong', 'http', 'sink'].includes(mode) || !addr) {
  process.stderr.write('usage: node node_server.js pong|http|sink PORT|PATH\n');
  process.exit(2);
}

const one = Buffer.from(mode === 'http' ? HTTP_REPLY : PONG_REPLY, 'latin1');
const replies = Buffer.alloc(one.length * MAX_BATCH);
for (let i = 0; i < MAX_BATCH; i++) one.copy(replies, i * one.length);

function reply(sock, count) {
  while (count > 0) {
    const k = count < MAX_BATCH ? count : MAX_BATCH;
    // A subarray shares memory with `replies`; the stream only reads it.
    sock.write(replies.subarray(0, k * one.length));
    count -= k;
  }
}

function onPong(sock) {
  sock.on('data', (buf) => {
    let count = 0;
    let i = buf.indexOf(10);
    while (i !== -1) {
      count++;
      i = buf.indexOf(10, i + 1);
    }
    if (count) reply(sock, count);
  });
}

// Counts "\r\n\r\n" terminators, carrying a partial one across chunks.
function onHttp(sock) {
  let st = 0;
  sock.on('data', (buf) => {
    let count = 0;
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i];
      if (c === 13) st = st === 2 ? 3 : 1;
      else if (c === 10) {
        if (st === 3) {
          count++;
          st = 0;
        } else st = st === 1 ? 2 : 0;
      } else st = 0;
    }
    if (count) reply(sock, count);
  });
}

const isPath = addr.includes('/');
const server = net.createServer((sock) => {
  if (!isPath) sock.setNoDelay(true);
  sock.on('error', () => sock.destroy());
  if (mode === 'pong') onPong(sock);
  else if (mode === 'http') onHttp(sock);
  else sock.on('data', () => {});
});
server.on('error', (err) => {
  process.stderr.write(`listen ${addr}: ${err.message}\n`);
  process.exit(1);
});
if (isPath) {
  try {
    require('fs').unlinkSync(addr);
  } catch (e) {
    // not there: fine
  }
  server.listen({ path: addr, backlog: 511 });
} else {
  server.listen({ port: Number(addr), host: '127.0.0.1', backlog: 511 });
}
