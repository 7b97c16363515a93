// dgram_peer.js - Node's dgram on the other side of test_dgram's interop
// cases. Exits on its own within 10 s whatever happens.
//   node dgram_peer.js echo          binds udp4 127.0.0.1:0, prints the
//                                    port, echoes every datagram, exits
//                                    after echoing "bye"
//   node dgram_peer.js client PORT N sends N numbered datagrams to PORT
//                                    (connected socket), prints
//                                    "ok <echoes received>" after N echoes
'use strict';
const dgram = require('dgram');
const mode = process.argv[2];
setTimeout(() => { console.log('timeout'); process.exit(2); }, 10000).unref();

if (mode === 'echo') {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => {
    s.send(msg, rinfo.port, rinfo.address, () => {
      if (msg.toString() === 'bye') s.close();
    });
  });
  s.bind(0, '127.0.0.1', () => console.log(s.address().port));
} else if (mode === 'client') {
  const port = +process.argv[3];
  const n = +process.argv[4];
  const s = dgram.createSocket('udp4');
  let got = 0;
  const seen = new Set();
  s.on('message', (msg) => {
    const text = msg.toString();
    if (!/^dgram [0-9]+$/.test(text) || seen.has(text)) return;
    seen.add(text);
    if (++got === n) { console.log('ok ' + got); s.close(); }
  });
  // Ten at a time, the next ten once they are answered; a batch not
  // answered within 200 ms is sent again (duplicates are ignored), so a
  // datagram lost on a busy host costs a resend, not the test.
  let next = 0;
  const sendBatch = (from) => {
    for (let i = from; i < Math.min(from + 10, n); i++) s.send('dgram ' + i);
  };
  let lastGot = -1;
  setInterval(() => {
    if (got === lastGot && got < n) sendBatch(next - 10 < 0 ? 0 : next - 10);
    lastGot = got;
  }, 200).unref();
  s.on('message', () => {
    if (got === next && next < n) { sendBatch(next); next += 10; }
  });
  s.connect(port, '127.0.0.1', () => { sendBatch(0); next = 10; });
} else {
  console.error('usage: dgram_peer.js echo | client PORT N');
  process.exit(64);
}
