/*
 * actors/session_group.c - a session's side of groups: it forwards group
 * requests to the group actors, follows the stream of each group of its
 * user from the device's cursor, and writes the cursor when the device
 * acks. See group.h.
 *
 * Positions are per device, not per connection: when a connection
 * attaches, every stream is pushed again from the device's ack to every
 * connection, and clients drop what they hold (by gid and seq).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "log.h"

#define GROUP_TIMEOUT_MS 10000
#define PUSH_CHUNK       256

typedef struct sg_entry {
    uint64_t gid, joined, end; /* the range shown; end 0: open */
    uint64_t acked, pushed;
} sg_entry_t;

typedef struct sg_pend {
    int64_t ref;
    rt_id_t conn;
    uint64_t reqid;
    uint64_t gid, upto; /* an ack's cursor write when cursor is set */
    bool cursor;
} sg_pend_t;

struct chat_sg {
    sg_entry_t *e;
    uint32_t n, cap;
    sg_pend_t *pend;
    uint32_t npend, cappend;
    bool loaded;
};

static chat_db_t *g_db;

static chat_sg_t *sg_get(chat_sg_t **sg)
{
    if (!*sg)
        *sg = calloc(1, sizeof(**sg));
    return *sg;
}

static sg_entry_t *find(chat_sg_t *sg, uint64_t gid)
{
    for (uint32_t i = 0; i < sg->n; i++)
        if (sg->e[i].gid == gid)
            return &sg->e[i];
    return NULL;
}

static sg_entry_t *add(chat_sg_t *sg, uint64_t gid)
{
    if (sg->n == sg->cap) {
        uint32_t cap = sg->cap ? sg->cap * 2 : 8;
        sg_entry_t *ne = realloc(sg->e, cap * sizeof(*ne));
        if (!ne)
            return NULL;
        sg->e = ne;
        sg->cap = cap;
    }
    sg_entry_t *e = &sg->e[sg->n++];
    memset(e, 0, sizeof(*e));
    e->gid = gid;
    return e;
}

static void set_range(sg_entry_t *e, const chat_ugroup_t *u, uint64_t cursor)
{
    e->joined = u->joined;
    e->end = u->end;
    if (cursor > e->acked)
        e->acked = cursor;
    if (e->acked + 1 < e->joined)
        e->acked = e->joined - 1; /* nothing before the addition */
    if (e->pushed < e->acked)
        e->pushed = e->acked;
}

static void load_one(void *ctx, uint64_t gid, const chat_ugroup_t *u,
                     uint64_t cursor)
{
    chat_sg_t *sg = ctx;
    sg_entry_t *e = find(sg, gid);

    if (!e && !(e = add(sg, gid)))
        return;
    set_range(e, u, cursor);
}

/* The entry of gid, read again from LMDB (its range may have changed). */
static sg_entry_t *refresh(chat_sg_t *sg, const chat_sg_ctx_t *c, uint64_t gid)
{
    chat_ugroup_t u;
    sg_entry_t *e = find(sg, gid);

    if (chat_db_user_group(g_db, c->uid, gid, &u) < 0)
        return e;
    if (!e && !(e = add(sg, gid)))
        return NULL;
    set_range(e, &u, 0);
    return e;
}

static void to_conns(const chat_sg_ctx_t *c, const void *frames, size_t len)
{
    for (uint32_t i = 0; i < c->nconns; i++) {
        rt_msg_t *m =
            rt_msg_new(CHAT_CONN_WIRE, (uint32_t)(sizeof(chat_wire_t) + len));
        if (!m)
            return;
        chat_wire_t *w = (chat_wire_t *)m->data;
        *w = (chat_wire_t){.len = (uint32_t)len};
        memcpy(w->frames, frames, len);
        rt_send(c->sys, c->conns[i], m);
    }
}

static uint64_t last_shown(const sg_entry_t *e, uint32_t window)
{
    uint64_t to = e->acked + window;
    return e->end && e->end < to ? e->end : to;
}

/* Pushes the next entries of e's stream; wakes itself for more. */
static void pump(rt_actor_t *self, const chat_sg_ctx_t *c, sg_entry_t *e)
{
    uint64_t from = e->pushed + 1, to = last_shown(e, c->window), last;
    msgpack_sbuffer sb;

    if (from < e->joined)
        from = e->joined;
    if (!c->nconns || from > to)
        return;
    msgpack_sbuffer_init(&sb);
    int n = chat_db_glog_encode(g_db, e->gid, from, to, PUSH_CHUNK, &sb, &last);
    if (n > 0)
        to_conns(c, sb.data, sb.size);
    if (n >= 0 && last >= from)
        e->pushed = last;
    msgpack_sbuffer_destroy(&sb);
    if (n >= PUSH_CHUNK)
        rt_send_copy(c->sys, rt_self(self), CHAT_GROUP_WAKE, &e->gid,
                     sizeof(e->gid));
}

static void reply(const chat_sg_ctx_t *c, rt_id_t conn, const void *map,
                  size_t len)
{
    chat_wire_send(c->sys, conn, map, len, 1);
}

static void reply_err(const chat_sg_ctx_t *c, rt_id_t conn, uint64_t re,
                      int code, const char *why)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_err(&sb, re, code, why, 0) == 0)
        reply(c, conn, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static sg_pend_t *pend_add(chat_sg_t *sg)
{
    if (sg->npend == sg->cappend) {
        uint32_t cap = sg->cappend ? sg->cappend * 2 : 16;
        sg_pend_t *np = realloc(sg->pend, cap * sizeof(*np));
        if (!np)
            return NULL;
        sg->pend = np;
        sg->cappend = cap;
    }
    return &sg->pend[sg->npend++];
}

/* Writes the device's cursor; the ack is answered and the group hears of
 * it after the commit. */
static void write_cursor(rt_actor_t *self, chat_sg_t *sg,
                         const chat_sg_ctx_t *c, const chat_sess_req_t *q,
                         uint64_t gid, uint64_t upto)
{
    size_t size = sizeof(chat_op_t) + sizeof(chat_gop_t);
    chat_op_t *op = calloc(1, size);
    rt_id_t store = rt_whereis(c->sys, CHAT_STORE_NAME);
    rt_msg_t *m =
        op && store ? rt_msg_new(CHAT_STORE_CHAT, (uint32_t)size) : NULL;
    sg_pend_t *p;

    if (m && (p = pend_add(sg))) {
        chat_gop_t gop = {.kind = CHAT_GOP_ACK, .gid = gid, .upto = upto};
        op->kind = CHAT_OP_GROUP;
        op->body_len = sizeof(gop);
        op->uid = c->uid;
        op->devid = c->devid;
        memcpy(op->user, c->user, strnlen(c->user, CHAT_NAME_CAP - 1));
        memcpy(op->body, &gop, sizeof(gop));
        memcpy(m->data, op, size);
        int64_t ref = rt_request(self, store, m, GROUP_TIMEOUT_MS);
        if (ref >= 0) {
            *p = (sg_pend_t){.ref = ref,
                             .conn = q->conn,
                             .reqid = q->reqid,
                             .gid = gid,
                             .upto = upto,
                             .cursor = true};
            free(op);
            return;
        }
        sg->npend--;
    } else {
        rt_msg_free(m);
    }
    free(op);
    reply_err(c, q->conn, q->reqid, PROTO_E_INTERNAL, "store unavailable");
}

static void do_ack(rt_actor_t *self, chat_sg_t *sg, const chat_sg_ctx_t *c,
                   const chat_sess_req_t *q)
{
    sg_entry_t *e = find(sg, q->gid);

    if (!e || q->upto > e->pushed)
        return reply_err(c, q->conn, q->reqid, PROTO_E_BAD_VALUE,
                         "upto is beyond what was pushed of the group");
    if (q->upto <= e->acked) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (proto_enc_ok(&sb, q->reqid) == 0)
            reply(c, q->conn, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    e->acked = q->upto;
    write_cursor(self, sg, c, q, e->gid, e->acked);
    pump(self, c, e);
}

int chat_sg_request(rt_actor_t *self, chat_sg_t **sgp, const chat_sg_ctx_t *c,
                    const chat_sess_req_t *q)
{
    chat_sg_t *sg = sg_get(sgp);
    size_t data = q->body_len + (size_t)q->nusers * CHAT_NAME_CAP;

    if (q->op == PROTO_OP_ACK && !PROTO_HAS(q, PROTO_F_GID))
        return 0;
    if (q->op != PROTO_OP_ACK &&
        (q->op < PROTO_OP_GROUP_CREATE || q->op > PROTO_OP_GROUP_READ))
        return 0;
    if (!sg) {
        reply_err(c, q->conn, q->reqid, PROTO_E_INTERNAL, "out of memory");
        return 1;
    }
    if (q->op == PROTO_OP_ACK) {
        do_ack(self, sg, c, q);
        return 1;
    }
    rt_msg_t *m =
        rt_msg_new(CHAT_GROUP_REQ, (uint32_t)(sizeof(chat_group_req_t) + data));
    sg_pend_t *p = m ? pend_add(sg) : NULL;
    if (!p) {
        rt_msg_free(m);
        reply_err(c, q->conn, q->reqid, PROTO_E_INTERNAL, "out of memory");
        return 1;
    }
    chat_group_req_t *r = (chat_group_req_t *)m->data;
    memset(r, 0, sizeof(*r));
    r->session = rt_self(self);
    r->uid = c->uid;
    r->devid = c->devid;
    memcpy(r->user, c->user, strnlen(c->user, CHAT_NAME_CAP - 1));
    memcpy(&r->q, q, sizeof(*q) + data);
    uint64_t gid = q->op == PROTO_OP_GROUP_CREATE ? 0 : q->gid;
    rt_id_t to = gid ? rt_whereis_key(c->sys, CHAT_GROUP_KEY(gid)) : 0;
    if (!to)
        to = rt_whereis(c->sys, CHAT_GROUPS_NAME);
    int64_t ref = to ? rt_request(self, to, m, GROUP_TIMEOUT_MS) : RT_ENOPROC;
    if (!to)
        rt_msg_free(m);
    if (ref < 0) {
        sg->npend--;
        reply_err(c, q->conn, q->reqid, PROTO_E_INTERNAL,
                  "groups unavailable; retry");
        return 1;
    }
    *p = (sg_pend_t){.ref = ref, .conn = q->conn, .reqid = q->reqid};
    return 1;
}

static int take_pend(chat_sg_t *sg, uint64_t ref, sg_pend_t *out)
{
    for (uint32_t i = 0; i < sg->npend; i++) {
        if ((uint64_t)sg->pend[i].ref != ref)
            continue;
        *out = sg->pend[i];
        sg->pend[i] = sg->pend[--sg->npend];
        return 1;
    }
    return 0;
}

/* A cursor write committed: the group counts the receipt. */
static void cursor_written(const chat_sg_ctx_t *c, const sg_pend_t *p,
                           const rt_msg_t *msg)
{
    chat_op_res_t res;

    if (msg->type != CHAT_STORE_CHAT_DONE || msg->size != sizeof(res))
        return reply_err(c, p->conn, p->reqid, PROTO_E_INTERNAL,
                         "store timed out");
    memcpy(&res, msg->data, sizeof(res));
    if (res.result < 0)
        return reply_err(c, p->conn, p->reqid, PROTO_E_INTERNAL,
                         "store write failed");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (proto_enc_ok(&sb, p->reqid) == 0)
        reply(c, p->conn, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    chat_group_rcpt_t r = {
        .gid = p->gid, .uid = c->uid, .devid = c->devid, .upto = p->upto};
    memcpy(r.user, c->user, strnlen(c->user, CHAT_NAME_CAP - 1));
    rt_msg_t *m = rt_msg_new(CHAT_GROUP_RCPT, sizeof(r));
    if (m) {
        memcpy(m->data, &r, sizeof(r));
        chat_group_send(c->sys, p->gid, m);
    }
}

static void on_push(rt_actor_t *self, chat_sg_t *sg, const chat_sg_ctx_t *c,
                    const rt_msg_t *msg)
{
    const chat_group_push_t *p = (const chat_group_push_t *)msg->data;
    sg_entry_t *e;

    if (msg->size < sizeof(*p) || msg->size - sizeof(*p) != p->len)
        return;
    if (!(e = find(sg, p->gid)) && !(e = refresh(sg, c, p->gid)))
        return;
    if (p->gseq != e->pushed + 1 || p->gseq < e->joined ||
        p->gseq > last_shown(e, c->window))
        return pump(self, c, e);
    if (c->nconns) {
        to_conns(c, p->frame, p->len);
        e->pushed = p->gseq;
    }
}

int chat_sg_handle(rt_actor_t *self, chat_sg_t **sgp, const chat_sg_ctx_t *c,
                   const rt_msg_t *msg)
{
    chat_sg_t *sg = *sgp;
    sg_pend_t p;

    switch (msg->type) {
    case CHAT_GROUP_PUSH:
        if ((sg = sg_get(sgp)))
            on_push(self, sg, c, msg);
        return 1;
    case CHAT_GROUP_WAKE: {
        uint64_t gid;
        sg_entry_t *e;
        if (msg->size == sizeof(gid) && (sg = sg_get(sgp))) {
            memcpy(&gid, msg->data, sizeof(gid));
            /* from the group: its membership may have changed */
            if ((e = msg->from == rt_self(self) ? find(sg, gid)
                                                : refresh(sg, c, gid)))
                pump(self, c, e);
        }
        return 1;
    }
    case CHAT_GROUP_REPLY:
    case CHAT_STORE_CHAT_DONE:
    case RT_MSG_TIMEOUT:
        if (!sg || !take_pend(sg, msg->ref, &p))
            return 0;
        if (p.cursor)
            cursor_written(c, &p, msg);
        else if (msg->type == CHAT_GROUP_REPLY)
            reply(c, p.conn, msg->data, msg->size);
        else
            reply_err(c, p.conn, p.reqid, PROTO_E_INTERNAL,
                      "group timed out; retry");
        return 1;
    }
    return 0;
}

static void hello(const chat_sg_ctx_t *c, const sg_entry_t *e)
{
    chat_group_rcpt_t r = {.gid = e->gid, .uid = c->uid, .devid = c->devid};
    rt_id_t g = rt_whereis_key(c->sys, CHAT_GROUP_KEY(e->gid));

    if (g && !e->end)
        rt_send_copy(c->sys, g, CHAT_GROUP_HELLO, &r, sizeof(r));
}

void chat_sg_attach(rt_actor_t *self, chat_sg_t **sgp, const chat_sg_ctx_t *c)
{
    chat_sg_t *sg = sg_get(sgp);

    if (!sg)
        return;
    if (!sg->loaded) {
        if (chat_db_user_groups(g_db, c->uid, c->devid, load_one, sg) < 0)
            rt_log(RT_LOG_WARN, "session", "device=%llu event=groups_unread",
                   (unsigned long long)c->devid);
        else
            sg->loaded = true;
    }
    for (uint32_t i = 0; i < sg->n; i++) {
        sg->e[i].pushed = sg->e[i].acked;
        hello(c, &sg->e[i]);
        pump(self, c, &sg->e[i]);
    }
}

void chat_sg_free(chat_sg_t *sg, const chat_sg_ctx_t *c)
{
    if (!sg)
        return;
    for (uint32_t i = 0; i < sg->npend; i++)
        if (sg->pend[i].conn)
            reply_err(c, sg->pend[i].conn, sg->pend[i].reqid, PROTO_E_INTERNAL,
                      "session ended; retry");
    free(sg->pend);
    free(sg->e);
    free(sg);
}

void chat_sg_setup(chat_db_t *db)
{
    g_db = db;
}
