// Chat delivery: online push, offline store and forward, acks and resume,
// idempotent resend, ordering across two sending devices, redelivery after
// a client crash, and a SIGKILL of the server between `sent` and delivery.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, within } from './lib.mjs';
import {
  newUser, login, resume, send, waitFor, isMsg, takeMsgs, nextCid,
} from './chatlib.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0);
});

test('online delivery: sent, then pushed to every device of the peer',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const a2 = await login(srv.port, ann, 'laptop');
    const b = await login(srv.port, bob);
    const b2 = await login(srv.port, bob, 'laptop');
    const r = await send(a.c, bob, 'hello bob');
    assert.equal(r.ok, true);
    assert.ok(r.sid >= 1 && r.ts > 0);
    assert.equal(r.dup, undefined);
    for (const d of [b, b2]) {
      const m = await waitFor(d.c, isMsg(r.sid), 'msg at bob');
      assert.equal(m.from, ann);
      assert.equal(m.ts, r.ts);
      assert.equal(m.seq, 1);
      assert.equal(m.body.toString(), 'hello bob');
      assert.equal(m.to, undefined);
    }
    // the sender's other device gets a copy with `to`
    const copy = await waitFor(a2.c, isMsg(r.sid), 'copy at ann laptop');
    assert.equal(copy.to, bob);
    assert.equal(copy.from, ann);
    assert.equal(a.c.events.filter((e) => e.ev === 'msg').length, 0);
    for (const d of [a, a2, b, b2]) await d.c.close();
  });

test('offline then reconnect: everything after the last ack, in order',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    const first = await send(a.c, bob, 'm0');
    const m0 = await waitFor(b.c, isMsg(first.sid), 'first message');
    assert.equal((await b.c.request('ack', { upto: m0.seq })).ok, true);
    await b.c.close();

    const sids = [];
    for (let i = 1; i <= 20; i++) sids.push((await send(a.c, bob, `m${i}`)).sid);
    const { c, reply } = await resume(srv.port, b.token);
    assert.equal(reply.acked, m0.seq);
    const got = await takeMsgs(c, 20);
    assert.deepEqual(got.map((m) => m.sid), sids);
    assert.deepEqual(got.map((m) => m.body.toString()),
      sids.map((_, i) => `m${i + 1}`));
    const seqs = got.map((m) => m.seq);
    seqs.forEach((s, i) => assert.equal(s, m0.seq + 1 + i));
    assert.equal((await c.request('ack', { upto: seqs[19] })).ok, true);
    await c.close();

    // nothing is left after the ack
    const again = await resume(srv.port, b.token);
    assert.equal(again.reply.acked, seqs[19]);
    const late = await send(a.c, bob, 'late');
    const m = await waitFor(again.c, isMsg(), 'the next message only');
    assert.equal(m.sid, late.sid);
    assert.equal(m.seq, seqs[19] + 1);
    await again.c.close();
    await a.c.close();
  });

test('resume with `after` skips what the client already holds', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  await b.c.close();
  const sids = [];
  for (let i = 0; i < 5; i++) sids.push((await send(a.c, bob, `x${i}`)).sid);
  const { c } = await resume(srv.port, b.token, 3);
  const got = await takeMsgs(c, 2);
  assert.deepEqual(got.map((m) => m.sid), sids.slice(3));
  await c.close();
  await a.c.close();
});

test('resend with the same cid after a dropped connection is stored once',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    const cid = nextCid();
    // the connection drops right after the send: the reply may be lost
    a.c.ws.send(Buffer.from((await import('./lib.mjs')).encode(
      { op: 'send', id: 99, to: bob, cid, body: Buffer.from('once') })));
    a.c.ws.terminate();
    const first = await waitFor(b.c, isMsg(), 'the message');
    const { c } = await resume(srv.port, a.token);
    const r = await send(c, bob, 'once', cid);
    assert.equal(r.ok, true);
    assert.equal(r.dup, true);
    assert.equal(r.sid, first.sid);
    const r2 = await send(c, bob, 'once', cid);
    assert.equal(r2.sid, first.sid);
    const h = await b.c.request('history', { peer: ann });
    assert.equal(h.msgs.length, 1);
    // a probe message proves no second copy was pushed before it
    const probe = await send(c, bob, 'probe');
    const next = await waitFor(b.c, isMsg(), 'probe');
    assert.equal(next.sid, probe.sid);
    await c.close();
    await b.c.close();
  });

test('two devices sending at once: each one\'s order is kept', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const a1 = await login(srv.port, ann, 'phone');
  const a2 = await login(srv.port, ann, 'laptop');
  const b = await login(srv.port, bob);
  const N = 30;
  const run = async (d, tag) => {
    const sids = [];
    for (let i = 0; i < N; i++) sids.push((await send(d.c, bob, `${tag}${i}`)).sid);
    return sids;
  };
  const [s1, s2] = await Promise.all([run(a1, 'p'), run(a2, 'l')]);
  const got = await takeMsgs(b.c, 2 * N);
  const seqs = got.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
  const order = got.map((m) => m.sid);
  assert.deepEqual(order.filter((s) => s1.includes(s)), s1);
  assert.deepEqual(order.filter((s) => s2.includes(s)), s2);
  // and each device sees the other's messages as copies
  const copies = await takeMsgs(a1.c, N, 'copies at the phone');
  assert.deepEqual(copies.map((m) => m.sid), s2);
  for (const d of [a1, a2, b]) await d.c.close();
});

test('a client that crashed before acking gets the message again', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  const r = await send(a.c, bob, 'again');
  const m = await waitFor(b.c, isMsg(r.sid), 'first delivery');
  b.c.ws.terminate(); // no ack
  const { c, reply } = await resume(srv.port, b.token);
  assert.equal(reply.acked, 0);
  const m2 = await waitFor(c, isMsg(r.sid), 'redelivery');
  assert.equal(m2.seq, m.seq);
  assert.equal(m2.body.toString(), 'again');
  await c.close();
  await a.c.close();
});

test('acks of sequence numbers never sent are refused', async () => {
  const ann = await newUser(srv.port, 'ann');
  const a = await login(srv.port, ann);
  const r = await a.c.request('ack', { upto: 5 });
  assert.equal(r.err.code, 106);
  assert.equal((await a.c.request('ack', { upto: 0 })).ok, true);
  await a.c.close();
});

test('SIGKILL after sent, before delivery: delivered after restart',
  async () => {
    const own = await startServer();
    const ann = await newUser(own.port, 'ann');
    const bob = await newUser(own.port, 'bob');
    const a = await login(own.port, ann);
    const b = await login(own.port, bob);
    await b.c.close();
    const sent = [];
    let cid;
    for (let i = 0; i < 10; i++) {
      cid = nextCid();
      sent.push((await send(a.c, bob, `k${i}`, cid)).sid);
    }
    own.proc.kill('SIGKILL');
    await within(own.exited, 'parleyd to die');
    const again = await startServer(['--data', own.data]);
    try {
      // the client resends the last one as if its reply had been lost
      const a2 = await resume(again.port, a.token);
      const dup = await send(a2.c, bob, 'k9', cid);
      assert.equal(dup.dup, true);
      assert.equal(dup.sid, sent[9]);
      const { c } = await resume(again.port, b.token);
      const got = await takeMsgs(c, 10);
      const seen = new Set();
      const unique = got.filter((m) => !seen.has(m.sid) && seen.add(m.sid));
      assert.deepEqual(unique.map((m) => m.sid), sent);
      assert.deepEqual(unique.map((m) => m.body.toString()),
        sent.map((_, i) => `k${i}`));
      // nothing more: a probe is the next thing to arrive
      const probe = await send(a2.c, bob, 'probe');
      assert.equal((await waitFor(c, isMsg(), 'probe')).sid, probe.sid);
      await c.close();
      await a2.c.close();
    } finally {
      await again.stop();
    }
  });
