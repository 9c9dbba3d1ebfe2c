/*
 * actors/gstore.c - the group records in LMDB. See group.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "store_db.h"

int chat_group_open_dbis(chat_db_t *db, MDB_txn *txn)
{
    int rc;

    if ((rc = mdb_dbi_open(txn, "groups", MDB_CREATE, &db->groups)) ||
        (rc = mdb_dbi_open(txn, "gmembers", MDB_CREATE, &db->gmembers)) ||
        (rc = mdb_dbi_open(txn, "glog", MDB_CREATE, &db->glog)) ||
        (rc = mdb_dbi_open(txn, "ugroups", MDB_CREATE, &db->ugroups)) ||
        (rc = mdb_dbi_open(txn, "gcur", MDB_CREATE, &db->gcur)))
        return rc;
    return 0;
}

/* ---- helpers inside a transaction --------------------------------------- */

static void key2(uint8_t k[16], uint64_t a, uint64_t b)
{
    chat_put_be64(k, a);
    chat_put_be64(k + 8, b);
}

static int get2(MDB_txn *txn, MDB_dbi dbi, uint64_t a, uint64_t b, void *out,
                size_t len)
{
    uint8_t k[16];
    MDB_val kv = {sizeof(k), k}, v;
    int rc;

    key2(k, a, b);
    if ((rc = mdb_get(txn, dbi, &kv, &v)))
        return rc;
    if (v.mv_size != len)
        return MDB_CORRUPTED;
    memcpy(out, v.mv_data, len);
    return 0;
}

static int put2(MDB_txn *txn, MDB_dbi dbi, uint64_t a, uint64_t b,
                const void *val, size_t len)
{
    uint8_t k[16];
    MDB_val kv = {sizeof(k), k}, v = {len, (void *)val};

    key2(k, a, b);
    return mdb_put(txn, dbi, &kv, &v, 0);
}

static int group_get(chat_db_t *db, MDB_txn *txn, uint64_t gid,
                     chat_group_rec_t *g)
{
    uint8_t k[8];
    MDB_val kv = {sizeof(k), k}, v;
    int rc;

    chat_put_be64(k, gid);
    if ((rc = mdb_get(txn, db->groups, &kv, &v)))
        return rc;
    if (v.mv_size != sizeof(*g))
        return MDB_CORRUPTED;
    memcpy(g, v.mv_data, sizeof(*g));
    return 0;
}

static int group_put(chat_db_t *db, MDB_txn *txn, const chat_group_rec_t *g)
{
    uint8_t k[8];
    MDB_val kv = {sizeof(k), k}, v = {sizeof(*g), (void *)g};

    chat_put_be64(k, g->gid);
    return mdb_put(txn, db->groups, &kv, &v, 0);
}

static int user_uid(chat_db_t *db, MDB_txn *txn, const char *name,
                    uint64_t *uid)
{
    size_t len = strnlen(name, CHAT_NAME_CAP);
    MDB_val k = {len, (void *)name}, v;
    chat_user_rec_t u;
    int rc;

    if (len == 0 || len > PROTO_MAX_NAME)
        return MDB_NOTFOUND;
    if ((rc = mdb_get(txn, db->users, &k, &v)))
        return rc;
    if (v.mv_size != sizeof(u))
        return MDB_CORRUPTED;
    memcpy(&u, v.mv_data, sizeof(u));
    *uid = u.uid;
    return 0;
}

/* Appends one entry to the stream: the group record's head moves. */
static int glog_append(chat_db_t *db, MDB_txn *txn, chat_group_rec_t *g,
                       const chat_glog_rec_t *r, const void *body)
{
    size_t len = sizeof(*r) + r->body_len;
    uint8_t k[16];
    MDB_val kv = {sizeof(k), k}, v = {len, NULL};
    int rc;

    key2(k, g->gid, ++g->head);
    if ((rc = mdb_put(txn, db->glog, &kv, &v, MDB_RESERVE)))
        return rc;
    memcpy(v.mv_data, r, sizeof(*r));
    memcpy((uint8_t *)v.mv_data + sizeof(*r), body, r->body_len);
    return 0;
}

/* A system event: by, and the member concerned and a name, if any. */
static int event(chat_db_t *db, MDB_txn *txn, chat_group_rec_t *g,
                 const chat_op_t *op, uint32_t kind, const char *user,
                 const char *name)
{
    char body[CHAT_NAME_CAP + PROTO_MAX_TEXT + 2];
    size_t ul = user ? strlen(user) : 0, nl = name ? strlen(name) : 0;
    chat_glog_rec_t r = {.kind = kind, .ts = op->now, .from_uid = op->uid};

    memcpy(r.by, op->user, sizeof(r.by));
    memcpy(body, user ? user : "", ul + 1);
    memcpy(body + ul + 1, name ? name : "", nl + 1);
    r.body_len = (uint32_t)(ul + nl + 2);
    return glog_append(db, txn, g, &r, body);
}

/* Makes uid a member from the event at g->head on; the members a group
 * is created with see it from its `created` event, the first. */
static int member_add(chat_db_t *db, MDB_txn *txn, chat_group_rec_t *g,
                      uint64_t uid, const char *name, uint32_t flags,
                      uint64_t now, bool creating)
{
    uint64_t from = creating ? 1 : g->head;
    chat_gmember_t m = {.joined = from,
                        .joined_ts = now,
                        .delivered = from - 1,
                        .read = from - 1,
                        .flags = flags};
    chat_ugroup_t u = {.joined = from, .end = 0};
    int rc;

    strncpy(m.name, name, sizeof(m.name) - 1);
    if ((rc = put2(txn, db->gmembers, g->gid, uid, &m, sizeof(m))) ||
        (rc = put2(txn, db->ugroups, uid, g->gid, &u, sizeof(u))))
        return rc;
    g->nmembers++;
    return 0;
}

static const char *op_name(const chat_gop_t *gop, uint32_t i)
{
    return (const char *)(gop + 1) + (size_t)i * CHAT_NAME_CAP;
}

/* Adds the listed users who exist and are not members yet; each gets an
 * `added` event. -ENOENT for an unknown user, -E2BIG over the limit;
 * nothing is written then. */
static int add_names(chat_db_t *db, MDB_txn *txn, chat_group_rec_t *g,
                     const chat_op_t *op, const chat_gop_t *gop,
                     chat_op_res_t *res, bool creating)
{
    uint64_t *uids = calloc(gop->nnames + 1, sizeof(*uids));
    uint32_t fresh = 0;
    int rc = 0;

    if (!uids)
        return ENOMEM;
    for (uint32_t i = 0; i < gop->nnames; i++) {
        chat_gmember_t m;
        if ((rc = user_uid(db, txn, op_name(gop, i), &uids[i]))) {
            if (rc == MDB_NOTFOUND)
                res->result = -ENOENT, rc = 0;
            goto out;
        }
        rc = get2(txn, db->gmembers, g->gid, uids[i], &m, sizeof(m));
        if (rc == 0)
            uids[i] = 0; /* already a member */
        else if (rc != MDB_NOTFOUND)
            goto out;
        rc = 0;
        for (uint32_t j = 0; j < i && uids[i]; j++)
            if (uids[j] == uids[i])
                uids[i] = 0; /* listed twice */
        fresh += uids[i] != 0;
    }
    if (g->nmembers + fresh > gop->limit) {
        res->result = -E2BIG;
        goto out;
    }
    for (uint32_t i = 0; i < gop->nnames && rc == 0; i++) {
        if (!uids[i])
            continue;
        const char *name = op_name(gop, i);
        if (!(rc = event(db, txn, g, op, PROTO_GROUP_ADDED, name, NULL)))
            rc = member_add(db, txn, g, uids[i], name, 0, op->now, creating);
    }
out:
    free(uids);
    return rc;
}

static int op_create(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                     const chat_gop_t *gop, chat_op_res_t *res)
{
    chat_group_rec_t g = {.created = op->now, .creator = op->uid};
    int rc;

    if ((rc = chat_next_id(txn, db->meta, "next_gid", &g.gid)))
        return rc;
    memcpy(g.name, gop->name, sizeof(g.name));
    if ((rc = event(db, txn, &g, op, PROTO_GROUP_CREATED, NULL, gop->name)) ||
        (rc = member_add(db, txn, &g, op->uid, op->user, CHAT_GMEMBER_ADMIN,
                         op->now, true)))
        return rc;
    if ((rc = add_names(db, txn, &g, op, gop, res, true)))
        return rc;
    if (res->result < 0)
        return MDB_NOTFOUND; /* undo the group: -1 marks the abort */
    res->gid = g.gid;
    res->gseq = g.head;
    return group_put(db, txn, &g);
}

/* The longest-standing member (lowest joined, then uid) becomes admin
 * when no admin is left. */
static int keep_an_admin(chat_db_t *db, MDB_txn *txn, chat_group_rec_t *g,
                         const chat_op_t *op)
{
    MDB_cursor *cur;
    uint8_t k[16];
    MDB_val kv = {sizeof(k), k}, v;
    uint64_t best = 0, best_joined = UINT64_MAX;
    chat_gmember_t m, bm = {0};
    int rc;

    key2(k, g->gid, 0);
    if ((rc = mdb_cursor_open(txn, db->gmembers, &cur)))
        return rc;
    for (rc = mdb_cursor_get(cur, &kv, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &kv, &v, MDB_NEXT)) {
        if (chat_get_be64(kv.mv_data) != g->gid || v.mv_size != sizeof(m))
            break;
        memcpy(&m, v.mv_data, sizeof(m));
        if (m.flags & CHAT_GMEMBER_ADMIN) {
            mdb_cursor_close(cur);
            return 0;
        }
        if (m.joined < best_joined) {
            best_joined = m.joined;
            best = chat_get_be64((uint8_t *)kv.mv_data + 8);
            bm = m;
        }
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (!best)
        return 0;
    bm.flags |= CHAT_GMEMBER_ADMIN;
    if ((rc = put2(txn, db->gmembers, g->gid, best, &bm, sizeof(bm))))
        return rc;
    return event(db, txn, g, op, PROTO_GROUP_PROMOTED, bm.name, NULL);
}

static int op_member(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                     const chat_gop_t *gop, chat_group_rec_t *g,
                     chat_op_res_t *res)
{
    uint64_t uid;
    chat_gmember_t m;
    int rc = user_uid(db, txn, gop->user, &uid);

    if (rc == 0)
        rc = get2(txn, db->gmembers, g->gid, uid, &m, sizeof(m));
    if (rc == MDB_NOTFOUND)
        return res->result = -ENOENT, 0;
    if (rc)
        return rc;
    if (gop->kind == CHAT_GOP_PROMOTE) {
        if (m.flags & CHAT_GMEMBER_ADMIN)
            return 0;
        m.flags |= CHAT_GMEMBER_ADMIN;
        if ((rc = put2(txn, db->gmembers, g->gid, uid, &m, sizeof(m))))
            return rc;
        return event(db, txn, g, op, PROTO_GROUP_PROMOTED, gop->user, NULL);
    }
    bool left = uid == op->uid;
    rc = event(db, txn, g, op, left ? PROTO_GROUP_LEFT : PROTO_GROUP_REMOVED,
               gop->user, NULL);
    chat_ugroup_t u = {.joined = m.joined, .end = g->head};
    uint8_t k[16];
    MDB_val kv = {sizeof(k), k};
    key2(k, g->gid, uid);
    if (rc || (rc = mdb_del(txn, db->gmembers, &kv, NULL)) ||
        (rc = put2(txn, db->ugroups, uid, g->gid, &u, sizeof(u))))
        return rc;
    g->nmembers--;
    return keep_an_admin(db, txn, g, op);
}

static int op_send(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                   const chat_gop_t *gop, chat_group_rec_t *g,
                   chat_op_res_t *res)
{
    uint8_t ck[16];
    MDB_val kv = {sizeof(ck), ck}, v;
    uint64_t ids[3];
    int rc;

    key2(ck, op->devid, gop->cid);
    rc = mdb_get(txn, db->cids, &kv, &v);
    if (rc == 0 && v.mv_size == sizeof(ids)) {
        memcpy(ids, v.mv_data, sizeof(ids));
        res->sid = ids[0];
        res->ts = ids[1];
        res->gseq = ids[2];
        res->dup = 1;
        return 0;
    }
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    chat_glog_rec_t r = {.kind = CHAT_GLOG_MSG,
                         .ts = op->now,
                         .from_uid = op->uid,
                         .body_len =
                             op->body_len - (uint32_t)sizeof(chat_gop_t)};
    memcpy(r.by, op->user, sizeof(r.by));
    if ((rc = chat_next_id(txn, db->meta, "next_sid", &r.sid)) ||
        (rc = glog_append(db, txn, g, &r, gop + 1)))
        return rc;
    ids[0] = res->sid = r.sid;
    ids[1] = res->ts = r.ts;
    ids[2] = res->gseq = g->head;
    v.mv_size = sizeof(ids);
    v.mv_data = ids;
    return mdb_put(txn, db->cids, &kv, &v, 0);
}

/* Raises uid's delivered position in gid (and its read one when read is
 * not 0), if it is still a member. Positions only grow. */
static int raise_member(chat_db_t *db, MDB_txn *txn, uint64_t gid, uint64_t uid,
                        uint64_t delivered, uint64_t read)
{
    chat_gmember_t m;
    int rc = get2(txn, db->gmembers, gid, uid, &m, sizeof(m));

    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (delivered <= m.delivered && read <= m.read)
        return 0;
    if (delivered > m.delivered)
        m.delivered = delivered;
    if (read > m.read)
        m.read = read;
    return put2(txn, db->gmembers, gid, uid, &m, sizeof(m));
}

/* A device acked: its cursor only (see group.h). A member read: its
 * record. */
static int op_position(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                       const chat_gop_t *gop)
{
    if (gop->kind == CHAT_GOP_ACK)
        return put2(txn, db->gcur, op->devid, gop->gid, &gop->upto,
                    sizeof(gop->upto));
    return raise_member(db, txn, gop->gid, op->uid, gop->upto, gop->upto);
}

/* The group actor's batch of delivered positions. */
static int op_delivered(chat_db_t *db, MDB_txn *txn, const chat_gop_t *gop)
{
    const chat_gpos_t *p = (const chat_gpos_t *)(gop + 1);
    int rc = 0;

    for (uint32_t i = 0; i < gop->nnames && !rc; i++) {
        chat_gpos_t one;
        memcpy(&one, &p[i], sizeof(one));
        rc = raise_member(db, txn, gop->gid, one.uid, one.delivered, 0);
    }
    return rc;
}

static int op_all(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                  const chat_gop_t *gop, chat_wake_fn wake, void *ctx)
{
    chat_gentry_t e = {.e = {.kind = gop->limit == 2
                                         ? CHAT_ENTRY_GREAD_ALL
                                         : CHAT_ENTRY_GDELIVERED_ALL,
                             .sid = gop->sid,
                             .ts = op->now},
                       .gid = gop->gid,
                       .gseq = gop->upto};

    memcpy(e.e.by, op->user, sizeof(e.e.by));
    return chat_mbox_append_user(db, txn, gop->target, 0, &e, sizeof(e), wake,
                                 ctx);
}

static int apply(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                 const chat_gop_t *gop, chat_op_res_t *res, chat_wake_fn wake,
                 void *ctx);

int chat_group_op_apply(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                        chat_op_res_t *res, chat_wake_fn wake, void *ctx)
{
    if (op->body_len < sizeof(chat_gop_t))
        return res->result = -EINVAL, 0;
    /* chat_op_t's body follows two names of odd length, so it is not
     * aligned for a chat_gop_t: read it from an aligned copy */
    if (((uintptr_t)op->body & (_Alignof(chat_gop_t) - 1)) == 0)
        return apply(db, txn, op, (const chat_gop_t *)op->body, res, wake, ctx);
    void *copy = malloc(op->body_len);
    if (!copy)
        return res->result = -ENOMEM, 0;
    memcpy(copy, op->body, op->body_len);
    int rc = apply(db, txn, op, copy, res, wake, ctx);
    free(copy);
    return rc;
}

static int apply(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                 const chat_gop_t *gop, chat_op_res_t *res, chat_wake_fn wake,
                 void *ctx)
{
    chat_group_rec_t g;
    MDB_txn *sub;
    int rc;

    if (op->body_len < sizeof(*gop) ||
        (gop->kind != CHAT_GOP_SEND &&
         op->body_len != sizeof(*gop) + (size_t)gop->nnames *
                                            (gop->kind == CHAT_GOP_DELIVERED
                                                 ? sizeof(chat_gpos_t)
                                                 : CHAT_NAME_CAP)))
        return res->result = -EINVAL, 0;
    switch (gop->kind) {
    case CHAT_GOP_DELIVERED:
        return op_delivered(db, txn, gop);
    case CHAT_GOP_ACK:
    case CHAT_GOP_READ:
        return op_position(db, txn, op, gop);
    case CHAT_GOP_ALL:
        return op_all(db, txn, op, gop, wake, ctx);
    case CHAT_GOP_CREATE:
        /* A nested transaction, so that an unknown member undoes the
         * group without failing the batch. */
        if ((rc = mdb_txn_begin(db->env, txn, 0, &sub)))
            return rc;
        rc = op_create(db, sub, op, gop, res);
        if (rc == 0)
            return mdb_txn_commit(sub);
        mdb_txn_abort(sub);
        return res->result < 0 ? 0 : rc;
    }
    rc = group_get(db, txn, gop->gid, &g);
    if (rc == MDB_NOTFOUND)
        return res->result = -ENOENT, 0;
    if (rc)
        return rc;
    uint64_t head = g.head;
    switch (gop->kind) {
    case CHAT_GOP_ADD:
        rc = add_names(db, txn, &g, op, gop, res, false);
        break;
    case CHAT_GOP_REMOVE:
    case CHAT_GOP_PROMOTE:
        rc = op_member(db, txn, op, gop, &g, res);
        break;
    case CHAT_GOP_RENAME:
        memcpy(g.name, gop->name, sizeof(g.name));
        rc = event(db, txn, &g, op, PROTO_GROUP_RENAMED, NULL, gop->name);
        break;
    case CHAT_GOP_SEND:
        rc = op_send(db, txn, op, gop, &g, res);
        break;
    default:
        res->result = -EINVAL;
    }
    res->gid = g.gid;
    if (!res->gseq)
        res->gseq = g.head;
    if (rc || res->result < 0 || g.head == head)
        return rc;
    return group_put(db, txn, &g);
}

/* ---- reads --------------------------------------------------------------- */

static int rbegin(chat_db_t *db, MDB_txn **txn)
{
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn);
    return rc ? chat_db_err("read", rc) : 0;
}

static int rdone(MDB_txn *txn, int rc, const char *what)
{
    mdb_txn_abort(txn);
    if (rc == 0)
        return 0;
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc == ENOMEM)
        return -ENOMEM;
    return chat_db_err(what, rc);
}

int chat_db_group_get(chat_db_t *db, uint64_t gid, chat_group_rec_t *out)
{
    MDB_txn *txn;
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    return rdone(txn, group_get(db, txn, gid, out), "group");
}

typedef struct members_ctx {
    void (*fn)(void *ctx, uint64_t uid, const chat_gmember_t *m);
    void *ctx;
    int n;
} members_ctx_t;

static int member_one(void *ctx, uint64_t uid, const MDB_val *v)
{
    members_ctx_t *c = ctx;
    chat_gmember_t m;

    if (v->mv_size != sizeof(m))
        return 0;
    memcpy(&m, v->mv_data, sizeof(m));
    c->fn(c->ctx, uid, &m);
    c->n++;
    return 0;
}

int chat_db_group_members(chat_db_t *db, uint64_t gid,
                          void (*fn)(void *ctx, uint64_t uid,
                                     const chat_gmember_t *m),
                          void *ctx)
{
    MDB_txn *txn;
    members_ctx_t c = {fn, ctx, 0};
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    rc = chat_db_scan(txn, db->gmembers, gid, 0, UINT64_MAX, member_one, &c);
    rc = rdone(txn, rc, "members");
    return rc < 0 ? rc : c.n;
}

typedef struct ugroups_ctx {
    void (*fn)(void *ctx, uint64_t gid, const chat_ugroup_t *r,
               uint64_t cursor);
    void *ctx;
    MDB_txn *txn;
    MDB_dbi gcur;
    uint64_t devid;
    int n;
} ugroups_ctx_t;

/* A group of the user, with this device's cursor in it (0 if none). */
static int ugroup_one(void *ctx, uint64_t gid, const MDB_val *v)
{
    ugroups_ctx_t *c = ctx;
    chat_ugroup_t u;
    uint64_t cursor = 0;

    if (v->mv_size != sizeof(u))
        return 0;
    memcpy(&u, v->mv_data, sizeof(u));
    int rc = get2(c->txn, c->gcur, c->devid, gid, &cursor, sizeof(cursor));
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    c->fn(c->ctx, gid, &u, cursor);
    c->n++;
    return 0;
}

int chat_db_user_groups(chat_db_t *db, uint64_t uid, uint64_t devid,
                        void (*fn)(void *ctx, uint64_t gid,
                                   const chat_ugroup_t *r, uint64_t cursor),
                        void *ctx)
{
    MDB_txn *txn;
    ugroups_ctx_t c = {.fn = fn, .ctx = ctx, .devid = devid};
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    c.txn = txn;
    c.gcur = db->gcur;
    rc = chat_db_scan(txn, db->ugroups, uid, 0, UINT64_MAX, ugroup_one, &c);
    rc = rdone(txn, rc, "ugroups");
    return rc < 0 ? rc : c.n;
}

int chat_db_group_cursor(chat_db_t *db, uint64_t devid, uint64_t gid,
                         uint64_t *out)
{
    MDB_txn *txn;
    int rc = rbegin(db, &txn);

    *out = 0;
    if (rc)
        return rc;
    rc = get2(txn, db->gcur, devid, gid, out, sizeof(*out));
    if (rc == MDB_NOTFOUND)
        *out = 0;
    return rdone(txn, rc == MDB_NOTFOUND ? 0 : rc, "gcur");
}

int chat_db_user_group(chat_db_t *db, uint64_t uid, uint64_t gid,
                       chat_ugroup_t *out)
{
    MDB_txn *txn;
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    return rdone(txn, get2(txn, db->ugroups, uid, gid, out, sizeof(*out)),
                 "ugroup");
}

int chat_glog_encode_one(msgpack_sbuffer *sb, uint64_t gid, uint64_t gseq,
                         const chat_glog_rec_t *r, const uint8_t *body)
{
    if (r->kind == CHAT_GLOG_MSG) {
        proto_ev_msg_t ev = {.from = proto_cstr(r->by),
                             .sid = r->sid,
                             .seq = gseq,
                             .ts = r->ts,
                             .body = {body, r->body_len},
                             .gid = gid};
        return proto_enc_ev_msg(sb, &ev);
    }
    const char *user = (const char *)body;
    size_t ul = strnlen(user, r->body_len);
    const char *name = ul < r->body_len ? user + ul + 1 : "";
    proto_ev_group_t ev = {.gid = gid,
                           .seq = gseq,
                           .ts = r->ts,
                           .kind = (proto_group_kind_t)r->kind,
                           .by = proto_cstr(r->by)};
    if (ul)
        ev.user = (proto_str_t){user, (uint32_t)ul};
    if (ul + 1 < r->body_len && name[0])
        ev.name =
            (proto_str_t){name, (uint32_t)strnlen(name, r->body_len - ul - 1)};
    return proto_enc_ev_group(sb, &ev);
}

/* Walks glog entries of gid in [from, to]; fn returns <0 to fail, 1 to
 * stop. */
typedef struct glog_ctx {
    int (*fn)(void *ctx, uint64_t gseq, const chat_glog_rec_t *r,
              const uint8_t *body);
    void *ctx;
    uint64_t *last;
    int frc; /* what fn said when it stopped the walk */
} glog_ctx_t;

static int glog_one(void *ctx, uint64_t gseq, const MDB_val *v)
{
    glog_ctx_t *c = ctx;
    chat_glog_rec_t r;

    if (v->mv_size < sizeof(r))
        return 0;
    memcpy(&r, v->mv_data, sizeof(r));
    if (r.body_len > v->mv_size - sizeof(r))
        return 0;
    if ((c->frc = c->fn(c->ctx, gseq, &r,
                        (const uint8_t *)v->mv_data + sizeof(r))) != 0)
        return 1;
    if (c->last)
        *c->last = gseq;
    return 0;
}

static int glog_walk(chat_db_t *db, uint64_t gid, uint64_t from, uint64_t to,
                     int (*fn)(void *ctx, uint64_t gseq,
                               const chat_glog_rec_t *r, const uint8_t *body),
                     void *ctx, uint64_t *last)
{
    MDB_txn *txn;
    glog_ctx_t c = {fn, ctx, last, 0};
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    rc = chat_db_scan(txn, db->glog, gid, from, to, glog_one, &c);
    if (c.frc < 0) {
        mdb_txn_abort(txn);
        return c.frc;
    }
    return rdone(txn, rc, "glog");
}

typedef struct enc_ctx {
    msgpack_sbuffer *sb;
    uint32_t n, max;
    uint64_t gid;
} enc_ctx_t;

static int enc_one(void *ctx, uint64_t gseq, const chat_glog_rec_t *r,
                   const uint8_t *body)
{
    enc_ctx_t *e = ctx;
    uint32_t len = 0;
    size_t at = e->sb->size;

    if (e->n >= e->max)
        return 1;
    if (msgpack_sbuffer_write(e->sb, (const char *)&len, sizeof(len)) < 0 ||
        chat_glog_encode_one(e->sb, e->gid, gseq, r, body) < 0)
        return -ENOMEM;
    len = (uint32_t)(e->sb->size - at - sizeof(len));
    memcpy(e->sb->data + at, &len, sizeof(len));
    e->n++;
    return 0;
}

int chat_db_glog_encode(chat_db_t *db, uint64_t gid, uint64_t from, uint64_t to,
                        uint32_t max, msgpack_sbuffer *sb, uint64_t *last)
{
    enc_ctx_t e = {.sb = sb, .max = max, .gid = gid};

    *last = from - 1;
    int rc = glog_walk(db, gid, from, to, enc_one, &e, last);
    return rc < 0 ? rc : (int)e.n;
}

typedef struct msgs_ctx {
    void (*fn)(void *ctx, uint64_t gseq, const chat_glog_rec_t *r);
    void *ctx;
} msgs_ctx_t;

static int msgs_one(void *ctx, uint64_t gseq, const chat_glog_rec_t *r,
                    const uint8_t *body)
{
    msgs_ctx_t *m = ctx;

    (void)body;
    if (r->kind == CHAT_GLOG_MSG)
        m->fn(m->ctx, gseq, r);
    return 0;
}

int chat_db_glog_msgs(chat_db_t *db, uint64_t gid, uint64_t from, uint64_t to,
                      void (*fn)(void *ctx, uint64_t gseq,
                                 const chat_glog_rec_t *r),
                      void *ctx)
{
    msgs_ctx_t m = {fn, ctx};
    return glog_walk(db, gid, from, to, msgs_one, &m, NULL);
}
