/*
 * bench/loadgen/worker.c - one worker process: a libuv loop, its share
 * of the connections, and the workloads' client side. See lg.h.
 *
 * A worker owns accounts [first, first + count) of the token file; count
 * is even and first is even, so account i talks to account i ^ 1 and both
 * live in the same worker (group: count is whole groups, plus the
 * connections left over in the last worker). The parent starts each phase with
 * LG_CMD_GO; the worker answers with an LG_REC_PHASE record when the phase's
 * units of work are all done or failed, or when the phase's time is up (the
 * rest then count as failed). Every 250 ms it sends LG_REC_PROGRESS.
 *
 * Phases of each workload (units of work in brackets):
 *   idle             1 connect + resume all [connections]
 *   connect          1 the same, timed: the rate is the result
 *   reconnect-storm  1 connect all; 2 every client closes and
 *                    reconnects at once [reconnections]
 *   one-to-one       1 connect all; 2 each sends to its partner for
 *                    --duration at the offered rate [messages received]
 *   catch-up         1 connect the even accounts; 2 they send --backlog
 *                    messages each to their offline partners [sends];
 *                    3 the partners connect and drain [messages received]
 *   group            1 connect all; 2 the first member of each group of
 *                    --group-size creates it with the others [groups
 *                    whose every member has its `created` event]; 3 the
 *                    creators send to their groups for --duration at the
 *                    offered rate [messages at every member]
 *
 * A group's members all live in one worker (the parent splits on group
 * boundaries), so the worker alone sees when the last one has a message.
 *
 * Latency of a message: CLOCK_MONOTONIC at the time it was due (not when
 * it left, so a late generator shows up as latency rather than hiding
 * it), written in the body, read by the receiver. All workers run on one
 * machine, so their clocks agree.
 */
#include "lg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "client.h"
#include "codec.h"

#define PROGRESS_MS    250
#define TICK_MS        1
#define ACK_EVERY      50  /* entries between two acks of one connection */
#define ACK_TICKS      100 /* ticks between two rounds of acks (100 ms) */
#define SEND_WINDOW    16  /* sends in flight per connection */
#define DRAIN_GRACE_NS 5000000000ull /* after traffic, for the last replies */
#define QUIT_GRACE_MS  3000
#define GROUP_RING     256  /* messages of a group not yet at every member */
#define GROUP_WINDOW   16   /* as fast as possible: that many in flight */
#define GROUP_ACK_TICK 1000 /* ticks between two rounds of group acks */

enum cstate { C_NONE, C_CONNECTING, C_OPEN, C_CLOSING };

enum wl_id { WL_IDLE, WL_CONNECT, WL_STORM, WL_ONE2ONE, WL_CATCHUP, WL_GROUP };

const lg_workload_t lg_workloads[] = {
    [WL_IDLE] = {"idle",
                 "hold N resumed connections; server memory each",
                 1,
                 false,
                 {"connect+resume"}},
    [WL_CONNECT] = {"connect",
                    "connect + resume N clients, timed",
                    1,
                    false,
                    {"connect+resume"}},
    [WL_STORM] = {"reconnect-storm",
                  "N clients connected, then all drop and reconnect",
                  2,
                  false,
                  {"connect+resume", "drop to resumed"}},
    [WL_ONE2ONE] = {"one-to-one",
                    "pairs send messages at a fixed rate; receipts",
                    2,
                    true,
                    {"connect+resume", "send to receive"}},
    [WL_CATCHUP] = {"catch-up",
                    "offline receivers get a backlog on reconnect",
                    3,
                    true,
                    {"connect+resume", "send to stored", "connect to msg"}},
    [WL_GROUP] = {"group",
                  "one sender per group; time to the last member",
                  3,
                  true,
                  {"connect+resume", "create to all in", "send to all in"}},
    {NULL, NULL, 0, false, {NULL}},
};

const lg_workload_t *lg_workload_find(const char *name)
{
    for (const lg_workload_t *w = lg_workloads; w->name; w++)
        if (!strcmp(w->name, name))
            return w;
    return NULL;
}

typedef struct worker worker_t;

typedef struct conn {
    proto_client_t *cl;
    worker_t *w;
    int idx; /* into the worker's accounts */
    enum cstate state;
    bool reconnect; /* storm: connect again once closed */
    bool counted;   /* this connect is a unit of the current phase */
    uint64_t t0;    /* start of what the latency measures */
    uint64_t seq, acked;
    uint32_t inflight;
    uint32_t got;  /* catch-up: messages received */
    uint64_t left; /* catch-up: messages still to send */
    /* group: the last `created` seen, and the position in its stream */
    uint64_t gid_seen, gseq, gacked;
} conn_t;

/* A message of a group on its way to the members. */
typedef struct gslot {
    uint64_t k;   /* its number in the group, written in the body */
    uint64_t due; /* when it was due (or sent, at full speed) */
    uint32_t got; /* members that have it */
    bool live;
} gslot_t;

/* A group of conns[first .. first + group_size - 1]; first sends. */
typedef struct group {
    int first;
    uint64_t gid;      /* 0 until group.create is answered */
    uint64_t t0;       /* group.create sent */
    int joined;        /* members other than the sender with `created` */
    bool done;         /* phase 2: counted */
    uint64_t next;     /* messages issued */
    uint32_t inflight; /* issued, not yet at every member */
    gslot_t *ring;     /* GROUP_RING slots */
} group_t;

struct worker {
    const lg_opts_t *o;
    const lg_workload_t *wl;
    enum wl_id id;
    const lg_account_t *acc;
    int count, fd, index;
    uv_loop_t loop;
    uv_poll_t ctl;
    uv_timer_t progress, tick, deadline;
    proto_client_config_t cfg[LG_MAX_SOURCES + 1]; /* one per source */
    char src[LG_MAX_SOURCES][16];
    conn_t *conns;
    uint8_t *body;
    uint64_t cid;
    lg_counts_t c;
    lg_hist_t hist;
    /* the current phase */
    int phase;
    bool active, quitting;
    uint64_t t_first, t_last, ok, failed, target;
    /* connects to issue: a FIFO of connection indices */
    int *queue, qhead, qlen;
    bool connect_units; /* the phase's units are connects */
    int handshakes, live;
    double rate; /* per second, this worker's share; 0 = max */
    uint64_t pace_t0, issued;
    /* traffic */
    uint64_t traffic_end;
    int cursor;
    uint64_t ticks;
    /* group workload */
    group_t *groups;
    int ngroups;
};

static worker_t W;

/* ---- reporting to the parent ---- */

static void send_rec(worker_t *w, uint32_t type, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    lg_rec_head_t h = {type, (uint32_t)(alen + blen)};
    const void *parts[3] = {&h, a, b};
    size_t lens[3] = {sizeof(h), alen, blen};

    for (int i = 0; i < 3; i++) {
        const uint8_t *p = parts[i];
        size_t n = lens[i];
        while (n > 0) {
            ssize_t k = write(w->fd, p, n);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                _exit(3); /* the parent is gone */
            p += k;
            n -= (size_t)k;
        }
    }
}

static void fill_rec(worker_t *w, lg_phase_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    r->phase = w->phase;
    r->t_first = w->t_first;
    r->t_last = w->t_last;
    r->ok = w->ok;
    r->failed = w->failed;
    r->counts = w->c;
}

static void on_progress(uv_timer_t *t)
{
    lg_phase_rec_t r;

    fill_rec(&W, &r);
    send_rec(&W, LG_REC_PROGRESS, &r, sizeof(r), NULL, 0);
}

static void finish_phase(worker_t *w)
{
    lg_phase_rec_t r;

    if (!w->active)
        return;
    w->active = false;
    uv_timer_stop(&w->deadline);
    uv_timer_stop(&w->tick);
    if (!w->t_last)
        w->t_last = lg_now_ns();
    fill_rec(w, &r);
    size_t n = lg_hist_pack(&w->hist, NULL, 0);
    uint8_t *buf = malloc(n);
    if (!buf)
        _exit(4);
    lg_hist_pack(&w->hist, buf, n);
    send_rec(w, LG_REC_PHASE, &r, sizeof(r), buf, n);
    free(buf);
}

/* One unit of the phase is done (ok) or failed. */
static void unit_done(worker_t *w, bool ok)
{
    if (!w->active)
        return;
    if (ok)
        w->ok++;
    else
        w->failed++;
    w->t_last = lg_now_ns();
    /* traffic phases end on their clock, not on a count */
    if (w->target && w->ok + w->failed >= w->target)
        finish_phase(w);
}

/* ---- connections ---- */

static void pump(worker_t *w);
static void close_conn(worker_t *w, conn_t *c);

static void on_resumed(proto_client_t *cl, void *arg, int status,
                       const msgpack_object *reply, const uint8_t *raw,
                       size_t len)
{
    conn_t *c = arg;
    worker_t *w = c->w;
    bool counted = c->counted;

    c->counted = false;
    w->handshakes--;
    if (w->quitting)
        return; /* cancelled by quit(): no failure of the run */
    if (status == 0) {
        c->state = C_OPEN;
        w->c.open++;
        w->c.resumed++;
        if (counted && w->active) {
            lg_hist_record(&w->hist, lg_now_ns() - c->t0);
            unit_done(w, true);
        }
    } else {
        if (status == -ECONNRESET)
            w->c.conn_fail++;
        else
            w->c.resume_fail++;
        w->c.last_error = status;
        if (counted)
            unit_done(w, false);
        if (c->state == C_CONNECTING && status > 0)
            close_conn(w, c);
    }
    pump(w);
}

static int start_connect(worker_t *w, conn_t *c, bool counted)
{
    const lg_opts_t *o = w->o;
    proto_req_t req = {.op = PROTO_OP_RESUME};
    int rc;

    c->state = C_CONNECTING;
    c->counted = counted;
    /* spread over the sources, so no one address runs short of ports */
    const proto_client_config_t *cfg =
        &w->cfg[o->sources ? (w->index + c->idx) % o->sources : 0];
    rc = proto_client_connect(&w->loop, o->host, o->port, cfg, c, &c->cl);
    if (rc < 0)
        goto failed;
    w->live++;
    /* queued now, sent right after the upgrade: one round trip less */
    req.u.resume.token = (proto_bin_t){w->acc[c->idx].token, LG_TOKEN_LEN};
    int64_t id = proto_client_request(c->cl, &req, on_resumed, c);
    if (id < 0) {
        rc = (int)id;
        proto_client_close(c->cl);
        goto failed;
    }
    w->handshakes++;
    return 0;
failed:
    c->state = C_NONE;
    c->cl = NULL;
    w->c.conn_fail++;
    w->c.last_error = rc;
    if (counted)
        unit_done(w, false);
    return rc;
}

static void enqueue(worker_t *w, int idx)
{
    w->queue[(w->qhead + w->qlen) % w->count] = idx;
    w->qlen++;
}

/* Starts the queued connects that the window and the offered rate
 * allow. */
static void pump(worker_t *w)
{
    uint64_t due = UINT64_MAX;

    if (!w->active || w->quitting)
        return;
    if (w->rate > 0)
        due =
            (uint64_t)((double)(lg_now_ns() - w->pace_t0) * w->rate / 1e9) + 1;
    while (w->qlen > 0 && w->handshakes < w->o->window && w->issued < due) {
        conn_t *c = &w->conns[w->queue[w->qhead]];
        w->qhead = (w->qhead + 1) % w->count;
        w->qlen--;
        w->issued++;
        if (!w->t_first)
            w->t_first = lg_now_ns();
        if (!c->reconnect)
            c->t0 = lg_now_ns();
        c->reconnect = false;
        start_connect(w, c, w->connect_units);
    }
}

/* Close an open connection on purpose. */
static void close_conn(worker_t *w, conn_t *c)
{
    if (c->state == C_OPEN)
        w->c.open--;
    c->state = C_CLOSING;
    proto_client_close(c->cl);
}

static void on_close(proto_client_t *cl, void *user, int code)
{
    conn_t *c = user;
    worker_t *w = c->w;

    if (c->state == C_OPEN) { /* the server ended it */
        w->c.open--;
        w->c.dropped++;
    }
    c->cl = NULL;
    c->state = C_NONE;
    w->live--;
    if (w->quitting) {
        if (w->live == 0)
            uv_stop(&w->loop);
        return;
    }
    if (c->reconnect && w->active)
        enqueue(w, c->idx); /* storm: back in line to connect */
    pump(w);
}

/* ---- messages ---- */

/* A send in flight: its connection and when it left. */
struct send {
    conn_t *c;
    uint64_t t;
};

static void on_sent(proto_client_t *cl, void *arg, int status,
                    const msgpack_object *reply, const uint8_t *raw, size_t len)
{
    struct send *sd = arg;
    conn_t *c = sd->c;
    worker_t *w = c->w;
    uint64_t t = sd->t;

    free(sd);
    c->inflight--;
    if (status == 0) {
        w->c.sent++;
        if (w->id == WL_CATCHUP && w->phase == 2 && w->active) {
            lg_hist_record(&w->hist, lg_now_ns() - t);
            unit_done(w, true);
        }
    } else {
        w->c.send_err++;
        w->c.last_error = status;
        if (w->id == WL_CATCHUP && w->phase == 2)
            unit_done(w, false);
    }
}

static int send_msg(worker_t *w, conn_t *c, uint64_t due_ns)
{
    proto_req_t req = {.op = PROTO_OP_SEND};
    const lg_account_t *to = &w->acc[c->idx ^ 1];

    memcpy(w->body, &due_ns, sizeof(due_ns));
    req.u.send.to = (proto_str_t){to->name, (uint32_t)strlen(to->name)};
    req.u.send.cid = ++w->cid;
    req.u.send.body = (proto_bin_t){w->body, (uint32_t)w->o->body};
    struct send *sd = malloc(sizeof(*sd));
    if (!sd)
        return -ENOMEM;
    *sd = (struct send){c, lg_now_ns()};
    int64_t id = proto_client_request(c->cl, &req, on_sent, sd);
    if (id < 0) {
        free(sd);
        w->c.send_err++;
        w->c.last_error = (int)id;
        return (int)id;
    }
    c->inflight++;
    return 0;
}

static void ack(worker_t *w, conn_t *c)
{
    proto_req_t req = {.op = PROTO_OP_ACK};

    if (c->seq <= c->acked || c->state != C_OPEN)
        return;
    req.u.ack.upto = c->seq;
    if (proto_client_request(c->cl, &req, NULL, NULL) > 0)
        c->acked = c->seq;
}

static uint64_t get_uint(const msgpack_object *o, const char *key)
{
    const msgpack_object *v = proto_map_get(o, key);

    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static bool is_ev(const msgpack_object *ev, const char *name)
{
    const msgpack_object *v = proto_map_get(ev, "ev");
    size_t n = strlen(name);

    return v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == n &&
           !memcmp(v->via.str.ptr, name, n);
}

static void on_group_entry(worker_t *w, conn_t *c, const msgpack_object *ev,
                           uint64_t gid);

static void on_event(proto_client_t *cl, void *user, const msgpack_object *ev,
                     const uint8_t *raw, size_t len)
{
    conn_t *c = user;
    worker_t *w = c->w;
    uint64_t seq = get_uint(ev, "seq");
    uint64_t gid = get_uint(ev, "gid");

    /* a group's stream is numbered apart from the mailbox */
    if (gid && (is_ev(ev, "msg") || is_ev(ev, "group"))) {
        on_group_entry(w, c, ev, gid);
        return;
    }
    if (seq && seq <= c->seq)
        return; /* a replay after a lost ack */
    if (seq)
        c->seq = seq;
    if (is_ev(ev, "msg")) {
        const msgpack_object *b = proto_map_get(ev, "body");
        uint64_t t = 0, now = lg_now_ns();
        w->c.received++;
        uint64_t run = 0;
        if (b && b->type == MSGPACK_OBJECT_BIN && b->via.bin.size >= 16) {
            memcpy(&t, b->via.bin.ptr, sizeof(t));
            memcpy(&run, b->via.bin.ptr + 8, sizeof(run));
        }
        if (run != w->o->run_id) {
            /* left in the mailbox by an earlier run: not ours to time */
            w->c.stale++;
            goto acked;
        }
        if (w->active && w->id == WL_ONE2ONE && w->phase == 2) {
            if (t && t <= now)
                lg_hist_record(&w->hist, now - t);
            unit_done(w, true);
        } else if (w->active && w->id == WL_CATCHUP && w->phase == 3) {
            lg_hist_record(&w->hist, now - c->t0);
            unit_done(w, true);
        }
    } else if (is_ev(ev, "delivered")) {
        w->c.receipts++;
    }
acked:
    if (c->seq - c->acked >= ACK_EVERY)
        ack(w, c);
}

/* ---- groups ---- */

static group_t *conn_group(worker_t *w, conn_t *c)
{
    int s = w->o->group_size;

    if (!w->ngroups || c->idx >= w->ngroups * s)
        return NULL;
    return &w->groups[c->idx / s];
}

static void group_ack(conn_t *c, uint64_t gid, uint64_t upto)
{
    proto_req_t req = {.op = PROTO_OP_ACK};

    if (c->state != C_OPEN || !upto)
        return;
    req.has = 1u << PROTO_F_GID; /* optional: sent only when marked */
    req.u.ack.gid = gid;
    req.u.ack.upto = upto;
    proto_client_request(c->cl, &req, NULL, NULL);
}

static void group_ack_own(worker_t *w, conn_t *c)
{
    group_t *g = conn_group(w, c);

    if (!g || !g->gid || c->gid_seen != g->gid || c->gseq <= c->gacked)
        return;
    group_ack(c, g->gid, c->gseq);
    c->gacked = c->gseq;
}

/* Phase 2: the group exists and every member has its `created`. */
static void group_check_created(worker_t *w, group_t *g)
{
    if (g->done || !g->gid || g->joined < w->o->group_size - 1)
        return;
    g->done = true;
    if (w->active && w->phase == 2) {
        lg_hist_record(&w->hist, lg_now_ns() - g->t0);
        unit_done(w, true);
    }
}

static void on_group_created(proto_client_t *cl, void *arg, int status,
                             const msgpack_object *reply, const uint8_t *raw,
                             size_t len)
{
    group_t *g = arg;
    worker_t *w = &W;
    int s = w->o->group_size;
    uint64_t gid = status == 0 && reply ? get_uint(reply, "gid") : 0;

    if (!gid) {
        w->c.send_err++;
        w->c.last_error = status ? status : -EPROTO;
        g->done = true;
        if (w->phase == 2)
            unit_done(w, false);
        return;
    }
    g->gid = gid;
    /* members whose `created` came before this reply; a `created` of a
     * group of an earlier run is acked and forgotten */
    for (int i = g->first; i < g->first + s; i++) {
        conn_t *c = &w->conns[i];
        if (c->gid_seen == gid) {
            g->joined += i != g->first;
        } else if (c->gid_seen) {
            group_ack(c, c->gid_seen, c->gseq);
            c->gid_seen = c->gseq = c->gacked = 0;
        }
    }
    group_check_created(w, g);
}

static void group_create(worker_t *w, group_t *g)
{
    int s = w->o->group_size;
    conn_t *c = &w->conns[g->first];
    proto_req_t req = {.op = PROTO_OP_GROUP_CREATE};
    proto_str_t *names = calloc((size_t)s, sizeof(*names));

    if (!names || c->state != C_OPEN) {
        free(names);
        g->done = true;
        unit_done(w, false);
        return;
    }
    for (int i = 1; i < s; i++) {
        const char *n = w->acc[g->first + i].name;
        names[i - 1] = (proto_str_t){n, (uint32_t)strlen(n)};
    }
    req.u.group_create.name = proto_cstr("loadgen");
    req.u.group_create.members = (proto_names_t){names, (uint32_t)(s - 1)};
    g->t0 = lg_now_ns();
    if (proto_client_request(c->cl, &req, on_group_created, g) < 0) {
        g->done = true;
        w->c.send_err++;
        unit_done(w, false);
    }
    free(names); /* encoded by the request */
}

/* A member has message k of g. */
static void group_got(worker_t *w, group_t *g, uint64_t k)
{
    gslot_t *sl = &g->ring[k % GROUP_RING];
    uint64_t now = lg_now_ns();

    if (!sl->live || sl->k != k)
        return;
    if (++sl->got < (uint32_t)w->o->group_size - 1)
        return;
    sl->live = false;
    g->inflight--;
    if (w->active && w->phase == 3) {
        if (sl->due <= now)
            lg_hist_record(&w->hist, now - sl->due);
        unit_done(w, true);
    }
}

/* An entry of a group's stream: a `msg` or `group` event with `gid`. */
static void on_group_entry(worker_t *w, conn_t *c, const msgpack_object *ev,
                           uint64_t gid)
{
    group_t *g = conn_group(w, c);
    uint64_t seq = get_uint(ev, "seq");
    bool msg = is_ev(ev, "msg");

    if (msg)
        w->c.received++;
    if (g && !g->gid && !msg && c->gid_seen != gid) {
        /* perhaps the `created` of ours, before the creator's reply */
        if (c->gid_seen)
            group_ack(c, c->gid_seen, c->gseq);
        c->gid_seen = gid;
        c->gseq = seq;
        c->gacked = 0;
        return;
    }
    if (!g || gid != g->gid) {
        /* left over from a group of an earlier run */
        if (msg)
            w->c.stale++;
        group_ack(c, gid, seq);
        return;
    }
    if (c->gid_seen != gid) {
        c->gid_seen = gid;
        c->gseq = c->gacked = 0;
        if (c->idx != g->first) {
            g->joined++;
            group_check_created(w, g);
        }
    }
    if (seq && seq <= c->gseq)
        return; /* pushed again */
    if (seq)
        c->gseq = seq;
    if (msg && c->idx != g->first) {
        const msgpack_object *b = proto_map_get(ev, "body");
        uint64_t run = 0, k = 0;
        if (b && b->type == MSGPACK_OBJECT_BIN && b->via.bin.size >= 24) {
            memcpy(&run, b->via.bin.ptr + 8, sizeof(run));
            memcpy(&k, b->via.bin.ptr + 16, sizeof(k));
        }
        if (run == w->o->run_id)
            group_got(w, g, k);
        else
            w->c.stale++;
    }
    if (c->gseq - c->gacked >= ACK_EVERY)
        group_ack_own(w, c);
}

struct gsend {
    group_t *g;
    uint64_t k;
};

static void on_group_sent(proto_client_t *cl, void *arg, int status,
                          const msgpack_object *reply, const uint8_t *raw,
                          size_t len)
{
    struct gsend *sd = arg;
    group_t *g = sd->g;
    gslot_t *sl = &g->ring[sd->k % GROUP_RING];

    if (status == 0) {
        W.c.sent++;
    } else {
        W.c.send_err++;
        W.c.last_error = status;
        if (sl->live && sl->k == sd->k) { /* it will never arrive */
            sl->live = false;
            g->inflight--;
        }
    }
    free(sd);
}

static int group_send(worker_t *w, group_t *g, uint64_t due_ns)
{
    conn_t *c = &w->conns[g->first];
    proto_req_t req = {.op = PROTO_OP_GROUP_SEND};
    uint64_t k = g->next;
    gslot_t *sl = &g->ring[k % GROUP_RING];
    struct gsend *sd = malloc(sizeof(*sd));

    if (!sd)
        return -ENOMEM;
    *sd = (struct gsend){g, k};
    memcpy(w->body, &due_ns, sizeof(due_ns));
    memcpy(w->body + 16, &k, sizeof(k));
    req.u.group_send.gid = g->gid;
    req.u.group_send.cid = ++w->cid;
    req.u.group_send.body = (proto_bin_t){w->body, (uint32_t)w->o->body};
    *sl = (gslot_t){.k = k, .due = due_ns, .live = true};
    int64_t id = proto_client_request(c->cl, &req, on_group_sent, sd);
    if (id < 0) {
        free(sd);
        sl->live = false;
        w->c.send_err++;
        w->c.last_error = (int)id;
        return (int)id;
    }
    g->next++;
    g->inflight++;
    return 0;
}

static uint32_t groups_inflight(worker_t *w)
{
    uint32_t n = 0;

    for (int i = 0; i < w->ngroups; i++)
        n += w->groups[i].inflight;
    return n;
}

/* Group phase 3: every millisecond, the messages now due, round robin
 * over the groups. A group whose ring (at a fixed rate) or window (at
 * full speed) is full is skipped; at a fixed rate that shows in
 * `behind`. */
static void group_tick(worker_t *w)
{
    uint64_t now = lg_now_ns();

    if (now >= w->traffic_end) {
        if (groups_inflight(w) == 0 || now >= w->traffic_end + DRAIN_GRACE_NS) {
            w->failed = w->issued > w->ok ? w->issued - w->ok : 0;
            finish_phase(w);
        }
        return;
    }
    uint64_t due = w->rate > 0
                       ? (uint64_t)((double)(now - w->pace_t0) * w->rate / 1e9)
                       : UINT64_MAX;
    int n = w->ngroups, tried = 0;
    while (n > 0 && w->issued < due && tried < n) {
        group_t *g = &w->groups[w->cursor];
        w->cursor = (w->cursor + 1) % n;
        tried++;
        uint32_t cap = w->rate > 0 ? GROUP_RING : GROUP_WINDOW;
        if (!g->gid || w->conns[g->first].state != C_OPEN ||
            g->inflight >= cap || g->ring[g->next % GROUP_RING].live)
            continue;
        uint64_t due_ns =
            w->rate > 0
                ? w->pace_t0 + (uint64_t)((double)w->issued * 1e9 / w->rate)
                : now;
        if (group_send(w, g, due_ns) == 0)
            w->issued++;
        tried = 0;
        if (w->rate <= 0 && w->issued % (uint64_t)n == 0)
            break; /* as fast as possible: one round a tick */
    }
    if (w->rate > 0 && w->issued < due)
        w->c.behind = due - w->issued;
}

/* Traffic of one-to-one: every millisecond, the messages now due. */
static void one2one_tick(worker_t *w)
{
    uint64_t now = lg_now_ns();

    if (now >= w->traffic_end) {
        /* done sending: wait for the last messages, then end */
        if (w->ok >= w->c.sent || now >= w->traffic_end + DRAIN_GRACE_NS) {
            w->failed = w->c.sent > w->ok ? w->c.sent - w->ok : 0;
            finish_phase(w);
        }
        return;
    }
    uint64_t due = w->rate > 0
                       ? (uint64_t)((double)(now - w->pace_t0) * w->rate / 1e9)
                       : UINT64_MAX;
    int n = w->count, tried = 0;
    while (w->issued < due && tried < n) {
        conn_t *c = &w->conns[w->cursor];
        w->cursor = (w->cursor + 1) % n;
        tried++;
        if (c->state != C_OPEN || c->inflight >= SEND_WINDOW)
            continue;
        /* the time it was due, so generator lag counts as latency */
        uint64_t due_ns =
            w->rate > 0
                ? w->pace_t0 + (uint64_t)((double)w->issued * 1e9 / w->rate)
                : now;
        if (send_msg(w, c, due_ns) == 0)
            w->issued++;
        tried = 0;
        if (w->rate <= 0 && w->issued % (uint64_t)n == 0)
            break; /* as fast as possible: one round a tick */
    }
    if (w->rate > 0 && w->issued < due)
        w->c.behind = due - w->issued;
}

/* Catch-up phase 2: each sender keeps SEND_WINDOW messages in flight
 * until its backlog is sent. */
static void catchup_tick(worker_t *w)
{
    for (int i = 0; i < w->count; i += 2) {
        conn_t *c = &w->conns[i];
        while (c->left > 0 && c->state == C_OPEN && c->inflight < SEND_WINDOW) {
            if (send_msg(w, c, lg_now_ns()) < 0) {
                unit_done(w, false);
            }
            c->left--;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;

    if (!w->active)
        return;
    if (w->id == WL_ONE2ONE && w->phase == 2)
        one2one_tick(w);
    else if (w->id == WL_GROUP && w->phase == 3)
        group_tick(w);
    else if (w->id == WL_CATCHUP && w->phase == 2)
        catchup_tick(w);
    else
        pump(w);
    /* acks for what came in since the last round */
    if (++w->ticks % ACK_TICKS == 0)
        for (int i = 0; i < w->count; i++)
            ack(w, &w->conns[i]);
    if (w->ticks % GROUP_ACK_TICK == 0)
        for (int i = 0; i < w->ngroups * w->o->group_size; i++)
            group_ack_own(w, &w->conns[i]);
}

static void on_deadline(uv_timer_t *t)
{
    worker_t *w = t->data;

    if (w->target && w->ok + w->failed < w->target)
        w->failed = w->target - w->ok;
    finish_phase(w);
}

/* ---- phases ---- */

/* Queue connects of conns[from], conns[from + step] ... */
static void queue_connects(worker_t *w, int from, int step)
{
    for (int i = from; i < w->count; i += step)
        enqueue(w, i);
    w->target = (uint64_t)w->qlen;
    w->connect_units = true;
}

static void start_phase(worker_t *w)
{
    const lg_opts_t *o = w->o;
    uint64_t now = lg_now_ns();

    w->phase++;
    w->active = true;
    w->t_first = w->t_last = 0;
    w->ok = w->failed = w->target = 0;
    w->issued = 0;
    w->connect_units = false;
    w->pace_t0 = now;
    w->rate = o->rate > 0 ? o->rate / o->workers : 0;
    lg_hist_reset(&w->hist);
    if (w->phase == 1 && w->id != WL_CONNECT)
        w->rate = 0; /* setting up: as fast as the window allows */

    if (w->phase == 1) {
        queue_connects(w, 0, w->id == WL_CATCHUP ? 2 : 1);
    } else if (w->id == WL_STORM) {
        /* every client drops; each reconnects once it is closed */
        w->t_first = now;
        w->connect_units = true;
        for (int i = 0; i < w->count; i++) {
            conn_t *c = &w->conns[i];
            if (c->state != C_OPEN)
                continue;
            c->reconnect = true;
            c->t0 = now;
            w->target++;
            close_conn(w, c);
        }
    } else if (w->id == WL_ONE2ONE) {
        w->t_first = now;
        w->traffic_end = now + (uint64_t)(o->duration_s * 1e9);
    } else if (w->id == WL_GROUP && w->phase == 2) {
        w->t_first = now;
        w->target = (uint64_t)w->ngroups;
        for (int i = 0; i < w->ngroups; i++)
            group_create(w, &w->groups[i]);
    } else if (w->id == WL_GROUP && w->phase == 3) {
        w->t_first = now;
        w->cursor = 0;
        w->traffic_end = now + (uint64_t)(o->duration_s * 1e9);
    } else if (w->id == WL_CATCHUP && w->phase == 2) {
        w->t_first = now;
        w->target = (uint64_t)(w->count / 2) * (uint64_t)o->backlog;
        for (int i = 0; i < w->count; i += 2)
            w->conns[i].left = (uint64_t)o->backlog;
    } else if (w->id == WL_CATCHUP && w->phase == 3) {
        uint64_t stored = w->c.sent;
        queue_connects(w, 1, 2);
        w->connect_units = false; /* the units are the messages */
        w->target = stored;
        w->t_first = now;
        for (int i = 1; i < w->count; i += 2)
            w->conns[i].t0 = now;
    }
    uv_timer_start(&w->deadline, on_deadline, (uint64_t)(o->timeout_s * 1000),
                   0);
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    pump(w);
    bool traffic = (w->id == WL_ONE2ONE && w->phase == 2) ||
                   (w->id == WL_GROUP && w->phase == 3);
    if (w->target == 0 && !traffic)
        finish_phase(w);
}

static void on_quit_timeout(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void quit(worker_t *w)
{
    w->quitting = true;
    w->active = false;
    uv_timer_stop(&w->tick);
    uv_timer_stop(&w->progress);
    uv_poll_stop(&w->ctl);
    for (int i = 0; i < w->count; i++) {
        w->conns[i].reconnect = false;
        if (w->conns[i].cl)
            close_conn(w, &w->conns[i]);
    }
    if (w->live == 0)
        uv_stop(&w->loop);
    uv_timer_start(&w->deadline, on_quit_timeout, QUIT_GRACE_MS, 0);
}

static void on_ctl(uv_poll_t *p, int status, int events)
{
    worker_t *w = p->data;
    char cmd;
    ssize_t n = read(w->fd, &cmd, 1);

    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        quit(w); /* the parent is gone */
        return;
    }
    if (n == 1 && cmd == LG_CMD_GO && !w->active)
        start_phase(w);
    else if (n == 1 && cmd == LG_CMD_QUIT)
        quit(w);
}

void lg_worker_main(const lg_opts_t *o, const lg_workload_t *wl,
                    const lg_account_t *acc, int first, int count, int fd,
                    int index)
{
    worker_t *w = &W;

    memset(w, 0, sizeof(*w));
    w->o = o;
    w->wl = wl;
    w->id = (enum wl_id)(wl - lg_workloads);
    w->acc = acc + first;
    w->count = count;
    w->fd = fd;
    w->index = index;
    w->cid = (uint64_t)time(NULL) << 24 | (uint64_t)index << 18;
    lg_raise_nofile();
    w->conns = calloc((size_t)count, sizeof(*w->conns));
    w->body = calloc(1, (size_t)o->body);
    w->queue = calloc((size_t)count, sizeof(*w->queue));
    if (!w->conns || !w->body || !w->queue ||
        lg_hist_init(&w->hist, LG_HIST_BITS) < 0)
        _exit(4);
    if (w->id == WL_GROUP) {
        w->ngroups = count / o->group_size;
        w->groups = calloc((size_t)w->ngroups + 1, sizeof(*w->groups));
        if (!w->groups)
            _exit(4);
        for (int i = 0; i < w->ngroups; i++) {
            w->groups[i].first = i * o->group_size;
            w->groups[i].ring = calloc(GROUP_RING, sizeof(gslot_t));
            if (!w->groups[i].ring)
                _exit(4);
        }
    }
    for (int i = 0; i < count; i++) {
        w->conns[i].w = w;
        w->conns[i].idx = i;
    }
    /* body: [due time ns][run id], then filler */
    memcpy(w->body + 8, &o->run_id, sizeof(o->run_id));
    memset(w->body + 16, 'x', (size_t)o->body - 16);
    for (int i = 0; i < LG_MAX_SOURCES + 1; i++) {
        w->cfg[i] =
            (proto_client_config_t){.on_event = on_event, .on_close = on_close};
        if (i < o->sources) {
            snprintf(w->src[i], sizeof(w->src[i]), "127.0.0.%d", i + 2);
            w->cfg[i].source = w->src[i];
        }
    }
    uv_loop_init(&w->loop);
    uv_poll_init(&w->loop, &w->ctl, fd);
    uv_timer_init(&w->loop, &w->progress);
    uv_timer_init(&w->loop, &w->tick);
    uv_timer_init(&w->loop, &w->deadline);
    w->ctl.data = w->tick.data = w->deadline.data = w;
    uv_poll_start(&w->ctl, UV_READABLE, on_ctl);
    uv_timer_start(&w->progress, on_progress, PROGRESS_MS, PROGRESS_MS);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    _exit(0);
}
