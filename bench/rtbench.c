/*
 * rtbench.c - Parley's runtime against the six workloads of
 * bench/erlang/rtbench.erl, message for message.
 *
 *   rtbench spawn|ping-pong|ring|fan-out|skynet|supervisor
 *
 * RTBENCH_SCHEDULERS=N in the environment runs N schedulers instead of
 * one per core (to see what crossing cores costs a workload).
 *
 * One workload per process, so the peak resident size (VmHWM) belongs to
 * that workload alone. The result is one JSON line on stdout; the exit
 * status is 0 when the workload finished and checked its result.
 *
 * The main thread is a plain thread: it starts the system, spawns the
 * actors of a workload, takes the clock, and waits on a port for the
 * message that says the work is done. Every wait has a deadline, and the
 * whole process has an alarm, so a hang in the runtime ends the run with
 * a message instead of stalling the suite.
 */
#include <rt.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    SPAWN_N = 1000000,
    PINGPONG_N = 2000000,
    RING_SIZE = 503,
    RING_HOPS = 10000000,
    FAN_SUBS = 512,
    FAN_ROUNDS = 20000,
    /* Rounds the fan-out sender issues in one turn before it yields. */
    FAN_CHUNK = 8,
    SKYNET_SIZE = 1000000,
    SUP_CHILDREN = 10000,
    SUP_CRASHES = 100000,
    /* Crashes in flight at once, each on a different child. */
    SUP_WINDOW = 100,
    /* Milliseconds to wait after a refused send before trying again. */
    RETRY_MS = 1,
    /* No workload may run longer than this, in seconds. */
    DEADLINE_S = 600,
    /* Nor any single wait on the port, in milliseconds. */
    WAIT_MS = 300000,
};

#define SKYNET_SUM 499999500000ull

_Static_assert(SUP_WINDOW < SUP_CHILDREN, "a crash per child in flight");

/* Message types of the workloads. */
enum {
    M_GO = 1, /* start; from the main thread */
    M_DONE,   /* one unit of work done (a reply, an ack, the end) */
    M_PING,
    M_PONG,
    M_NEXT,    /* ring: payload the next member's id */
    M_TOKEN,   /* ring: payload the hops still to make */
    M_FAN,     /* fan-out: payload the round */
    M_RETRY,   /* try refused sends again */
    M_SUM,     /* skynet: payload a partial sum */
    M_CRASH,   /* supervisor: the child's handler fails */
    M_STARTED, /* supervisor: payload a child's index and id */
    M_READY,
};

static struct {
    const char *workload;
    rt_system_t *sys;
    rt_port_t *port;
    rt_id_t port_id;
} g;

/* ---- helpers ------------------------------------------------------------ */

static _Noreturn void die(const char *what, int rc)
{
    fprintf(stderr, "rtbench %s: %s: %s\n", g.workload, what,
            rc ? rt_strerror(rc) : "failed");
    fflush(stderr);
    _exit(1);
}

static void must(int rc, const char *what)
{
    if (rc < 0)
        die(what, rc);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A "Name:   123 kB" field of /proc/self/status, in kB; -1 if absent. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t len = strlen(field);
    long kb = -1;

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kb = strtol(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static int send_u64(rt_id_t to, uint32_t type, uint64_t v)
{
    rt_msg_t *m = rt_msg_new(type, sizeof v);

    if (!m)
        return RT_ENOMEM;
    memcpy(m->data, &v, sizeof v);
    return rt_send(g.sys, to, m);
}

static int send_empty(rt_id_t to, uint32_t type)
{
    rt_msg_t *m = rt_msg_new(type, 0);

    if (!m)
        return RT_ENOMEM;
    return rt_send(g.sys, to, m);
}

static uint64_t msg_u64(const rt_msg_t *m)
{
    uint64_t v;

    memcpy(&v, m->data, sizeof v);
    return v;
}

static rt_id_t spawn_or_die(const rt_behaviour_t *b, void *arg,
                            uint32_t mailbox_limit)
{
    rt_spawn_opts_t opts = {.mailbox_limit = mailbox_limit};
    int err = 0;
    rt_id_t id = rt_spawn(g.sys, b, arg, &opts, &err);

    if (id == 0)
        die("rt_spawn", err);
    return id;
}

/* Waits on the port for a message of `type`; anything else (a DOWN from a
 * monitored supervisor, say) or the deadline ends the run. Returns the
 * message's u64 payload, or 0 if it has none. */
static uint64_t wait_for(uint32_t type, const char *what)
{
    rt_msg_t *m = rt_port_recv(g.port, WAIT_MS);
    uint64_t v = 0;

    if (!m) {
        fprintf(stderr, "rtbench %s: waited %d ms for %s in vain\n", g.workload,
                WAIT_MS, what);
        _exit(1);
    }
    if (m->type != type) {
        fprintf(stderr, "rtbench %s: waiting for %s, got type %#x\n",
                g.workload, what, (unsigned)m->type);
        _exit(1);
    }
    if (m->size >= sizeof v)
        v = msg_u64(m);
    rt_msg_free(m);
    return v;
}

/* ---- the JSON line ----------------------------------------------------------
 */

static void json_begin(void)
{
    printf("{\"name\":\"%s\",\"impl\":\"parley\"", g.workload);
}

static void json_num(const char *key, double v)
{
    printf(",\"%s\":%.6f", key, v);
}

static void json_int(const char *key, long long v)
{
    printf(",\"%s\":%lld", key, v);
}

/* The runtime's own counters, to check the work against: a supervisor
 * run must show a crash per restart, a fan-out run its refused sends. */
static void json_system_info(void)
{
    rt_system_info_t si;

    rt_system_info(g.sys, &si);
    json_int("rt_spawned", (long long)si.spawned);
    json_int("rt_crashed", (long long)si.crashed);
    json_int("rt_mailbox_full", (long long)si.mailbox_full);
    /* how the work fell between the schedulers: a bimodal workload shows
     * its mode here */
    for (int i = 0; i < si.schedulers; i++) {
        rt_sched_info_t x;
        char key[32];
        if (rt_sched_info(g.sys, i, &x) < 0)
            continue;
        snprintf(key, sizeof(key), "rt_s%d_messages", i);
        json_int(key, (long long)x.messages);
        snprintf(key, sizeof(key), "rt_s%d_steals", i);
        json_int(key, (long long)x.steals);
        snprintf(key, sizeof(key), "rt_s%d_turns", i);
        json_int(key, (long long)x.turns);
        snprintf(key, sizeof(key), "rt_s%d_sleeps", i);
        json_int(key, (long long)x.sleeps);
    }
}

static void json_end(void)
{
    json_system_info();
    json_int("peak_rss_kb", status_kb("VmHWM"));
    printf("}\n");
    fflush(stdout);
}

static void report_rate(double seconds, double work)
{
    json_begin();
    json_num("seconds", seconds);
    json_num("rate", work / seconds);
}

/* ---- 1. spawn: a million idle actors, then one message each -------------- */

/* Waits for M_GO and answers its sender, then ends. */
static int waiter_handle(rt_actor_t *self, rt_msg_t *m)
{
    if (m->type != M_GO)
        return RT_CONTINUE;
    must(send_empty(m->from, M_DONE), "waiter reply");
    return RT_STOP;
}

static const rt_behaviour_t waiter_b = {
    .kind = "waiter",
    .handle = waiter_handle,
};

/* What the spawn driver measured; read by main after its M_DONE. */
static struct {
    double spawn_s, reply_s, reply_t0;
    long rss0_kb, rss1_kb;
    rt_id_t *ids;
    uint32_t replies;
} sp;

static void spawn_phase(void)
{
    int err = 0;
    double t0;

    /* The id array is written before the baseline so that the delta holds
     * the actors only. */
    sp.ids = malloc(sizeof *sp.ids * SPAWN_N);
    if (!sp.ids)
        die("malloc", RT_ENOMEM);
    memset(sp.ids, 0xff, sizeof *sp.ids * SPAWN_N);
    sp.rss0_kb = status_kb("VmRSS");
    t0 = now();
    for (uint32_t i = 0; i < SPAWN_N; i++) {
        sp.ids[i] = rt_spawn(g.sys, &waiter_b, NULL, NULL, &err);
        if (sp.ids[i] == 0)
            die("rt_spawn", err);
    }
    sp.spawn_s = now() - t0;
    sp.rss1_kb = status_kb("VmRSS");
}

static int spawn_driver_handle(rt_actor_t *self, rt_msg_t *m)
{
    if (m->type == M_GO) {
        spawn_phase();
        sp.reply_t0 = now();
        for (uint32_t i = 0; i < SPAWN_N; i++)
            must(send_empty(sp.ids[i], M_GO), "send go");
        return RT_CONTINUE;
    }
    if (m->type == M_DONE && ++sp.replies == SPAWN_N) {
        sp.reply_s = now() - sp.reply_t0;
        must(send_empty(g.port_id, M_DONE), "send to port");
        return RT_STOP;
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t spawn_driver_b = {
    .kind = "spawn-driver",
    .handle = spawn_driver_handle,
};

static void bench_spawn(void)
{
    /* Room for every reply at once: the driver is busy sending while they
     * arrive. */
    rt_id_t driver = spawn_or_die(&spawn_driver_b, NULL, 2 * SPAWN_N);
    long per_actor;

    must(send_empty(driver, M_GO), "send go");
    wait_for(M_DONE, "replies");
    per_actor = (sp.rss1_kb - sp.rss0_kb) * 1024 / SPAWN_N;
    report_rate(sp.spawn_s, SPAWN_N);
    json_int("bytes_per_actor", per_actor);
    json_num("reply_seconds", sp.reply_s);
    json_num("reply_rate", SPAWN_N / sp.reply_s);
    json_end();
    free(sp.ids);
}

/* ---- 2. ping-pong: two actors, round trips ------------------------------- */

static struct {
    rt_id_t pong;
} pp;

static int pong_handle(rt_actor_t *self, rt_msg_t *m)
{
    if (m->type == M_PING)
        must(send_empty(m->from, M_PONG), "pong");
    return RT_CONTINUE;
}

static int ping_handle(rt_actor_t *self, rt_msg_t *m)
{
    uint32_t *left = rt_state(self);

    if (m->type == M_GO) {
        *left = PINGPONG_N;
    } else if (m->type == M_PONG && --*left == 0) {
        must(send_empty(g.port_id, M_DONE), "send to port");
        return RT_STOP;
    }
    must(send_empty(pp.pong, M_PING), "ping");
    return RT_CONTINUE;
}

static const rt_behaviour_t pong_b = {.kind = "pong", .handle = pong_handle};
static const rt_behaviour_t ping_b = {
    .kind = "ping",
    .state_size = sizeof(uint32_t),
    .handle = ping_handle,
};

static void bench_pingpong(void)
{
    rt_id_t ping;
    double t0;

    pp.pong = spawn_or_die(&pong_b, NULL, 0);
    ping = spawn_or_die(&ping_b, NULL, 0);
    t0 = now();
    must(send_empty(ping, M_GO), "send go");
    wait_for(M_DONE, "the last pong");
    report_rate(now() - t0, PINGPONG_N);
    json_end();
}

/* ---- 3. ring: a token passed round 503 actors ---------------------------- */

/* A member learns its successor from M_NEXT; the token carries the hops
 * still to make, and the member that gets it with none left tells the
 * port. */
static int ring_handle(rt_actor_t *self, rt_msg_t *m)
{
    rt_id_t *next = rt_state(self);
    uint64_t hops;

    if (m->type == M_NEXT) {
        *next = msg_u64(m);
    } else if (m->type == M_TOKEN) {
        hops = msg_u64(m);
        if (hops == 0)
            must(send_empty(g.port_id, M_DONE), "send to port");
        else
            must(send_u64(*next, M_TOKEN, hops - 1), "pass token");
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t ring_b = {
    .kind = "ring",
    .state_size = sizeof(rt_id_t),
    .handle = ring_handle,
};

static void bench_ring(void)
{
    rt_id_t ids[RING_SIZE];
    double t0;

    for (int i = 0; i < RING_SIZE; i++)
        ids[i] = spawn_or_die(&ring_b, NULL, 0);
    for (int i = 0; i < RING_SIZE; i++)
        must(send_u64(ids[i], M_NEXT, ids[(i + 1) % RING_SIZE]), "next");
    t0 = now();
    must(send_u64(ids[0], M_TOKEN, RING_HOPS), "send token");
    wait_for(M_DONE, "the token");
    report_rate(now() - t0, RING_HOPS);
    json_end();
}

/* ---- 4. fan-out: one sender, 512 subscribers, acks to a collector -------- */

/*
 * Pipelined without flow control, as on the BEAM: the sender issues every
 * round without waiting for acks. Mailboxes keep their default bound, so a
 * send can be refused with RT_EFULL. Nothing is lost for it: the refused
 * message is counted, its sender asks to be told when the receiver has
 * room (rt_await_room) and then tries again (the sender from the
 * subscriber it stopped at, a subscriber with the acks it owes). The JSON
 * line reports how many sends were refused.
 */
static struct {
    rt_id_t subs[FAN_SUBS];
    rt_id_t collector;
    /* Counted by actors, read by main after the collector's M_DONE. */
    _Atomic uint64_t refused_fan, refused_ack;
} fan;

typedef struct fan_sender {
    uint32_t round, next_sub;
} fan_sender_t;

typedef struct fan_sub {
    uint64_t owed; /* acks refused, to send again */
    bool retry_armed;
} fan_sub_t;

/* After a refusal by `to`: waits to be told of room (RT_MSG_ROOM), or, if
 * that cannot be had, tries again after RETRY_MS. */
static void retry_when_room(rt_actor_t *self, rt_id_t to)
{
    rt_msg_t *m;

    if (rt_await_room(self, to) == 0)
        return;
    if (!(m = rt_msg_new(M_RETRY, 0)))
        die("rt_msg_new", RT_ENOMEM);
    if (rt_send_after(g.sys, rt_self(self), m, RETRY_MS) < 0)
        die("rt_send_after", RT_EINVAL);
}

/* Sends up to FAN_CHUNK rounds, then yields with a message to itself, as
 * the BEAM preempts a sender when its reductions run out. */
static int fan_sender_handle(rt_actor_t *self, rt_msg_t *m)
{
    fan_sender_t *s = rt_state(self);
    uint32_t end = s->round + FAN_CHUNK;
    int rc;

    for (; s->round < FAN_ROUNDS && s->round < end; s->round++) {
        for (; s->next_sub < FAN_SUBS; s->next_sub++) {
            rc = send_u64(fan.subs[s->next_sub], M_FAN, s->round);
            if (rc == RT_EFULL) {
                atomic_fetch_add_explicit(&fan.refused_fan, 1,
                                          memory_order_relaxed);
                retry_when_room(self, fan.subs[s->next_sub]);
                return RT_CONTINUE;
            }
            must(rc, "fan out");
        }
        s->next_sub = 0;
    }
    if (s->round == FAN_ROUNDS)
        return RT_STOP;
    must(send_empty(rt_self(self), M_RETRY), "yield");
    return RT_CONTINUE;
}

/* Sends the acks owed; false if the collector refused one. */
static bool fan_pay(rt_actor_t *self, fan_sub_t *s)
{
    int rc;

    while (s->owed > 0) {
        rc = send_empty(fan.collector, M_DONE);
        if (rc == RT_EFULL) {
            atomic_fetch_add_explicit(&fan.refused_ack, 1,
                                      memory_order_relaxed);
            return false;
        }
        must(rc, "ack");
        s->owed--;
    }
    return true;
}

static int fan_sub_handle(rt_actor_t *self, rt_msg_t *m)
{
    fan_sub_t *s = rt_state(self);

    if (m->type == M_FAN)
        s->owed++;
    else if (m->type == M_RETRY || m->type == RT_MSG_ROOM)
        s->retry_armed = false;
    /* while waiting for room, a refused send would only be refused again */
    if (!s->retry_armed && !fan_pay(self, s)) {
        s->retry_armed = true;
        retry_when_room(self, fan.collector);
    }
    return RT_CONTINUE;
}

static int fan_collector_handle(rt_actor_t *self, rt_msg_t *m)
{
    uint64_t *acks = rt_state(self);

    if (m->type == M_DONE && ++*acks == (uint64_t)FAN_SUBS * FAN_ROUNDS) {
        must(send_empty(g.port_id, M_DONE), "send to port");
        return RT_STOP;
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t fan_sender_b = {
    .kind = "fan-sender",
    .state_size = sizeof(fan_sender_t),
    .handle = fan_sender_handle,
};
static const rt_behaviour_t fan_sub_b = {
    .kind = "fan-sub",
    .state_size = sizeof(fan_sub_t),
    .handle = fan_sub_handle,
};
static const rt_behaviour_t fan_collector_b = {
    .kind = "fan-collector",
    .state_size = sizeof(uint64_t),
    .handle = fan_collector_handle,
};

static void bench_fanout(void)
{
    const double total = (double)FAN_SUBS * FAN_ROUNDS;
    rt_id_t sender;
    double t0;

    fan.collector = spawn_or_die(&fan_collector_b, NULL, 0);
    for (int i = 0; i < FAN_SUBS; i++)
        fan.subs[i] = spawn_or_die(&fan_sub_b, NULL, 0);
    sender = spawn_or_die(&fan_sender_b, NULL, 0);
    t0 = now();
    must(send_empty(sender, M_GO), "send go");
    wait_for(M_DONE, "the last ack");
    report_rate(now() - t0, total);
    json_int("deliveries", (long long)total);
    json_int("refused_fan", (long long)atomic_load(&fan.refused_fan));
    json_int("refused_ack", (long long)atomic_load(&fan.refused_ack));
    json_end();
}

/* ---- 5. skynet: a ten-way tree of a million leaves ----------------------- */

typedef struct skynet_arg {
    uint64_t num, size;
    rt_id_t parent;
} skynet_arg_t;

typedef struct skynet {
    rt_id_t parent;
    uint64_t sum;
    uint32_t pending;
} skynet_t;

static const rt_behaviour_t skynet_b;

static void skynet_spawn(uint64_t num, uint64_t size, rt_id_t parent)
{
    skynet_arg_t *a = malloc(sizeof *a);
    int err = 0;

    if (!a)
        die("malloc", RT_ENOMEM);
    *a = (skynet_arg_t){.num = num, .size = size, .parent = parent};
    if (rt_spawn(g.sys, &skynet_b, a, NULL, &err) == 0)
        die("rt_spawn", err);
}

/* A leaf sends its number and ends; an inner node spawns ten children and
 * waits for their sums. The spawner allocates the argument, init frees
 * it. */
static int skynet_init(rt_actor_t *self, void *arg)
{
    skynet_arg_t a = *(skynet_arg_t *)arg;
    skynet_t *s = rt_state(self);

    free(arg);
    if (a.size == 1) {
        must(send_u64(a.parent, M_SUM, a.num), "leaf sum");
        rt_exit(self, RT_NORMAL);
        return 0;
    }
    s->parent = a.parent;
    s->pending = 10;
    for (uint64_t i = 0; i < 10; i++)
        skynet_spawn(a.num + i * (a.size / 10), a.size / 10, rt_self(self));
    return 0;
}

static int skynet_handle(rt_actor_t *self, rt_msg_t *m)
{
    skynet_t *s = rt_state(self);

    if (m->type != M_SUM)
        return RT_CONTINUE;
    s->sum += msg_u64(m);
    if (--s->pending > 0)
        return RT_CONTINUE;
    must(send_u64(s->parent, M_SUM, s->sum), "sum");
    return RT_STOP;
}

static const rt_behaviour_t skynet_b = {
    .kind = "skynet",
    .state_size = sizeof(skynet_t),
    .init = skynet_init,
    .handle = skynet_handle,
};

static long long skynet_actors(uint64_t size)
{
    return size == 1 ? 1 : 1 + 10 * skynet_actors(size / 10);
}

static void bench_skynet(void)
{
    double t0 = now();
    uint64_t sum;
    long long actors = skynet_actors(SKYNET_SIZE);

    skynet_spawn(0, SKYNET_SIZE, g.port_id);
    sum = wait_for(M_SUM, "the sum");
    if (sum != SKYNET_SUM) {
        fprintf(stderr, "rtbench skynet: sum %llu, expected %llu\n",
                (unsigned long long)sum, SKYNET_SUM);
        _exit(1);
    }
    report_rate(now() - t0, (double)actors);
    json_int("actors", actors);
    json_int("result", (long long)sum);
    json_end();
}

/* ---- 6. supervisor: restarts under one_for_one --------------------------- */

/*
 * The driver crashes children round-robin, keeping SUP_WINDOW crashes in
 * flight (each on a different child), and counts the restarts it hears of:
 * every start of a child, first or not, reports M_STARTED with its index
 * and id. A child crashes by failing its handler on M_CRASH.
 */
typedef struct sup_started {
    uint32_t index;
    rt_id_t id;
} sup_started_t;

typedef struct sup_driver {
    rt_id_t *ids;   /* each child's id, from its latest M_STARTED */
    bool *crashing; /* crash sent, restart not yet heard of */
    uint32_t initial, sent, in_flight, cursor;
    bool going;
} sup_driver_t;

static struct {
    uint32_t index[SUP_CHILDREN];
    rt_child_spec_t children[SUP_CHILDREN];
    rt_sup_spec_t spec;
    rt_id_t driver;
} sv;

static int sup_child_init(rt_actor_t *self, void *arg)
{
    sup_started_t st = {.index = *(uint32_t *)arg, .id = rt_self(self)};
    rt_msg_t *m = rt_msg_new(M_STARTED, sizeof st);

    if (!m)
        return RT_ENOMEM;
    memcpy(m->data, &st, sizeof st);
    return rt_send(g.sys, sv.driver, m);
}

static int sup_child_handle(rt_actor_t *self, rt_msg_t *m)
{
    return m->type == M_CRASH ? RT_ECRASH : RT_CONTINUE;
}

static const rt_behaviour_t sup_child_b = {
    .kind = "sup-child",
    .init = sup_child_init,
    .handle = sup_child_handle,
};

/* Crashes the next child, round-robin, whose last crash has been followed
 * by its restart: a crash sent to a child still being restarted would go to
 * its dead predecessor's id. With SUP_WINDOW far below SUP_CHILDREN the
 * search is short. */
static void sup_crash_next(sup_driver_t *d)
{
    while (d->crashing[d->cursor])
        d->cursor = (d->cursor + 1) % SUP_CHILDREN;
    must(send_empty(d->ids[d->cursor], M_CRASH), "crash");
    d->crashing[d->cursor] = true;
    d->cursor = (d->cursor + 1) % SUP_CHILDREN;
    d->sent++;
}

static int sup_started(sup_driver_t *d, const rt_msg_t *m)
{
    sup_started_t st;

    memcpy(&st, m->data, sizeof st);
    d->ids[st.index] = st.id;
    d->crashing[st.index] = false;
    if (!d->going) {
        if (++d->initial == SUP_CHILDREN)
            must(send_empty(g.port_id, M_READY), "send to port");
        return RT_CONTINUE;
    }
    if (d->sent < SUP_CRASHES) {
        sup_crash_next(d);
        return RT_CONTINUE;
    }
    if (--d->in_flight == 0) {
        must(send_empty(g.port_id, M_DONE), "send to port");
        return RT_STOP;
    }
    return RT_CONTINUE;
}

static int sup_driver_handle(rt_actor_t *self, rt_msg_t *m)
{
    sup_driver_t *d = rt_state(self);

    if (!d->ids) {
        d->ids = rt_alloc(self, sizeof *d->ids * SUP_CHILDREN);
        d->crashing = rt_alloc(self, sizeof *d->crashing * SUP_CHILDREN);
        if (!d->ids || !d->crashing)
            return RT_ENOMEM;
        memset(d->crashing, 0, sizeof *d->crashing * SUP_CHILDREN);
    }
    if (m->type == M_STARTED)
        return sup_started(d, m);
    if (m->type == M_GO) {
        d->going = true;
        d->in_flight = SUP_WINDOW;
        while (d->sent < SUP_WINDOW)
            sup_crash_next(d);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t sup_driver_b = {
    .kind = "sup-driver",
    .state_size = sizeof(sup_driver_t),
    .handle = sup_driver_handle,
};

static void bench_supervisor(void)
{
    rt_id_t sup;
    int err = 0;
    double t0;

    for (uint32_t i = 0; i < SUP_CHILDREN; i++) {
        sv.index[i] = i;
        sv.children[i] = (rt_child_spec_t){
            .name = "child",
            .behaviour = &sup_child_b,
            .arg = &sv.index[i],
            .restart = RT_PERMANENT,
        };
    }
    /* An intensity above the total of crashes: the limit never trips. */
    sv.spec = (rt_sup_spec_t){
        .name = "bench",
        .strategy = RT_ONE_FOR_ONE,
        .intensity = 10 * SUP_CRASHES,
        .period_ms = 1000,
        .children = sv.children,
        .nchildren = SUP_CHILDREN,
    };
    sv.driver = spawn_or_die(&sup_driver_b, NULL, 0);
    sup = rt_sup_start(g.sys, &sv.spec, &err);
    if (sup == 0)
        die("rt_sup_start", err);
    rt_port_monitor(g.port, sup);
    wait_for(M_READY, "the first start of every child");
    t0 = now();
    must(send_empty(sv.driver, M_GO), "send go");
    wait_for(M_DONE, "the last restart");
    report_rate(now() - t0, SUP_CRASHES);
    json_int("restarts", SUP_CRASHES);
    json_int("children", SUP_CHILDREN);
    json_end();
}

/* ---- main -------------------------------------------------------------------
 */

static const struct workload {
    const char *name;
    void (*run)(void);
} workloads[] = {
    {"spawn", bench_spawn},   {"ping-pong", bench_pingpong},
    {"ring", bench_ring},     {"fan-out", bench_fanout},
    {"skynet", bench_skynet}, {"supervisor", bench_supervisor},
};

static void on_alarm(int sig)
{
    static const char msg[] = "rtbench: deadline passed\n";

    (void)sig;
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0)
        _exit(2);
    _exit(2);
}

int main(int argc, char **argv)
{
    const struct workload *w = NULL;
    rt_config_t cfg = {0}; /* a scheduler per core, as the BEAM */
    int err = 0;

    for (size_t i = 0; argc == 2 && i < sizeof workloads / sizeof workloads[0];
         i++)
        if (strcmp(argv[1], workloads[i].name) == 0)
            w = &workloads[i];
    if (!w) {
        fprintf(stderr, "usage: rtbench spawn|ping-pong|ring|fan-out|"
                        "skynet|supervisor\n");
        return 2;
    }
    g.workload = w->name;
    if (getenv("RTBENCH_SCHEDULERS"))
        cfg.schedulers = atoi(getenv("RTBENCH_SCHEDULERS"));
    signal(SIGALRM, on_alarm);
    alarm(DEADLINE_S);
    g.sys = rt_system_start(&cfg, &err);
    if (!g.sys)
        die("rt_system_start", err);
    g.port = rt_port_new(g.sys);
    if (!g.port)
        die("rt_port_new", RT_ENOMEM);
    g.port_id = rt_port_id(g.port);
    w->run();
    rt_port_free(g.port);
    rt_system_stop(g.sys);
    return 0;
}
