// Connection lifetime: keepalive, idle timeout, slow readers, SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, encode, decode, upgradeRaw, frame, within }
  from './lib.mjs';

test('a silent client is pinged, then closed at the idle timeout',
  async () => {
    const srv = await startServer(['--ping-interval-ms', '200',
      '--idle-timeout-ms', '800']);
    try {
      const r = await upgradeRaw(srv.port);
      const ping = await r.reader.next('a ping');
      assert.equal(ping.opcode, 9);
      // no pong: the client stays silent, so the idle timeout closes it
      assert.equal(await r.reader.closeCode(), 1000);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

test('a client answering pings stays connected', async () => {
  const srv = await startServer(['--ping-interval-ms', '200',
    '--idle-timeout-ms', '600']);
  try {
    const c = await connect(srv.port); // ws answers pings by itself
    let pings = 0;
    await within(new Promise((resolve) => {
      c.ws.on('ping', () => { if (++pings === 4) resolve(); });
    }), 'four pings');
    assert.equal((await c.request('hello')).ok, true);
    await c.close();
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('a reader too slow is disconnected, others are served', async () => {
  const srv = await startServer(['--send-queue-max', '65536',
    '--request-rate', '1000000', '--request-burst', '1000000']);
  try {
    const r = await upgradeRaw(srv.port);
    r.sock.pause(); // read nothing: the kernel buffers fill, then ours
    const req = frame(2, encode({ op: 'hello', id: 1 }));
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => req));
    let closed = false;
    r.sock.on('close', () => { closed = true; });
    const flood = async () => {
      for (let i = 0; i < 2000 && !closed; i++) {
        if (!r.sock.write(batch))
          await new Promise((res) => {
            r.sock.once('drain', res);
            r.sock.once('close', res);
          });
      }
    };
    flood();
    await within(new Promise((res) => r.sock.on('close', res)),
      'the slow reader to be cut off', 30000);
    const c = await connect(srv.port);
    assert.equal((await c.request('hello')).ok, true);
    await c.close();
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('a burst larger than the send queue bound reaches a client that reads',
  async () => {
    // 3,000 requests in one write: the server reads them 64 KB at a time
    // and answers each read's requests together, tens of KB at once
    // against a bound of 4 KB. The client reads all the time and the
    // kernel takes every byte, so it is not a slow reader.
    const srv = await startServer(['--send-queue-max', '4096',
      '--request-rate', '1000000', '--request-burst', '1000000']);
    try {
      const r = await upgradeRaw(srv.port);
      const n = 3000;
      const reqs = Array.from({ length: n },
        (_, i) => frame(2, encode({ op: 'hello', id: i + 1 })));
      r.sock.write(Buffer.concat(reqs));
      const seen = new Set();
      while (seen.size < n) {
        const f = await r.reader.next(`reply ${seen.size + 1} of ${n}`);
        assert.notEqual(f, null, `closed after ${seen.size} replies`);
        assert.notEqual(f.opcode, 8,
          `close frame after ${seen.size} replies`);
        seen.add(decode(f.payload).re);
      }
      const c = await connect(srv.port);
      assert.equal((await c.request('hello')).ok, true);
      await c.close();
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

test('SIGTERM closes connections with 1001 and exits 0', async () => {
  const srv = await startServer();
  const c = await connect(srv.port);
  assert.equal((await c.request('hello')).ok, true);
  srv.proc.kill('SIGTERM');
  const { code } = await c.closed;
  assert.equal(code, 1001);
  const r = await within(srv.exited, 'parleyd to exit');
  assert.equal(r.code, 0);
  await srv.stop();
});
