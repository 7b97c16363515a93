'use strict';
// bench/report.js - turns the measurements bench/run recorded (one TSV
// line each) into the one Markdown table it prints: per workload and
// implementation, the median with min and max over the rounds, weft's
// median divided by this one's, the server's CPU cost per unit of work,
// both sides' CPU %, which side was saturated, and p99 latency where the
// tool reports one.
//
// usage: node report.js RESULTS.tsv HEADER.txt
//
// TSV columns: workload impl round status value cost server_cpu
// client_cpu p99_ms note   ("-" for a field a workload does not have)

const fs = require('fs');

const [tsvPath, headerPath] = process.argv.slice(2);
if (!tsvPath) {
  process.stderr.write('usage: node report.js RESULTS.tsv [HEADER.txt]\n');
  process.exit(2);
}

// Table order and labels. `unit` formats the value, `cost` names the
// server cost column's unit for this workload.
const WORKLOADS = {
  pong1: { label: 'pong -P 1, 50 conns, loadgen', unit: 'rps', cost: 'us/req' },
  pong1_rb: { label: 'pong -P 1, 50 conns, redis-benchmark', unit: 'rps', cost: 'us/req' },
  pong16: { label: 'pong -P 16, 50 conns, loadgen', unit: 'rps', cost: 'us/req' },
  pong16_rb: { label: 'pong -P 16, 50 conns, redis-benchmark', unit: 'rps', cost: 'us/req' },
  http: { label: 'http keep-alive, 100 conns, loadgen', unit: 'rps', cost: 'us/req' },
  http_wrk: { label: 'http keep-alive, 100 conns, wrk', unit: 'rps', cost: 'us/req' },
  bulk_tcp: { label: 'bulk into a sink, 1 TCP conn', unit: 'GB/s', cost: 'ms/GB' },
  bulk_unix: { label: 'bulk into a sink, 1 Unix conn', unit: 'GB/s', cost: 'ms/GB' },
  idle: { label: 'idle conns, user RSS per conn', unit: 'B', cost: null, lower: true },
  idle_many: { label: 'idle, IDLE_MANY conns (header), weft worker processes, user RSS per conn', unit: 'B', cost: null, lower: true },
  accept: { label: 'accept: connect+PING+close', unit: 'conn/s', cost: 'us/conn' },
};
const IMPLS = ['weft', 'raw', 'libuv', 'libevent', 'node'];
const IMPL_LABEL = {
  weft: 'weft',
  raw: 'raw epoll',
  libuv: 'libuv',
  libevent: 'libevent',
  node: 'Node 20',
};

function num(s) {
  if (s === undefined || s === '-' || s === '') return null;
  const v = Number(s);
  return Number.isFinite(v) ? v : null;
}

function median(xs) {
  const a = xs.slice().sort((x, y) => x - y);
  const n = a.length;
  if (n === 0) return null;
  return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

function fmt(v, unit) {
  if (v === null || v === undefined) return '-';
  switch (unit) {
    case 'rps':
    case 'conn/s':
      if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
      if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e5 ? 0 : 1) + 'k';
      return v.toFixed(0);
    case 'GB/s':
      return v.toFixed(2);
    case 'B':
      return v >= 1000 ? (v / 1000).toFixed(2) + ' KB' : v.toFixed(0) + ' B';
    case 'pct':
      return v.toFixed(0);
    case 'ratio':
      return v.toFixed(2);
    default:
      return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
}

const rows = fs
  .readFileSync(tsvPath, 'utf8')
  .split('\n')
  .filter((l) => l.trim() && !l.startsWith('#'))
  .map((l) => {
    const f = l.split('\t');
    return {
      workload: f[0],
      impl: f[1],
      round: f[2],
      status: f[3],
      value: num(f[4]),
      cost: num(f[5]),
      scpu: num(f[6]),
      ccpu: num(f[7]),
      p99: num(f[8]),
      note: f[9] && f[9] !== '-' ? f[9] : '',
    };
  });

if (headerPath && fs.existsSync(headerPath)) {
  process.stdout.write(fs.readFileSync(headerPath, 'utf8'));
}

const out = [];
out.push(
  '| workload | impl | median | min | max | weft/this | server cost | server CPU % | client CPU % | saturated | p99 ms | ok/runs |',
);
out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |');

const notes = [];
for (const [wid, w] of Object.entries(WORKLOADS)) {
  const mine = rows.filter((r) => r.workload === wid);
  if (mine.length === 0) continue;
  const stats = {};
  for (const impl of IMPLS) {
    const all = mine.filter((r) => r.impl === impl);
    if (all.length === 0) continue;
    const ok = all.filter((r) => r.status === 'ok' && r.value !== null);
    const vals = ok.map((r) => r.value);
    const pick = (k) => median(ok.map((r) => r[k]).filter((x) => x !== null));
    stats[impl] = {
      runs: all.length,
      ok: ok.length,
      med: median(vals),
      min: vals.length ? Math.min(...vals) : null,
      max: vals.length ? Math.max(...vals) : null,
      cost: pick('cost'),
      scpu: pick('scpu'),
      ccpu: pick('ccpu'),
      p99: pick('p99'),
    };
    for (const r of all)
      if (r.status !== 'ok')
        notes.push(`${w.label}, ${IMPL_LABEL[impl]}, round ${r.round}: ${r.status}${r.note ? ' (' + r.note + ')' : ''}`);
  }
  let first = true;
  for (const impl of IMPLS) {
    const s = stats[impl];
    if (!s) continue;
    const weft = stats.weft && stats.weft.med;
    const ratio = weft && s.med ? weft / s.med : null;
    let sat = '-';
    if (s.scpu !== null && s.ccpu !== null) {
      const sv = s.scpu >= 90;
      const cv = s.ccpu >= 90;
      sat = sv && cv ? 'both' : sv ? 'server' : cv ? 'client' : 'neither';
    }
    const cost = w.cost && s.cost !== null ? `${fmt(s.cost)} ${w.cost}` : '-';
    out.push(
      `| ${first ? w.label + ' (' + w.unit + ')' : ''} | ${IMPL_LABEL[impl]} | ${fmt(s.med, w.unit)} | ${fmt(s.min, w.unit)} | ${fmt(s.max, w.unit)} | ${fmt(ratio, 'ratio')} | ${cost} | ${fmt(s.scpu, 'pct')} | ${fmt(s.ccpu, 'pct')} | ${sat} | ${s.p99 !== null ? fmt(s.p99) : '-'} | ${s.ok}/${s.runs} |`,
    );
    first = false;
  }
}
process.stdout.write(out.join('\n') + '\n');
if (notes.length) {
  process.stdout.write('\nFailed measurements:\n');
  for (const n of notes) process.stdout.write(`- ${n}\n`);
}
