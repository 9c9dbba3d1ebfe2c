// Helpers for the integration tests: start a real parleyd on a free port
// with a fresh data directory, and talk to it over WebSocket (the `ws`
// package) or over a raw socket for frames `ws` refuses to send.
//
// Every wait has a deadline; nothing sleeps to synchronise.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { encode, decode } from '@msgpack/msgpack';

export { encode, decode, WebSocket };

const here = dirname(fileURLToPath(import.meta.url));
export const PARLEYD =
  process.env.PARLEYD || join(here, '../../build/actors/parleyd');

export const DEADLINE_MS = 10000;

// Resolves with `promise`, or rejects after ms with a message naming what
// was awaited.
export function within(promise, what, ms = DEADLINE_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Starts parleyd; resolves with { port, proc, stop(), exited, stderr() }.
export async function startServer(extra = []) {
  const data = mkdtempSync(join(tmpdir(), 'parley-it-'));
  const args = ['--listen', '127.0.0.1:0', '--data', data,
    '--pwhash-ops', 'min', '--pwhash-mem', 'min', '--schedulers', '2',
    '--log-level', 'warn', ...extra];
  const proc = spawn(PARLEYD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const port = await within(new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening [^\s]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (code) =>
      reject(new Error(`parleyd exited ${code}: ${err}`)));
  }), 'parleyd to print its port');
  const server = {
    port, proc, exited, data,
    stderr: () => err,
    async stop({ keepData = false } = {}) {
      if (proc.exitCode === null && proc.signalCode === null)
        proc.kill('SIGTERM');
      const r = await within(exited, 'parleyd to exit on SIGTERM');
      if (!keepData) rmSync(data, { recursive: true, force: true });
      return r;
    },
  };
  return server;
}

// A client over `ws`: request(op, fields) resolves with the reply whose
// `re` matches; events are collected in `events` and announced by
// nextEvent().
export class Client {
  constructor(port, protocol = 'parley.v1') {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/`, protocol);
    this.ws.binaryType = 'nodebuffer';
    this.nextId = 1;
    this.waiting = new Map();
    this.events = [];
    this.eventWaiters = [];
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) =>
        resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      const m = decode(data);
      if (m.re !== undefined && this.waiting.has(m.re)) {
        this.waiting.get(m.re)(m);
        this.waiting.delete(m.re);
      } else {
        this.events.push(m);
        const w = this.eventWaiters.shift();
        if (w) w();
      }
    });
  }

  open() {
    return within(new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) =>
        reject(new Error(`HTTP ${res.statusCode}`)));
    }), 'WebSocket open');
  }

  request(op, fields = {}) {
    const id = this.nextId++;
    const reply = new Promise((resolve) => this.waiting.set(id, resolve));
    this.ws.send(encode({ op, id, ...fields }));
    return within(reply, `reply to ${op}`);
  }

  sendRaw(bytes) {
    this.ws.send(bytes);
  }

  // The next message that is not the reply to a pending request.
  async nextEvent() {
    if (this.events.length === 0)
      await within(new Promise((r) => this.eventWaiters.push(r)), 'an event');
    return this.events.shift();
  }

  close(code = 1000) {
    this.ws.close(code);
    return within(this.closed, 'close');
  }
}

export async function connect(port) {
  const c = new Client(port);
  await c.open();
  return c;
}

let userSeq = 0;
export function uniqueName(prefix = 'u') {
  userSeq++;
  return `${prefix}${process.pid % 10000}_${userSeq}`;
}

// ---- raw sockets, for frames a well-behaved client never sends ----

export function upgradeRaw(port, protocol = 'parley.v1') {
  return within(new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('connect', () => {
      sock.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
        `Sec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Protocol: ${protocol}\r\n\r\n`);
    });
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      const head = buf.subarray(0, end).toString();
      const rest = buf.subarray(end + 4);
      resolve({ sock, head, status: Number(head.split(' ')[1]),
        reader: new FrameReader(sock, rest) });
    };
    sock.on('data', onData);
  }), 'raw upgrade');
}

// Plain HTTP request on a fresh socket; resolves with the whole answer.
export function httpRaw(port, text) {
  return within(new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(text));
    let out = '';
    sock.on('data', (d) => { out += d; });
    sock.on('error', reject);
    sock.on('close', () => resolve(out));
  }), 'HTTP answer');
}

// Builds one frame. Client frames are masked unless mask === false.
export function frame(opcode, payload = Buffer.alloc(0),
  { fin = true, rsv = 0, mask = true } = {}) {
  payload = Buffer.from(payload);
  const len = payload.length;
  const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode)];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    head.push((len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff,
      len & 0xff);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([Buffer.from(head), key, body]);
}

// Reads server frames from a raw socket.
export class FrameReader {
  constructor(sock, initial) {
    this.buf = initial;
    this.frames = [];
    this.waiters = [];
    this.ended = false;
    this.closed = new Promise((resolve) => sock.on('close', resolve));
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    sock.on('close', () => { this.ended = true; this.wake(); });
    sock.on('error', () => {});
    this.parse();
  }

  parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      let len = b[1] & 0x7f, off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2); off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2)); off = 10;
      }
      if (b.length < off + len) break;
      this.frames.push({ fin: !!(b[0] & 0x80), opcode: b[0] & 0x0f,
        payload: b.subarray(off, off + len) });
      this.buf = b.subarray(off + len);
    }
    this.wake();
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  // The next frame, or null when the socket closed first.
  async next(what = 'a frame') {
    while (this.frames.length === 0) {
      if (this.ended) return null;
      await within(new Promise((r) => this.waiters.push(r)), what);
    }
    return this.frames.shift();
  }

  // Skips frames until a close frame; resolves with its status code.
  async closeCode() {
    for (;;) {
      const f = await this.next('a close frame');
      if (!f) return null;
      if (f.opcode === 8)
        return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
    }
  }
}
