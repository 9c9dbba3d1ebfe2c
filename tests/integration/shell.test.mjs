// The operator's remote shell: parley-shell -c against a real parleyd
// while real WebSocket clients keep it busy. Covers every command, the
// refusals (wrong token, another uid), killing actors under load, tracing
// and a shell that goes away mid-trace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { chmodSync, accessSync, constants } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { startServer, connect, uniqueName, within, PARLEYD } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const SHELL = process.env.PARLEY_SHELL ||
  join(dirname(PARLEYD), 'parley-shell');
const PASSWORD = 'secret-pw';

// A line of --json output; one cut short (a shell killed by its
// time-out) becomes { unparsed }, so that assertions on it fail plainly
// instead of throwing in a callback.
function parseLine(l) {
  try {
    return JSON.parse(l);
  } catch {
    return { unparsed: l };
  }
}

// Runs parley-shell; resolves with { code, lines, stdout, stderr }, where
// lines are the parsed JSON lines (--json unless human is set).
function shell(args, { human = false, timeout = 30000 } = {}) {
  const argv = human ? args : ['--json', ...args];
  return new Promise((resolve) => {
    // a trace of a busy actor writes megabytes a second: more than
    // execFile's default 1 MB, which kills the shell and cuts its output
    execFile(SHELL, argv, { timeout, maxBuffer: 256 << 20 },
      (err, stdout, stderr) => {
        const lines = human ? [] : stdout.split('\n').filter(Boolean)
          .map(parseLine);
        resolve({ code: err ? (err.code ?? 1) : 0, lines, stdout, stderr });
      });
  });
}

let srv;
const sh = (cmd, opts) => shell(['--data', srv.data, '-c', cmd], opts);
const last = (r) => r.lines[r.lines.length - 1];
const of = (r, key) => r.lines.filter((l) => l[key]).map((l) => l[key]);

async function account(port, device = 'phone') {
  const user = uniqueName('op');
  const c = await connect(port);
  assert.equal((await c.request('register',
    { user, password: PASSWORD })).ok, true);
  const li = await c.request('login', { user, password: PASSWORD, device });
  assert.equal(li.ok, true);
  return { user, c, token: li.token };
}

// Clients that keep asking for their device list until stopped.
let load = [];
let loading = true;
async function keepBusy(c) {
  while (loading) {
    try {
      await c.request('device.list');
    } catch {
      return;
    }
  }
}

before(async () => {
  srv = await startServer(['--request-rate', '100000',
    '--request-burst', '100000']);
  for (let i = 0; i < 12; i++) load.push(await account(srv.port));
  for (const a of load) keepBusy(a.c);
});

after(async () => {
  loading = false;
  if (srv.proc.exitCode === null) await srv.stop();
});

test('status shows schedulers, connections, actors by kind and rates',
  async () => {
    await new Promise((r) => setTimeout(r, 1200)); // one sampler period
    const r = await sh('status');
    assert.equal(r.code, 0, r.stderr);
    const st = of(r, 'status')[0];
    assert.equal(st.version, '0.1.0');
    assert.equal(st.schedulers.length, 2);
    assert.ok(st.connections >= 12);
    assert.ok(st.actors.by_kind.conn >= 12);
    assert.equal(st.actors.by_kind.supervisor >= 1, true);
    assert.ok(st.messages_per_s > 0, 'messages flow under load');
    assert.ok('writes_per_commit' in st.store);
    assert.equal(last(r).done, true);
    const human = await sh('status', { human: true });
    assert.match(human.stdout, /connections \d+/);
  });

test('actors lists the busiest, by kind too', async () => {
  const r = await sh('actors conn 5');
  assert.equal(r.code, 0, r.stderr);
  const rows = of(r, 'row');
  assert.ok(rows.length >= 1 && rows.length <= 5);
  assert.ok(rows.every((a) => a.kind === 'conn'));
  assert.ok(last(r).done.matched >= 12);
  const all = await sh('actors');
  assert.ok(of(all, 'row').some((a) => a.kind === 'store'));
});

test('actor ID shows the detail, and an unknown id is an error', async () => {
  const rows = of(await sh('actors conn 1'), 'row');
  const r = await sh(`actor ${rows[0].id}`);
  assert.equal(r.code, 0, r.stderr);
  const a = of(r, 'actor')[0];
  assert.equal(a.kind, 'conn');
  assert.equal(a.parent_kind, 'listener');
  assert.match(a.summary, /user=/);
  assert.equal(typeof a.nlinks, 'number'); // not linked to its listener
  const bad = await sh('actor 999999999');
  assert.equal(bad.code, 1);
  assert.equal(last(bad).error.code, 'not_found');
  assert.ok(last(bad).error.hint.length > 0);
});

test('tree folds the many connections of a listener', async () => {
  const r = await sh('tree');
  assert.equal(r.code, 0, r.stderr);
  const nodes = of(r, 'node');
  assert.equal(nodes[0].kind, 'supervisor');
  assert.match(nodes[0].summary, /root/);
  assert.ok(nodes.some((n) => n.kind === 'conn' && n.count >= 5),
    'a folded line of connections');
  assert.ok(nodes.some((n) => n.kind === 'store' && n.depth === 1));
  const human = await sh('tree', { human: true });
  assert.match(human.stdout, /conn x\d+/);
});

test('kill of the store: the supervisor restarts it, writes go on',
  async () => {
    const store = of(await sh('actors store'), 'row')[0];
    const r = await sh(`kill ${store.id}`);
    assert.equal(r.code, 0, r.stderr);
    const d = last(r).done;
    assert.equal(d.killed, store.id);
    assert.ok(d.restarted > store.id, 'a new child id');
    assert.ok(of(r, 'progress').length >= 2);
    const again = await account(srv.port);
    await again.c.close();
  });

test('kill of a connection: the client resumes and its next request '
  + 'goes through', async () => {
  const a = await account(srv.port);
  const u = await sh(`user ${a.user}`);
  const dev = of(u, 'device')[0];
  assert.equal(dev.online, true);
  const r = await sh(`kill ${dev.conn}`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(last(r).done.restarted, null);
  await within(a.c.closed, 'the killed connection to close');
  const b = await connect(srv.port);
  assert.equal((await b.request('resume', { token: a.token })).ok, true);
  assert.equal((await b.request('device.list')).ok, true);
  await b.close();
  const root = of(await sh('tree'), 'node')[0];
  await a.c.close().catch(() => {});
  const refused = await sh(`kill ${root.id}`);
  assert.equal(last(refused).error.code, 'refused');
});

test('kill of a session: its supervisor restarts it and the client\'s '
  + 'next message goes through', async () => {
  const a = await account(srv.port);
  const b = await account(srv.port);
  const dev = of(await sh(`user ${a.user}`), 'device')[0];
  assert.ok(dev.session > 0, 'a session serves the device');
  const r = await sh(`kill ${dev.session}`);
  assert.equal(r.code, 0, r.stderr);
  const d = last(r).done;
  assert.equal(d.kind, 'session');
  assert.ok(d.restarted > 0 && d.restarted !== dev.session, JSON.stringify(d));
  let sent;
  for (let i = 0; i < 50; i++) {
    sent = await a.c.request('send',
      { to: b.user, cid: 1, body: Buffer.from('after the kill') });
    if (sent.ok) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const ev = await b.c.nextEvent();
  assert.equal(ev.ev, 'msg');
  assert.equal(Buffer.from(ev.body).toString(), 'after the kill');
  await a.c.close();
  await b.c.close();
});

test('user shows devices and presence; disconnect closes them', async () => {
  const a = await account(srv.port);
  const r = await sh(`user ${a.user}`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(of(r, 'user')[0].blocked, false);
  assert.equal(last(r).done.presence, 'online');
  const d = await sh(`disconnect ${a.user}`);
  assert.equal(last(d).done.disconnected, 1);
  const closed = await within(a.c.closed, 'the operator to close it');
  assert.equal(closed.code, 1008);
  const none = await sh('user nobody_at_all');
  assert.equal(last(none).error.code, 'not_found');
});

test('user shows undelivered entries and the oldest one\'s time',
  async () => {
    const a = await account(srv.port);
    const b = await account(srv.port);
    const before = Date.now();
    for (let cid = 1; cid <= 2; cid++) {
      const r = await a.c.request('send',
        { to: b.user, cid, body: Buffer.from(`m${cid}`) });
      assert.equal(r.ok, true, JSON.stringify(r));
    }
    const dev = () => sh(`user ${b.user}`).then((r) => of(r, 'device')[0]);
    let d = await dev();
    assert.equal(d.undelivered, 2, JSON.stringify(d));
    assert.ok(d.oldest_undelivered >= before - 1000
      && d.oldest_undelivered <= Date.now(), JSON.stringify(d));
    const m1 = await b.c.nextEvent();
    const m2 = await b.c.nextEvent();
    assert.equal((await b.c.request('ack',
      { upto: Math.max(m1.seq, m2.seq) })).ok, true);
    d = await dev();
    assert.equal(d.undelivered, 0, JSON.stringify(d));
    assert.equal(d.oldest_undelivered, 0, JSON.stringify(d));
    await a.c.close();
    await b.c.close();
  });

test('block refuses logins and disconnects; unblock lets them in',
  async () => {
    const a = await account(srv.port);
    const b = await sh(`block ${a.user}`);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(last(b).done.disconnected, 1);
    await within(a.c.closed, 'the blocked client to be closed');
    const c = await connect(srv.port);
    const li = await c.request('login',
      { user: a.user, password: PASSWORD, device: 'tablet' });
    assert.equal(li.err.code, 303);
    assert.equal((await c.request('resume', { token: a.token })).err.code,
      303);
    assert.equal(of(await sh(`user ${a.user}`), 'user')[0].blocked, true);
    assert.equal((await sh(`unblock ${a.user}`)).code, 0);
    assert.equal((await c.request('login',
      { user: a.user, password: PASSWORD, device: 'tablet' })).ok, true);
    await c.close();
    const twice = await sh(`unblock ${a.user}`);
    assert.equal(last(twice).error.code, 'not_blocked');
  });

test('group shows members, roles and positions; unknown is not_found',
  async () => {
    const a = await account(srv.port);
    const b = await account(srv.port);
    const g = await a.c.request('group.create',
      { name: 'ops', members: [b.user] });
    assert.equal(g.ok, true);
    const r = await sh(`group ${g.gid}`);
    assert.equal(r.code, 0);
    assert.equal(of(r, 'group')[0].name, 'ops');
    const members = of(r, 'member');
    assert.equal(members.length, 2);
    const admin = members.find((m) => m.user === a.user);
    assert.equal(admin.admin, true);
    const none = await sh('group 987654');
    assert.equal(none.code, 1);
    assert.equal(last(none).error.code, 'not_found');
    await a.c.close();
    await b.c.close();
  });

test('trace user shows a request passing, then ends on time', async () => {
  const a = await account(srv.port);
  const tr = shell(['--data', srv.data, '-c', `trace user ${a.user} 2`]);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await a.c.request('device.list')).ok, true);
  const r = await tr;
  assert.equal(r.code, 0, r.stderr);
  const events = of(r, 'trace');
  assert.ok(events.some((e) => e.event === 'in' &&
    /op=device.list/.test(e.text)), JSON.stringify(events));
  assert.ok(events.some((e) => e.event === 'out'));
  assert.ok(events.every((e) => e.user === a.user));
  assert.ok(last(r).done.events >= 2);
  await a.c.close();
});

test('trace shows a message passing from one user to another', async () => {
  const a = await account(srv.port);
  const b = await account(srv.port);
  const tr = shell(['--data', srv.data, '-c', `trace user ${b.user} 2`]);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await a.c.request('send',
    { to: b.user, cid: 7, body: Buffer.from('hi') })).ok, true);
  assert.equal((await b.c.nextEvent()).ev, 'msg');
  const r = await tr;
  assert.equal(r.code, 0, r.stderr);
  const events = of(r, 'trace');
  assert.ok(events.some((e) => e.kind === 'session' && e.event === 'push'),
    JSON.stringify(events));
  assert.ok(events.some((e) => e.kind === 'conn' && e.event === 'out'));
  await a.c.close();
  await b.c.close();
});

test('trace actor, and a shell that leaves mid-trace costs nothing',
  async () => {
    const conn = of(await sh('actors conn 1'), 'row')[0];
    const child = spawn(SHELL, ['--data', srv.data, '--json', '-c',
      `trace actor ${conn.id} 60`]);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    await within(new Promise((resolve) => {
      const t = setInterval(() => {
        if (out.includes('"progress"')) { clearInterval(t); resolve(); }
      }, 20);
    }), 'the trace to start');
    const shells = of(await sh('actors shell'), 'row').length;
    assert.equal(shells, 2, 'the tracer and this shell');
    child.kill('SIGKILL');
    // the tracer's actor ends and its subscription with it
    for (let i = 0; i < 100; i++) {
      if (of(await sh('actors shell'), 'row').length === 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(of(await sh('actors shell'), 'row').length, 1);
    // sixteen traces may run at once: all can start again
    const many = [];
    for (let i = 0; i < 16; i++)
      many.push(shell(['--data', srv.data, '-c', `trace actor ${conn.id} 1`]));
    for (const r of await Promise.all(many)) assert.equal(r.code, 0, r.stderr);
  });

test('fault list, arm and disarm', async () => {
  const arm = await sh('fault arm store.commit fail count=1');
  assert.equal(arm.code, 0, arm.stderr);
  assert.equal(last(arm).done.armed, 'store.commit');
  const c = await connect(srv.port);
  const reg = await c.request('register',
    { user: uniqueName('f'), password: PASSWORD });
  assert.equal(reg.err.code, 500);
  await c.close();
  const list = of(await sh('fault list'), 'fault');
  const sc = list.find((f) => f.name === 'store.commit');
  assert.equal(sc.fired, 1);
  assert.equal(sc.action, 'none', 'count=1 disarms after firing');
  assert.equal((await sh('fault arm ws.write delay p=0.5 delay=1')).code, 0);
  assert.equal((await sh('fault disarm ws.write')).code, 0);
  const bad = await sh('fault arm store.commit explode');
  assert.equal(last(bad).error.code, 'usage');
});

test('config get and set, log level', async () => {
  const all = of(await sh('config get'), 'config');
  assert.ok(all.find((k) => k.key === 'connection.request_rate').runtime);
  assert.equal(all.find((k) => k.key === 'store.map_size').runtime, false);
  const set = await sh('config set request_rate 50000');
  assert.equal(set.code, 0, set.stderr);
  assert.equal(last(set).done.value, '50000');
  const get = of(await sh('config get connection.request_rate'), 'config');
  assert.equal(get[0].value, '50000');
  assert.equal(last(await sh('config set map_size 5')).error.code,
    'read_only');
  assert.equal(last(await sh('config set idle_timeout_ms x')).error.code,
    'bad_value');
  assert.equal(last(await sh('config set nope 1')).error.code, 'not_found');
  assert.equal((await sh('log level debug')).code, 0);
  assert.equal(last(await sh('log level')).done.level, 'debug');
  assert.equal((await sh('log level warn')).code, 0);
});

test('help, unknown commands and usage errors name what to do', async () => {
  const h = await sh('help');
  assert.ok(of(h, 'help').some((c) => c.name === 'trace'));
  const one = of(await sh('help kill'), 'help')[0];
  assert.match(one.text, /supervisor/);
  const human = await sh('help', { human: true }); // offline in the client
  assert.match(human.stdout, /status/);
  const u = await sh('frobnicate');
  assert.equal(u.code, 1);
  assert.equal(last(u).error.code, 'unknown_command');
  const hm = await sh('frobnicate', { human: true });
  assert.match(hm.stderr, /error: .*frobnicate[\s\S]*hint: /);
});

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

test('TCP shell: the right token works, a wrong one is refused and logged',
  async () => {
    const port = await freePort();
    const token = 'a-long-enough-shell-token';
    const t = await startServer(['--tcp', `127.0.0.1:${port}`,
      '--token', token]);
    try {
      const ok = await shell(['--tcp', `127.0.0.1:${port}`, '--token', token,
        '-c', 'status']);
      assert.equal(ok.code, 0, ok.stderr);
      const bad = await shell(['--tcp', `127.0.0.1:${port}`, '--token',
        'wrong-token-wrong-token', '-c', 'status']);
      assert.notEqual(bad.code, 0);
      assert.equal(last(bad).error.code, 'forbidden');
      await within(new Promise((resolve) => {
        const i = setInterval(() => {
          if (/event=refused transport=tcp/.test(t.stderr())) {
            clearInterval(i);
            resolve();
          }
        }, 20);
      }), 'the refusal in the log');
    } finally {
      await t.stop();
    }
  });

test('TCP shell anywhere but loopback, or without a token, is refused',
  async () => {
    const r = spawnSync(PARLEYD, ['--listen', '127.0.0.1:0', '--data',
      join(srv.data, 'x'), '--tcp', '0.0.0.0:7999', '--token',
      'a-long-enough-shell-token'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /loopback/);
    const n = spawnSync(PARLEYD, ['--listen', '127.0.0.1:0', '--data',
      join(srv.data, 'y'), '--tcp', '127.0.0.1:7999'],
    { encoding: 'utf8', timeout: 10000 });
    assert.equal(n.status, 2);
    assert.match(n.stderr, /token/);
  });

// Runs parley-shell as `nobody`, when this test runs as root with setpriv.
function asNobody(args) {
  return spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup',
    '--clear-groups', SHELL, ...args], { encoding: 'utf8', timeout: 10000 });
}

const canSwitch = process.getuid?.() === 0 &&
  spawnSync('setpriv', ['--version']).status === 0 && (() => {
  try {
    accessSync(SHELL, constants.X_OK);
    return asNobody(['--help']).status === 0;
  } catch {
    return false;
  }
})();

test('another uid cannot use the Unix socket', { skip: !canSwitch &&
  'needs root, setpriv and a parley-shell that nobody can run' }, async () => {
  const sock = join(srv.data, 'parley.sock');
  // the socket is 0600 in a 0700 directory: the kernel refuses first
  const denied = asNobody(['--socket', sock, '-c', 'status']);
  assert.equal(denied.status, 2);
  assert.match(denied.stderr, /Permission denied|cannot attach/);
  // with the permissions opened by mistake, SO_PEERCRED still refuses
  chmodSync(srv.data, 0o755);
  chmodSync(sock, 0o666);
  try {
    const r = asNobody(['--json', '--socket', sock, '-c', 'status']);
    assert.equal(r.status, 1, r.stderr);
    const err = JSON.parse(r.stdout.trim().split('\n').pop()).error;
    assert.equal(err.code, 'forbidden');
    assert.match(err.hint, /uid 0/);
    await within(new Promise((resolve) => {
      const i = setInterval(() => {
        if (/event=refused transport=unix peer_uid=\d+/.test(srv.stderr())) {
          clearInterval(i);
          resolve();
        }
      }, 20);
    }), 'the refusal in the log');
  } finally {
    chmodSync(sock, 0o600);
    chmodSync(srv.data, 0o700);
  }
});

test('closed registration takes an operator invite, once', async () => {
  const s = await startServer(['--registration', 'closed']);
  try {
    const c = await connect(s.port);
    const user = uniqueName('inv');
    assert.equal((await c.request('register',
      { user, password: PASSWORD })).err.code, 203);
    const r = await shell(['--json', '--data', s.data, '-c', 'invite']);
    assert.equal(r.code, 0, r.stderr);
    const invite = last(r).done.invite;
    assert.ok(invite.length >= 16);
    assert.equal(last(r).done.registration, 'closed');
    assert.equal((await c.request('register',
      { user, password: PASSWORD, invite })).ok, true);
    assert.equal((await c.request('register',
      { user: uniqueName('inv'), password: PASSWORD, invite })).err.code, 203);
    await c.close();
  } finally {
    await s.stop();
  }
});

test('drain closes the clients with 1001, shutdown stops the server',
  async () => {
    const a = load[0];
    const r = await sh('drain');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(of(r, 'progress').length >= 1);
    assert.equal(last(r).done.listeners_stopped, 2);
    const closed = await within(a.c.closed, 'a drained client to close');
    assert.equal(closed.code, 1001);
    const s = await sh('shutdown');
    assert.equal(last(s).done.shutdown, 'started');
    const ex = await within(srv.exited, 'parleyd to exit');
    assert.equal(ex.code, 0);
  });
