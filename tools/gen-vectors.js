#!/usr/bin/env node
// gen-vectors.js - asks Node itself how it decodes bytes, encodes strings
// and classifies addresses, and writes the answers under tests/vectors/
// for tests/test_encoding.c and tests/test_ip.c to compare weft against.
//
//   node tools/gen-vectors.js        (run from anywhere; Node 20)
//
// The inputs come from a seeded generator, so running the script again
// with the same Node gives the same files; a diff after a Node upgrade
// shows where Node changed its mind.
//
// Formats (one record a line, fields separated by one space, '#' starts a
// comment line; "-" stands for an empty hex field):
//
//   decode.txt         <enc> <input hex> <output hex>
//       new StringDecoder(enc): write(input) + end(), as UTF-8 bytes.
//   decode-chunks.txt  <enc> <input hex> <cuts> <out0>,<out1>,...,<end>
//       the same input written in pieces cut at the comma-separated
//       offsets <cuts> ("-" for none): one output per write(), then end().
//   encode.txt         <enc> <input hex> <output hex>
//       Buffer.from(s, enc), where s has one character per input byte
//       (U+0000..U+00FF), except for utf8, where s is the input decoded
//       as UTF-8 (the inputs are valid UTF-8).
//   ip.txt             <isIP answer> <string>
//       net.isIP(s); the string runs to the end of the line, with every
//       byte outside '!'..'~' and every backslash written as \xHH.
'use strict';

const fs = require('fs');
const path = require('path');
const net = require('net');
const { StringDecoder } = require('string_decoder');

const outDir = path.join(__dirname, '..', 'tests', 'vectors');

// ---- seeded randomness (mulberry32) ----------------------------------
let seed = 0x5eed1e55;
function rnd() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1)); // inclusive
const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
const randBytes = (n) => Buffer.from(Array.from({ length: n }, () => int(0, 255)));

const hex = (buf) => (buf.length ? Buffer.from(buf).toString('hex') : '-');
const utf8Bytes = (s) => Buffer.from(s, 'utf8');

// ---- decoders -----------------------------------------------------------
const DECODERS = ['utf8', 'ascii', 'latin1', 'hex', 'base64', 'base64url'];

// Runs a StringDecoder over `buf` cut at `cuts`; returns each write's
// output and end()'s, as strings.
function decodeChunks(enc, buf, cuts) {
  const d = new StringDecoder(enc);
  const outs = [];
  let prev = 0;
  for (const c of [...cuts, buf.length]) {
    outs.push(d.write(buf.subarray(prev, c)));
    prev = c;
  }
  outs.push(d.end());
  return outs;
}

const decodeWhole = (enc, buf) => decodeChunks(enc, buf, []).join('');

// UTF-8 pieces, valid and not, that random inputs are built from.
function cpBytes(cp) {
  return utf8Bytes(String.fromCodePoint(cp));
}
function utf8Token() {
  switch (int(0, 13)) {
  case 0: return Buffer.from([int(0, 0x7f)]);
  case 1: return Buffer.from('hello world, '.slice(0, int(1, 13)));
  case 2: return cpBytes(int(0x80, 0x7ff));
  case 3: {
    let cp = int(0x800, 0xffff);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    return cpBytes(cp);
  }
  case 4: return cpBytes(int(0x10000, 0x10ffff));
  case 5: return cpBytes(pick([0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfeff,
    0xfffd, 0xffff, 0x10000, 0x10ffff, 0x1f600]));
  case 6: { // a valid character cut short
    const b = cpBytes(pick([int(0x80, 0x7ff), int(0x800, 0xd7ff),
      int(0x10000, 0x10ffff)]));
    return b.subarray(0, int(1, b.length - 1));
  }
  case 7: // overlong forms
    return pick([
      Buffer.from([int(0xc0, 0xc1), int(0x80, 0xbf)]),
      Buffer.from([0xe0, int(0x80, 0x9f), int(0x80, 0xbf)]),
      Buffer.from([0xf0, int(0x80, 0x8f), int(0x80, 0xbf), int(0x80, 0xbf)]),
    ]);
  case 8: // surrogates
    return Buffer.from([0xed, int(0xa0, 0xbf), int(0x80, 0xbf)]);
  case 9: // beyond U+10FFFF, and bytes that never start anything
    return pick([
      Buffer.from([0xf4, int(0x90, 0xbf), int(0x80, 0xbf), int(0x80, 0xbf)]),
      Buffer.from([int(0xf5, 0xf7), int(0x80, 0xbf), int(0x80, 0xbf)]),
      Buffer.from([int(0xf8, 0xff)]),
    ]);
  case 10: // stray continuation bytes
    return Buffer.from(Array.from({ length: int(1, 5) }, () => int(0x80, 0xbf)));
  case 11: return Buffer.from([int(0x80, 0xff)]);
  case 12: return randBytes(int(1, 4));
  default: return Buffer.from([pick([0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf,
    0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff])]);
  }
}
function utf8Input() {
  const parts = [];
  for (let n = int(0, 10); n > 0; n--) parts.push(utf8Token());
  return Buffer.concat(parts);
}

// Longer text, mostly well-formed, so inputs span several of the decoder's
// 16-byte blocks with an error here and there.
function longUtf8Input() {
  const parts = [];
  for (let n = int(15, 40); n > 0; n--) {
    const r = rnd();
    if (r < 0.35) parts.push(Buffer.from('lorem ipsum, dolor sit amet '.slice(0, int(1, 28))));
    else if (r < 0.9) parts.push(utf8Token.valid());
    else parts.push(utf8Token());
  }
  return Buffer.concat(parts);
}
utf8Token.valid = () => cpBytes(pick([int(0x80, 0x7ff), int(0x800, 0xd7ff),
  int(0xe000, 0xffff), int(0x10000, 0x10ffff)]));

function decodeInputs(enc) {
  const inputs = [Buffer.alloc(0)];
  if (enc === 'utf8') {
    for (let b = 0; b < 256; b++) inputs.push(Buffer.from([b]));
    const seconds = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0];
    for (let b = 0xc0; b <= 0xff; b++)
      for (const s of seconds) inputs.push(Buffer.from([b, s]));
    for (let b = 0xe0; b <= 0xf4; b++)
      for (const s of [0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0])
        for (const t of [0x41, 0x80, 0xbf, 0xc2]) inputs.push(Buffer.from([b, s, t]));
    for (let i = 0; i < 1500; i++) inputs.push(utf8Input());
    for (let i = 0; i < 300; i++) inputs.push(randBytes(int(1, 40)));
    for (let i = 0; i < 80; i++) inputs.push(longUtf8Input());
  } else {
    for (let i = 0; i < 200; i++)
      inputs.push(i < 16 ? randBytes(i) : randBytes(int(1, 32)));
    inputs.push(Buffer.from([0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xe9, 0xff]));
  }
  return inputs;
}

function randomCuts(len) {
  const cuts = [];
  for (let p = 1; p < len; p++) if (rnd() < 0.3) cuts.push(p);
  return cuts;
}

let problems = 0;
function genDecoders() {
  const whole = ['# <enc> <input hex> <StringDecoder write(input)+end() as UTF-8 hex>'];
  const chunks = ['# <enc> <input hex> <cuts> <output of each write(), then of end()>'];
  const counts = {};
  for (const enc of DECODERS) {
    const inputs = decodeInputs(enc);
    counts[enc] = inputs.length;
    for (const buf of inputs) {
      const out = decodeWhole(enc, buf);
      whole.push(`${enc} ${hex(buf)} ${hex(utf8Bytes(out))}`);
      // Node itself must not depend on the cut; say so loudly if it does.
      for (let c = 1; c < buf.length; c++) {
        if (decodeChunks(enc, buf, [c]).join('') !== out) {
          problems++;
          console.error(`node: ${enc} ${hex(buf)} differs when cut at ${c}`);
        }
      }
    }
    const nChunks = enc === 'utf8' ? 400 : 40;
    for (let i = 0; i < nChunks; i++) {
      const buf = enc === 'utf8' ? utf8Input() : randBytes(int(0, 24));
      const cuts = randomCuts(buf.length);
      const outs = decodeChunks(enc, buf, cuts).map((s) => hex(utf8Bytes(s)));
      chunks.push(`${enc} ${hex(buf)} ${cuts.length ? cuts.join(',') : '-'} ${outs.join(',')}`);
    }
  }
  fs.writeFileSync(path.join(outDir, 'decode.txt'), whole.join('\n') + '\n');
  fs.writeFileSync(path.join(outDir, 'decode-chunks.txt'), chunks.join('\n') + '\n');
  return counts;
}

// ---- encoders ------------------------------------------------------------
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const latin1 = (buf) => buf.toString('latin1');

function mutate(s, alphabet) {
  const a = s.split('');
  for (let n = int(1, 3); n > 0; n--) {
    const at = int(0, a.length);
    switch (int(0, 2)) {
    case 0: a.splice(at, 0, pick(alphabet)); break;
    case 1: a.splice(at, 1); break;
    default: a[at] = pick(alphabet); break;
    }
  }
  return a.join('');
}

function base64Inputs() {
  const junk = ['=', ' ', '\n', '\r', '\t', '-', '_', '+', '/', '.', '*', '!',
    '\x00', '\x7f', '\x80', '\xe9', '\xff', 'A', 'z', '9'];
  const out = ['', '=', '==', 'Q', 'QQ', 'QQ=', 'QQ==', 'QQ===', 'QUI', 'QUI=',
    'QUJD', 'QUJD=', 'QUJDRA', 'QUJDRA==', 'QQ==QQ==', 'QUJD=RA', 'QQ=A',
    'Q Q Q Q', 'QUJD\nRA==', '-_-_', '+/+/', '_-/+', '====', 'Q===',
    ' QUJD', 'QUJD ', '\tQ\nU\rJ D', 'QUJD\x00RA', 'QU\xe9JD', '=QUJD',
    'QR==', 'QR', 'QS==', 'AAAA', '////', '____', 'YQ', 'YWI', 'YWJj'];
  for (let i = 0; i < 260; i++) {
    let s = randBytes(int(0, 24)).toString('base64');
    const r = rnd();
    if (r < 0.2) s = s.replace(/=+$/, '');
    else if (r < 0.35) s = s.replace(/\+/g, '-').replace(/\//g, '_');
    out.push(rnd() < 0.3 ? s : mutate(s, junk));
  }
  for (let i = 0; i < 200; i++) {
    const n = int(0, 20);
    let s = '';
    for (let k = 0; k < n; k++) s += rnd() < 0.7 ? B64[int(0, 63)] : pick(junk);
    out.push(s);
  }
  for (let i = 0; i < 40; i++) out.push(latin1(randBytes(int(0, 20))));
  return out;
}

function hexInputs() {
  const junk = ['g', 'G', 'x', ' ', '\n', '-', '=', '\x00', '\xe9', '\xff', '0', 'F'];
  const out = ['', '0', '00', '0a1', '0A1b', 'abc', 'ABCDEF', 'aBcDeF01', '0g12',
    'zz', '1 2', '12 34', ' 1234', '1234\n', '12345', 'ff\xff', '0x12'];
  for (let i = 0; i < 200; i++) {
    let s = randBytes(int(0, 16)).toString('hex');
    if (rnd() < 0.3) s = s.toUpperCase();
    if (rnd() < 0.2) s += pick('0123456789abcdef'.split(''));
    out.push(rnd() < 0.3 ? s : mutate(s, junk));
  }
  for (let i = 0; i < 40; i++) out.push(latin1(randBytes(int(0, 12))));
  return out;
}

function genEncoders() {
  const lines = ['# <enc> <input hex> <Buffer.from(s, enc) hex>'];
  const counts = {};
  const add = (enc, inputBuf, s) => {
    lines.push(`${enc} ${hex(inputBuf)} ${hex(Buffer.from(s, enc))}`);
    counts[enc] = (counts[enc] || 0) + 1;
  };
  for (const s of base64Inputs()) add('base64', Buffer.from(s, 'latin1'), s);
  for (const s of base64Inputs().slice(0, 250)) add('base64url', Buffer.from(s, 'latin1'), s);
  for (const s of hexInputs()) add('hex', Buffer.from(s, 'latin1'), s);
  for (let i = 0; i < 40; i++) {
    const b = randBytes(int(0, 16));
    add('latin1', b, latin1(b));
    add('ascii', b, latin1(b));
    const u = utf8Input();
    const s = u.toString('utf8');
    add('utf8', utf8Bytes(s), s);
  }
  fs.writeFileSync(path.join(outDir, 'encode.txt'), lines.join('\n') + '\n');
  return counts;
}

// ---- addresses -----------------------------------------------------------
const h4 = () => int(0, 0xffff).toString(16);
function group() {
  switch (int(0, 5)) {
  case 0: return '0';
  case 1: return int(0, 0xffff).toString(16).toUpperCase();
  case 2: return int(0, 0xffff).toString(16).padStart(4, '0');
  case 3: return int(0, 0xf).toString(16);
  default: return h4();
  }
}
function dec() {
  switch (int(0, 5)) {
  case 0: return '0';
  case 1: return '255';
  case 2: return String(int(0, 9));
  case 3: return String(int(10, 99));
  default: return String(int(0, 255));
  }
}
const v4 = () => [dec(), dec(), dec(), dec()].join('.');

function v6() {
  const tail = rnd() < 0.2;
  const total = tail ? 6 : 8;
  const n = int(0, total);
  const gs = Array.from({ length: n }, group);
  let s;
  if (n === total && rnd() < 0.7) {
    s = gs.join(':');
    if (tail) s += ':' + v4();
  } else {
    const at = int(0, n);
    s = gs.slice(0, at).join(':') + '::' + gs.slice(at).join(':');
    if (tail) s += (s.endsWith(':') ? '' : ':') + v4();
  }
  if (rnd() < 0.15) {
    const zc = 'abcxyzAZ09-.:_%/ '.split('');
    let z = '';
    for (let k = int(0, 8); k > 0; k--) z += rnd() < 0.8 ? pick('eth0lo1.-:'.split('')) : pick(zc);
    s += '%' + z;
  }
  return s;
}

function ipInputs() {
  const fixed = [
    '', '0', '1', '.', ':', '::', ':::', '%', '::%', '::%a', '0.0.0.0',
    '127.0.0.1', '255.255.255.255', '256.0.0.0', '01.2.3.4', '1.02.3.4',
    '00.0.0.0', '0.0.0.00', '1.2.3', '1.2.3.4.5', '1.2.3.', '.1.2.3',
    '1..2.3', '0x1.2.3.4', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.4\n', '+1.2.3.4',
    '1.2.3.-4', '1.2.3.4%eth0', '192.168.1.300', '999.1.1.1', '1e1.1.1.1',
    '2001:db8::1', '::1', '::ffff:127.0.0.1', '::ffff:01.2.3.4',
    '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7::',
    '::1:2:3:4:5:6:7', '::1:2:3:4:5:6:7:8', '1::2:3:4:5:6:7', '1::2::3',
    '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5::1.2.3.4', '1:2:3:4:5:6::1.2.3.4',
    '::1.2.3.4', '::1.2.3.4:5', '1.2.3.4::', 'fe80::1%eth0', 'fe80::1%eth_0',
    'fe80::1%', 'fe80::1%a%b', 'fe80::1%:.-', 'fe80::1%25', 'FE80::ABCD',
    '12345::', '1:', ':1', '1::', '::1:', 'g::', '1:2:3:4:5:6:7:8%z',
    '1:2:3:4:5:6:1.2.3.4%z', '::0:0:0:0:0:1.2.3.4', '0:0:0:0:0:0:0:0:0',
    '00000::', '0000::', '::ffff:1.2.3', '::ffff:1.2.3.4.5', '[::1]',
    'localhost', '1.2.3.4/24', '::/0', 'a:b:c:d:e:f:0:1', 'a:b:c:d:e:f:0:1:',
    'fe80::1%' + 'x'.repeat(500), '1.'.repeat(300) + '1', ':'.repeat(400),
    '1:'.repeat(300) + '1', '\xe9.1.1.1', '::\xff', '1.2.3.4\x01',
  ];
  const out = [...fixed];
  const alphabet = ':.%0123456789abcdefABCDEFgxX -_/['.split('');
  for (let i = 0; i < 700; i++) out.push(v4());
  for (let i = 0; i < 1200; i++) out.push(v6());
  for (let i = 0; i < 700; i++) out.push(mutate(v4(), alphabet));
  for (let i = 0; i < 1400; i++) out.push(mutate(v6(), alphabet));
  for (let i = 0; i < 200; i++) {
    let s = '';
    for (let k = int(1, 16); k > 0; k--) s += pick(alphabet);
    out.push(s);
  }
  return out;
}

function escapeIp(s) {
  let o = '';
  for (const b of Buffer.from(s, 'latin1')) {
    o += b > 0x20 && b < 0x7f && b !== 0x5c
      ? String.fromCharCode(b) : '\\x' + b.toString(16).padStart(2, '0');
  }
  return o;
}

function genIp() {
  const lines = ['# <net.isIP(s)> <s, with \\xHH for bytes outside ! .. ~ and for \\>'];
  const counts = { 0: 0, 4: 0, 6: 0 };
  for (const s of ipInputs()) {
    if (s.includes('\0')) continue; // a C string cannot hold it
    const r = net.isIP(s);
    counts[r]++;
    lines.push(`${r} ${escapeIp(s)}`);
  }
  fs.writeFileSync(path.join(outDir, 'ip.txt'), lines.join('\n') + '\n');
  return counts;
}

fs.mkdirSync(outDir, { recursive: true });
const dc = genDecoders();
const ec = genEncoders();
const ic = genIp();
console.log(`node ${process.version}`);
console.log('decode vectors:', JSON.stringify(dc));
console.log('encode vectors:', JSON.stringify(ec));
console.log('address vectors (by answer):', JSON.stringify(ic));
if (problems) {
  console.error(`${problems} inputs where Node's output depends on the cut`);
  process.exitCode = 1;
}
