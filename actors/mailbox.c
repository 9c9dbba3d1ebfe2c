/*
 * actors/mailbox.c - chat records in LMDB. See mailbox.h.
 */
#include "mailbox.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "log.h"
#include "store_db.h"

#define MAX_DEVICES 64 /* devices of one user that a message reaches */

int chat_mbox_open_dbis(chat_db_t *db, MDB_txn *txn)
{
    int rc;

    if ((rc = mdb_dbi_open(txn, "mbox", MDB_CREATE, &db->mbox)) ||
        (rc = mdb_dbi_open(txn, "mhead", MDB_CREATE, &db->mhead)) ||
        (rc = mdb_dbi_open(txn, "msgs", MDB_CREATE, &db->msgs)) ||
        (rc = mdb_dbi_open(txn, "conv", MDB_CREATE, &db->conv)) ||
        (rc = mdb_dbi_open(txn, "cids", MDB_CREATE, &db->cids)) ||
        (rc = mdb_dbi_open(txn, "rmark", MDB_CREATE, &db->rmark)) ||
        (rc = mdb_dbi_open(txn, "contacts", MDB_CREATE, &db->contacts)) ||
        (rc = mdb_dbi_open(txn, "blocks", MDB_CREATE, &db->blocks)) ||
        (rc = mdb_dbi_open(txn, "prefs", MDB_CREATE, &db->prefs)))
        return rc;
    return chat_group_open_dbis(db, txn);
}

/* ---- keys ----------------------------------------------------------------
 */

static void key2(uint8_t k[16], uint64_t a, uint64_t b)
{
    chat_put_be64(k, a);
    chat_put_be64(k + 8, b);
}

static void conv_key(uint8_t k[24], uint64_t a, uint64_t b, uint64_t sid)
{
    key2(k, a < b ? a : b, a < b ? b : a);
    chat_put_be64(k + 16, sid);
}

/* ---- small helpers inside a transaction ----------------------------------
 */

static int get_copy(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                    void *out, size_t len)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);

    if (rc)
        return rc;
    if (v.mv_size < len)
        return MDB_CORRUPTED;
    memcpy(out, v.mv_data, len);
    return 0;
}

static int put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
               const void *val, size_t vlen, unsigned flags)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    return mdb_put(txn, dbi, &k, &v, flags);
}

static int del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int user_uid(chat_db_t *db, MDB_txn *txn, const char *name,
                    uint64_t *uid)
{
    chat_user_rec_t u;
    size_t len = strlen(name);

    if (len == 0 || len > PROTO_MAX_NAME)
        return MDB_NOTFOUND;
    int rc = get_copy(txn, db->users, name, len, &u, sizeof(u));
    if (rc == 0)
        *uid = u.uid;
    return rc;
}

static int pair_exists(MDB_txn *txn, MDB_dbi dbi, uint64_t a, uint64_t b)
{
    uint8_t k[16];
    MDB_val kv = {sizeof(k), k}, v;

    key2(k, a, b);
    return mdb_get(txn, dbi, &kv, &v);
}

typedef struct dev_set {
    uint32_t n;
    uint64_t ids[MAX_DEVICES];
} dev_set_t;

static int device_id(void *ctx, uint64_t devid, const MDB_val *v)
{
    dev_set_t *out = ctx;

    (void)v;
    if (out->n == MAX_DEVICES)
        return 1;
    out->ids[out->n++] = devid;
    return 0;
}

static int devices_read(chat_db_t *db, MDB_txn *txn, uint64_t uid,
                        dev_set_t *out)
{
    out->n = 0;
    return chat_db_scan(txn, db->devices, uid, 0, UINT64_MAX, device_id, out);
}

/* ---- the writer's transaction cache --------------------------------------
 *
 * Between chat_txn_cache_begin() and _end(), on the writer's thread, the
 * counters of the meta table, the head of each mailbox and the device
 * list of each user live in memory: each is read at most once and
 * written once, at the flush just before the commit. A transaction that
 * aborts is dropped with its cache. Nested transactions see the same
 * cache: their counters are not rolled back with them (a skipped id is
 * harmless), and they must not append to mailboxes (no caller does).
 */

#define HEADS_CAP 4096 /* mailbox heads cached per transaction */
#define DEVS_CAP  256  /* users' device lists, direct-mapped */
#define IDS_CAP   8    /* counters of the meta table */

_Static_assert((HEADS_CAP & (HEADS_CAP - 1)) == 0, "a power of two");
_Static_assert((DEVS_CAP & (DEVS_CAP - 1)) == 0, "a power of two");

typedef struct head_slot {
    uint64_t devid;
    uint64_t gen; /* valid when equal to the cache's */
    chat_mhead_t h;
    bool dirty;
} head_slot_t;

typedef struct devs_slot {
    uint64_t uid;
    uint64_t gen;
    dev_set_t ds;
} devs_slot_t;

typedef struct id_slot {
    char name[16];
    uint64_t next;
} id_slot_t;

struct chat_txn_cache {
    chat_db_t *db;
    uint64_t gen;    /* of the current transaction; never 0 when open */
    uint32_t nheads; /* slots used in this transaction */
    uint32_t nids;
    uint32_t used[HEADS_CAP];
    head_slot_t heads[HEADS_CAP];
    devs_slot_t devs[DEVS_CAP];
    id_slot_t ids[IDS_CAP];
};

/* The cache open on this thread, if any. */
static _Thread_local chat_txn_cache_t *tl_cache;

chat_txn_cache_t *chat_txn_cache_new(chat_db_t *db)
{
    chat_txn_cache_t *c = calloc(1, sizeof(*c));

    if (c)
        c->db = db;
    return c;
}

void chat_txn_cache_free(chat_txn_cache_t *c)
{
    free(c);
}

void chat_txn_cache_begin(chat_txn_cache_t *c)
{
    c->gen++;
    c->nheads = 0;
    c->nids = 0;
    tl_cache = c;
}

void chat_txn_cache_end(chat_txn_cache_t *c)
{
    if (tl_cache == c)
        tl_cache = NULL;
}

/* The cache that serves txn, or NULL: the thread's open cache, when txn
 * belongs to its environment. */
static chat_txn_cache_t *cache_of(MDB_txn *txn)
{
    chat_txn_cache_t *c = tl_cache;

    return c && mdb_txn_env(txn) == c->db->env ? c : NULL;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ x >> 33;
}

int chat_txn_cache_flush(chat_txn_cache_t *c, MDB_txn *txn)
{
    chat_db_t *db = c->db;
    int rc;

    for (uint32_t i = 0; i < c->nheads; i++) {
        head_slot_t *s = &c->heads[c->used[i]];
        uint8_t hk[8];
        if (!s->dirty)
            continue;
        chat_put_be64(hk, s->devid);
        if ((rc = put(txn, db->mhead, hk, sizeof(hk), &s->h, sizeof(s->h), 0)))
            return rc;
    }
    for (uint32_t i = 0; i < c->nids; i++) {
        id_slot_t *s = &c->ids[i];
        if ((rc = put(txn, db->meta, s->name, strlen(s->name), &s->next,
                      sizeof(s->next), 0)))
            return rc;
    }
    return 0;
}

void chat_txn_devices_changed(MDB_txn *txn, uint64_t uid)
{
    chat_txn_cache_t *c = cache_of(txn);

    if (c)
        c->devs[mix(uid) & (DEVS_CAP - 1)].gen = 0;
}

/* The cached head of devid, loaded on first use; NULL when the table is
 * full (the caller then reads and writes LMDB itself: that device is
 * never cached in this transaction). */
static int head_slot(chat_txn_cache_t *c, MDB_txn *txn, uint64_t devid,
                     head_slot_t **out)
{
    uint32_t i = (uint32_t)mix(devid) & (HEADS_CAP - 1);

    *out = NULL;
    for (;; i = (i + 1) & (HEADS_CAP - 1)) {
        head_slot_t *s = &c->heads[i];
        if (s->gen == c->gen && s->devid == devid) {
            *out = s;
            return 0;
        }
        if (s->gen != c->gen)
            break;
    }
    if (c->nheads >= HEADS_CAP / 4 * 3)
        return 0;
    head_slot_t *s = &c->heads[i];
    uint8_t hk[8];
    chat_put_be64(hk, devid);
    s->h = (chat_mhead_t){0, 0};
    int rc = get_copy(txn, c->db->mhead, hk, sizeof(hk), &s->h, sizeof(s->h));
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s->devid = devid;
    s->gen = c->gen;
    s->dirty = false;
    c->used[c->nheads++] = i;
    *out = s;
    return 0;
}

/* Reads a mailbox head, through the cache when there is one. */
static int head_get(chat_db_t *db, MDB_txn *txn, uint64_t devid,
                    chat_mhead_t *h)
{
    chat_txn_cache_t *c = cache_of(txn);
    head_slot_t *s = NULL;
    uint8_t hk[8];
    int rc;

    if (c && (rc = head_slot(c, txn, devid, &s)))
        return rc;
    if (s) {
        *h = s->h;
        return 0;
    }
    *h = (chat_mhead_t){0, 0};
    chat_put_be64(hk, devid);
    rc = get_copy(txn, db->mhead, hk, sizeof(hk), h, sizeof(*h));
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int head_put(chat_db_t *db, MDB_txn *txn, uint64_t devid,
                    const chat_mhead_t *h)
{
    chat_txn_cache_t *c = cache_of(txn);
    head_slot_t *s = NULL;
    uint8_t hk[8];
    int rc;

    if (c && (rc = head_slot(c, txn, devid, &s)))
        return rc;
    if (s) {
        s->h = *h;
        s->dirty = true;
        return 0;
    }
    chat_put_be64(hk, devid);
    return put(txn, db->mhead, hk, sizeof(hk), h, sizeof(*h), 0);
}

static int counter_get(MDB_txn *txn, MDB_dbi meta, const char *name,
                       uint64_t *id)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, meta, &k, &v);

    *id = 1;
    if (rc == 0 && v.mv_size == sizeof(*id))
        memcpy(id, v.mv_data, sizeof(*id));
    else if (rc && rc != MDB_NOTFOUND)
        return rc;
    return 0;
}

int chat_txn_next_id(MDB_txn *txn, MDB_dbi meta, const char *name,
                     uint64_t *out)
{
    chat_txn_cache_t *c = cache_of(txn);
    size_t len = strlen(name);
    uint64_t id;
    int rc;

    if (c && meta == c->db->meta && len < sizeof(c->ids[0].name)) {
        id_slot_t *s = NULL;
        for (uint32_t i = 0; i < c->nids && !s; i++)
            if (strcmp(c->ids[i].name, name) == 0)
                s = &c->ids[i];
        if (!s && c->nids < IDS_CAP) {
            s = &c->ids[c->nids];
            if ((rc = counter_get(txn, meta, name, &s->next)))
                return rc;
            memcpy(s->name, name, len + 1);
            c->nids++;
        }
        if (s) {
            *out = s->next++;
            return 0;
        }
    }
    if ((rc = counter_get(txn, meta, name, &id)))
        return rc;
    *out = id++;
    MDB_val k = {len, (void *)name}, v = {sizeof(id), &id};
    return mdb_put(txn, meta, &k, &v, 0);
}

/* The devices of uid, through the cache when there is one. */
static int devices_of(chat_db_t *db, MDB_txn *txn, uint64_t uid, dev_set_t *out)
{
    chat_txn_cache_t *c = cache_of(txn);

    if (!c)
        return devices_read(db, txn, uid, out);
    devs_slot_t *s = &c->devs[mix(uid) & (DEVS_CAP - 1)];
    if (s->gen != c->gen || s->uid != uid) {
        int rc = devices_read(db, txn, uid, &s->ds);
        if (rc) {
            s->gen = 0;
            return rc;
        }
        s->uid = uid;
        s->gen = c->gen;
    }
    memcpy(out, &s->ds, offsetof(dev_set_t, ids) + s->ds.n * sizeof(uint64_t));
    return 0;
}

/* Appends one entry to a device's mailbox; msg is the message of a MSG
 * or COPY entry, for the wake callback. */
static int append(chat_db_t *db, MDB_txn *txn, uint64_t devid, const void *e,
                  size_t size, const chat_msg_rec_t *msg, chat_wake_fn wake,
                  void *ctx)
{
    uint8_t mk[16];
    chat_mhead_t h;
    int rc;

    if ((rc = head_get(db, txn, devid, &h)))
        return rc;
    h.last++;
    key2(mk, devid, h.last);
    if ((rc = put(txn, db->mbox, mk, sizeof(mk), e, size, 0)) ||
        (rc = head_put(db, txn, devid, &h)))
        return rc;
    if (wake)
        wake(ctx, devid, h.last, e, size, msg);
    return 0;
}

static int append_devices(chat_db_t *db, MDB_txn *txn, uint64_t uid,
                          uint64_t skip, const void *e, size_t size,
                          const chat_msg_rec_t *msg, chat_wake_fn wake,
                          void *ctx)
{
    dev_set_t ds;
    int rc = devices_of(db, txn, uid, &ds);

    for (uint32_t i = 0; rc == 0 && i < ds.n; i++)
        if (ds.ids[i] != skip)
            rc = append(db, txn, ds.ids[i], e, size, msg, wake, ctx);
    return rc;
}

int chat_mbox_append_user(chat_db_t *db, MDB_txn *txn, uint64_t uid,
                          uint64_t skip, const void *e, size_t size,
                          chat_wake_fn wake, void *ctx)
{
    return append_devices(db, txn, uid, skip, e, size, NULL, wake, ctx);
}

/* Appends e to every device of uid except `skip`. */
static int append_user(chat_db_t *db, MDB_txn *txn, uint64_t uid, uint64_t skip,
                       const chat_entry_t *e, chat_wake_fn wake, void *ctx)
{
    return append_devices(db, txn, uid, skip, e, sizeof(*e), NULL, wake, ctx);
}

/* A message record (header and body) copied out of the map, for update. */
static int msg_load(chat_db_t *db, MDB_txn *txn, uint64_t sid,
                    chat_msg_rec_t **out, size_t *len)
{
    uint8_t k[8];
    MDB_val kv = {sizeof(k), k}, v;
    int rc;

    chat_put_be64(k, sid);
    if ((rc = mdb_get(txn, db->msgs, &kv, &v)))
        return rc;
    if (v.mv_size < sizeof(chat_msg_rec_t))
        return MDB_CORRUPTED;
    if (!(*out = malloc(v.mv_size)))
        return ENOMEM;
    memcpy(*out, v.mv_data, v.mv_size);
    *len = v.mv_size;
    return 0;
}

static int msg_store(chat_db_t *db, MDB_txn *txn, const chat_msg_rec_t *m,
                     size_t len)
{
    uint8_t k[8];

    chat_put_be64(k, m->sid);
    return put(txn, db->msgs, k, sizeof(k), m, len, 0);
}

/* ---- send ----------------------------------------------------------------
 */

static int op_send(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                   chat_op_res_t *res, chat_wake_fn wake, void *ctx)
{
    uint8_t ck[16], convk[24], sk[8];
    uint64_t ids[2], to_uid;
    int rc;

    key2(ck, op->devid, op->cid);
    rc = get_copy(txn, db->cids, ck, sizeof(ck), ids, sizeof(ids));
    if (rc == 0) {
        res->sid = ids[0];
        res->ts = ids[1];
        res->dup = 1;
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = user_uid(db, txn, op->peer, &to_uid)))
        return rc == MDB_NOTFOUND ? (res->result = -ENOENT, 0) : rc;
    if (pair_exists(txn, db->blocks, to_uid, op->uid) == 0 ||
        pair_exists(txn, db->blocks, op->uid, to_uid) == 0)
        return res->result = -EPERM, 0;

    size_t len = sizeof(chat_msg_rec_t) + op->body_len;
    chat_msg_rec_t *m = calloc(1, len);
    if (!m)
        return ENOMEM;
    if ((rc = chat_next_id(txn, db->meta, "next_sid", &m->sid)))
        goto out;
    m->ts = op->now;
    m->from_uid = op->uid;
    m->to_uid = to_uid;
    m->from_dev = op->devid;
    m->cid = op->cid;
    memcpy(m->from, op->user, sizeof(m->from));
    memcpy(m->to, op->peer, sizeof(m->to));
    m->body_len = op->body_len;
    memcpy(m + 1, op->body, op->body_len);
    chat_put_be64(sk, m->sid);
    ids[0] = m->sid;
    ids[1] = m->ts;
    conv_key(convk, op->uid, to_uid, m->sid);
    /* sids only grow, so the message table is always appended to */
    if ((rc = put(txn, db->msgs, sk, sizeof(sk), m, len, MDB_APPEND)) ||
        (rc = put(txn, db->conv, convk, sizeof(convk), "", 0, 0)) ||
        (rc = put(txn, db->cids, ck, sizeof(ck), ids, sizeof(ids), 0)))
        goto out;

    chat_entry_t e = {.kind = CHAT_ENTRY_MSG, .sid = m->sid, .ts = m->ts};
    memcpy(e.by, op->user, sizeof(e.by));
    if ((rc = append_devices(db, txn, to_uid, op->devid, &e, sizeof(e), m, wake,
                             ctx)))
        goto out;
    if (to_uid != op->uid) {
        e.kind = CHAT_ENTRY_COPY;
        rc = append_devices(db, txn, op->uid, op->devid, &e, sizeof(e), m, wake,
                            ctx);
    }
    res->sid = m->sid;
    res->ts = m->ts;
out:
    free(m);
    return rc;
}

/* ---- ack: delivered receipts ---------------------------------------------
 */

/* A message reached a device of its recipient: the first time, mark it and
 * tell every device of the sender. */
static int mark_delivered(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                          uint64_t sid, chat_wake_fn wake, void *ctx)
{
    chat_msg_rec_t *m;
    size_t len;
    int rc = msg_load(db, txn, sid, &m, &len);

    if (rc)
        return rc == MDB_NOTFOUND ? 0 : rc; /* pruned meanwhile */
    if (m->to_uid == op->uid && !m->delivered_at && !m->read_at) {
        m->delivered_at = op->now;
        chat_entry_t e = {
            .kind = CHAT_ENTRY_DELIVERED, .sid = sid, .ts = op->now};
        memcpy(e.by, op->user, sizeof(e.by));
        if (!(rc = msg_store(db, txn, m, len)))
            rc = append_user(db, txn, m->from_uid, 0, &e, wake, ctx);
    }
    free(m);
    return rc;
}

static int op_ack(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                  chat_op_res_t *res, chat_wake_fn wake, void *ctx)
{
    uint8_t mk[16];
    chat_mhead_t h;
    MDB_cursor *cur;
    MDB_val k = {sizeof(mk), mk}, v;
    uint64_t *sids = NULL;
    size_t n = 0, cap = 0;
    int rc;

    if ((rc = head_get(db, txn, op->devid, &h)))
        return rc;
    if (op->upto > h.last)
        return res->result = -ERANGE, 0;
    if (op->upto <= h.acked)
        return 0;
    /* Collect first, then receipt: appends to other mailboxes must not
     * move the cursor that deletes from this one. */
    key2(mk, op->devid, h.acked + 1);
    if ((rc = mdb_cursor_open(txn, db->mbox, &cur)))
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (chat_get_be64(k.mv_data) != op->devid ||
            chat_get_be64((uint8_t *)k.mv_data + 8) > op->upto)
            break;
        chat_entry_t e;
        if (v.mv_size >= sizeof(e))
            memcpy(&e, v.mv_data, sizeof(e));
        if (v.mv_size >= sizeof(e) && e.kind == CHAT_ENTRY_MSG) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *ns = realloc(sids, cap * sizeof(*ns));
                if (!ns) {
                    rc = ENOMEM;
                    break;
                }
                sids = ns;
            }
            sids[n++] = e.sid;
        }
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        goto out;
    rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = mark_delivered(db, txn, op, sids[i], wake, ctx);
    /* read again: a receipt of a message to oneself went to this very
     * mailbox and moved its last seq */
    if (rc == 0 && (rc = head_get(db, txn, op->devid, &h)) == 0) {
        h.acked = op->upto;
        rc = head_put(db, txn, op->devid, &h);
    }
out:
    free(sids);
    return rc;
}

/* ---- read receipts -------------------------------------------------------
 */

/* Marks the messages of peer to op->uid up to op->upto as read, newest
 * first, stopping at the first already read: those before it were marked
 * by an earlier receipt. */
static int mark_read(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                     uint64_t peer)
{
    uint8_t ck[24], lo[16];
    MDB_cursor *cur;
    MDB_val k = {sizeof(ck), ck}, v;
    int rc;

    conv_key(ck, op->uid, peer, op->upto + 1);
    memcpy(lo, ck, sizeof(lo));
    if ((rc = mdb_cursor_open(txn, db->conv, &cur)))
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                 : mdb_cursor_get(cur, &k, &v, MDB_LAST);
    uint64_t *sids = NULL;
    size_t n = 0, cap = 0;
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        if (k.mv_size != 24 || memcmp(k.mv_data, lo, sizeof(lo)) != 0)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *ns = realloc(sids, cap * sizeof(*ns));
            if (!ns) {
                rc = ENOMEM;
                break;
            }
            sids = ns;
        }
        sids[n++] = chat_get_be64((uint8_t *)k.mv_data + 16);
        if (n >= 100000)
            break; /* a bound on one transaction's work */
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        free(sids);
        return rc;
    }
    rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        chat_msg_rec_t *m;
        size_t len;
        if ((rc = msg_load(db, txn, sids[i], &m, &len))) {
            rc = rc == MDB_NOTFOUND ? 0 : rc;
            continue;
        }
        bool stop = false;
        if (m->from_uid == peer && m->to_uid == op->uid) {
            stop = m->read_at != 0;
            if (!stop) {
                m->read_at = op->now;
                if (!m->delivered_at)
                    m->delivered_at = op->now; /* read implies delivered */
                rc = msg_store(db, txn, m, len);
            }
        }
        free(m);
        if (stop)
            break;
    }
    free(sids);
    return rc;
}

static int op_read(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                   chat_op_res_t *res, chat_wake_fn wake, void *ctx)
{
    uint64_t peer, mark = 0;
    uint8_t rk[16];
    chat_msg_rec_t *m;
    size_t len;
    int rc;

    if ((rc = user_uid(db, txn, op->peer, &peer)))
        return rc == MDB_NOTFOUND ? (res->result = -ENOENT, 0) : rc;
    rc = msg_load(db, txn, op->upto, &m, &len);
    if (rc == MDB_NOTFOUND)
        return res->result = -ENOENT, 0;
    if (rc)
        return rc;
    bool ours = m->from_uid == peer && m->to_uid == op->uid;
    free(m);
    if (!ours)
        return res->result = -ENOENT, 0;
    key2(rk, op->uid, peer);
    rc = get_copy(txn, db->rmark, rk, sizeof(rk), &mark, sizeof(mark));
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (op->upto <= mark)
        return 0; /* receipts never go backwards */
    chat_entry_t e = {.kind = CHAT_ENTRY_READ, .sid = op->upto, .ts = op->now};
    memcpy(e.by, op->user, sizeof(e.by));
    if ((rc = put(txn, db->rmark, rk, sizeof(rk), &op->upto, sizeof(op->upto),
                  0)) ||
        (rc = mark_read(db, txn, op, peer)))
        return rc;
    return append_user(db, txn, peer, 0, &e, wake, ctx);
}

/* ---- contacts, blocks, preferences ---------------------------------------
 */

static int op_pair(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                   chat_op_res_t *res)
{
    MDB_dbi dbi =
        op->kind == CHAT_OP_CONTACT_ADD || op->kind == CHAT_OP_CONTACT_REMOVE
            ? db->contacts
            : db->blocks;
    bool add = op->kind == CHAT_OP_CONTACT_ADD || op->kind == CHAT_OP_BLOCK;
    uint64_t peer;
    uint8_t k[16];
    int rc;

    if ((rc = user_uid(db, txn, op->peer, &peer)))
        return rc == MDB_NOTFOUND ? (res->result = -ENOENT, 0) : rc;
    key2(k, op->uid, peer);
    rc = pair_exists(txn, dbi, op->uid, peer);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (add && rc == 0) {
        if (op->kind == CHAT_OP_CONTACT_ADD)
            res->result = -EEXIST; /* blocking twice is no error */
        return 0;
    }
    if (!add && rc == MDB_NOTFOUND)
        return res->result = -ENOENT, 0;
    if (!add)
        return del(txn, dbi, k, sizeof(k));
    return put(txn, dbi, k, sizeof(k), op->peer, strlen(op->peer), 0);
}

static int op_prefs(chat_db_t *db, MDB_txn *txn, const chat_op_t *op)
{
    uint8_t k[8];
    chat_prefs_t p = {0};
    int rc;

    chat_put_be64(k, op->uid);
    rc = get_copy(txn, db->prefs, k, sizeof(k), &p, sizeof(p));
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (op->kind == CHAT_OP_PRIVACY)
        p.privacy = (uint32_t)op->upto;
    else
        p.last_seen = op->now;
    return put(txn, db->prefs, k, sizeof(k), &p, sizeof(p), 0);
}

/* ---- retention -----------------------------------------------------------
 */

static bool expired(const chat_op_t *op, const chat_msg_rec_t *m)
{
    if (m->delivered_at)
        return m->delivered_at + op->keep_delivered <= op->now;
    return m->ts + op->keep_undelivered <= op->now;
}

/* Removes a message with its conversation and idempotency keys. Mailbox
 * entries that still name it are skipped when pushed. */
static int forget(chat_db_t *db, MDB_txn *txn, const chat_msg_rec_t *m)
{
    uint8_t convk[24], ck[16];
    int rc;

    conv_key(convk, m->from_uid, m->to_uid, m->sid);
    key2(ck, m->from_dev, m->cid);
    if ((rc = del(txn, db->conv, convk, sizeof(convk))))
        return rc;
    return del(txn, db->cids, ck, sizeof(ck));
}

static int op_prune(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                    chat_op_res_t *res)
{
    uint8_t sk[8];
    MDB_cursor *cur;
    MDB_val k = {sizeof(sk), sk}, v;
    int rc;

    chat_put_be64(sk, op->upto);
    if ((rc = mdb_cursor_open(txn, db->msgs, &cur)))
        return rc;
    res->next_sid = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (res->scanned >= op->cid) {
            res->next_sid = chat_get_be64(k.mv_data);
            break;
        }
        res->scanned++;
        if (v.mv_size < sizeof(chat_msg_rec_t))
            continue;
        chat_msg_rec_t m;
        memcpy(&m, v.mv_data, sizeof(m));
        if (!expired(op, &m))
            continue;
        if ((rc = forget(db, txn, &m)) || (rc = mdb_cursor_del(cur, 0)))
            break;
        res->deleted++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int chat_op_apply(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                  chat_op_res_t *res, chat_wake_fn wake, void *ctx)
{
    switch (op->kind) {
    case CHAT_OP_SEND:
        return op_send(db, txn, op, res, wake, ctx);
    case CHAT_OP_ACK:
        return op_ack(db, txn, op, res, wake, ctx);
    case CHAT_OP_READ:
        return op_read(db, txn, op, res, wake, ctx);
    case CHAT_OP_CONTACT_ADD:
    case CHAT_OP_CONTACT_REMOVE:
    case CHAT_OP_BLOCK:
    case CHAT_OP_UNBLOCK:
        return op_pair(db, txn, op, res);
    case CHAT_OP_PRIVACY:
    case CHAT_OP_LAST_SEEN:
        return op_prefs(db, txn, op);
    case CHAT_OP_PRUNE:
        return op_prune(db, txn, op, res);
    case CHAT_OP_GROUP:
        return chat_group_op_apply(db, txn, op, res, wake, ctx);
    }
    res->result = -EINVAL;
    return 0;
}

/* ---- reads ---------------------------------------------------------------
 */

static int rbegin(chat_db_t *db, MDB_txn **txn)
{
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn);
    return rc ? chat_db_err("read", rc) : 0;
}

static int rresult(int rc)
{
    if (rc == 0)
        return 0;
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc == ENOMEM)
        return -ENOMEM;
    return chat_db_err("read", rc);
}

int chat_db_uid(chat_db_t *db, const char *name, uint64_t *uid)
{
    MDB_txn *txn;
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    rc = user_uid(db, txn, name, uid);
    mdb_txn_abort(txn);
    return rresult(rc);
}

static int read_fixed(chat_db_t *db, MDB_dbi dbi, uint64_t id, void *out,
                      size_t len)
{
    MDB_txn *txn;
    uint8_t k[8];
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    chat_put_be64(k, id);
    rc = get_copy(txn, dbi, k, sizeof(k), out, len);
    mdb_txn_abort(txn);
    return rresult(rc);
}

int chat_db_mbox_oldest(chat_db_t *db, uint64_t devid, uint64_t *seq,
                        uint64_t *ts)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint8_t mk[16];
    MDB_val k = {sizeof(mk), mk}, v;
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, db->mbox, &cur))) {
        mdb_txn_abort(txn);
        return chat_db_err("cursor", rc);
    }
    /* acknowledged entries are deleted at once: the first one left is
     * the oldest not yet acknowledged */
    key2(mk, devid, 0);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == 16 && chat_get_be64(k.mv_data) == devid &&
        v.mv_size >= sizeof(chat_entry_t)) {
        chat_entry_t e;
        memcpy(&e, v.mv_data, sizeof(e));
        *seq = chat_get_be64((uint8_t *)k.mv_data + 8);
        *ts = e.ts;
        rc = 0;
    } else {
        rc = (rc == 0 || rc == MDB_NOTFOUND) ? -ENOENT
                                             : chat_db_err("cursor", rc);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

int chat_db_mhead(chat_db_t *db, uint64_t devid, chat_mhead_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc = read_fixed(db, db->mhead, devid, out, sizeof(*out));
    return rc == -ENOENT ? 0 : rc;
}

int chat_db_prefs(chat_db_t *db, uint64_t uid, chat_prefs_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc = read_fixed(db, db->prefs, uid, out, sizeof(*out));
    if (out->privacy == 0)
        out->privacy = CHAT_PRIVACY_EVERYONE;
    return rc == -ENOENT ? 0 : rc;
}

static int read_pair(chat_db_t *db, MDB_dbi dbi, uint64_t a, uint64_t b)
{
    MDB_txn *txn;
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    rc = pair_exists(txn, dbi, a, b);
    mdb_txn_abort(txn);
    if (rc == 0)
        return 1;
    return rc == MDB_NOTFOUND ? 0 : chat_db_err("read", rc);
}

int chat_db_is_contact(chat_db_t *db, uint64_t a, uint64_t b)
{
    return read_pair(db, db->contacts, a, b);
}

int chat_db_is_blocked(chat_db_t *db, uint64_t blocker, uint64_t blocked)
{
    return read_pair(db, db->blocks, blocker, blocked);
}

/* Appends a length prefix and one encoded map; see chat_db_mbox_encode. */
static int frame_begin(msgpack_sbuffer *sb, size_t *at)
{
    uint32_t zero = 0;

    *at = sb->size;
    return msgpack_sbuffer_write(sb, (const char *)&zero, sizeof(zero));
}

static void frame_end(msgpack_sbuffer *sb, size_t at)
{
    uint32_t len = (uint32_t)(sb->size - at - sizeof(len));
    memcpy(sb->data + at, &len, sizeof(len));
}

/* The map of one entry, without its frame. `msg` may be unaligned (LMDB
 * data): it is copied before its fields are read. */
static int encode_map(msgpack_sbuffer *sb, uint64_t seq, const void *entry,
                      size_t size, const chat_msg_rec_t *msg)
{
    chat_entry_t e;

    if (size < sizeof(e))
        return 1;
    memcpy(&e, entry, sizeof(e));
    e.by[CHAT_NAME_CAP - 1] = '\0';
    proto_str_t by = proto_cstr(e.by);
    if (e.kind == CHAT_ENTRY_GDELIVERED_ALL || e.kind == CHAT_ENTRY_GREAD_ALL) {
        chat_gentry_t g;
        if (size < sizeof(g))
            return 1;
        memcpy(&g, entry, sizeof(g));
        return proto_enc_ev_all(sb, e.kind == CHAT_ENTRY_GREAD_ALL, g.gid,
                                e.sid, g.gseq, seq, e.ts);
    }
    if (e.kind == CHAT_ENTRY_DELIVERED)
        return proto_enc_ev_delivered(sb, by, e.sid, seq, e.ts, 0);
    if (e.kind == CHAT_ENTRY_READ)
        return proto_enc_ev_read(sb, by, e.sid, seq, e.ts, 0);
    if ((e.kind != CHAT_ENTRY_MSG && e.kind != CHAT_ENTRY_COPY) || !msg)
        return 1;

    chat_msg_rec_t m;
    const char *raw = (const char *)msg;
    memcpy(&m, msg, sizeof(m));
    proto_ev_msg_t ev = {
        .from = by,
        .sid = e.sid,
        .seq = seq,
        .ts = m.ts,
        .body = {(const uint8_t *)raw + sizeof(m), m.body_len},
    };
    if (e.kind == CHAT_ENTRY_COPY)
        ev.to = (proto_str_t){raw + offsetof(chat_msg_rec_t, to),
                              (uint32_t)strnlen(m.to, sizeof(m.to))};
    return proto_enc_ev_msg(sb, &ev);
}

int chat_entry_encode(msgpack_sbuffer *sb, uint64_t seq, const void *entry,
                      size_t size, const chat_msg_rec_t *msg)
{
    size_t at;

    if (frame_begin(sb, &at) < 0)
        return -ENOMEM;
    int rc = encode_map(sb, seq, entry, size, msg);
    if (rc != 0) {
        sb->size = at;
        return rc == 1 ? 1 : -ENOMEM;
    }
    frame_end(sb, at);
    return 0;
}

/* Encodes one stored entry, looking its message up in the same read
 * transaction. 0, 1 (nothing to show: pruned), -EIO or -ENOMEM. */
static int encode_entry(chat_db_t *db, MDB_txn *txn, msgpack_sbuffer *sb,
                        uint64_t seq, const chat_entry_t *e, const MDB_val *raw)
{
    const chat_msg_rec_t *msg = NULL;

    if (e->kind == CHAT_ENTRY_MSG || e->kind == CHAT_ENTRY_COPY) {
        uint8_t k[8];
        MDB_val kv = {sizeof(k), k}, v;
        chat_put_be64(k, e->sid);
        int rc = mdb_get(txn, db->msgs, &kv, &v);
        if (rc == MDB_NOTFOUND)
            return 1; /* pruned: nothing to show */
        if (rc || v.mv_size < sizeof(chat_msg_rec_t))
            return -EIO;
        msg = v.mv_data;
    }
    return chat_entry_encode(sb, seq, raw->mv_data, raw->mv_size, msg);
}

int chat_db_mbox_encode(chat_db_t *db, uint64_t devid, uint64_t from,
                        uint64_t to, uint32_t max, msgpack_sbuffer *sb,
                        uint64_t *last)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint8_t mk[16];
    MDB_val k = {sizeof(mk), mk}, v;
    int rc = rbegin(db, &txn), n = 0;

    if (rc)
        return rc;
    *last = from - 1;
    if ((rc = mdb_cursor_open(txn, db->mbox, &cur))) {
        mdb_txn_abort(txn);
        return chat_db_err("cursor", rc);
    }
    key2(mk, devid, from);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && (uint32_t)n < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t seq = chat_get_be64((uint8_t *)k.mv_data + 8);
        if (chat_get_be64(k.mv_data) != devid || seq > to)
            break;
        *last = seq;
        if (v.mv_size < sizeof(chat_entry_t))
            continue;
        chat_entry_t e;
        memcpy(&e, v.mv_data, sizeof(e));
        int erc = encode_entry(db, txn, sb, seq, &e, &v);
        if (erc == 1)
            continue;
        if (erc < 0) {
            rc = erc == -ENOMEM ? ENOMEM : EIO;
            break;
        }
        n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc == 0 || rc == MDB_NOTFOUND)
        return n;
    return rc == ENOMEM ? -ENOMEM : chat_db_err("mbox", rc);
}

int chat_db_history_encode(chat_db_t *db, msgpack_sbuffer *sb, uint64_t re,
                           uint64_t uid, uint64_t peer, uint64_t before,
                           uint32_t limit)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint8_t ck[24], lo[16];
    MDB_val k = {sizeof(ck), ck}, v;
    proto_hist_msg_t *out = calloc(limit ? limit : 1, sizeof(*out));
    uint32_t n = 0;
    bool more = false;
    int rc;

    if (!out)
        return -ENOMEM;
    if ((rc = rbegin(db, &txn))) {
        free(out);
        return rc;
    }
    conv_key(ck, uid, peer, before ? before : UINT64_MAX);
    memcpy(lo, ck, sizeof(lo));
    if ((rc = mdb_cursor_open(txn, db->conv, &cur)))
        goto done;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                 : mdb_cursor_get(cur, &k, &v, MDB_LAST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        if (k.mv_size != 24 || memcmp(k.mv_data, lo, sizeof(lo)) != 0)
            break;
        if (n == limit) {
            more = true;
            break;
        }
        uint8_t sk[8];
        MDB_val skv = {sizeof(sk), sk}, mv;
        memcpy(sk, (uint8_t *)k.mv_data + 16, sizeof(sk));
        if (mdb_get(txn, db->msgs, &skv, &mv) != 0 ||
            mv.mv_size < sizeof(chat_msg_rec_t))
            continue;
        chat_msg_rec_t h; /* LMDB data may be unaligned: copied */
        memcpy(&h, mv.mv_data, sizeof(h));
        out[n++] = (proto_hist_msg_t){
            .from = {(const char *)mv.mv_data + offsetof(chat_msg_rec_t, from),
                     (uint32_t)strlen(h.from)},
            .sid = h.sid,
            .ts = h.ts,
            .body = {(const uint8_t *)mv.mv_data + sizeof(h), h.body_len},
        };
    }
    mdb_cursor_close(cur);
    rc = rc == MDB_NOTFOUND ? 0 : rc;
    if (rc == 0 && proto_enc_history_ok(sb, re, out, n, more) < 0)
        rc = ENOMEM;
done:
    mdb_txn_abort(txn);
    free(out);
    return rc == 0 ? 0 : rc == ENOMEM ? -ENOMEM : chat_db_err("history", rc);
}

typedef struct user_list {
    proto_str_t *v;
    size_t n, cap;
} user_list_t;

/* The names stay in the read transaction's pages until it ends. */
static int user_add(void *ctx, uint64_t other, const MDB_val *name)
{
    user_list_t *l = ctx;

    (void)other;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        proto_str_t *nv = realloc(l->v, cap * sizeof(*nv));
        if (!nv)
            return ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = (proto_str_t){name->mv_data, (uint32_t)name->mv_size};
    return 0;
}

int chat_db_users_encode(chat_db_t *db, msgpack_sbuffer *sb, uint64_t re,
                         uint64_t uid, bool blocks)
{
    MDB_txn *txn;
    user_list_t l = {0};
    int rc;

    if ((rc = rbegin(db, &txn)))
        return rc;
    rc = chat_db_scan(txn, blocks ? db->blocks : db->contacts, uid, 0,
                      UINT64_MAX, user_add, &l);
    if (rc == 0 && proto_enc_users_ok(sb, re, l.v, l.n) < 0)
        rc = ENOMEM;
    mdb_txn_abort(txn);
    free(l.v);
    return rc == 0 ? 0 : rc == ENOMEM ? -ENOMEM : chat_db_err("users", rc);
}

int chat_db_each_device(chat_db_t *db, uint64_t uid,
                        void (*fn)(void *ctx, uint64_t devid), void *ctx)
{
    MDB_txn *txn;
    dev_set_t ds;
    int rc = rbegin(db, &txn);

    if (rc)
        return rc;
    rc = devices_of(db, txn, uid, &ds);
    mdb_txn_abort(txn);
    if (rc)
        return chat_db_err("devices", rc);
    for (uint32_t i = 0; i < ds.n; i++)
        fn(ctx, ds.ids[i]);
    return (int)ds.n;
}
