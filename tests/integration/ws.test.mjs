// The WebSocket layer as parleyd serves it: HTTP answers, and every
// malformed frame closes with the code PROTOCOL.md gives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, Client, encode, decode, upgradeRaw,
  httpRaw, frame } from './lib.mjs';

let srv;
before(async () => {
  srv = await startServer(['--max-message', '4096']);
});
after(async () => {
  assert.equal((await srv.stop()).code, 0);
});

test('GET /healthz answers ok on the same port', async () => {
  const r = await httpRaw(srv.port,
    'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(r, /^HTTP\/1\.1 200/);
  assert.match(r, /ok\n$/);
});

test('an unknown subprotocol is refused with 400 naming parley.v1',
  async () => {
    const r = await upgradeRaw(srv.port, 'parley.v0');
    assert.equal(r.status, 400);
    r.sock.destroy();
    const c = new Client(srv.port, 'parley.v9');
    await assert.rejects(c.open(), /HTTP 400/);
  });

test('upgrade echoes parley.v1', async () => {
  const r = await upgradeRaw(srv.port);
  assert.equal(r.status, 101);
  assert.match(r.head, /Sec-WebSocket-Protocol: parley\.v1/i);
  r.sock.destroy();
});

async function closedWith(bytes) {
  const r = await upgradeRaw(srv.port);
  assert.equal(r.status, 101);
  r.sock.write(bytes);
  const code = await r.reader.closeCode();
  await r.reader.closed;
  return code;
}

test('an unmasked client frame closes with 1002', async () => {
  assert.equal(await closedWith(frame(2, encode({ op: 'hello', id: 1 }),
    { mask: false })), 1002);
});

test('reserved bits close with 1002', async () => {
  assert.equal(await closedWith(frame(2, encode({ op: 'hello', id: 1 }),
    { rsv: 4 })), 1002);
});

test('an unknown opcode closes with 1002', async () => {
  assert.equal(await closedWith(frame(3, Buffer.from('x'))), 1002);
});

test('a fragmented control frame closes with 1002', async () => {
  assert.equal(await closedWith(frame(9, Buffer.from('p'),
    { fin: false })), 1002);
});

test('a continuation without a start closes with 1002', async () => {
  assert.equal(await closedWith(frame(0, Buffer.from('x'))), 1002);
});

test('a text frame closes with 1003', async () => {
  assert.equal(await closedWith(frame(1, Buffer.from('hi'))), 1003);
});

test('a message over max_message closes with 1009', async () => {
  // the header alone says 5000 bytes: the server decides before payload
  const head = frame(2, Buffer.alloc(5000)).subarray(0, 8);
  assert.equal(await closedWith(head), 1009);
  // and a fragmented one that grows past it
  const r = await upgradeRaw(srv.port);
  r.sock.write(frame(2, Buffer.alloc(3000), { fin: false }));
  r.sock.write(frame(0, Buffer.alloc(3000)));
  assert.equal(await r.reader.closeCode(), 1009);
});

test('a ping between fragments is answered, then the message is handled',
  async () => {
    const r = await upgradeRaw(srv.port);
    const msg = encode({ op: 'hello', id: 77 });
    r.sock.write(frame(2, msg.subarray(0, 5), { fin: false }));
    r.sock.write(frame(9, Buffer.from('abc')));
    r.sock.write(frame(0, msg.subarray(5)));
    const pong = await r.reader.next('pong');
    assert.equal(pong.opcode, 10);
    assert.equal(pong.payload.toString(), 'abc');
    const reply = await r.reader.next('hello reply');
    assert.equal(reply.opcode, 2);
    assert.equal(decode(reply.payload).re, 77);
    r.sock.write(frame(8, Buffer.from([0x03, 0xe8])));
    assert.equal(await r.reader.closeCode(), 1000);
    await r.reader.closed;
  });

test('close codes: the server answers a client close with its code',
  async () => {
    const c = await connect(srv.port);
    const { code } = await c.close(4000);
    assert.equal(code, 4000);
    const d = await connect(srv.port);
    assert.equal((await d.request('hello')).ok, true);
    assert.equal((await d.close(1000)).code, 1000);
  });
