// Groups: create, add, remove, leave, promote, rename, info; messages
// stored once and delivered from each device's position in the group's
// stream; receipts per member; the errors of PROTOCOL.md section 3.4.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib.mjs';
import { newUser, login, resume, waitFor, nextCid } from './chatlib.mjs';

let srv;
before(async () => {
  srv = await startServer(['--group-max-members', '6']);
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0);
});

const isEv = (ev, pred = () => true) => (e) => e.ev === ev && pred(e);
const gmsg = (gid, pred = () => true) =>
  (e) => e.ev === 'msg' && e.gid === gid && pred(e);
const gev = (gid, kind, pred = () => true) =>
  (e) => e.ev === 'group' && e.gid === gid && e.kind === kind && pred(e);

function gsend(c, gid, text, cid = nextCid()) {
  return c.request('group.send', { gid, cid, body: Buffer.from(text) });
}

async function users(n, prefix) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await newUser(srv.port, prefix));
  return out;
}

test('create: the creator is admin, members see created and added events',
  async () => {
    const [ann, bob, cat] = await users(3, 'gc');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    const r = await a.c.request('group.create',
      { name: 'trip', members: [bob, cat] });
    assert.equal(r.ok, true, JSON.stringify(r));
    const gid = r.gid;
    assert.ok(gid >= 1);
    const created = await waitFor(b.c, gev(gid, 'created'), 'created');
    assert.equal(created.by, ann);
    assert.equal(created.name, 'trip');
    const added = await waitFor(b.c, gev(gid, 'added', (e) => e.user === bob),
      'bob added');
    assert.equal(added.by, ann);
    await waitFor(b.c, gev(gid, 'added', (e) => e.user === cat), 'cat added');

    const info = await b.c.request('group.info', { gid });
    assert.equal(info.ok, true);
    assert.equal(info.name, 'trip');
    assert.ok(info.created > 0);
    const roles = Object.fromEntries(info.members.map((m) => [m.user, m.admin]));
    assert.deepEqual(roles, { [ann]: true, [bob]: false, [cat]: false });
    await a.c.close();
    await b.c.close();
  });

test('messages reach online members in order and offline ones on resume',
  async () => {
    const [ann, bob, cat] = await users(3, 'gm');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    const c = await login(srv.port, cat);
    await c.c.close(); // cat is offline
    const { gid } = await a.c.request('group.create',
      { name: 'g', members: [bob, cat] });
    const sent = [];
    for (let i = 0; i < 5; i++) {
      const r = await gsend(a.c, gid, `m${i}`);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.ok(r.seq > 0);
      sent.push(r);
    }
    for (const r of sent) {
      const m = await waitFor(b.c, gmsg(gid, (e) => e.sid === r.sid), 'msg');
      assert.equal(m.from, ann);
      assert.equal(m.seq, r.seq);
    }
    // cat catches up on resume, in the group's order, from the start
    const { c: c2 } = await resume(srv.port, c.token);
    const seen = [];
    for (let i = 0; i < 5; i++)
      seen.push(await waitFor(c2, gmsg(gid), 'catch-up msg'));
    assert.deepEqual(seen.map((m) => m.body.toString()),
      ['m0', 'm1', 'm2', 'm3', 'm4']);
    for (let i = 1; i < seen.length; i++)
      assert.ok(seen[i].seq > seen[i - 1].seq);
    // acked entries are not pushed again
    const last = seen[4].seq;
    assert.equal((await c2.request('ack', { gid, upto: last })).ok, true);
    await c2.close();
    const { c: c3 } = await resume(srv.port, c.token);
    const r = await gsend(a.c, gid, 'after');
    const m = await waitFor(c3, gmsg(gid), 'next msg');
    assert.equal(m.sid, r.sid);
    for (const c of [a.c, b.c, c3]) await c.close();
  });

test('a resend with the same cid is stored once', async () => {
  const [ann, bob] = await users(2, 'gd');
  const a = await login(srv.port, ann);
  const { gid } = await a.c.request('group.create',
    { name: 'g', members: [bob] });
  const cid = nextCid();
  const r1 = await gsend(a.c, gid, 'x', cid);
  const r2 = await gsend(a.c, gid, 'x', cid);
  assert.equal(r2.dup, true);
  assert.equal(r2.sid, r1.sid);
  assert.equal(r2.seq, r1.seq);
  await a.c.close();
});

test('added members see only what follows; removed ones get nothing after',
  async () => {
    const [ann, bob, cat] = await users(3, 'gr');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    const c = await login(srv.port, cat);
    const { gid } = await a.c.request('group.create',
      { name: 'g', members: [bob] });
    await gsend(a.c, gid, 'before cat');
    const add = await a.c.request('group.add', { gid, users: [cat] });
    assert.equal(add.ok, true, JSON.stringify(add));
    const ev = await waitFor(c.c, gev(gid, 'added', (e) => e.user === cat),
      'cat sees its addition');
    assert.equal(ev.by, ann);
    const r = await gsend(a.c, gid, 'with cat');
    const m = await waitFor(c.c, gmsg(gid), 'cat msg');
    assert.equal(m.sid, r.sid);
    assert.equal(c.c.events.filter(gmsg(gid)).length, 0);

    const rm = await a.c.request('group.remove', { gid, user: bob });
    assert.equal(rm.ok, true);
    const gone = await waitFor(b.c, gev(gid, 'removed', (e) => e.user === bob),
      'bob sees his removal');
    assert.equal(gone.by, ann);
    await waitFor(c.c, gev(gid, 'removed', (e) => e.user === bob),
      'cat sees bob removed');
    const after = await gsend(a.c, gid, 'without bob');
    await waitFor(c.c, gmsg(gid, (e) => e.sid === after.sid), 'cat gets it');
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(b.c.events.filter(gmsg(gid, (e) => e.sid === after.sid))
      .length, 0);
    // bob is not a member any more
    const s = await gsend(b.c, gid, 'let me in');
    assert.equal(s.err.code, 303);
    const i = await b.c.request('group.info', { gid });
    assert.equal(i.err.code, 303);
    // and bob's new device does not see the later message either
    const b2 = await login(srv.port, bob, 'tablet');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(b2.c.events.filter(gmsg(gid, (e) => e.sid === after.sid))
      .length, 0);
    for (const x of [a.c, b.c, c.c, b2.c]) await x.close();
  });

test('roles: only admins add, remove, promote, rename; leave', async () => {
  const [ann, bob, cat, dan] = await users(4, 'ga');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  const { gid } = await a.c.request('group.create',
    { name: 'g', members: [bob, cat] });
  assert.equal((await b.c.request('group.add', { gid, users: [dan] }))
    .err.code, 303);
  assert.equal((await b.c.request('group.remove', { gid, user: cat }))
    .err.code, 303);
  assert.equal((await b.c.request('group.promote', { gid, user: cat }))
    .err.code, 303);
  assert.equal((await b.c.request('group.rename', { gid, name: 'x' }))
    .err.code, 303);
  const p = await a.c.request('group.promote', { gid, user: bob });
  assert.equal(p.ok, true);
  await waitFor(b.c, gev(gid, 'promoted', (e) => e.user === bob), 'promoted');
  assert.equal((await b.c.request('group.rename', { gid, name: 'new' })).ok,
    true);
  const rn = await waitFor(a.c, gev(gid, 'renamed'), 'renamed');
  assert.equal(rn.name, 'new');
  assert.equal(rn.by, bob);
  assert.equal((await b.c.request('group.add', { gid, users: [dan] })).ok,
    true);
  // the last admin to leave hands over to the longest-standing member
  assert.equal((await a.c.request('group.leave', { gid })).ok, true);
  await waitFor(b.c, gev(gid, 'left', (e) => e.user === ann), 'ann left');
  assert.equal((await b.c.request('group.leave', { gid })).ok, true);
  const info = await (await login(srv.port, cat)).c.request('group.info',
    { gid });
  assert.equal(info.ok, true);
  const roles = Object.fromEntries(info.members.map((m) => [m.user, m.admin]));
  assert.deepEqual(roles, { [cat]: true, [dan]: false });
  assert.equal((await a.c.request('group.leave', { gid })).err.code, 301);
  await a.c.close();
  await b.c.close();
});

test('bad input: unknown group, unknown user, limit, not a member',
  async () => {
    const [ann, bob, out] = await users(3, 'ge');
    const more = await users(5, 'gx');
    const a = await login(srv.port, ann);
    const o = await login(srv.port, out);
    assert.equal((await a.c.request('group.info', { gid: 999999 }))
      .err.code, 301);
    assert.equal((await gsend(a.c, 999999, 'x')).err.code, 301);
    assert.equal((await a.c.request('group.create',
      { name: 'g', members: ['nosuchuser'] })).err.code, 301);
    assert.equal((await a.c.request('group.create',
      { name: 'g', members: more.concat([bob]) })).err.code, 304);
    const { gid } = await a.c.request('group.create',
      { name: 'g', members: more.slice(0, 4) });
    assert.equal((await a.c.request('group.add',
      { gid, users: [bob, out] })).err.code, 304);
    assert.equal((await a.c.request('group.add', { gid, users: [bob] })).ok,
      true);
    assert.equal((await a.c.request('group.add', { gid, users: [out] }))
      .err.code, 304);
    assert.equal((await gsend(o.c, gid, 'x')).err.code, 303);
    assert.equal((await o.c.request('group.read', { gid, upto: 1 }))
      .err.code, 303);
    assert.equal((await a.c.request('group.remove', { gid, user: out }))
      .err.code, 301);
    assert.equal((await a.c.request('ack', { gid, upto: 1000 })).err.code,
      106);
    await a.c.close();
    await o.c.close();
  });

test('receipts: per member, counts, delivered_all and read_all', async () => {
  const [ann, bob, cat] = await users(3, 'gt');
  const a = await login(srv.port, ann);
  const b = await login(srv.port, bob);
  const c = await login(srv.port, cat);
  const { gid } = await a.c.request('group.create',
    { name: 'g', members: [bob, cat] });
  const r = await gsend(a.c, gid, 'hi');
  for (const x of [b, c]) {
    const m = await waitFor(x.c, gmsg(gid, (e) => e.sid === r.sid), 'msg');
    assert.equal((await x.c.request('ack', { gid, upto: m.seq })).ok, true);
  }
  const delivered = new Set();
  while (delivered.size < 2) {
    const e = await waitFor(a.c, isEv('receipts', (e) => e.sid === r.sid),
      'receipts');
    assert.equal(e.members, 2);
    e.delivered.forEach((u) => delivered.add(u));
  }
  assert.deepEqual([...delivered].sort(), [bob, cat].sort());
  const all = await waitFor(a.c, isEv('delivered_all'), 'delivered_all');
  assert.equal(all.sid, r.sid);
  assert.equal(all.gid, gid);
  assert.equal(all.gseq, r.seq);
  for (const x of [b, c])
    assert.equal((await x.c.request('group.read',
      { gid, upto: r.seq })).ok, true);
  const ra = await waitFor(a.c, isEv('read_all'), 'read_all');
  assert.equal(ra.sid, r.sid);
  // read_all is stored: a later device of ann sees it too
  const a2 = await login(srv.port, ann, 'tablet');
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(a2.c.events.filter(isEv('read_all')).length, 0);
  for (const x of [a.c, b.c, c.c, a2.c]) await x.close();
});
