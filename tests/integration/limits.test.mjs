// The connection limit: parleyd holds at most max_connections clients;
// one more is answered 503 with Retry-After and closed, and the operator
// hears of it once per interval, not once per refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, httpRaw, within, WebSocket } from './lib.mjs';

const LIMIT = 50;

const UPGRADE = 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
  'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: parley.v1\r\n\r\n';

// Resolves with the status, headers and body of a refused `ws` upgrade.
function refusedUpgrade(port) {
  return within(new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, 'parley.v1');
    ws.on('open', () => reject(new Error('upgraded past the limit')));
    ws.on('error', () => {});
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode,
        headers: res.headers, body }));
    });
  }), 'the refusal of a ws upgrade');
}

test('past max_connections a client gets 503 and the rest are served',
  async () => {
    const srv = await startServer(['--max-connections', String(LIMIT)]);
    const clients = [];
    try {
      for (let i = 0; i < LIMIT; i++) clients.push(await connect(srv.port));

      const r = await refusedUpgrade(srv.port);
      assert.equal(r.status, 503);
      assert.equal(r.headers['retry-after'], '10');
      assert.match(r.body, /server full/);
      assert.match(r.body, new RegExp(`limit of ${LIMIT} connections`));

      // a raw client sees the whole answer, then the server's close
      const raw = await httpRaw(srv.port, UPGRADE);
      assert.match(raw, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
      assert.match(raw, /\r\nRetry-After: 10\r\n/);
      assert.match(raw, /\r\n\r\nserver full/);

      // the clients held are untouched
      for (const c of clients)
        assert.equal((await c.request('hello')).ok, true);

      // a slot freed is a slot to take again
      await clients.pop().close();
      let again = null;
      for (let t = 0; !again && t < 100; t++) {
        try {
          again = await connect(srv.port);
        } catch (e) {
          assert.match(e.message, /HTTP 503/);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      assert.ok(again, 'a connection after one closed');
      clients.push(again);
      assert.equal((await again.request('hello')).ok, true);

      // two refusals, one warning naming the cause and the remedy
      const lines = srv.stderr().split('\n')
        .filter((l) => l.includes('event=connection_limit'));
      assert.equal(lines.length, 1, srv.stderr());
      assert.match(lines[0], new RegExp(`max_connections=${LIMIT}`));
      assert.match(lines[0], /raise the open file limit/);
      assert.match(lines[0], /add a node/);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      assert.equal((await srv.stop()).code, 0);
    }
  });

test('the limit defaults to the open file limit less a reserve', async () => {
  const srv = await startServer(['--log-level', 'info']);
  try {
    await within(new Promise((resolve) => {
      const check = () => {
        if (/event=limits nofile=\d+ reserve=\d+ max_connections=\d+/
          .test(srv.stderr())) resolve();
        else setTimeout(check, 20);
      };
      check();
    }), 'the limits line');
    const m = /nofile=(\d+) reserve=(\d+) max_connections=(\d+)/
      .exec(srv.stderr());
    assert.equal(Number(m[3]), Number(m[1]) - Number(m[2]));
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});
