// Presence (online, offline with last seen, privacy), contacts, blocking
// and typing indicators.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib.mjs';
import { newUser, login, send, waitFor, isMsg } from './chatlib.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0);
});

const pres = (user, pred = () => true) => (e) =>
  e.ev === 'presence' && e.user === user && pred(e);

test('presence: online while a device is connected, then last seen',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    assert.equal((await a.c.request('presence.sub', { users: [bob] })).ok,
      true);
    const p0 = await waitFor(a.c, pres(bob), 'bob offline at first');
    assert.equal(p0.online, false);
    const b1 = await login(srv.port, bob, 'phone');
    assert.equal((await waitFor(a.c, pres(bob), 'bob online')).online, true);
    const b2 = await login(srv.port, bob, 'laptop');
    await b1.c.close(); // one device left: still online
    const t0 = Date.now();
    await b2.c.close();
    const off = await waitFor(a.c, pres(bob), 'bob offline');
    assert.equal(off.online, false);
    assert.ok(off.last_seen >= t0 - 1000 && off.last_seen <= Date.now());
    // a new subscriber sees the stored last_seen
    const a2 = await login(srv.port, ann, 'tablet');
    await a2.c.request('presence.sub', { users: [bob] });
    const p = await waitFor(a2.c, pres(bob), 'last seen for a new watcher');
    assert.equal(p.online, false);
    assert.equal(p.last_seen, off.last_seen);
    // after unsub, no more events
    await a.c.request('presence.unsub', { users: [bob] });
    const b3 = await login(srv.port, bob);
    await waitFor(a2.c, pres(bob, (e) => e.online), 'online at the tablet');
    assert.equal(a.c.events.filter((e) => e.ev === 'presence').length, 0);
    for (const d of [a, a2, b3]) await d.c.close();
  });

test('privacy: nobody, contacts and everyone', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const eve = await newUser(srv.port, 'eve');
  const b = await login(srv.port, bob);
  assert.equal((await b.c.request('privacy.set',
    { presence: 'contacts' })).ok, true);
  assert.equal((await b.c.request('contact.add', { user: ann })).ok, true);
  const a = await login(srv.port, ann);
  const e = await login(srv.port, eve);
  await a.c.request('presence.sub', { users: [bob] });
  await e.c.request('presence.sub', { users: [bob] });
  assert.equal((await waitFor(a.c, pres(bob), 'contact sees')).online, true);
  const hidden = await waitFor(e.c, pres(bob), 'stranger sees nothing');
  assert.equal(hidden.online, false);
  assert.equal(hidden.last_seen, undefined);
  const bad = await b.c.request('privacy.set', { presence: 'friends' });
  assert.equal(bad.err.code, 106);
  await b.c.request('privacy.set', { presence: 'nobody' });
  await b.c.close();
  const off = await waitFor(a.c, pres(bob), 'contact: hidden offline');
  assert.equal(off.online, false);
  assert.equal(off.last_seen, undefined);
  const eoff = await waitFor(e.c, pres(bob), 'stranger: hidden offline');
  assert.equal(eoff.last_seen, undefined);
  // a user that does not exist looks the same as a hidden one
  await e.c.request('presence.sub', { users: ['nobody_here_x'] });
  const ghost = await waitFor(e.c, pres('nobody_here_x'), 'unknown user');
  assert.deepEqual(ghost, { ev: 'presence', user: 'nobody_here_x',
    online: false });
  await a.c.close();
  await e.c.close();
});

test('contacts: add, list, remove, with their errors', async () => {
  const ann = await newUser(srv.port, 'ann');
  const bob = await newUser(srv.port, 'bob');
  const cy = await newUser(srv.port, 'cy');
  const a = await login(srv.port, ann);
  assert.equal((await a.c.request('contact.add', { user: bob })).ok, true);
  assert.equal((await a.c.request('contact.add', { user: cy })).ok, true);
  assert.equal((await a.c.request('contact.add', { user: bob })).err.code,
    300);
  assert.equal((await a.c.request('contact.add',
    { user: 'no_such_user_x' })).err.code, 301);
  const l = await a.c.request('contact.list');
  assert.deepEqual(l.users.sort(), [bob, cy].sort());
  assert.equal((await a.c.request('contact.remove', { user: bob })).ok, true);
  assert.equal((await a.c.request('contact.remove', { user: bob })).err.code,
    301);
  assert.deepEqual((await a.c.request('contact.list')).users, [cy]);
  await a.c.close();
});

test('blocking: sends refused both ways, presence hidden, unblock',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    await b.c.request('presence.sub', { users: [ann] });
    assert.equal((await waitFor(b.c, pres(ann), 'ann online')).online, true);
    assert.equal((await a.c.request('block', { user: bob })).ok, true);
    assert.equal((await a.c.request('block', { user: bob })).ok, true);
    assert.deepEqual((await a.c.request('block.list')).users, [bob]);
    const refused = await send(b.c, ann, 'let me in');
    assert.equal(refused.err.code, 302);
    assert.equal((await send(a.c, bob, 'and me out')).err.code, 302);
    assert.equal((await b.c.request('typing',
      { to: ann, on: true })).err.code, 302);
    // presence changes of the blocker are hidden from the blocked
    const a2 = await login(srv.port, ann, 'laptop');
    await a.c.close();
    await a2.c.close();
    const p = await waitFor(b.c, pres(ann), 'hidden offline');
    assert.equal(p.online, false);
    assert.equal(p.last_seen, undefined);
    const a3 = await login(srv.port, ann);
    const p2 = await waitFor(b.c, pres(ann), 'still hidden');
    assert.equal(p2.online, false);
    assert.equal((await a3.c.request('block', { user: 'no_such_user_x' }))
      .err.code, 301);
    assert.equal((await a3.c.request('unblock', { user: bob })).ok, true);
    assert.equal((await a3.c.request('unblock', { user: bob })).err.code, 301);
    const r = await send(b.c, ann, 'hello again');
    assert.equal(r.ok, true);
    await waitFor(a3.c, isMsg(r.sid), 'delivered after unblock');
    await a3.c.close();
    await b.c.close();
  });

test('typing: relayed to online devices, never stored, rate limited',
  async () => {
    const ann = await newUser(srv.port, 'ann');
    const bob = await newUser(srv.port, 'bob');
    const a = await login(srv.port, ann);
    const b = await login(srv.port, bob);
    assert.equal((await a.c.request('typing', { to: bob, on: true })).ok,
      true);
    const t = await waitFor(b.c, (e) => e.ev === 'typing', 'typing');
    assert.deepEqual(t, { ev: 'typing', from: ann, on: true });
    await b.c.close();
    // while bob is offline, typing is dropped, not stored
    await a.c.request('typing', { to: bob, on: false });
    const b2 = await login(srv.port, bob, 'again');
    const r = await send(a.c, bob, 'after typing');
    const first = await waitFor(b2.c, (e) => e.ev === 'msg' ||
      e.ev === 'typing', 'first event');
    assert.equal(first.ev, 'msg');
    assert.equal(first.sid, r.sid);
    // a burst beyond the limit gets 204 with a retry time
    const replies = [];
    for (let i = 0; i < 10; i++)
      replies.push(await a.c.request('typing', { to: bob, on: true }));
    const limited = replies.filter((x) => x.err && x.err.code === 204);
    assert.ok(limited.length > 0);
    assert.ok(limited[0].err.retry > 0 || limited[0].retry > 0);
    await a.c.close();
    await b2.c.close();
  });
