/*
 * actors/group.c - the group actor, the router that starts group actors on
 * demand, and their supervisor. See group.h.
 */
#include "group.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define STORE_TIMEOUT_MS 10000
#define START_TIMEOUT_MS 5000
#define LINGER_MS        2000 /* an idle group forwards this long, then ends */
#define FLUSH_MS         5    /* receipts gathered this long, then sent */
#define WINDOW           1024 /* recent messages whose receipts are counted */
#define MAX_DEVS         8    /* devices of a member that get pushes */

static const chat_config_t *g_cfg;
static chat_db_t *g_db;

rt_behaviour_t chat_groups_sup_behaviour;
static rt_child_spec_t group_child;
rt_sup_spec_t chat_groups_spec;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int chat_group_send(rt_system_t *sys, uint64_t gid, rt_msg_t *m)
{
    rt_id_t to = gid ? rt_whereis_key(sys, CHAT_GROUP_KEY(gid)) : 0;

    if (!to)
        to = rt_whereis(sys, CHAT_GROUPS_NAME);
    if (!to) {
        rt_msg_free(m);
        return RT_ENOPROC;
    }
    return rt_send(sys, to, m);
}

/* Answers a session's request (its ref) with one encoded map. */
static void reply_map(rt_system_t *sys, rt_id_t session, uint64_t ref,
                      const msgpack_sbuffer *sb)
{
    rt_msg_t *m = rt_msg_new(CHAT_GROUP_REPLY, (uint32_t)sb->size);
    rt_msg_t req = {.from = session, .ref = ref};

    if (!m)
        return;
    memcpy(m->data, sb->data, sb->size);
    rt_reply(sys, &req, m);
}

static void reply_err(rt_system_t *sys, rt_id_t session, uint64_t ref,
                      uint64_t reqid, int code, const char *why)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_err(&sb, reqid, code, why, 0) == 0)
        reply_map(sys, session, ref, &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void reply_ok(rt_system_t *sys, rt_id_t session, uint64_t ref,
                     uint64_t reqid)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_ok(&sb, reqid) == 0)
        reply_map(sys, session, ref, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* A store op of a group (kind CHAT_OP_GROUP) as one allocation. */
static chat_op_t *gop_new(const chat_group_req_t *r, const chat_gop_t *g,
                          const void *extra, size_t elen, size_t *size)
{
    *size = sizeof(chat_op_t) + sizeof(*g) + elen;
    chat_op_t *op = calloc(1, *size);

    if (!op)
        return NULL;
    op->kind = CHAT_OP_GROUP;
    op->body_len = (uint32_t)(sizeof(*g) + elen);
    op->uid = r->uid;
    op->devid = r->devid;
    op->now = now_ms();
    memcpy(op->user, r->user, sizeof(op->user));
    memcpy(op->body, g, sizeof(*g));
    if (elen)
        memcpy(op->body + sizeof(*g), extra, elen);
    return op;
}

static int64_t store_request(rt_actor_t *self, chat_op_t *op, size_t size)
{
    rt_system_t *sys = rt_system(self);
    rt_id_t store = rt_whereis(sys, CHAT_STORE_NAME);
    rt_msg_t *m = store ? rt_msg_new(CHAT_STORE_CHAT, (uint32_t)size) : NULL;

    if (!m)
        return store ? RT_ENOMEM : RT_ENOPROC;
    memcpy(m->data, op, size);
    return rt_request(self, store, m, STORE_TIMEOUT_MS);
}

static int result_code(int result, const char **why)
{
    switch (result) {
    case -ENOENT:
        *why = "no such user, member or group";
        return PROTO_E_NOT_FOUND;
    case -E2BIG:
        *why = "the group would exceed its member limit";
        return PROTO_E_GROUP_FULL;
    default:
        *why = "store write failed";
        return PROTO_E_INTERNAL;
    }
}

/* ---- the group actor's state --------------------------------------------- */

typedef struct member {
    uint64_t uid, joined, delivered, read;
    uint64_t stored; /* delivered as gmembers holds it */
    uint32_t flags, ndevs;
    uint64_t devs[MAX_DEVS];
    rt_id_t sess[MAX_DEVS]; /* the session last found for devs[i], or 0 */
    char name[CHAT_NAME_CAP];
} member_t;

/* A recent message and who has it. */
typedef struct wmsg {
    uint64_t gseq, sid, from_uid;
    uint32_t total, nd, nr;
    bool alld, allr;
    uint32_t *newd, *newr; /* member indexes since the last flush */
    uint32_t nnd, nnr, capd, capr;
} wmsg_t;

typedef struct gpend {
    int64_t ref;
    rt_id_t session;
    uint64_t sref, reqid;
    uint32_t op;
    char user[CHAT_NAME_CAP]; /* removed or left: gets the wake too */
    uint64_t uid, upto;
} gpend_t;

typedef struct group {
    uint64_t *arg;
    rt_system_t *sys;
    uint64_t gid;
    chat_group_rec_t rec;
    member_t *m;
    uint32_t nm, capm;
    wmsg_t *w; /* by gseq, oldest first */
    uint32_t nw;
    gpend_t *pend;
    uint32_t npend, cappend;
    uint64_t active_at;
    uint64_t pos_at; /* ms: when delivered positions were last written */
    bool missing, lingering, dup, flush_queued, pos_dirty;
} group_t;

static member_t *find_member(group_t *g, uint64_t uid)
{
    uint32_t lo = 0, hi = g->nm;

    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (g->m[mid].uid == uid)
            return &g->m[mid];
        if (g->m[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static member_t *find_by_name(group_t *g, const char *name)
{
    for (uint32_t i = 0; i < g->nm; i++)
        if (strcmp(g->m[i].name, name) == 0)
            return &g->m[i];
    return NULL;
}

static void add_dev(void *ctx, uint64_t devid)
{
    member_t *m = ctx;

    for (uint32_t i = 0; i < m->ndevs; i++)
        if (m->devs[i] == devid)
            return;
    if (m->ndevs < MAX_DEVS) {
        m->sess[m->ndevs] = 0;
        m->devs[m->ndevs++] = devid;
    }
}

static void load_member(void *ctx, uint64_t uid, const chat_gmember_t *gm)
{
    group_t *g = ctx;

    if (g->nm == g->capm) {
        uint32_t cap = g->capm ? g->capm * 2 : 16;
        member_t *nm = realloc(g->m, cap * sizeof(*nm));
        if (!nm)
            return;
        g->m = nm;
        g->capm = cap;
    }
    member_t *m = &g->m[g->nm++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    m->joined = gm->joined;
    m->delivered = gm->delivered;
    m->read = gm->read;
    m->flags = gm->flags;
    memcpy(m->name, gm->name, sizeof(m->name));
    m->stored = m->delivered;
    chat_db_each_device(g_db, uid, add_dev, m);
    /* what a crash kept from gmembers, the cursors still hold */
    for (uint32_t i = 0; i < m->ndevs; i++) {
        uint64_t cur;
        if (chat_db_group_cursor(g_db, m->devs[i], g->gid, &cur) == 0 &&
            cur > m->delivered)
            m->delivered = cur;
    }
    if (m->delivered > m->stored)
        g->pos_dirty = true;
}

/* Counts of a window entry from the members' positions. */
static void recount(group_t *g, wmsg_t *w)
{
    w->total = w->nd = w->nr = 0;
    for (uint32_t i = 0; i < g->nm; i++) {
        const member_t *m = &g->m[i];
        if (m->uid == w->from_uid || m->joined > w->gseq)
            continue;
        w->total++;
        w->nd += m->delivered >= w->gseq;
        w->nr += m->read >= w->gseq;
    }
}

static void window_push(void *ctx, uint64_t gseq, const chat_glog_rec_t *r)
{
    group_t *g = ctx;

    if (g->nw == WINDOW) {
        free(g->w[0].newd);
        free(g->w[0].newr);
        memmove(&g->w[0], &g->w[1], (WINDOW - 1) * sizeof(*g->w));
        g->nw--;
    }
    wmsg_t *w = &g->w[g->nw++];
    memset(w, 0, sizeof(*w));
    w->gseq = gseq;
    w->sid = r->sid;
    w->from_uid = r->from_uid;
    recount(g, w);
    /* what is complete when it enters the window was announced before */
    w->alld = w->nd == w->total;
    w->allr = w->nr == w->total;
}

static int load(group_t *g)
{
    int rc = chat_db_group_get(g_db, g->gid, &g->rec);

    if (rc == -ENOENT) {
        g->missing = true;
        return 0;
    }
    if (rc < 0)
        return rc;
    g->nm = 0;
    if ((rc = chat_db_group_members(g_db, g->gid, load_member, g)) < 0)
        return rc;
    if (!g->w && !(g->w = calloc(WINDOW, sizeof(*g->w))))
        return RT_ENOMEM;
    uint64_t from = g->rec.head > 4 * WINDOW ? g->rec.head - 4 * WINDOW : 1;
    return chat_db_glog_msgs(g_db, g->gid, from, g->rec.head, window_push, g);
}

/* ---- fan-out ---------------------------------------------------------------
 */

/* Sends to the session of each device of m that is online. The session
 * found in the registry is remembered, so that a fan-out takes no lock
 * per member; ids are never reused, so a remembered session that ended
 * refuses the send and the registry is asked again. */
static void to_devices(group_t *g, member_t *m, uint32_t type, const void *data,
                       uint32_t size)
{
    for (uint32_t i = 0; i < m->ndevs; i++) {
        rt_id_t s = m->sess[i];
        if (s && rt_send_copy(g->sys, s, type, data, size) != RT_ENOPROC)
            continue;
        m->sess[i] = s = rt_whereis_key(g->sys, m->devs[i]);
        if (s)
            rt_send_copy(g->sys, s, type, data, size);
    }
}

/* Every member (and `also`, a user who just left) reads the stream again. */
static void wake_all(group_t *g, const char *also)
{
    for (uint32_t i = 0; i < g->nm; i++)
        to_devices(g, &g->m[i], CHAT_GROUP_WAKE, &g->gid, sizeof(g->gid));
    uint64_t uid;
    if (also && also[0] && chat_db_uid(g_db, also, &uid) == 0) {
        member_t tmp = {.uid = uid, .ndevs = 0};
        chat_db_each_device(g_db, uid, add_dev, &tmp);
        to_devices(g, &tmp, CHAT_GROUP_WAKE, &g->gid, sizeof(g->gid));
    }
}

/* Pushes stream entry gseq to the devices of the members: read and
 * encoded once, framed as a connection writes it, and the same bytes go
 * to every session, which hands them on without decoding them. */
static void push_entry(group_t *g, uint64_t gseq)
{
    msgpack_sbuffer sb;
    uint64_t last;

    msgpack_sbuffer_init(&sb);
    if (chat_db_glog_encode(g_db, g->gid, gseq, gseq, 1, &sb, &last) == 1) {
        size_t size = sizeof(chat_group_push_t) + sb.size;
        chat_group_push_t *p = malloc(size);
        if (p) {
            *p = (chat_group_push_t){
                .gid = g->gid, .gseq = gseq, .len = (uint32_t)sb.size};
            memcpy(p->frame, sb.data, sb.size);
            for (uint32_t i = 0; i < g->nm; i++)
                to_devices(g, &g->m[i], CHAT_GROUP_PUSH, p, (uint32_t)size);
            free(p);
        }
    }
    msgpack_sbuffer_destroy(&sb);
}

/* ---- receipts --------------------------------------------------------------
 */

static int note_idx(uint32_t **v, uint32_t *n, uint32_t *cap, uint32_t idx)
{
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 16;
        uint32_t *nv = realloc(*v, c * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = idx;
    return 0;
}

static void queue_flush(rt_actor_t *self, group_t *g)
{
    rt_msg_t *m;

    if (g->flush_queued || !(m = rt_msg_new(CHAT_GROUP_FLUSH, 0)))
        return;
    if (rt_send_after(g->sys, rt_self(self), m, FLUSH_MS) >= 0)
        g->flush_queued = true;
}

/* Stores "delivered to all" or "read by all" in the sender's mailbox. */
static void announce_all(group_t *g, const wmsg_t *w, bool read)
{
    chat_group_req_t r = {.uid = w->from_uid};
    chat_gop_t gop = {.kind = CHAT_GOP_ALL,
                      .gid = g->gid,
                      .upto = w->gseq,
                      .sid = w->sid,
                      .target = w->from_uid,
                      .limit = read ? 2 : 1};
    size_t size;
    chat_op_t *op = gop_new(&r, &gop, NULL, 0, &size);
    rt_id_t store = rt_whereis(g->sys, CHAT_STORE_NAME);

    if (op && store)
        rt_send_copy(g->sys, store, CHAT_STORE_CHAT, op, (uint32_t)size);
    free(op);
}

/* The first window entry with a gseq above `after` (g->nw if none). */
static uint32_t window_after(const group_t *g, uint64_t after)
{
    uint32_t lo = 0, hi = g->nw;

    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (g->w[mid].gseq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Announces the window entries that every member now has or has read. */
static void announce_complete(group_t *g, wmsg_t *w)
{
    if (!w->alld && w->nd >= w->total) {
        w->alld = true;
        announce_all(g, w, false);
    }
    if (!w->allr && w->nr >= w->total) {
        w->allr = true;
        announce_all(g, w, true);
    }
}

/* Counts member idx in the entries of (from, to] it had not reached: the
 * delivered counts when `read` is false, else the read ones. Only those
 * entries are visited, so an ack costs what it moves, not the window.
 * Returns whether any entry changed. */
static bool count_range(group_t *g, uint32_t idx, uint64_t from, uint64_t to,
                        bool read)
{
    const member_t *m = &g->m[idx];
    bool any = false;

    for (uint32_t i = window_after(g, from); i < g->nw; i++) {
        wmsg_t *w = &g->w[i];
        if (w->gseq > to)
            break;
        if (w->from_uid == m->uid || w->gseq < m->joined)
            continue;
        if (read) {
            w->nr++;
            note_idx(&w->newr, &w->nnr, &w->capr, idx);
        } else {
            w->nd++;
            note_idx(&w->newd, &w->nnd, &w->capd, idx);
        }
        announce_complete(g, w);
        any = true;
    }
    return any;
}

/* Member idx's position moved to (delivered, read). */
static void advance(rt_actor_t *self, group_t *g, uint32_t idx,
                    uint64_t delivered, uint64_t read)
{
    member_t *m = &g->m[idx];
    bool any = false;

    if (read > delivered)
        delivered = read;
    if (delivered > m->delivered) {
        any |= count_range(g, idx, m->delivered, delivered, false);
        m->delivered = delivered;
        g->pos_dirty = true;
        any = true; /* the flush writes the position */
    }
    if (read > m->read) {
        any |= count_range(g, idx, m->read, read, true);
        m->read = read;
    }
    if (any)
        queue_flush(self, g);
}

/* Writes the delivered positions that moved since the last write, in
 * one store op for the whole group (see group.h). Not waited for: a
 * position lost with a failed write is read back from the cursors. */
static void write_positions(group_t *g)
{
    chat_gpos_t *pos = malloc((g->nm + 1) * sizeof(*pos));
    rt_id_t store = rt_whereis(g->sys, CHAT_STORE_NAME);
    uint32_t n = 0;

    if (!pos || !store) {
        free(pos);
        return;
    }
    for (uint32_t i = 0; i < g->nm; i++) {
        member_t *m = &g->m[i];
        if (m->delivered <= m->stored)
            continue;
        pos[n++] = (chat_gpos_t){.uid = m->uid, .delivered = m->delivered};
        m->stored = m->delivered;
    }
    g->pos_dirty = false;
    g->pos_at = uv_hrtime() / 1000000;
    if (n) {
        chat_group_req_t r = {0};
        chat_gop_t gop = {
            .kind = CHAT_GOP_DELIVERED, .gid = g->gid, .nnames = n};
        size_t size;
        chat_op_t *op = gop_new(&r, &gop, pos, n * sizeof(*pos), &size);
        if (op)
            rt_send_copy(g->sys, store, CHAT_STORE_CHAT, op, (uint32_t)size);
        free(op);
    }
    free(pos);
}

/* Sends each sender one receipts event per message with news, and
 * writes the members' positions when CHAT_GROUP_POS_MS have passed
 * (else it comes back for them). */
static void flush(rt_actor_t *self, group_t *g)
{
    proto_str_t *names;

    g->flush_queued = false;
    if (g->pos_dirty) {
        if (uv_hrtime() / 1000000 - g->pos_at >= CHAT_GROUP_POS_MS)
            write_positions(g);
        else
            queue_flush(self, g);
    }
    if (!(names = malloc((g->nm + 1) * 2 * sizeof(*names))))
        return;
    for (uint32_t i = 0; i < g->nw; i++) {
        wmsg_t *w = &g->w[i];
        if (!w->nnd && !w->nnr)
            continue;
        proto_str_t *d = names, *r = names + g->nm + 1;
        uint32_t nd = 0, nr = 0;
        for (uint32_t j = 0; j < w->nnd; j++)
            if (w->newd[j] < g->nm && nd <= g->nm)
                d[nd++] = proto_cstr(g->m[w->newd[j]].name);
        for (uint32_t j = 0; j < w->nnr; j++)
            if (w->newr[j] < g->nm && nr <= g->nm)
                r[nr++] = proto_cstr(g->m[w->newr[j]].name);
        w->nnd = w->nnr = 0;
        member_t *s = find_member(g, w->from_uid);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (s && proto_enc_ev_receipts(&sb, g->gid, w->sid, w->gseq, d, nd, r,
                                       nr, w->nd, w->nr, w->total) == 0)
            to_devices(g, s, CHAT_SESS_EVENT, sb.data, (uint32_t)sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    free(names);
}

static void on_rcpt(rt_actor_t *self, group_t *g, const rt_msg_t *msg,
                    bool hello)
{
    chat_group_rcpt_t r;
    member_t *m;

    if (msg->size != sizeof(r))
        return;
    memcpy(&r, msg->data, sizeof(r));
    if (!(m = find_member(g, r.uid)))
        return;
    if (hello)
        return add_dev(m, r.devid);
    uint32_t idx = (uint32_t)(m - g->m);
    if (r.read)
        advance(self, g, idx, m->delivered, r.upto);
    else
        advance(self, g, idx, r.upto, m->read);
}

/* ---- requests
 * ---------------------------------------------------------------- */

static gpend_t *pend_add(group_t *g)
{
    if (g->npend == g->cappend) {
        uint32_t cap = g->cappend ? g->cappend * 2 : 16;
        gpend_t *np = realloc(g->pend, cap * sizeof(*np));
        if (!np)
            return NULL;
        g->pend = np;
        g->cappend = cap;
    }
    gpend_t *p = &g->pend[g->npend++];
    memset(p, 0, sizeof(*p));
    return p;
}

static void info(group_t *g, const chat_group_req_t *r, uint64_t ref)
{
    proto_member_t *pm = calloc(g->nm + 1, sizeof(*pm));
    msgpack_sbuffer sb;

    if (!pm)
        return reply_err(g->sys, r->session, ref, r->q.reqid, PROTO_E_INTERNAL,
                         "out of memory");
    for (uint32_t i = 0; i < g->nm; i++)
        pm[i] = (proto_member_t){proto_cstr(g->m[i].name),
                                 (g->m[i].flags & CHAT_GMEMBER_ADMIN) != 0};
    msgpack_sbuffer_init(&sb);
    if (proto_enc_group_info_ok(&sb, r->q.reqid, g->gid,
                                proto_cstr(g->rec.name), g->rec.created, pm,
                                g->nm) == 0)
        reply_map(g->sys, r->session, ref, &sb);
    msgpack_sbuffer_destroy(&sb);
    free(pm);
}

/* Checks the request against the roles; fills gop. 0, or a protocol code
 * with *why set. */
static int check(group_t *g, const chat_group_req_t *r, chat_gop_t *gop,
                 const char **why)
{
    const chat_sess_req_t *q = &r->q;
    const member_t *me = find_member(g, r->uid);
    bool admin = me && (me->flags & CHAT_GMEMBER_ADMIN);

    gop->gid = g->gid;
    gop->limit = g_cfg->group_max_members;
    if (!me) {
        *why = "not a member of this group";
        return q->op == PROTO_OP_GROUP_LEAVE ? PROTO_E_NOT_FOUND
                                             : PROTO_E_FORBIDDEN;
    }
    switch (q->op) {
    case PROTO_OP_GROUP_SEND:
        gop->kind = CHAT_GOP_SEND;
        gop->cid = q->cid;
        return 0;
    case PROTO_OP_GROUP_READ:
        gop->kind = CHAT_GOP_READ;
        gop->upto = q->upto;
        if (q->upto == 0 || q->upto > g->rec.head) {
            *why = "upto is beyond the group's stream";
            return PROTO_E_BAD_VALUE;
        }
        return 0;
    case PROTO_OP_GROUP_LEAVE:
        gop->kind = CHAT_GOP_REMOVE;
        memcpy(gop->user, r->user, sizeof(gop->user));
        return 0;
    default:
        break;
    }
    if (!admin) {
        *why = "only an admin may do this";
        return PROTO_E_FORBIDDEN;
    }
    switch (q->op) {
    case PROTO_OP_GROUP_ADD:
        gop->kind = CHAT_GOP_ADD;
        gop->nnames = q->nusers;
        if (g->nm + q->nusers > gop->limit && q->nusers > gop->limit) {
            *why = "the group would exceed its member limit";
            return PROTO_E_GROUP_FULL;
        }
        return 0;
    case PROTO_OP_GROUP_REMOVE:
    case PROTO_OP_GROUP_PROMOTE:
        gop->kind =
            q->op == PROTO_OP_GROUP_REMOVE ? CHAT_GOP_REMOVE : CHAT_GOP_PROMOTE;
        memcpy(gop->user, q->peer, sizeof(gop->user));
        if (!find_by_name(g, q->peer)) {
            *why = "not a member of this group";
            return PROTO_E_NOT_FOUND;
        }
        return 0;
    case PROTO_OP_GROUP_RENAME: {
        size_t n = q->body_len < PROTO_MAX_TEXT ? q->body_len : PROTO_MAX_TEXT;
        gop->kind = CHAT_GOP_RENAME;
        memcpy(gop->name, q->data, n);
        return 0;
    }
    default:
        *why = "not a group operation";
        return PROTO_E_UNKNOWN_OP;
    }
}

static void on_req(rt_actor_t *self, group_t *g, const rt_msg_t *msg)
{
    const chat_group_req_t *r = (const chat_group_req_t *)msg->data;
    chat_gop_t gop = {0};
    const char *why;
    size_t size;

    if (msg->size < sizeof(*r))
        return;
    if (g->missing)
        return reply_err(g->sys, r->session, msg->ref, r->q.reqid,
                         PROTO_E_NOT_FOUND, "no such group");
    if (r->q.op == PROTO_OP_GROUP_INFO) {
        if (!find_member(g, r->uid))
            return reply_err(g->sys, r->session, msg->ref, r->q.reqid,
                             PROTO_E_FORBIDDEN, "not a member of this group");
        return info(g, r, msg->ref);
    }
    int code = check(g, r, &gop, &why);
    if (code)
        return reply_err(g->sys, r->session, msg->ref, r->q.reqid, code, why);
    const void *extra = NULL;
    size_t elen = 0;
    if (gop.kind == CHAT_GOP_SEND) {
        extra = r->q.data;
        elen = r->q.body_len;
    } else if (gop.kind == CHAT_GOP_ADD) {
        extra = r->q.data + r->q.body_len;
        elen = (size_t)r->q.nusers * CHAT_NAME_CAP;
    }
    chat_op_t *op = gop_new(r, &gop, extra, elen, &size);
    gpend_t *p = op ? pend_add(g) : NULL;
    int64_t ref = p ? store_request(self, op, size) : RT_ENOMEM;
    free(op);
    if (ref < 0) {
        if (p)
            g->npend--;
        return reply_err(g->sys, r->session, msg->ref, r->q.reqid,
                         PROTO_E_INTERNAL, "store unavailable");
    }
    *p = (gpend_t){.ref = ref,
                   .session = r->session,
                   .sref = msg->ref,
                   .reqid = r->q.reqid,
                   .op = r->q.op,
                   .uid = r->uid,
                   .upto = gop.upto};
    memcpy(p->user, gop.user, sizeof(p->user));
}

static void on_store_done(rt_actor_t *self, group_t *g, const rt_msg_t *msg)
{
    chat_op_res_t res;
    gpend_t p;
    uint32_t i;

    for (i = 0; i < g->npend && (uint64_t)g->pend[i].ref != msg->ref; i++)
        ;
    if (i == g->npend)
        return;
    p = g->pend[i];
    g->pend[i] = g->pend[--g->npend];
    if (msg->type == RT_MSG_TIMEOUT || msg->size != sizeof(res))
        return reply_err(g->sys, p.session, p.sref, p.reqid, PROTO_E_INTERNAL,
                         "store timed out");
    memcpy(&res, msg->data, sizeof(res));
    if (res.result < 0) {
        const char *why;
        int code = result_code(res.result, &why);
        return reply_err(g->sys, p.session, p.sref, p.reqid, code, why);
    }
    if (p.op == PROTO_OP_GROUP_SEND) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (proto_enc_sent_ok(&sb, p.reqid, res.sid, res.ts, res.gseq,
                              res.dup) == 0)
            reply_map(g->sys, p.session, p.sref, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (res.dup || res.gseq <= g->rec.head)
            return;
        g->rec.head = res.gseq;
        chat_glog_rec_t r = {.sid = res.sid, .from_uid = p.uid};
        window_push(g, res.gseq, &r);
        return push_entry(g, res.gseq);
    }
    reply_ok(g->sys, p.session, p.sref, p.reqid);
    if (p.op == PROTO_OP_GROUP_READ) {
        member_t *m = find_member(g, p.uid);
        if (m) {
            advance(self, g, (uint32_t)(m - g->m), m->delivered, p.upto);
            if (p.upto > m->stored) /* the read wrote it */
                m->stored = p.upto;
        }
        return;
    }
    /* A membership change: reload and let everyone concerned read on. */
    if (load(g) < 0)
        rt_log(RT_LOG_WARN, "group", "gid=%llu event=reload_failed",
               (unsigned long long)g->gid);
    for (uint32_t j = 0; j < g->nw; j++) {
        recount(g, &g->w[j]);
        announce_complete(g, &g->w[j]); /* a member who left counts no more */
    }
    wake_all(g, p.user);
}

/* ---- the group actor
 * ----------------------------------------------------------- */

static void tick_after(group_t *g, rt_id_t self, uint64_t ms)
{
    rt_msg_t *m = rt_msg_new(CHAT_GROUP_TICK, 0);

    if (m)
        rt_send_after(g->sys, self, m, ms);
}

static int group_init(rt_actor_t *self, void *arg)
{
    group_t *g = rt_state(self);
    int rc;

    g->arg = arg;
    g->sys = rt_system(self);
    g->gid = *g->arg;
    g->active_at = uv_hrtime() / 1000000;
    rc = rt_register_key(g->sys, CHAT_GROUP_KEY(g->gid), rt_self(self));
    if (rc == RT_EEXIST) {
        g->dup = true; /* lost a race: forward to the owner a while */
        tick_after(g, rt_self(self), LINGER_MS);
        return 0;
    }
    if (rc < 0 || (rc = load(g)) < 0)
        return rc;
    tick_after(g, rt_self(self),
               g->missing ? LINGER_MS : g_cfg->group_idle_ms / 2 + 1);
    return 0;
}

/* Idle for group_idle_ms: give up the key, forward stragglers, then end. */
static int on_tick(group_t *g, rt_id_t self)
{
    uint64_t now = uv_hrtime() / 1000000;

    if (g->dup || g->lingering || g->missing)
        return RT_STOP;
    if (g->npend || now - g->active_at < g_cfg->group_idle_ms) {
        tick_after(g, self, g_cfg->group_idle_ms / 2 + 1);
        return RT_CONTINUE;
    }
    rt_unregister_key(g->sys, CHAT_GROUP_KEY(g->gid));
    g->lingering = true;
    tick_after(g, self, LINGER_MS);
    return RT_CONTINUE;
}

static void forward(group_t *g, const rt_msg_t *msg)
{
    rt_id_t to = g->dup ? rt_whereis_key(g->sys, CHAT_GROUP_KEY(g->gid)) : 0;
    rt_msg_t *m;

    if (!to)
        to = rt_whereis(g->sys, CHAT_GROUPS_NAME);
    if (!to || !(m = rt_msg_new(msg->type, msg->size)))
        return;
    m->ref = msg->ref;
    memcpy(m->data, msg->data, msg->size);
    rt_send(g->sys, to, m);
}

static int group_handle(rt_actor_t *self, rt_msg_t *msg)
{
    group_t *g = rt_state(self);
    bool outside =
        msg->type == CHAT_GROUP_REQ || msg->type == CHAT_GROUP_RCPT ||
        msg->type == CHAT_GROUP_HELLO || msg->type == CHAT_GROUP_WAKE;

    if ((g->dup || g->lingering) && outside) {
        forward(g, msg);
        return RT_CONTINUE;
    }
    if (rt_fault("group.handle") == RT_FAULT_CRASH)
        return RT_ECRASH;
    if (outside)
        g->active_at = uv_hrtime() / 1000000;
    switch (msg->type) {
    case CHAT_GROUP_REQ:
        on_req(self, g, msg);
        break;
    case CHAT_GROUP_RCPT:
        if (!g->missing)
            on_rcpt(self, g, msg, false);
        break;
    case CHAT_GROUP_HELLO:
        if (!g->missing)
            on_rcpt(self, g, msg, true);
        break;
    case CHAT_GROUP_WAKE:
        if (!g->missing)
            wake_all(g, NULL);
        break;
    case CHAT_STORE_CHAT_DONE:
    case RT_MSG_TIMEOUT:
        on_store_done(self, g, msg);
        break;
    case CHAT_GROUP_FLUSH:
        flush(self, g);
        break;
    case CHAT_GROUP_TICK:
        return on_tick(g, rt_self(self));
    }
    return RT_CONTINUE;
}

static void group_terminate(rt_actor_t *self, int reason)
{
    group_t *g = rt_state(self);

    if (!g->arg)
        return;
    if (g->pos_dirty)
        write_positions(g);
    for (uint32_t i = 0; i < g->npend; i++)
        reply_err(g->sys, g->pend[i].session, g->pend[i].sref, g->pend[i].reqid,
                  PROTO_E_INTERNAL, "group restarting");
    for (uint32_t i = 0; i < g->nw; i++) {
        free(g->w[i].newd);
        free(g->w[i].newr);
    }
    free(g->w);
    free(g->m);
    free(g->pend);
    if (rt_reason_is_normal(reason))
        free(g->arg);
}

static void group_describe(rt_actor_t *self, char *buf, size_t len)
{
    group_t *g = rt_state(self);

    snprintf(buf, len, "gid=%llu name=%s members=%u head=%llu pending=%u%s",
             (unsigned long long)g->gid, g->rec.name, g->nm,
             (unsigned long long)g->rec.head, g->npend,
             g->lingering ? " lingering" : "");
}

const rt_behaviour_t chat_group_behaviour = {
    .kind = "group",
    .state_size = sizeof(group_t),
    .init = group_init,
    .handle = group_handle,
    .terminate = group_terminate,
    .describe = group_describe,
};

/* ---- the router
 * ------------------------------------------------------------------ */

typedef struct starting {
    uint64_t gid;
    int64_t ref;
    rt_msg_t **q;
    uint32_t n, cap;
} starting_t;

typedef struct router {
    rt_system_t *sys;
    starting_t *st;
    uint32_t nst, capst;
    gpend_t *pend; /* creations waiting for the store */
    uint32_t npend, cappend;
} router_t;

static int router_init(rt_actor_t *self, void *arg)
{
    router_t *r = rt_state(self);

    (void)arg;
    r->sys = rt_system(self);
    return rt_register(r->sys, CHAT_GROUPS_NAME, rt_self(self));
}

static rt_msg_t *copy_msg(const rt_msg_t *msg)
{
    rt_msg_t *m = rt_msg_new(msg->type, msg->size);

    if (m) {
        m->ref = msg->ref;
        memcpy(m->data, msg->data, msg->size);
    }
    return m;
}

static void queue(starting_t *s, rt_msg_t *m)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        rt_msg_t **nq = realloc(s->q, cap * sizeof(*nq));
        if (!nq) {
            rt_msg_free(m);
            return;
        }
        s->q = nq;
        s->cap = cap;
    }
    s->q[s->n++] = m;
}

/* Starts the actor of gid (once) and queues msg for it. */
static void start_group(rt_actor_t *self, router_t *r, uint64_t gid,
                        const rt_msg_t *msg)
{
    starting_t *s = NULL;

    for (uint32_t i = 0; i < r->nst && !s; i++)
        if (r->st[i].gid == gid)
            s = &r->st[i];
    if (!s) {
        rt_id_t sup = rt_whereis(r->sys, CHAT_GROUPS_SUP_NAME);
        uint64_t *arg = malloc(sizeof(*arg));
        if (!sup || !arg) {
            free(arg);
            return;
        }
        *arg = gid;
        int64_t ref =
            rt_sup_start_child_async(self, sup, arg, START_TIMEOUT_MS);
        if (ref < 0) {
            free(arg);
            return;
        }
        if (r->nst == r->capst) {
            uint32_t cap = r->capst ? r->capst * 2 : 8;
            starting_t *ns = realloc(r->st, cap * sizeof(*ns));
            if (!ns)
                return;
            r->st = ns;
            r->capst = cap;
        }
        s = &r->st[r->nst++];
        *s = (starting_t){.gid = gid, .ref = ref};
    }
    rt_msg_t *m = msg ? copy_msg(msg) : NULL;
    if (m)
        queue(s, m);
}

static void on_started(router_t *r, const rt_msg_t *msg)
{
    for (uint32_t i = 0; i < r->nst; i++) {
        starting_t *s = &r->st[i];
        if ((uint64_t)s->ref != msg->ref)
            continue;
        rt_sup_started_t st = {0, RT_ETIMEDOUT};
        if (msg->type != RT_MSG_TIMEOUT && msg->size == sizeof(st))
            memcpy(&st, msg->data, sizeof(st));
        /* the child may not have run its init yet: send to its id, it
         * handles these after init (or forwards them if it lost a race) */
        rt_id_t to = st.err == 0 ? st.child : 0;
        for (uint32_t j = 0; j < s->n; j++) {
            if (to)
                rt_send(r->sys, to, s->q[j]);
            else
                rt_msg_free(s->q[j]);
        }
        if (!to)
            rt_log(RT_LOG_WARN, "groups", "gid=%llu event=start_failed err=%s",
                   (unsigned long long)s->gid, rt_strerror(st.err));
        free(s->q);
        r->st[i] = r->st[--r->nst];
        return;
    }
}

static void create(rt_actor_t *self, router_t *r, const rt_msg_t *msg)
{
    const chat_group_req_t *q = (const chat_group_req_t *)msg->data;
    chat_gop_t gop = {.kind = CHAT_GOP_CREATE,
                      .nnames = q->q.nusers,
                      .limit = g_cfg->group_max_members};
    size_t size,
        n = q->q.body_len < PROTO_MAX_TEXT ? q->q.body_len : PROTO_MAX_TEXT;

    memcpy(gop.name, q->q.data, n);
    chat_op_t *op = gop_new(q, &gop, q->q.data + q->q.body_len,
                            (size_t)q->q.nusers * CHAT_NAME_CAP, &size);
    int64_t ref = op ? store_request(self, op, size) : RT_ENOMEM;
    free(op);
    if (ref >= 0 && r->npend == r->cappend) {
        uint32_t cap = r->cappend ? r->cappend * 2 : 16;
        gpend_t *np = realloc(r->pend, cap * sizeof(*np));
        if (np) {
            r->pend = np;
            r->cappend = cap;
        }
    }
    if (ref < 0 || r->npend == r->cappend)
        return reply_err(r->sys, q->session, msg->ref, q->q.reqid,
                         PROTO_E_INTERNAL, "store unavailable");
    r->pend[r->npend++] = (gpend_t){.ref = ref,
                                    .session = q->session,
                                    .sref = msg->ref,
                                    .reqid = q->q.reqid};
}

static bool on_created(rt_actor_t *self, router_t *r, const rt_msg_t *msg)
{
    chat_op_res_t res;
    uint32_t i;

    for (i = 0; i < r->npend && (uint64_t)r->pend[i].ref != msg->ref; i++)
        ;
    if (i == r->npend)
        return false;
    gpend_t p = r->pend[i];
    r->pend[i] = r->pend[--r->npend];
    if (msg->type == RT_MSG_TIMEOUT || msg->size != sizeof(res)) {
        reply_err(r->sys, p.session, p.sref, p.reqid, PROTO_E_INTERNAL,
                  "store timed out");
        return true;
    }
    memcpy(&res, msg->data, sizeof(res));
    if (res.result < 0) {
        const char *why;
        int code = result_code(res.result, &why);
        reply_err(r->sys, p.session, p.sref, p.reqid, code, why);
        return true;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (proto_enc_gid_ok(&sb, p.reqid, res.gid) == 0)
        reply_map(r->sys, p.session, p.sref, &sb);
    msgpack_sbuffer_destroy(&sb);
    /* the new group's actor tells its members */
    rt_msg_t wake = {.type = CHAT_GROUP_WAKE, .size = 0};
    start_group(self, r, res.gid, &wake);
    return true;
}

static int router_handle(rt_actor_t *self, rt_msg_t *msg)
{
    router_t *r = rt_state(self);

    switch (msg->type) {
    case CHAT_GROUP_REQ: {
        const chat_group_req_t *q = (const chat_group_req_t *)msg->data;
        chat_group_rec_t rec;
        if (msg->size < sizeof(*q))
            break;
        if (q->q.op == PROTO_OP_GROUP_CREATE) {
            create(self, r, msg);
            break;
        }
        rt_id_t g = rt_whereis_key(r->sys, CHAT_GROUP_KEY(q->q.gid));
        if (g) {
            rt_send(r->sys, g, copy_msg(msg));
            break;
        }
        if (chat_db_group_get(g_db, q->q.gid, &rec) == -ENOENT) {
            reply_err(r->sys, q->session, msg->ref, q->q.reqid,
                      PROTO_E_NOT_FOUND, "no such group");
            break;
        }
        start_group(self, r, q->q.gid, msg);
        break;
    }
    case CHAT_GROUP_RCPT: {
        chat_group_rcpt_t c;
        if (msg->size != sizeof(c))
            break;
        memcpy(&c, msg->data, sizeof(c));
        rt_id_t g = rt_whereis_key(r->sys, CHAT_GROUP_KEY(c.gid));
        if (g)
            rt_send(r->sys, g, copy_msg(msg));
        else
            start_group(self, r, c.gid, msg);
        break;
    }
    case CHAT_STORE_CHAT_DONE:
        on_created(self, r, msg);
        break;
    case RT_MSG_TIMEOUT:
        if (!on_created(self, r, msg))
            on_started(r, msg);
        break;
    default:
        on_started(r, msg);
        break;
    }
    return RT_CONTINUE;
}

static void router_terminate(rt_actor_t *self, int reason)
{
    router_t *r = rt_state(self);

    (void)reason;
    for (uint32_t i = 0; i < r->nst; i++) {
        for (uint32_t j = 0; j < r->st[i].n; j++)
            rt_msg_free(r->st[i].q[j]);
        free(r->st[i].q);
    }
    free(r->st);
    free(r->pend);
}

static void router_describe(rt_actor_t *self, char *buf, size_t len)
{
    router_t *r = rt_state(self);

    snprintf(buf, len, "starting=%u creating=%u", r->nst, r->npend);
}

const rt_behaviour_t chat_group_router_behaviour = {
    .kind = "groups",
    .state_size = sizeof(router_t),
    .init = router_init,
    .handle = router_handle,
    .terminate = router_terminate,
    .describe = router_describe,
};

/* ---- the supervisor
 * ---------------------------------------------------------------- */

static int groups_sup_init(rt_actor_t *self, void *arg)
{
    int rc = rt_supervisor.init(self, arg);

    if (rc < 0)
        return rc;
    return rt_register(rt_system(self), CHAT_GROUPS_SUP_NAME, rt_self(self));
}

void chat_groups_setup(const chat_config_t *cfg, chat_db_t *db)
{
    g_cfg = cfg;
    g_db = db;
    chat_sg_setup(db);
    chat_groups_sup_behaviour = rt_supervisor;
    chat_groups_sup_behaviour.init = groups_sup_init;
    group_child = (rt_child_spec_t){.name = "group",
                                    .behaviour = &chat_group_behaviour,
                                    .restart = RT_TRANSIENT,
                                    .shutdown_ms = 2000};
    chat_groups_spec = (rt_sup_spec_t){.name = CHAT_GROUPS_SUP_NAME,
                                       .strategy = RT_SIMPLE_ONE_FOR_ONE,
                                       .intensity = 1000,
                                       .period_ms = 10000,
                                       .children = &group_child,
                                       .nchildren = 1};
}
