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
  s.connect(port, '127.0.0.1', () => {
    let i = 0;
    // A few at a time, so a lossy moment costs a resend, not the test.
    const tick = () => {
      for (let k = 0; k < 10 && i < n; k++, i++) s.send('dgram ' + i);
      if (i < n) setImmediate(tick);
    };
    tick();
  });
} else {
  console.error('usage: dgram_peer.js echo | client PORT N');
  process.exit(64);
}
