// Helpers for the chat integration tests: accounts with logged-in
// devices, and waiting for a matching event with a deadline.
import { connect, uniqueName, within, DEADLINE_MS } from './lib.mjs';

// Resolves with the first collected or arriving event of c for which
// pred is true, removing it from c.events; rejects at the deadline.
export async function waitFor(c, pred, what, ms = DEADLINE_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = c.events.findIndex(pred);
    if (i >= 0) return c.events.splice(i, 1)[0];
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out: ${what}`);
    await within(new Promise((r) => c.eventWaiters.push(r)), what, left);
  }
}

export const isMsg = (sid) => (e) => e.ev === 'msg' && (!sid || e.sid === sid);

// Registers a user; returns its name.
export async function newUser(port, prefix = 'u') {
  const user = uniqueName(prefix);
  const c = await connect(port);
  const r = await c.request('register', { user, password: 'secret-pw' });
  if (!r.ok) throw new Error(`register ${user}: ${JSON.stringify(r)}`);
  await c.close();
  return user;
}

// Logs a new device of user in; resolves with { c, token, device }.
export async function login(port, user, device = 'phone') {
  const c = await connect(port);
  const r = await c.request('login', { user, password: 'secret-pw', device });
  if (!r.ok) throw new Error(`login ${user}: ${JSON.stringify(r)}`);
  return { c, token: r.token, device: r.device, acked: r.acked };
}

// Resumes a device on a new connection; resolves with { c, reply }.
export async function resume(port, token, after) {
  const c = await connect(port);
  const f = { token };
  if (after !== undefined) f.after = after;
  const reply = await c.request('resume', f);
  if (!reply.ok) throw new Error(`resume: ${JSON.stringify(reply)}`);
  return { c, reply };
}

let cidSeq = 0;
export function nextCid() {
  cidSeq++;
  return cidSeq;
}

export function send(c, to, text, cid = nextCid()) {
  return c.request('send', { to, cid, body: Buffer.from(text) });
}

// Collects `n` msg events of c, acknowledging nothing.
export async function takeMsgs(c, n, what = 'messages') {
  const out = [];
  while (out.length < n)
    out.push(await waitFor(c, isMsg(), `${what} (${out.length}/${n})`));
  return out;
}
