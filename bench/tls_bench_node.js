// bench/tls_bench_node.js - what bench/tls_bench.c measures, with Node's
// `tls` module: both ends in one process, on one event loop.
//
//   node tls_bench_node.js CERTDIR [CERT] [SECONDS] [CONCURRENCY] [MB] [PP_SECONDS]
//
// handshakes/s: CONCURRENCY connections in flight; each does a full
// handshake (no session reuse; the client verifies chain and host name),
// then both sides end (close_notify) and the next starts from 'close'.
// bulk MiB/s: one connection, 64 KiB writes honouring backpressure, timed
// from 'secureConnect' to the server's 'end'.
// ping-pong round trips/s: CONCURRENCY sessions, each client writes
// "PING\r\n" and the next once "+PONG\r\n" is back; counted over
// PP_SECONDS from 0.5 s after the start (the handshakes are done).
'use strict';
const tls = require('tls');
const fs = require('fs');
const path = require('path');

const [dir, cert = 'server', secs = '5', concArg = '16', mbArg = '1024', ppArg = '0'] =
  process.argv.slice(2);
const ppSeconds = Number(ppArg);
const seconds = Number(secs);
const conc = Number(concArg);
const mb = Number(mbArg);
const serverOpts = {
  cert: fs.readFileSync(path.join(dir, `${cert}.pem`)),
  key: fs.readFileSync(path.join(dir, `${cert}.key`)),
};
const clientOpts = {
  host: '127.0.0.1',
  servername: 'localhost',
  ca: fs.readFileSync(path.join(dir, 'ca.pem')),
};
// CPU seconds (user + system), as tls_bench.c reports them.
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const fail = (e) => { console.error('tls_bench_node:', e.code, e.message); process.exit(1); };

function handshakes(done) {
  let count = 0;
  let stopping = false;
  let inFlight = 0;
  const server = tls.createServer(serverOpts, (s) => {
    s.on('error', fail);
    s.resume();
  });
  server.listen(0, '127.0.0.1', 1024, () => {
    const port = server.address().port;
    const start = () => {
      inFlight++;
      const c = tls.connect({ ...clientOpts, port }, () => {
        count++;
        c.end();
      });
      c.on('error', fail);
      c.resume();
      c.on('close', () => {
        inFlight--;
        if (!stopping) start();
        else if (inFlight === 0) {
          server.close();
          const dt = Number(process.hrtime.bigint() - t0) / 1e9;
          const dc = cpu() - c0;
          console.log(`node handshakes (${cert}, ${conc} in flight): ${count} in ${dt.toFixed(2)} s = ${(count / dt).toFixed(0)}/s; ${(count / dc).toFixed(0)} per CPU-second`);
          done();
        }
      });
    };
    const t0 = process.hrtime.bigint();
    const c0 = cpu();
    setTimeout(() => { stopping = true; }, seconds * 1000);
    for (let i = 0; i < conc; i++) start();
  });
}

function bulk(done) {
  const total = mb * 1024 * 1024;
  const chunk = Buffer.alloc(65536, 'x');
  let got = 0;
  let t0;
  let c0;
  const server = tls.createServer(serverOpts, (s) => {
    server.close();
    s.on('data', (d) => { got += d.length; });
    s.on('end', () => {
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      const dc = cpu() - c0;
      const mib = got >> 20;
      console.log(`node bulk (${cert}, one way): ${mib} MiB in ${dt.toFixed(2)} s = ${(mib / dt).toFixed(0)} MiB/s; ${(mib / dc).toFixed(0)} MiB per CPU-second`);
      s.end();
      done(got === total);
    });
    s.on('error', fail);
  });
  server.listen(0, '127.0.0.1', () => {
    const c = tls.connect({ ...clientOpts, port: server.address().port }, () => {
      t0 = process.hrtime.bigint();
      c0 = cpu();
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!c.write(chunk)) return;
        }
        c.end();
      };
      c.on('drain', pump);
      pump();
    });
    c.on('error', fail);
    c.resume();
  });
}

function pingPong(done) {
  let trips = 0;
  let counting = false;
  let stopping = false;
  let secure = 0;
  let t0;
  let c0;
  const server = tls.createServer(serverOpts, (s) => {
    s.on('error', fail);
    s.on('data', (d) => {
      for (let i = 0; i < Math.floor(d.length / 6); i++) s.write('+PONG\r\n');
    });
  });
  server.listen(0, '127.0.0.1', 1024, () => {
    const port = server.address().port;
    for (let i = 0; i < conc; i++) {
      const c = tls.connect({ ...clientOpts, port }, () => {
        secure++;
        c.write('PING\r\n');
      });
      c.setNoDelay(true);
      c.on('error', fail);
      c.on('data', () => {
        if (counting) trips++;
        if (stopping) c.end();
        else c.write('PING\r\n');
      });
    }
    setTimeout(() => {
      t0 = process.hrtime.bigint();
      c0 = cpu();
      counting = true;
      setTimeout(() => {
        counting = false;
        stopping = true;
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        const dc = cpu() - c0;
        console.log(`node ping-pong (${cert}, ${conc} connections): ${trips} round trips in ${dt.toFixed(2)} s = ${(trips / dt).toFixed(0)}/s; ${(trips / dc).toFixed(0)} per CPU-second`);
        server.close();
        done(secure === conc);
      }, ppSeconds * 1000);
    }, 500);
  });
}

const finish = (ok) => process.exit(ok ? 0 : 1);
const runPingPong = (ok) => (ppSeconds > 0 && ok ? pingPong(finish) : finish(ok));
const runBulk = () => (mb > 0 ? bulk(runPingPong) : runPingPong(true));
if (seconds > 0) handshakes(runBulk); else runBulk();
