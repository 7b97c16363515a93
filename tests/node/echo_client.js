// echo_client.js - a Node.js `net` client for the seed's echo server.
//
//   node echo_client.js PORT [HOST]  connect to HOST (127.0.0.1):PORT
//   node echo_client.js /path.sock   connect to a Unix socket
//
// Sends a line, a UTF-8 text split in the middle of a character across
// two writes, and 1 MiB of multi-byte text (to make the server apply
// backpressure), then ends its side. The server must answer exactly
// "hello\r\n" + every byte sent + "goodbye\r\n", then end and close.
// Exit 0 on success, 1 on a wrong conversation, 2 on a timeout.
'use strict';
const net = require('net');

const where = process.argv[2];
if (!where) {
  console.error('usage: echo_client.js PORT [HOST] | PATH');
  process.exit(1);
}

const timer = setTimeout(() => {
  console.error('echo_client: timed out');
  process.exit(2);
}, 15000);

// Valid UTF-8 throughout: the server decodes with setEncoding('utf8') and
// re-encodes, so only well-formed text survives unchanged.
const line = Buffer.from('line one\r\n');
const split = Buffer.from('caf\u00e9 \u20ac \ud83d\ude00 end\r\n');
const cut = split.indexOf(0xe2) + 1; // inside the 3-byte euro sign
const unit = Buffer.from('weft \u00e9\u20ac\ud83d\ude00 bulk line\n');
const bulk = Buffer.alloc(1024 * 1024);
for (let off = 0; off < bulk.length; off += unit.length)
  unit.copy(bulk, off, 0, Math.min(unit.length, bulk.length - off));
// Cut the tail back to a character boundary.
let bulkLen = bulk.length - (bulk.length % unit.length);
const body = Buffer.concat([line, split, bulk.subarray(0, bulkLen)]);
const expected = Buffer.concat([
  Buffer.from('hello\r\n'), body, Buffer.from('goodbye\r\n'),
]);

const sock = /^\d+$/.test(where)
  ? net.connect(Number(where), process.argv[3] || '127.0.0.1')
  : net.connect(where);
const chunks = [];
let ended = false;

sock.on('connect', () => {
  sock.write(line);
  sock.write(split.subarray(0, cut));
  setTimeout(() => {
    sock.write(split.subarray(cut));
    sock.write(bulk.subarray(0, bulkLen));
    sock.end();
  }, 30);
});
sock.on('data', (d) => chunks.push(d));
sock.on('end', () => { ended = true; });
sock.on('error', (e) => {
  console.error('echo_client: error', e.code, e.message);
  process.exit(1);
});
sock.on('close', (hadError) => {
  clearTimeout(timer);
  const got = Buffer.concat(chunks);
  if (hadError || !ended) {
    console.error(`echo_client: close(hadError=${hadError}) ended=${ended}`);
    process.exit(1);
  }
  if (!got.equals(expected)) {
    let i = 0;
    while (i < got.length && i < expected.length && got[i] === expected[i]) i++;
    console.error(`echo_client: got ${got.length} bytes, want ${expected.length};` +
      ` first difference at ${i}: ${JSON.stringify(got.subarray(i, i + 20).toString())}` +
      ` vs ${JSON.stringify(expected.subarray(i, i + 20).toString())}`);
    process.exit(1);
  }
  process.exit(0);
});
