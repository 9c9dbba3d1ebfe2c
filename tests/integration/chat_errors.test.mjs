// Bad chat input gets a clear error and affects nothing else; a crashed
// session is restarted and loses nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { startServer, within } from './lib.mjs';
import { newUser, login, send, waitFor, isMsg } from './chatlib.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0);
});

test('each bad request gets its code; the session goes on', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const eve = await newUser(srv.port, 'eve');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  const e = await login(srv.port, eve);
  const cases = [
    ['send to an unknown user', 'send',
      { to: 'no_such_user_x', cid: 1, body: Buffer.from('x') }, 301],
    ['a body over 64 KiB', 'send',
      { to: bob, cid: 2, body: Buffer.alloc(65537) }, 400],
    ['an empty body', 'send',
      { to: bob, cid: 3, body: Buffer.alloc(0) }, 106],
    ['an ack beyond the mailbox', 'ack', { upto: 1000 }, 106],
    ['read of a message never received', 'read',
      { peer: bob, upto: 999999 }, 301],
    ['read from an unknown user', 'read',
      { peer: 'no_such_user_x', upto: 1 }, 301],
    ['history of an unknown user', 'history', { peer: 'no_such_user_x' }, 301],
    ['history without peer or gid', 'history', {}, 102],
    ['history with both', 'history', { peer: bob, gid: 1 }, 106],
    ['typing to an unknown user', 'typing',
      { to: 'no_such_user_x', on: true }, 301],
    ['typing without to', 'typing', { on: true }, 102],
  ];
  for (const [what, op, f, code] of cases) {
    const r = await a.c.request(op, f);
    assert.ok(r.err, what);
    assert.equal(r.err.code, code, what);
    assert.ok(r.err.msg.length > 0, what);
  }
  // a read receipt for a message that went to someone else
  const toEve = await send(b.c, eve, 'for eve only');
  const r = await a.c.request('read', { peer: bob, upto: toEve.sid });
  assert.equal(r.err.code, 301);
  // sending to a blocker
  await e.c.request('block', { user: ann });
  assert.equal((await send(a.c, eve, 'hi')).err.code, 302);
  // presence of a user who hides it: no error, and nothing to see
  await b.c.request('privacy.set', { presence: 'nobody' });
  await a.c.request('presence.sub', { users: [bob] });
  const p = await waitFor(a.c, (x) => x.ev === 'presence', 'hidden presence');
  assert.deepEqual(p, { ev: 'presence', user: bob, online: false });
  // and nothing else was affected
  const ok = await send(a.c, bob, 'still fine');
  assert.equal(ok.ok, true);
  const m = await waitFor(b.c, isMsg(ok.sid), 'delivery after errors');
  assert.equal(m.seq, 1);
  for (const d of [a, b, e]) await d.c.close();
});

// One command on the operator shell; resolves with its JSON lines.
function shell(server, line) {
  return within(new Promise((resolve, reject) => {
    const sock = net.connect(join(server.data, 'parley.sock'));
    let buf = '';
    const lines = [];
    sock.on('error', reject);
    sock.on('connect', () => sock.write(`${line}\n`));
    sock.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const obj = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        lines.push(obj);
        if (obj.done !== undefined || obj.error) {
          sock.end();
          resolve(lines);
        }
      }
    });
  }), `shell: ${line}`);
}

// Retries a request answered 500 (the session restarting) until it is not.
async function retry(fn, what) {
  for (let i = 0; i < 50; i++) {
    const r = await fn();
    if (!(r.err && r.err.code === 500)) return r;
    await new Promise((res) => setImmediate(res));
  }
  throw new Error(`still 500: ${what}`);
}

test('a crashed session is restarted and loses nothing', async () => {
  const own = await startServer();
  try {
    const ann = await newUser(own.port, 'ann');
    const bob = await newUser(own.port, 'bob');
    const a = await login(own.port, ann);
    const b = await login(own.port, bob);
    const r1 = await send(a.c, bob, 'before');
    const m1 = await waitFor(b.c, isMsg(r1.sid), 'before the crash');
    await b.c.request('ack', { upto: m1.seq });
    await waitFor(a.c, (e) => e.ev === 'delivered', 'receipt');
    const armed = await shell(own, 'fault arm session.handle crash count=1');
    assert.ok(armed.at(-1).done !== undefined, JSON.stringify(armed));
    // the next message any session handles crashes it: ann's typing
    a.c.ws.send(Buffer.from((await import('./lib.mjs')).encode(
      { op: 'typing', id: 900, to: bob, on: true })));
    const r2 = await retry(() => send(a.c, bob, 'after'), 'send after crash');
    assert.equal(r2.ok, true);
    const m2 = await waitFor(b.c, isMsg(r2.sid), 'after the crash');
    assert.equal(m2.seq, m1.seq + 1);
    const h = await a.c.request('history', { peer: bob });
    assert.deepEqual(h.msgs.map((x) => x.sid), [r2.sid, r1.sid]);
    const info = await shell(own, 'fault list');
    const fp = info.find((x) => x.fault && x.fault.name === 'session.handle');
    assert.equal(fp.fault.fired, 1);
    await a.c.close();
    await b.c.close();
  } finally {
    await own.stop();
  }
});
