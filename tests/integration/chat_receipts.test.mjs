// Receipts (delivered, read) both ways with an offline sender, their
// order and monotonicity, history paging, and retention by the pruner.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib.mjs';
import {
  newUser, login, resume, send, waitFor, isMsg, takeMsgs,
} from './chatlib.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0);
});

const isEv = (ev, pred = () => true) => (e) => e.ev === ev && pred(e);

test('delivered and read reach a sender that was offline, in order',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    const r1 = await send(a.c, bob, 'one');
    const r2 = await send(a.c, bob, 'two');
    await a.c.close(); // the sender goes offline
    const got = await takeMsgs(b.c, 2);
    assert.equal((await b.c.request('ack', { upto: got[1].seq })).ok, true);
    assert.equal((await b.c.request('read',
      { peer: ann, upto: r2.sid })).ok, true);

    const { c } = await resume(srv.port, a.token);
    const d1 = await waitFor(c, isEv('delivered', (e) => e.sid === r1.sid),
      'delivered 1');
    const d2 = await waitFor(c, isEv('delivered', (e) => e.sid === r2.sid),
      'delivered 2');
    const rd = await waitFor(c, isEv('read'), 'read');
    assert.equal(d1.by, bob);
    assert.equal(rd.by, bob);
    assert.equal(rd.upto, r2.sid);
    assert.ok(d1.seq < d2.seq && d2.seq < rd.seq);
    await c.close();
    await b.c.close();
  });

test('receipts never go backwards; read implies delivered', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  const r1 = await send(a.c, bob, 'one');
  const r2 = await send(a.c, bob, 'two');
  const got = await takeMsgs(b.c, 2);
  // read before any ack: one read receipt, and no delivered ever after
  assert.equal((await b.c.request('read', { peer: ann, upto: r2.sid })).ok,
    true);
  const rd = await waitFor(a.c, isEv('read'), 'read');
  assert.equal(rd.upto, r2.sid);
  assert.equal((await b.c.request('read', { peer: ann, upto: r1.sid })).ok,
    true); // backwards: accepted, no receipt
  assert.equal((await b.c.request('ack', { upto: got[1].seq })).ok, true);
  // a probe message and its receipt come next: nothing else came between
  const r3 = await send(a.c, bob, 'three');
  const m3 = await waitFor(b.c, isMsg(r3.sid), 'three');
  await b.c.request('ack', { upto: m3.seq });
  const next = await waitFor(a.c, (e) => e.ev === 'delivered' ||
    e.ev === 'read', 'the next receipt');
  assert.equal(next.ev, 'delivered');
  assert.equal(next.sid, r3.sid);
  await a.c.close();
  await b.c.close();
});

test('a delivered receipt is sent once, whichever device acks first',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const b1 = await login(srv.port, bob, 'phone');
    const b2 = await login(srv.port, bob, 'laptop');
    const r = await send(a.c, bob, 'x');
    const m1 = await waitFor(b1.c, isMsg(r.sid), 'phone');
    const m2 = await waitFor(b2.c, isMsg(r.sid), 'laptop');
    await b1.c.request('ack', { upto: m1.seq });
    await b2.c.request('ack', { upto: m2.seq });
    await waitFor(a.c, isEv('delivered'), 'delivered');
    const probe = await send(a.c, bob, 'probe');
    const mp = await waitFor(b1.c, isMsg(probe.sid), 'probe');
    await b1.c.request('ack', { upto: mp.seq });
    const next = await waitFor(a.c, isEv('delivered'), 'probe receipt');
    assert.equal(next.sid, probe.sid);
    for (const d of [a, b1, b2]) await d.c.close();
  });

test('history pages newest first through one conversation', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const eve = await newUser(srv.port, 'eve');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  const sids = [];
  for (let i = 0; i < 7; i++) {
    const from = i % 2 ? b : a;
    sids.push((await send(from.c, i % 2 ? ann : bob, `h${i}`)).sid);
  }
  await send(a.c, eve, 'not in this conversation');
  const p1 = await a.c.request('history', { peer: bob, limit: 3 });
  assert.deepEqual(p1.msgs.map((m) => m.sid), sids.slice(4).reverse());
  assert.equal(p1.more, true);
  assert.equal(p1.msgs[0].from, ann);
  assert.equal(p1.msgs[0].body.toString(), 'h6');
  const p2 = await a.c.request('history',
    { peer: bob, limit: 3, before: p1.msgs[2].sid });
  assert.deepEqual(p2.msgs.map((m) => m.sid), sids.slice(1, 4).reverse());
  const p3 = await a.c.request('history',
    { peer: bob, limit: 3, before: p2.msgs[2].sid });
  assert.deepEqual(p3.msgs.map((m) => m.sid), [sids[0]]);
  assert.equal(p3.more, false);
  // the other side sees the same conversation
  const pb = await b.c.request('history', { peer: ann });
  assert.equal(pb.msgs.length, 7);
  await a.c.close();
  await b.c.close();
});

// Polls `fn` until it returns true or the deadline passes: retention is
// about time passing, so here the test waits on a condition.
async function until(fn, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('retention: the pruner deletes delivered and expired messages',
  async () => {
    const own = await startServer(['--retain-delivered-ms', '1000',
      '--retain-undelivered-ms', '3000', '--prune-interval-ms', '200']);
    try {
      const ann = await newUser(own.port, 'ann');
      const bob = await newUser(own.port, 'bob');
      const a = await login(own.port, ann);
      const b = await login(own.port, bob);
      const kept = await send(a.c, bob, 'never acked');
      const m = await waitFor(b.c, isMsg(kept.sid), 'first');
      const gone = await send(a.c, bob, 'acked');
      const m2 = await waitFor(b.c, isMsg(gone.sid), 'second');
      assert.equal(m.seq + 1, m2.seq);
      // ack only the second: read the first (read implies delivered) later
      const h0 = await a.c.request('history', { peer: bob });
      assert.equal(h0.msgs.length, 2);
      await b.c.request('read', { peer: ann, upto: gone.sid });
      const sids = async () => (await a.c.request('history', { peer: bob }))
        .msgs.map((x) => x.sid);
      await until(async () => (await sids()).length === 0,
        'both read messages pruned');
      const c = await send(a.c, bob, 'undelivered');
      await until(async () => !(await sids()).includes(c.sid),
        'the undelivered message pruned after its time');
      await a.c.close();
      await b.c.close();
    } finally {
      await own.stop();
    }
  });
