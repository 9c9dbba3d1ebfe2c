/*
 * actors/session.c - the session actor of one device. See session.h.
 */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "conn.h"
#include "group.h"
#include "log.h"
#include "mailbox.h"
#include "presence.h"
#include "trace.h"

#define MAX_CONNS        8   /* connections of one device at once */
#define PUSH_CHUNK       256 /* entries read and sent in one turn */
#define STORE_TIMEOUT_MS 10000
#define TYPING_BURST     5 /* typing requests at once, then one a second */
#define DUP_LINGER_MS    2000

typedef struct sconn {
    rt_id_t id;
    uint64_t mon;
    uint64_t pushed; /* highest seq sent to it */
} sconn_t;

typedef struct pend {
    int64_t ref;
    rt_id_t conn;
    uint64_t reqid;
    uint32_t op;
    uint64_t upto;
} pend_t;

typedef struct session {
    chat_session_arg_t *arg;
    rt_system_t *sys;
    rt_id_t self;
    uint64_t uid, devid;
    char user[PROTO_MAX_NAME + 1];
    /* one connection is the common case: it sits in `one`; a second one
     * moves them all to the heap (MAX_CONNS at most) */
    sconn_t *conns;
    uint32_t nconns, capconns;
    sconn_t one;
    uint64_t acked;
    pend_t *pend;
    uint32_t npend, cappend;
    uint64_t typing_at, typing_tokens; /* milli-tokens */
    bool pump_queued;
    bool online;
    bool dup;            /* another session holds the key: forward and end */
    bool gather;         /* reply_sb gathers replies instead of sending */
    bool flush_queued;   /* a CHAT_SESS_FLUSH is on its way */
    chat_sg_t *sg;       /* the streams of the user's groups */
    struct gathered *rg; /* replies of a burst of store results, or NULL */
} session_t;

/* Replies gathered for one connection, see reply_sb. Allocated for a
 * burst only: most sessions are idle most of the time. */
typedef struct gathered {
    rt_id_t conn;
    uint32_t n;
    msgpack_sbuffer sb; /* a chat_wire_t, then n frames */
} gathered_t;

/* The ids of a session's connections, as sg_ctx() hands them to
 * session_group.c during one handler call: one array per scheduler
 * thread rather than MAX_CONNS ids in every session. */
static _Thread_local rt_id_t conn_ids[MAX_CONNS];

static const chat_config_t *g_cfg;
static chat_db_t *g_db;

rt_behaviour_t chat_sessions_sup_behaviour;
static rt_child_spec_t session_child;
rt_sup_spec_t chat_sessions_spec;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the supervisor --------------------------------------------------- */

static int sessions_init(rt_actor_t *self, void *arg)
{
    int rc = rt_supervisor.init(self, arg);

    if (rc < 0)
        return rc;
    return rt_register(rt_system(self), CHAT_SESSIONS_NAME, rt_self(self));
}

void chat_sessions_setup(const chat_config_t *cfg, chat_db_t *db)
{
    g_cfg = cfg;
    g_db = db;
    chat_sessions_sup_behaviour = rt_supervisor;
    chat_sessions_sup_behaviour.init = sessions_init;
    session_child = (rt_child_spec_t){.name = "session",
                                      .behaviour = &chat_session_behaviour,
                                      .restart = RT_TRANSIENT,
                                      .shutdown_ms = 2000};
    /* A crash storm of sessions (a bad client hitting a bug) must not take
     * the supervisor, and so every session, down with it. */
    chat_sessions_spec = (rt_sup_spec_t){.name = CHAT_SESSIONS_NAME,
                                         .strategy = RT_SIMPLE_ONE_FOR_ONE,
                                         .intensity = 1000,
                                         .period_ms = 10000,
                                         .children = &session_child,
                                         .nchildren = 1};
}

/* ---- writing to connections ------------------------------------------- */

int chat_wire_send(rt_system_t *sys, rt_id_t conn, const void *map, size_t len,
                   uint32_t replies)
{
    rt_msg_t *m =
        rt_msg_new(CHAT_CONN_WIRE, (uint32_t)(sizeof(chat_wire_t) + 4 + len));
    if (!m)
        return RT_ENOMEM;
    chat_wire_t *w = (chat_wire_t *)m->data;
    uint32_t l = (uint32_t)len;
    w->replies = replies;
    w->len = (uint32_t)(4 + len);
    w->max_seq = 0;
    memcpy(w->frames, &l, 4);
    memcpy(w->frames + 4, map, len);
    return rt_send(sys, conn, m);
}

/*
 * The store answers the writes of a commit at once, so their results
 * reach the session in a burst. Their replies are gathered into one wire
 * message per connection, sent when the burst ends: before the session
 * sends anything else, and at the latest when the CHAT_SESS_FLUSH it
 * queued behind the burst arrives. So a connection gets one message (and
 * one write) per commit instead of one per request, in the same order.
 */
static void flush_replies(session_t *s)
{
    gathered_t *g = s->rg;

    if (!g)
        return;
    s->rg = NULL;
    chat_wire_t w = {.replies = g->n,
                     .len = (uint32_t)(g->sb.size - sizeof(w))};
    memcpy(g->sb.data, &w, sizeof(w));
    rt_msg_t *m = rt_msg_new(CHAT_CONN_WIRE, (uint32_t)g->sb.size);
    if (m) {
        memcpy(m->data, g->sb.data, g->sb.size);
        rt_send(s->sys, g->conn, m);
    }
    msgpack_sbuffer_destroy(&g->sb);
    free(g);
}

/* Adds one reply to the gathered ones; false when it could not (no
 * memory, no way to end the burst): the caller sends it itself. */
static bool gather_reply(session_t *s, rt_id_t conn, msgpack_sbuffer *sb)
{
    uint32_t len = (uint32_t)sb->size;

    if (s->rg && s->rg->conn != conn)
        flush_replies(s);
    if (!s->flush_queued) {
        if (rt_send_copy(s->sys, s->self, CHAT_SESS_FLUSH, NULL, 0) < 0)
            return false;
        s->flush_queued = true;
    }
    if (!s->rg) {
        gathered_t *g = calloc(1, sizeof(*g));
        if (!g)
            return false;
        msgpack_sbuffer_init(&g->sb);
        if (msgpack_sbuffer_write(&g->sb, (const char *)&(chat_wire_t){0},
                                  sizeof(chat_wire_t)) < 0) {
            free(g);
            return false;
        }
        g->conn = conn;
        s->rg = g;
    }
    gathered_t *g = s->rg;
    size_t at = g->sb.size;
    if (msgpack_sbuffer_write(&g->sb, (const char *)&len, sizeof(len)) < 0 ||
        msgpack_sbuffer_write(&g->sb, sb->data, sb->size) < 0) {
        g->sb.size = at;
        return false;
    }
    g->n++;
    return true;
}

static void reply_sb(session_t *s, rt_id_t conn, msgpack_sbuffer *sb)
{
    if (s->gather && gather_reply(s, conn, sb))
        return;
    flush_replies(s);
    chat_wire_send(s->sys, conn, sb->data, sb->size, 1);
}

static void reply_err(session_t *s, rt_id_t conn, uint64_t re, int code,
                      const char *msg, uint64_t retry)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_err(&sb, re, code, msg, retry) == 0)
        reply_sb(s, conn, &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void reply_ok(session_t *s, rt_id_t conn, uint64_t re)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_ok(&sb, re) == 0)
        reply_sb(s, conn, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- pushing the mailbox ---------------------------------------------- */

static void queue_pump(rt_actor_t *self, session_t *s)
{
    if (!s->pump_queued &&
        rt_send_copy(s->sys, rt_self(self), CHAT_SESS_PUMP, NULL, 0) == 0)
        s->pump_queued = true;
}

/* Sends each connection the next entries of the mailbox within its
 * window; queues another turn when a chunk was full. */
static void pump(rt_actor_t *self, session_t *s)
{
    uint64_t window = g_cfg->push_window;
    bool more = false;

    flush_replies(s);
    for (uint32_t i = 0; i < s->nconns; i++) {
        sconn_t *c = &s->conns[i];
        uint64_t from = c->pushed + 1, to = s->acked + window;
        if (from > to)
            continue;
        msgpack_sbuffer sb;
        uint64_t last;
        msgpack_sbuffer_init(&sb);
        /* room for the chat_wire_t header, filled in below */
        msgpack_sbuffer_write(&sb, (const char *)&(chat_wire_t){0},
                              sizeof(chat_wire_t));
        int n = chat_db_mbox_encode(g_db, s->devid, from, to, PUSH_CHUNK, &sb,
                                    &last);
        if (n > 0) {
            CHAT_TRACE(s->sys, s->self, "session", s->user, "push",
                       "entries=%d seq=%llu..%llu conn=%llu", n,
                       (unsigned long long)from, (unsigned long long)last,
                       (unsigned long long)c->id);
            chat_wire_t w = {.len = (uint32_t)(sb.size - sizeof(w)),
                             .max_seq = last};
            memcpy(sb.data, &w, sizeof(w));
            rt_msg_t *m = rt_msg_new(CHAT_CONN_WIRE, (uint32_t)sb.size);
            if (m) {
                memcpy(m->data, sb.data, sb.size);
                rt_send(s->sys, c->id, m);
            }
        }
        if (n >= 0 && last >= from)
            c->pushed = last;
        if (n >= PUSH_CHUNK)
            more = true;
        msgpack_sbuffer_destroy(&sb);
    }
    if (more)
        queue_pump(self, s);
}

/* Sends connection c the frames of entries from..to, found in a wake
 * whose frames begin with entry `first`. */
static void push_frames(session_t *s, sconn_t *c, const chat_mbox_wake_t *w,
                        uint64_t from, uint64_t to)
{
    const uint8_t *p = w->frames, *end = w->frames + w->len, *start = NULL;
    uint32_t len;

    for (uint64_t seq = w->first; seq <= to; seq++) {
        if ((size_t)(end - p) < sizeof(len))
            return;
        if (seq == from)
            start = p;
        memcpy(&len, p, sizeof(len));
        if ((size_t)(end - p) - sizeof(len) < len)
            return;
        p += sizeof(len) + len;
    }
    if (!start)
        return;
    size_t bytes = (size_t)(p - start);
    rt_msg_t *m =
        rt_msg_new(CHAT_CONN_WIRE, (uint32_t)(sizeof(chat_wire_t) + bytes));
    if (!m)
        return;
    chat_wire_t *cw = (chat_wire_t *)m->data;
    *cw = (chat_wire_t){.len = (uint32_t)bytes, .max_seq = to};
    memcpy(cw->frames, start, bytes);
    CHAT_TRACE(s->sys, s->self, "session", s->user, "push",
               "entries=%llu seq=%llu..%llu conn=%llu",
               (unsigned long long)(to - from + 1), (unsigned long long)from,
               (unsigned long long)to, (unsigned long long)c->id);
    if (rt_send(s->sys, c->id, m) == 0)
        c->pushed = to;
}

/* A commit appended to the mailbox. Connections that are up to date get
 * the entries straight from the wake, within their window; any other
 * (behind, or a wake without events) reads the mailbox. */
static void on_wake(rt_actor_t *self, session_t *s, const rt_msg_t *msg)
{
    const chat_mbox_wake_t *w = (const chat_mbox_wake_t *)msg->data;
    uint64_t window = g_cfg->push_window;

    flush_replies(s);
    if (msg->size < sizeof(*w) || msg->size - sizeof(*w) != w->len ||
        w->first > w->last)
        return pump(self, s);
    for (uint32_t i = 0; i < s->nconns; i++) {
        sconn_t *c = &s->conns[i];
        uint64_t from = c->pushed + 1, to = s->acked + window;
        if (to > w->last)
            to = w->last;
        if (from < w->first)
            return pump(self, s);
        if (from <= to)
            push_frames(s, c, w, from, to);
    }
}

/* What the group side (session_group.c) sees of the session. */
static chat_sg_ctx_t sg_ctx(session_t *s)
{
    for (uint32_t i = 0; i < s->nconns; i++)
        conn_ids[i] = s->conns[i].id;
    return (chat_sg_ctx_t){.sys = s->sys,
                           .uid = s->uid,
                           .devid = s->devid,
                           .user = s->user,
                           .conns = conn_ids,
                           .nconns = s->nconns,
                           .window = g_cfg->push_window};
}

/* ---- attach and detach ------------------------------------------------ */

static void presence_note(session_t *s, uint32_t type)
{
    rt_id_t p = rt_whereis(s->sys, CHAT_PRESENCE_NAME);
    chat_pres_msg_t m = {.uid = s->uid, .session = s->self, .now = now_ms()};

    if (!p)
        return;
    memcpy(m.user, s->user, sizeof(m.user));
    rt_send_copy(s->sys, p, type, &m, sizeof(m));
}

/* Room for one more connection. Returns false when out of memory. Only
 * the inline slot is ever full here: attach() evicts the oldest of
 * MAX_CONNS before it asks. */
static bool conns_room(session_t *s)
{
    sconn_t *v;

    if (s->nconns < s->capconns)
        return true;
    if (!(v = malloc(MAX_CONNS * sizeof(*v))))
        return false;
    v[0] = s->one;
    s->conns = v;
    s->capconns = MAX_CONNS;
    return true;
}

static void attach(rt_actor_t *self, session_t *s, const rt_msg_t *msg)
{
    chat_sess_attach_t a;
    chat_sess_attached_t r = {.acked = s->acked};
    sconn_t *c = NULL;

    if (msg->size != sizeof(a))
        return;
    memcpy(&a, msg->data, sizeof(a));
    for (uint32_t i = 0; i < s->nconns && !c; i++)
        if (s->conns[i].id == a.conn)
            c = &s->conns[i];
    if (!c && s->nconns == MAX_CONNS) {
        /* the oldest connection makes room; it will be told by its close */
        rt_send_copy(s->sys, s->conns[0].id, CHAT_SESS_DETACH, NULL, 0);
        rt_demonitor(self, s->conns[0].mon);
        memmove(&s->conns[0], &s->conns[1],
                (MAX_CONNS - 1) * sizeof(s->conns[0]));
        s->nconns--;
    }
    if (!c && !conns_room(s)) {
        rt_send_copy(s->sys, a.conn, CHAT_SESS_DETACH, NULL, 0);
        return;
    }
    if (!c) {
        c = &s->conns[s->nconns++];
        c->id = a.conn;
        c->mon = rt_monitor(self, a.conn);
    }
    c->pushed = a.after > s->acked ? a.after : s->acked;
    rt_send_copy(s->sys, a.conn, CHAT_SESS_ATTACHED, &r, sizeof(r));
    if (!s->online) {
        s->online = true;
        presence_note(s, CHAT_PRES_ONLINE);
    }
    pump(self, s);
    chat_sg_ctx_t gc = sg_ctx(s);
    chat_sg_attach(self, &s->sg, &gc);
}

/* Removes a connection; returns RT_STOP when none is left. */
static int detach(rt_actor_t *self, session_t *s, rt_id_t conn, bool demon)
{
    for (uint32_t i = 0; i < s->nconns; i++) {
        if (s->conns[i].id != conn)
            continue;
        if (demon)
            rt_demonitor(self, s->conns[i].mon);
        s->conns[i] = s->conns[--s->nconns];
        break;
    }
    return s->nconns == 0 ? RT_STOP : RT_CONTINUE;
}

/* ---- requests that wait for the store --------------------------------- */

static int store_op(rt_actor_t *self, session_t *s, const chat_sess_req_t *q,
                    chat_op_t *op, size_t size)
{
    rt_id_t store = rt_whereis(s->sys, CHAT_STORE_NAME);
    int64_t ref = RT_ENOPROC;

    op->uid = s->uid;
    op->devid = s->devid;
    op->now = now_ms();
    memcpy(op->user, s->user, sizeof(op->user));
    if (s->npend == s->cappend) {
        uint32_t cap = s->cappend ? s->cappend * 2 : 16;
        pend_t *np = realloc(s->pend, cap * sizeof(*np));
        if (!np) {
            reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL, "out of memory",
                      0);
            return 0;
        }
        s->pend = np;
        s->cappend = cap;
    }
    rt_msg_t *m = rt_msg_new(CHAT_STORE_CHAT, (uint32_t)size);
    if (m)
        memcpy(m->data, op, size);
    if (m && store)
        ref = rt_request(self, store, m, STORE_TIMEOUT_MS);
    else
        rt_msg_free(m);
    if (ref < 0) {
        reply_err(s, q->conn, q->reqid,
                  ref == RT_EFULL ? PROTO_E_BUSY : PROTO_E_INTERNAL,
                  "store unavailable", ref == RT_EFULL ? 100 : 0);
        return 0;
    }
    s->pend[s->npend++] = (pend_t){.ref = ref,
                                   .conn = q->conn,
                                   .reqid = q->reqid,
                                   .op = q->op,
                                   .upto = op->upto};
    return 0;
}

static void simple_op(rt_actor_t *self, session_t *s, const chat_sess_req_t *q,
                      uint32_t kind)
{
    chat_op_t op = {.kind = kind, .upto = q->upto};

    memcpy(op.peer, q->peer, sizeof(op.peer));
    store_op(self, s, q, &op, sizeof(op));
}

static void do_send(rt_actor_t *self, session_t *s, const chat_sess_req_t *q)
{
    size_t size = sizeof(chat_op_t) + q->body_len;
    chat_op_t *op = malloc(size);

    if (!op)
        return reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL,
                         "out of memory", 0);
    memset(op, 0, sizeof(*op));
    op->kind = CHAT_OP_SEND;
    op->cid = q->cid;
    op->body_len = q->body_len;
    memcpy(op->peer, q->peer, sizeof(op->peer));
    memcpy(op->body, q->data, q->body_len);
    store_op(self, s, q, op, size);
    free(op);
}

static void do_ack(rt_actor_t *self, session_t *s, const chat_sess_req_t *q)
{
    chat_mhead_t h;

    if (q->upto <= s->acked)
        return reply_ok(s, q->conn, q->reqid);
    if (chat_db_mhead(g_db, s->devid, &h) < 0)
        return reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL,
                         "store read failed", 0);
    if (q->upto > h.last)
        return reply_err(s, q->conn, q->reqid, PROTO_E_BAD_VALUE,
                         "upto is beyond the last seq of the mailbox", 0);
    simple_op(self, s, q, CHAT_OP_ACK);
}

static int find_pend(session_t *s, uint64_t ref)
{
    for (uint32_t i = 0; i < s->npend; i++)
        if ((uint64_t)s->pend[i].ref == ref)
            return (int)i;
    return -1;
}

static void take_pend(session_t *s, int i, pend_t *out)
{
    *out = s->pend[i];
    memmove(&s->pend[i], &s->pend[i + 1],
            (s->npend - (uint32_t)i - 1) * sizeof(*out));
    s->npend--;
}

/* The protocol error of an op's result, for the op that got it. */
static int op_error(uint32_t op, int result, const char **msg)
{
    switch (result) {
    case -ENOENT:
        *msg = op == PROTO_OP_READ             ? "no such message from peer"
               : op == PROTO_OP_CONTACT_REMOVE ? "not a contact"
               : op == PROTO_OP_UNBLOCK        ? "not blocked"
                                               : "no such user";
        return PROTO_E_NOT_FOUND;
    case -EPERM:
        *msg = "blocked";
        return PROTO_E_BLOCKED;
    case -EEXIST:
        *msg = "already a contact";
        return PROTO_E_EXISTS;
    case -ERANGE:
        *msg = "upto is beyond the last seq of the mailbox";
        return PROTO_E_BAD_VALUE;
    case -ENOSPC:
        *msg = "store full";
        return PROTO_E_INTERNAL;
    default:
        *msg = "store write failed";
        return PROTO_E_INTERNAL;
    }
}

static void answer_store(rt_actor_t *self, session_t *s, const pend_t *pp,
                         const chat_op_res_t *rp);

static void on_store_done(rt_actor_t *self, session_t *s, const rt_msg_t *msg)
{
    chat_op_res_t r;
    pend_t p;
    int i = find_pend(s, msg->ref);

    if (i < 0 || msg->size != sizeof(r))
        return;
    take_pend(s, i, &p);
    memcpy(&r, msg->data, sizeof(r));
    s->gather = true;
    answer_store(self, s, &p, &r);
    s->gather = false;
}

/* The reply to one store write, and what its result changes. */
static void answer_store(rt_actor_t *self, session_t *s, const pend_t *pp,
                         const chat_op_res_t *rp)
{
    pend_t p = *pp;
    chat_op_res_t r = *rp;

    CHAT_TRACE(s->sys, s->self, "session", s->user, "stored",
               "op=%s id=%llu result=%d sid=%llu", proto_op_name(p.op),
               (unsigned long long)p.reqid, r.result,
               (unsigned long long)r.sid);
    if (r.result < 0) {
        const char *why;
        int code = op_error(p.op, r.result, &why);
        return reply_err(s, p.conn, p.reqid, code, why, 0);
    }
    if (p.op == PROTO_OP_SEND) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (proto_enc_sent_ok(&sb, p.reqid, r.sid, r.ts, 0, r.dup) == 0)
            reply_sb(s, p.conn, &sb);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    if (p.op == PROTO_OP_ACK && p.upto > s->acked) {
        s->acked = p.upto;
        pump(self, s);
    }
    reply_ok(s, p.conn, p.reqid);
}

static void on_store_timeout(session_t *s, uint64_t ref)
{
    pend_t p;
    int i = find_pend(s, ref);

    if (i < 0)
        return;
    take_pend(s, i, &p);
    reply_err(s, p.conn, p.reqid, PROTO_E_INTERNAL, "store timed out", 0);
}

/* ---- requests answered from reads ------------------------------------- */

/* The uid of q->peer, or answers 301 / 500 and returns a negative code. */
static int peer_uid(session_t *s, const chat_sess_req_t *q, uint64_t *uid)
{
    int rc = chat_db_uid(g_db, q->peer, uid);

    if (rc == -ENOENT)
        reply_err(s, q->conn, q->reqid, PROTO_E_NOT_FOUND, "no such user", 0);
    else if (rc < 0)
        reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL, "store read failed",
                  0);
    return rc;
}

static void do_history(session_t *s, const chat_sess_req_t *q)
{
    bool peer = PROTO_HAS(q, PROTO_F_PEER), gid = PROTO_HAS(q, PROTO_F_GID);
    msgpack_sbuffer sb;
    uint64_t uid;

    if (!peer && !gid)
        return reply_err(s, q->conn, q->reqid, PROTO_E_MISSING_FIELD,
                         "missing field: peer or gid", 0);
    if (peer && gid)
        return reply_err(s, q->conn, q->reqid, PROTO_E_BAD_VALUE,
                         "give peer or gid, not both", 0);
    if (gid)
        return reply_err(s, q->conn, q->reqid, PROTO_E_NOT_FOUND,
                         "no such group", 0);
    if (peer_uid(s, q, &uid) < 0)
        return;
    msgpack_sbuffer_init(&sb);
    int rc = chat_db_history_encode(g_db, &sb, q->reqid, s->uid, uid, q->before,
                                    (uint32_t)q->limit);
    if (rc == 0)
        reply_sb(s, q->conn, &sb);
    else
        reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL, "store read failed",
                  0);
    msgpack_sbuffer_destroy(&sb);
}

static void do_users(session_t *s, const chat_sess_req_t *q, bool blocks)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (chat_db_users_encode(g_db, &sb, q->reqid, s->uid, blocks) == 0)
        reply_sb(s, q->conn, &sb);
    else
        reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL, "store read failed",
                  0);
    msgpack_sbuffer_destroy(&sb);
}

/* Token bucket of typing requests, in milli-tokens. 0 or ms to wait. */
static uint64_t typing_wait(session_t *s)
{
    uint64_t now = uv_hrtime() / 1000000, cap = TYPING_BURST * 1000ull;

    if (s->typing_at == 0)
        s->typing_tokens = cap;
    else
        s->typing_tokens += now - s->typing_at;
    s->typing_at = now;
    if (s->typing_tokens > cap)
        s->typing_tokens = cap;
    if (s->typing_tokens >= 1000) {
        s->typing_tokens -= 1000;
        return 0;
    }
    return 1000 - s->typing_tokens;
}

static void do_typing(session_t *s, const chat_sess_req_t *q)
{
    uint64_t uid, wait;
    rt_id_t p = rt_whereis(s->sys, CHAT_PRESENCE_NAME);

    if (!PROTO_HAS(q, PROTO_F_TO) && !PROTO_HAS(q, PROTO_F_GID))
        return reply_err(s, q->conn, q->reqid, PROTO_E_MISSING_FIELD,
                         "missing field: to or gid", 0);
    if (PROTO_HAS(q, PROTO_F_TO) && PROTO_HAS(q, PROTO_F_GID))
        return reply_err(s, q->conn, q->reqid, PROTO_E_BAD_VALUE,
                         "give to or gid, not both", 0);
    if (PROTO_HAS(q, PROTO_F_GID))
        return reply_err(s, q->conn, q->reqid, PROTO_E_NOT_FOUND,
                         "no such group", 0);
    if ((wait = typing_wait(s)))
        return reply_err(s, q->conn, q->reqid, PROTO_E_RATE_LIMITED,
                         "too many typing indicators", wait);
    if (peer_uid(s, q, &uid) < 0)
        return;
    if (chat_db_is_blocked(g_db, uid, s->uid) > 0 ||
        chat_db_is_blocked(g_db, s->uid, uid) > 0)
        return reply_err(s, q->conn, q->reqid, PROTO_E_BLOCKED, "blocked", 0);
    chat_pres_msg_t m = {
        .uid = s->uid, .session = s->self, .peer = uid, .on = q->on};
    memcpy(m.user, s->user, sizeof(m.user));
    if (p)
        rt_send_copy(s->sys, p, CHAT_PRES_TYPING, &m, sizeof(m));
    reply_ok(s, q->conn, q->reqid);
}

static void do_presence(session_t *s, const chat_sess_req_t *q)
{
    rt_id_t p = rt_whereis(s->sys, CHAT_PRESENCE_NAME);
    uint32_t n = q->nusers;
    size_t size = sizeof(chat_pres_msg_t) + n * (size_t)(PROTO_MAX_NAME + 1);
    rt_msg_t *m;

    if (!p || !(m = rt_msg_new(q->op == PROTO_OP_PRESENCE_SUB ? CHAT_PRES_SUB
                                                              : CHAT_PRES_UNSUB,
                               (uint32_t)size)))
        return reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL,
                         "presence unavailable", 0);
    chat_pres_msg_t *pm = (chat_pres_msg_t *)m->data;
    memset(pm, 0, sizeof(*pm));
    pm->uid = s->uid;
    pm->session = s->self;
    pm->n = n;
    memcpy(pm->user, s->user, sizeof(pm->user));
    memcpy(pm->names, q->data + q->body_len, n * (size_t)(PROTO_MAX_NAME + 1));
    /* the reply first, then the events the subscription brings */
    reply_ok(s, q->conn, q->reqid);
    rt_send(s->sys, p, m);
}

static void on_request(rt_actor_t *self, session_t *s, const rt_msg_t *msg)
{
    const chat_sess_req_t *q = (const chat_sess_req_t *)msg->data;

    if (msg->size < sizeof(*q) ||
        msg->size - sizeof(*q) !=
            q->body_len + q->nusers * (size_t)(PROTO_MAX_NAME + 1))
        return;
    CHAT_TRACE(s->sys, s->self, "session", s->user, "req",
               "op=%s id=%llu peer=%s bytes=%u", proto_op_name(q->op),
               (unsigned long long)q->reqid, q->peer[0] ? q->peer : "-",
               q->body_len);
    chat_sg_ctx_t gc = sg_ctx(s);
    if (chat_sg_request(self, &s->sg, &gc, q))
        return;
    switch (q->op) {
    case PROTO_OP_SEND:
        return do_send(self, s, q);
    case PROTO_OP_ACK:
        return do_ack(self, s, q);
    case PROTO_OP_READ:
        return simple_op(self, s, q, CHAT_OP_READ);
    case PROTO_OP_HISTORY:
        return do_history(s, q);
    case PROTO_OP_TYPING:
        return do_typing(s, q);
    case PROTO_OP_PRESENCE_SUB:
    case PROTO_OP_PRESENCE_UNSUB:
        return do_presence(s, q);
    case PROTO_OP_PRIVACY_SET: {
        chat_sess_req_t r = *q;
        r.upto = q->privacy;
        return simple_op(self, s, &r, CHAT_OP_PRIVACY);
    }
    case PROTO_OP_CONTACT_ADD:
        return simple_op(self, s, q, CHAT_OP_CONTACT_ADD);
    case PROTO_OP_CONTACT_REMOVE:
        return simple_op(self, s, q, CHAT_OP_CONTACT_REMOVE);
    case PROTO_OP_BLOCK:
        return simple_op(self, s, q, CHAT_OP_BLOCK);
    case PROTO_OP_UNBLOCK:
        return simple_op(self, s, q, CHAT_OP_UNBLOCK);
    case PROTO_OP_CONTACT_LIST:
        return do_users(s, q, false);
    case PROTO_OP_BLOCK_LIST:
        return do_users(s, q, true);
    default:
        /* accounts operations are the connection's, group operations
         * went to chat_sg_request: one arriving here is a server fault */
        return reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL,
                         "operation not implemented yet", 0);
    }
}

/* Presence and typing events go to every connection, as they are. */
static void on_event(session_t *s, const rt_msg_t *msg)
{
    flush_replies(s);
    for (uint32_t i = 0; i < s->nconns; i++)
        chat_wire_send(s->sys, s->conns[i].id, msg->data, msg->size, 0);
}

/* A revocation or an operator's kick goes to every connection of the
 * device: connections are not registered themselves, so the session is
 * the one place that knows them all. */
static void to_each_conn(session_t *s, uint32_t type)
{
    for (uint32_t i = 0; i < s->nconns; i++)
        rt_send_copy(s->sys, s->conns[i].id, type, NULL, 0);
}

/* ---- the actor -------------------------------------------------------- */

static int session_init(rt_actor_t *self, void *arg)
{
    session_t *s = rt_state(self);
    chat_mhead_t h;

    s->arg = arg;
    s->conns = &s->one;
    s->capconns = 1;
    s->sys = rt_system(self);
    s->self = rt_self(self);
    s->uid = s->arg->uid;
    s->devid = s->arg->devid;
    memcpy(s->user, s->arg->user, sizeof(s->user));
    int rc = rt_register_key(s->sys, s->devid, s->self);
    if (rc == RT_EEXIST) {
        /* Lost a race to start: forward attachments for a while, so that
         * whoever started this one reaches the owner, then end. */
        s->dup = true;
        rt_msg_t *m = rt_msg_new(CHAT_SESS_DETACH, 0);
        if (!m || rt_send_after(s->sys, s->self, m, DUP_LINGER_MS) < 0)
            return RT_ENOMEM;
        return 0;
    }
    if (rc < 0)
        return rc;
    if ((rc = chat_db_mhead(g_db, s->devid, &h)) < 0)
        return rc;
    s->acked = h.acked;
    return 0;
}

static int session_handle(rt_actor_t *self, rt_msg_t *msg)
{
    session_t *s = rt_state(self);

    if (s->dup) {
        rt_id_t owner = rt_whereis_key(s->sys, s->devid);
        if (owner && msg->type == CHAT_SESS_ATTACH)
            rt_send_copy(s->sys, owner, msg->type, msg->data, msg->size);
        return msg->type == CHAT_SESS_DETACH ? RT_STOP : RT_CONTINUE;
    }
    if (rt_fault("session.handle") == RT_FAULT_CRASH)
        return RT_ECRASH;
    if (msg->type != CHAT_STORE_CHAT_DONE)
        flush_replies(s); /* a burst of store results ended */
    chat_sg_ctx_t gc = sg_ctx(s);
    if (chat_sg_handle(self, &s->sg, &gc, msg))
        return RT_CONTINUE;
    switch (msg->type) {
    case CHAT_SESS_ATTACH:
        attach(self, s, msg);
        break;
    case CHAT_SESS_DETACH: {
        rt_id_t conn;
        if (msg->size != sizeof(conn))
            break;
        memcpy(&conn, msg->data, sizeof(conn));
        return detach(self, s, conn, true);
    }
    case RT_MSG_DOWN: {
        rt_exit_info_t x;
        memcpy(&x, msg->data, sizeof(x));
        return detach(self, s, x.who, false);
    }
    case CHAT_SESS_REQ:
        on_request(self, s, msg);
        break;
    case CHAT_STORE_CHAT_DONE:
        on_store_done(self, s, msg);
        break;
    case RT_MSG_TIMEOUT:
        on_store_timeout(s, msg->ref);
        break;
    case CHAT_MBOX_WAKE:
        on_wake(self, s, msg);
        break;
    case CHAT_SESS_PUMP:
        s->pump_queued = false;
        pump(self, s);
        break;
    case CHAT_SESS_EVENT:
        on_event(s, msg);
        break;
    case CHAT_SESS_FLUSH:
        s->flush_queued = false; /* flushed above */
        break;
    case CHAT_ACC_REVOKED:
    case CHAT_CONN_KICK:
        to_each_conn(s, msg->type);
        break;
    }
    return RT_CONTINUE;
}

static void session_terminate(rt_actor_t *self, int reason)
{
    session_t *s = rt_state(self);

    if (!s->arg)
        return;
    if (!s->dup) {
        if (s->online)
            presence_note(s, CHAT_PRES_OFFLINE);
        presence_note(s, CHAT_PRES_GONE);
    }
    flush_replies(s);
    /* Requests waiting for the store are answered; the store's replies
     * to a dead actor are dropped. */
    for (uint32_t i = 0; i < s->npend; i++)
        reply_err(s, s->pend[i].conn, s->pend[i].reqid, PROTO_E_INTERNAL,
                  "session ended; retry", 0);
    free(s->pend);
    chat_sg_ctx_t gc = sg_ctx(s);
    chat_sg_free(s->sg, &gc);
    if (s->conns != &s->one)
        free(s->conns);
    /* A transient child is restarted after a crash with the same arg. */
    if (rt_reason_is_normal(reason))
        free(s->arg);
}

static void session_describe(rt_actor_t *self, char *buf, size_t len)
{
    session_t *s = rt_state(self);

    /* the shell reads conns= and conn= (the first connection) */
    snprintf(buf, len,
             "user=%s device=%llu conns=%u conn=%llu acked=%llu pending=%u",
             s->user, (unsigned long long)s->devid, s->nconns,
             (unsigned long long)(s->nconns ? s->conns[0].id : 0),
             (unsigned long long)s->acked, s->npend);
}

/* A request still queued when the session ends is answered, so that the
 * client retries instead of waiting for a reply that would never come. */
static void session_undelivered(rt_actor_t *self, rt_msg_t *msg)
{
    session_t *s = rt_state(self);

    if (!s->arg || msg->type != CHAT_SESS_REQ ||
        msg->size < sizeof(chat_sess_req_t))
        return;
    const chat_sess_req_t *q = (const chat_sess_req_t *)msg->data;
    reply_err(s, q->conn, q->reqid, PROTO_E_INTERNAL, "session ended; retry",
              0);
}

const rt_behaviour_t chat_session_behaviour = {
    .kind = "session",
    .state_size = sizeof(session_t),
    .init = session_init,
    .handle = session_handle,
    .terminate = session_terminate,
    .describe = session_describe,
    .undelivered = session_undelivered,
};
