// Accounts: register, login, resume, logout, devices, bad credentials,
// rate limits, closed registration.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniqueName } from './lib.mjs';

let srv;
before(async () => {
  srv = await startServer(['--login-fail-user', '3']);
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0);
});

test('hello announces the version and limits', async () => {
  const c = await connect(srv.port);
  const r = await c.request('hello', { client: 'it' });
  assert.equal(r.ok, true);
  assert.equal(r.version, 'parley.v1');
  assert.equal(r.max_message, 262144);
  await c.close();
});

test('register, login, resume, device list, logout', async () => {
  const user = uniqueName('ann');
  const c = await connect(srv.port);
  assert.equal((await c.request('register',
    { user, password: 'secret-pw' })).ok, true);
  const dup = await c.request('register', { user, password: 'secret-pw' });
  assert.equal(dup.err.code, 300);
  const li = await c.request('login',
    { user, password: 'secret-pw', device: 'phone' });
  assert.equal(li.ok, true);
  assert.equal(li.token.length, 32);
  assert.ok(li.device >= 1);
  assert.equal(li.acked, 0);
  const again = await c.request('login',
    { user, password: 'secret-pw', device: 'phone' });
  assert.equal(again.err.code, 202);
  const devs = await c.request('device.list');
  assert.equal(devs.devices.length, 1);
  assert.equal(devs.devices[0].name, 'phone');
  assert.equal(devs.devices[0].current, true);
  await c.close();

  const d = await connect(srv.port);
  const rs = await d.request('resume', { token: li.token });
  assert.equal(rs.ok, true);
  assert.equal(rs.user, user);
  assert.equal(rs.device, li.device);
  assert.equal((await d.request('logout')).ok, true);
  assert.equal((await d.request('device.list')).err.code, 200);
  await d.close();

  const e = await connect(srv.port);
  const gone = await e.request('resume', { token: li.token });
  assert.equal(gone.err.code, 201);
  await e.close();
});

test('bad credentials look the same for a wrong password and no user',
  async () => {
    const user = uniqueName('bob');
    const c = await connect(srv.port);
    await c.request('register', { user, password: 'right-pass' });
    const wrong = await c.request('login',
      { user, password: 'wrong-pass', device: 'd' });
    assert.equal(wrong.err.code, 201);
    const none = await c.request('login',
      { user: uniqueName('nobody'), password: 'x', device: 'd' });
    assert.equal(none.err.code, 201);
    const tok = await c.request('resume', { token: Buffer.alloc(32, 7) });
    assert.equal(tok.err.code, 201);
    await c.close();
  });

test('failed logins per account are rate limited', async () => {
  const user = uniqueName('eve');
  const c = await connect(srv.port);
  await c.request('register', { user, password: 'right-pass' });
  for (let i = 0; i < 3; i++) {
    const r = await c.request('login',
      { user, password: 'guess' + i, device: 'd' });
    assert.equal(r.err.code, 201);
  }
  const limited = await c.request('login',
    { user, password: 'right-pass', device: 'd' });
  assert.equal(limited.err.code, 204);
  assert.ok(limited.err.retry > 0 || limited.retry > 0);
  await c.close();
});

test('short password is refused with 106', async () => {
  const c = await connect(srv.port);
  const r = await c.request('register',
    { user: uniqueName('sam'), password: 'short' });
  assert.equal(r.err.code, 106);
  await c.close();
});

test('revoking a device closes its connection with 1008', async () => {
  const user = uniqueName('rev');
  const a = await connect(srv.port);
  await a.request('register', { user, password: 'secret-pw' });
  const la = await a.request('login',
    { user, password: 'secret-pw', device: 'laptop' });
  const b = await connect(srv.port);
  const lb = await b.request('login',
    { user, password: 'secret-pw', device: 'phone' });
  assert.equal((await a.request('device.list')).devices.length, 2);
  const nf = await a.request('device.revoke', { device: 999999 });
  assert.equal(nf.err.code, 301);
  assert.equal((await a.request('device.revoke',
    { device: lb.device })).ok, true);
  const ev = await b.nextEvent();
  assert.equal(ev.ev, 'revoked');
  assert.equal((await b.closed).code, 1008);
  assert.notEqual(la.device, lb.device);
  await a.close();
});

test('closed registration answers 203', async () => {
  const closed = await startServer(['--registration', 'closed']);
  try {
    const c = await connect(closed.port);
    const r = await c.request('register',
      { user: 'someone', password: 'secret-pw' });
    assert.equal(r.err.code, 203);
    await c.close();
  } finally {
    assert.equal((await closed.stop()).code, 0);
  }
});

test('accounts survive a restart of parleyd', async () => {
  const user = uniqueName('dur');
  const c = await connect(srv.port);
  await c.request('register', { user, password: 'secret-pw' });
  await c.close();
  // a second server on the same data directory sees the account
  const data = srv.data;
  const r = await srv.stop({ keepData: true });
  assert.equal(r.code, 0);
  srv = await startServer(['--data', data]);
  const d = await connect(srv.port);
  const li = await d.request('login',
    { user, password: 'secret-pw', device: 'x' });
  assert.equal(li.ok, true);
  await d.close();
});
