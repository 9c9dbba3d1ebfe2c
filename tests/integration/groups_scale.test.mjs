// Groups at their size limit (1,024 members, one WebSocket each from this
// process), and a SIGKILL of parleyd in the middle of a fan-out: after a
// restart every member gets every message whose send was answered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer } from './lib.mjs';
import { newUser, login, resume, waitFor, nextCid } from './chatlib.mjs';

const gmsg = (gid) => (e) => e.ev === 'msg' && e.gid === gid;

// Runs fn over items with at most `width` at once.
async function pool(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: width }, worker));
  return out;
}

// Waits until c has msg events of gid for every sid in `want`, acking
// the group's stream every 100 entries as a client should.
async function collect(c, gid, want, what) {
  const got = new Set();
  let top = 0;
  let acked = 0;
  while ([...want].some((s) => !got.has(s))) {
    const e = await waitFor(c, (e) => e.gid === gid &&
      (e.ev === 'msg' || e.ev === 'group'), what, 30000);
    if (e.ev === 'msg') got.add(e.sid);
    if (e.seq > top) top = e.seq;
    if (top - acked >= 100) {
      const r = await c.request('ack', { gid, upto: top });
      assert.equal(r.ok, true, JSON.stringify(r));
      acked = top;
    }
  }
  return got;
}

test('a group of 1,024 members: create, limit, fan-out, delivered_all',
  { timeout: 240000 }, async () => {
    const srv = await startServer();
    try {
      const names = await pool(Array.from({ length: 1024 }), 32,
        () => newUser(srv.port, 'big'));
      const devs = await pool(names, 32, (u) => login(srv.port, u));
      const owner = devs[0];
      const r = await owner.c.request('group.create',
        { name: 'all of us', members: names.slice(1) });
      assert.equal(r.ok, true, JSON.stringify(r));
      const gid = r.gid;
      const extra = await newUser(srv.port, 'late');
      const full = await owner.c.request('group.add',
        { gid, users: [extra] });
      assert.equal(full.err.code, 304);
      const info = await devs[5].c.request('group.info', { gid });
      assert.equal(info.members.length, 1024);

      const sent = [];
      for (let i = 0; i < 3; i++) {
        const s = await owner.c.request('group.send',
          { gid, cid: nextCid(), body: Buffer.from(`to all ${i}`) });
        assert.equal(s.ok, true);
        sent.push(s);
      }
      const want = new Set(sent.map((s) => s.sid));
      const last = sent[sent.length - 1].seq;
      await pool(devs.slice(1), 64, async (d) => {
        await collect(d.c, gid, want, 'member gets all');
        const a = await d.c.request('ack', { gid, upto: last });
        assert.equal(a.ok, true, JSON.stringify(a));
      });
      for (const s of sent) {
        const e = await waitFor(owner.c, (e) => e.ev === 'delivered_all' &&
          e.sid === s.sid, 'delivered_all', 30000);
        assert.equal(e.gid, gid);
      }
      await pool(devs, 64, (d) => d.c.close());
    } finally {
      const x = await srv.stop();
      assert.equal(x.code, 0);
    }
  });

test('SIGKILL during a fan-out loses no message the sender was told of',
  { timeout: 120000 }, async () => {
    let srv = await startServer();
    const data = srv.data;
    try {
      const names = await pool(Array.from({ length: 40 }), 16,
        () => newUser(srv.port, 'kill'));
      const devs = await pool(names, 16, (u) => login(srv.port, u));
      const owner = devs[0];
      const { gid } = await owner.c.request('group.create',
        { name: 'k', members: names.slice(1) });
      // half the members are offline during the sends
      await pool(devs.slice(20), 16, (d) => d.c.close());
      const told = [];
      let killed = false;
      const sends = [];
      for (let i = 0; i < 400; i++) {
        if (told.length >= 60 && !killed) {
          killed = true;
          srv.proc.kill('SIGKILL');
          break;
        }
        sends.push(owner.c.request('group.send',
          { gid, cid: nextCid(), body: Buffer.from(`m${i}`) })
          .then((r) => { if (r.ok) told.push(r.sid); }, () => {}));
        if (i % 10 === 9) await Promise.race([sends[sends.length - 1],
          new Promise((res) => setTimeout(res, 50))]);
      }
      await srv.exited;
      await Promise.allSettled(sends.map((p) =>
        Promise.race([p, new Promise((res) => setTimeout(res, 100))])));
      assert.ok(told.length >= 60, `told ${told.length}`);
      const want = new Set(told);

      srv = await startServer(['--data', data]);
      await pool(devs.slice(1), 16, async (d) => {
        const { c } = await resume(srv.port, d.token);
        await collect(c, gid, want, 'after restart');
        await c.close();
      });
    } finally {
      await srv.stop({ keepData: true });
      rmSync(data, { recursive: true, force: true });
    }
  });
