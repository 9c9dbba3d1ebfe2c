// Bad input at the request layer: every one gets its error code, and the
// server keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, encode, uniqueName } from './lib.mjs';

let srv;
before(async () => {
  srv = await startServer(['--max-bad-frames', '4',
    '--request-rate', '5', '--request-burst', '20']);
});
after(async () => {
  assert.equal((await srv.stop()).code, 0);
});

// Sends raw bytes as one binary message and waits for the next reply.
async function rawReply(c, bytes) {
  const next = c.nextEvent();
  c.sendRaw(bytes);
  return next;
}

test('malformed, unknown op, missing field, wrong type', async () => {
  const c = await connect(srv.port);
  assert.equal((await rawReply(c, Buffer.from([0xc1]))).err.code, 100);
  assert.equal((await rawReply(c, encode([1, 2]))).err.code, 100);
  const trailing = Buffer.concat([encode({ op: 'hello', id: 9 }),
    Buffer.from([0])]);
  const t = await rawReply(c, trailing);
  assert.equal(t.err.code, 100);
  assert.equal((await c.request('no.such.op')).err.code, 101);
  const miss = await c.request('login', { user: 'ann', device: 'd' });
  assert.equal(miss.err.code, 102);
  const wrong = await c.request('login',
    { user: 42, password: 'x', device: 'd' });
  assert.equal(wrong.err.code, 103);
  assert.equal((await c.request('hello')).ok, true);
  await c.close();
});

test('bad UTF-8, over-long and bad names', async () => {
  const c = await connect(srv.port);
  // a str header with an invalid UTF-8 sequence, built by hand
  const body = Buffer.concat([
    Buffer.from([0x84]),
    encode('op'), encode('register'), encode('id'), encode(6),
    encode('user'), encode('ann'),
    encode('password'), Buffer.from([0xa2, 0xc3, 0x28]),
  ]);
  const r = await rawReply(c, body);
  assert.equal(r.re, 6);
  assert.equal(r.err.code, 104);
  const long = await c.request('register',
    { user: 'a'.repeat(33), password: 'secret-pw' });
  assert.equal(long.err.code, 105);
  const chars = await c.request('register',
    { user: 'Ann!', password: 'secret-pw' });
  assert.equal(chars.err.code, 106);
  await c.close();
});

test('requests before login get 200', async () => {
  const c = await connect(srv.port);
  for (const [op, f] of [['device.list', {}], ['logout', {}],
    ['send', { to: 'bob', cid: 1, body: Buffer.from('x') }],
    ['contact.list', {}]]) {
    const r = await c.request(op, f);
    assert.equal(r.err.code, 200, op);
  }
  await c.close();
});

test('a flood of requests is answered 204 with a retry time', async () => {
  const c = await connect(srv.port);
  const replies = await Promise.all(
    Array.from({ length: 40 }, () => c.request('hello')));
  const limited = replies.filter((r) => r.err && r.err.code === 204);
  assert.ok(limited.length > 0, 'some requests are rate limited');
  assert.ok(limited[0].err.retry > 0 || limited[0].retry > 0);
  await c.close();
});

test('malformed requests in a row close the connection with 1008',
  async () => {
    const c = await connect(srv.port);
    for (let i = 0; i < 4; i++) c.sendRaw(Buffer.from([0xc1]));
    const { code } = await c.closed;
    assert.equal(code, 1008);
    // and the server still serves others
    const d = await connect(srv.port);
    assert.equal((await d.request('hello')).ok, true);
    await d.close();
  });

test('a logged-in session asking about an unknown group gets 301',
  async () => {
    const user = uniqueName('op');
    const c = await connect(srv.port);
    await c.request('register', { user, password: 'secret-pw' });
    await c.request('login', { user, password: 'secret-pw', device: 'd' });
    const r = await c.request('group.info', { gid: 999999 });
    assert.equal(r.err.code, 301);
    await c.close();
  });
