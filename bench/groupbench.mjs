// bench/groupbench.mjs - one sender into a group of MEMBERS members, all
// online, each on its own WebSocket from this Node process.
//
//   PARLEYD=build/actors/parleyd node bench/groupbench.mjs \
//       [MEMBERS=1024] [PACED=300] [SECONDS=10] [BODY=100]
//
// It starts its own parleyd (tests/integration/lib.mjs) and reports:
//  - paced: one message at a time, the time from the send to the moment
//    the last member's client has the msg event (p50, p99, max, ms);
//  - sustained: WINDOW sends in flight for SECONDS, group messages per
//    second that reached every member;
//  - storage: growth of data.mdb per group message over the sustained run
//    (the file grows in whole pages, so many messages are averaged).
// Members ack every 100 entries. The clock is this process's, so the
// figures include Node's own time to take 1,024 frames off the sockets.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../tests/integration/lib.mjs';
import { newUser, login } from '../tests/integration/chatlib.mjs';

const MEMBERS = Number(process.argv[2] || 1024);
const PACED = Number(process.argv[3] || 300);
const SECONDS = Number(process.argv[4] || 10);
const BODY = Number(process.argv[5] || 100);
const WINDOW = 16;

async function pool(n, width, fn) {
  const out = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

const pct = (v, p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];

const srv = await startServer(['--request-rate', '100000',
  '--request-burst', '100000', '--log-level', 'error']);
try {
  const names = await pool(MEMBERS, 32, () => newUser(srv.port, 'gb'));
  const devs = await pool(MEMBERS, 32, (i) => login(srv.port, names[i]));
  const owner = devs[0].c;
  const r = await owner.request('group.create',
    { name: 'bench', members: names.slice(1) });
  if (!r.ok) throw new Error(JSON.stringify(r));
  const gid = r.gid;

  // per sid: members still to receive it, and when it was sent
  const waiting = new Map();
  const done = [];
  let onDone = null;
  for (const d of devs.slice(1)) {
    let top = 0;
    let acked = 0;
    d.c.ws.on('message', () => {
      for (const e of d.c.events) {
        if (e.gid !== gid) continue;
        if (e.seq > top) top = e.seq;
        if (e.ev !== 'msg') continue;
        const w = waiting.get(e.sid);
        if (w && --w.left === 0) {
          waiting.delete(e.sid);
          done.push(Number(process.hrtime.bigint() - w.t0) / 1e6);
          if (onDone) onDone();
        }
      }
      d.c.events.length = 0;
      if (top - acked >= 100) {
        acked = top;
        d.c.request('ack', { gid, upto: top }).catch(() => {});
      }
    });
  }
  owner.ws.on('message', () => { owner.events.length = 0; });
  const body = Buffer.alloc(BODY, 7);
  let cid = 0;
  async function send() {
    const t0 = process.hrtime.bigint();
    const rep = owner.request('group.send', { gid, cid: ++cid, body });
    // the sid is known only from the reply; members may be faster, so
    // the entry is keyed by the cid's reply before events are counted
    const s = await rep;
    if (!s.ok) throw new Error(JSON.stringify(s));
    return { sid: s.sid, t0 };
  }
  // Events can precede the reply: count receipts by sid as they come and
  // settle them once the reply names the sid.
  const early = new Map();
  const origGet = waiting.get.bind(waiting);
  waiting.get = (sid) => {
    const w = origGet(sid);
    if (w) return w;
    const e = early.get(sid) || { left: 0 };
    e.left--;
    early.set(sid, e);
    return null;
  };
  function track(sid, t0) {
    const e = early.get(sid);
    early.delete(sid);
    const left = MEMBERS - 1 + (e ? e.left : 0);
    if (left <= 0) {
      done.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (onDone) onDone();
    } else {
      waiting.set(sid, { left, t0 });
    }
  }

  // paced
  for (let i = 0; i < PACED; i++) {
    const n = done.length;
    const finished = new Promise((res) => { onDone = res; });
    const { sid, t0 } = await send();
    track(sid, t0);
    if (done.length === n) await finished;
  }
  const paced = done.splice(0).sort((a, b) => a - b);

  // sustained
  const file = join(srv.data, 'data.mdb');
  const size0 = statSync(file).size;
  const end = Date.now() + SECONDS * 1000;
  let sent = 0;
  onDone = null;
  await Promise.all(Array.from({ length: WINDOW }, async () => {
    while (Date.now() < end) {
      const { sid, t0 } = await send();
      sent++;
      track(sid, t0);
    }
  }));
  const t1 = Date.now();
  while (waiting.size && Date.now() < t1 + 30000)
    await new Promise((res) => setTimeout(res, 20));
  const secs = (Date.now() - end + SECONDS * 1000) / 1000;
  const size1 = statSync(file).size;
  const full = done.length;
  console.log(`members=${MEMBERS} body=${BODY} paced=${paced.length} ` +
    `p50_ms=${pct(paced, 0.5).toFixed(2)} p99_ms=${pct(paced, 0.99).toFixed(2)} ` +
    `max_ms=${paced[paced.length - 1].toFixed(2)} ` +
    `sustained_sent=${sent} sustained_all=${full} ` +
    `msgs_per_s=${(full / secs).toFixed(0)} ` +
    `mdb_growth_per_msg=${((size1 - size0) / sent).toFixed(0)}`);
  await pool(MEMBERS, 64, (i) => devs[i].c.close());
} finally {
  await srv.stop();
}
