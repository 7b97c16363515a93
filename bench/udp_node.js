// bench/udp_node.js - Node's dgram: the same UDP server.
//   node udp_node.js echo|sink|gro PORT COUNTFILE
// (gro is a plain sink: Node's dgram has no UDP GRO.)
'use strict';
const dgram = require('dgram');
const fs = require('fs');
const [mode, port, file] = process.argv.slice(2);
let count = 0;
const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20,
                               sendBufferSize: 4 << 20 });
if (mode === 'echo') {
  s.on('message', (msg, rinfo) => { count++; s.send(msg, rinfo.port, rinfo.address); });
} else {
  s.on('message', () => { count++; });
}
process.on('SIGUSR2', () => fs.writeFileSync(file, count + '\n'));
process.on('SIGTERM', () => s.close());
s.bind(+port, '127.0.0.1');
