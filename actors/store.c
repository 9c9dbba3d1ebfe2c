/*
 * actors/store.c - LMDB reads, and the writer actor with group commit.
 */
#include "store.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "log.h"
#include "mailbox.h"
#include "store_db.h"

int chat_db_err(const char *what, int rc)
{
    rt_log(RT_LOG_ERROR, "store", "op=%s err=\"%s\"", what, mdb_strerror(rc));
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc == MDB_KEYEXIST)
        return -EEXIST;
    return rc == MDB_MAP_FULL ? -ENOSPC : -EIO;
}

static int db_err(const char *what, int rc)
{
    return chat_db_err(what, rc);
}

int chat_db_open(const char *dir, uint64_t map_size, chat_db_t **out)
{
    chat_db_t *db = calloc(1, sizeof(*db));
    MDB_txn *txn = NULL;
    int rc;

    if (!db)
        return -ENOMEM;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        free(db);
        return rc;
    }
    if ((rc = mdb_env_create(&db->env)) != 0)
        goto fail;
    mdb_env_set_maxdbs(db->env, 32);
    if ((rc = mdb_env_set_mapsize(db->env, (size_t)map_size)) != 0)
        goto fail_env;
    if ((rc = mdb_env_open(db->env, dir, MDB_NOTLS, 0600)) != 0)
        goto fail_env;
    if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
        goto fail_env;
    if ((rc = mdb_dbi_open(txn, "users", MDB_CREATE, &db->users)) ||
        (rc = mdb_dbi_open(txn, "devices", MDB_CREATE, &db->devices)) ||
        (rc = mdb_dbi_open(txn, "tokens", MDB_CREATE, &db->tokens)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &db->meta)) ||
        (rc = chat_mbox_open_dbis(db, txn))) {
        mdb_txn_abort(txn);
        goto fail_env;
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        goto fail_env;
    *out = db;
    return 0;

fail_env:
    mdb_env_close(db->env);
fail:
    rc = db_err("open", rc);
    free(db);
    return rc;
}

int chat_db_set_sync(chat_db_t *db, bool each_commit)
{
    int rc = mdb_env_set_flags(db->env, MDB_NOSYNC, each_commit ? 0 : 1);
    return rc ? db_err("set_flags", rc) : 0;
}

void chat_db_close(chat_db_t *db)
{
    if (!db)
        return;
    mdb_env_close(db->env);
    free(db);
}

/* ---- reads ------------------------------------------------------------- */

static void dev_key(uint8_t key[16], uint64_t uid, uint64_t devid)
{
    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)(uid >> (56 - 8 * i));
        key[8 + i] = (uint8_t)(devid >> (56 - 8 * i));
    }
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* One get in its own read transaction, copying exactly `len` bytes. */
static int get_fixed(chat_db_t *db, MDB_dbi dbi, const void *key, size_t klen,
                     void *out, size_t len)
{
    MDB_txn *txn;
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);

    if (rc)
        return db_err("read", rc);
    rc = mdb_get(txn, dbi, &k, &v);
    if (rc == 0 && v.mv_size == len)
        memcpy(out, v.mv_data, len);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc)
        return db_err("get", rc);
    return v.mv_size == len ? 0 : -EIO;
}

int chat_db_user_get(chat_db_t *db, const char *name, size_t len,
                     chat_user_rec_t *out)
{
    if (len == 0 || len > PROTO_MAX_NAME)
        return -ENOENT;
    return get_fixed(db, db->users, name, len, out, sizeof(*out));
}

int chat_db_token_get(chat_db_t *db, const uint8_t hash[CHAT_TOKEN_HASH],
                      uint64_t *uid, uint64_t *devid)
{
    uint8_t ids[16];
    int rc = get_fixed(db, db->tokens, hash, CHAT_TOKEN_HASH, ids, 16);

    if (rc == 0) {
        *uid = be64(ids);
        *devid = be64(ids + 8);
    }
    return rc;
}

int chat_db_device_get(chat_db_t *db, uint64_t uid, uint64_t devid,
                       chat_device_rec_t *out)
{
    uint8_t key[16];

    dev_key(key, uid, devid);
    return get_fixed(db, db->devices, key, sizeof(key), out, sizeof(*out));
}

int chat_db_scan(MDB_txn *txn, MDB_dbi dbi, uint64_t first, uint64_t from,
                 uint64_t to,
                 int (*fn)(void *ctx, uint64_t second, const MDB_val *val),
                 void *ctx)
{
    MDB_cursor *cur;
    uint8_t key[16];
    MDB_val k = {sizeof(key), key}, v;
    int rc, frc = 0;

    chat_put_be64(key, first);
    chat_put_be64(key + 8, from);
    if ((rc = mdb_cursor_open(txn, dbi, &cur)))
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || chat_get_be64(k.mv_data) != first)
            break;
        uint64_t second = chat_get_be64((const uint8_t *)k.mv_data + 8);
        if (second > to || (frc = fn(ctx, second, &v)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    if (frc != 0 && frc != 1)
        return frc;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

typedef struct devices_each_ctx {
    int (*fn)(uint64_t devid, const chat_device_rec_t *d, void *ctx);
    void *ctx;
    int n;
} devices_each_ctx_t;

static int device_one(void *ctx, uint64_t devid, const MDB_val *v)
{
    devices_each_ctx_t *c = ctx;
    chat_device_rec_t d;

    if (v->mv_size != sizeof(d))
        return 0;
    memcpy(&d, v->mv_data, sizeof(d));
    c->n++;
    return c->fn(devid, &d, c->ctx) ? 1 : 0;
}

int chat_db_devices_each(chat_db_t *db, uint64_t uid,
                         int (*fn)(uint64_t devid, const chat_device_rec_t *d,
                                   void *ctx),
                         void *ctx)
{
    MDB_txn *txn;
    devices_each_ctx_t c = {fn, ctx, 0};
    int rc;

    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)))
        return db_err("read", rc);
    rc = chat_db_scan(txn, db->devices, uid, 0, UINT64_MAX, device_one, &c);
    mdb_txn_abort(txn);
    return rc ? db_err("devices", rc) : c.n;
}

/* Operator state lives in the meta table under prefixed keys, so that it
 * needs no table of its own: "blocked/" + be64 uid, "invite/" + hash. */
#define BLOCKED_PREFIX "blocked/"
#define INVITE_PREFIX  "invite/"

static size_t blocked_key(uint8_t key[16], uint64_t uid)
{
    size_t n = sizeof(BLOCKED_PREFIX) - 1;

    memcpy(key, BLOCKED_PREFIX, n);
    for (int i = 0; i < 8; i++)
        key[n + i] = (uint8_t)(uid >> (56 - 8 * i));
    return n + 8;
}

static size_t invite_key(uint8_t key[48], const uint8_t *hash)
{
    size_t n = sizeof(INVITE_PREFIX) - 1;

    memcpy(key, INVITE_PREFIX, n);
    memcpy(key + n, hash, CHAT_TOKEN_HASH);
    return n + CHAT_TOKEN_HASH;
}

int chat_db_user_blocked(chat_db_t *db, uint64_t uid, uint64_t *since)
{
    uint8_t key[16];
    uint64_t t = 0;
    int rc = get_fixed(db, db->meta, key, blocked_key(key, uid), &t, sizeof(t));

    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (since)
        *since = t;
    return 1;
}

int chat_db_invite_get(chat_db_t *db, const uint8_t hash[CHAT_TOKEN_HASH],
                       uint64_t *created)
{
    uint8_t key[48];
    uint64_t t = 0;
    int rc = get_fixed(db, db->meta, key, invite_key(key, hash), &t, sizeof(t));

    if (rc == 0 && created)
        *created = t;
    return rc;
}

/* ---- writes, run on the thread pool ------------------------------------ */

/* Relaxed: they are statistics, read by the operator's shell; nothing is
 * ordered by them. */
static _Atomic uint64_t store_commits, store_writes;

void chat_store_counters(uint64_t *commits, uint64_t *writes)
{
    *commits = atomic_load_explicit(&store_commits, memory_order_relaxed);
    *writes = atomic_load_explicit(&store_writes, memory_order_relaxed);
}

/* An account write (op, done) or a chat write (chat, cres). */
typedef struct pending_op {
    chat_store_op_t op;
    chat_store_done_t done;
    chat_op_t *chat; /* malloc'd copy, or NULL */
    chat_op_res_t cres;
    rt_id_t from;
    uint64_t ref;
} pending_op_t;

/* A mailbox entry appended by the batch. When the device had a session
 * as the entry was written, its event is encoded at frames[off], len
 * bytes; len 0 means the session must read the mailbox itself. */
typedef struct wake_rec {
    uint64_t devid, seq;
    uint32_t off, len;
} wake_rec_t;

typedef struct batch {
    chat_db_t *db;
    rt_system_t *sys;
    size_t n, cap;
    pending_op_t *ops;
    size_t nwake, capwake;
    wake_rec_t *wake;
    msgpack_sbuffer frames; /* encoded events of wake records */
} batch_t;

/* Pool thread, inside the transaction: remembers an appended entry, and
 * encodes its event now when its device has a session, so that the
 * session need not read it back from LMDB. A failed allocation only
 * sends the session to LMDB, or delays the entry to the next wake or
 * reconnect. */
static void note_wake(void *ctx, uint64_t devid, uint64_t seq,
                      const void *entry, size_t size, const chat_msg_rec_t *msg)
{
    batch_t *b = ctx;

    if (b->nwake == b->capwake) {
        size_t cap = b->capwake ? b->capwake * 2 : 64;
        wake_rec_t *w = realloc(b->wake, cap * sizeof(*w));
        if (!w)
            return;
        b->wake = w;
        b->capwake = cap;
    }
    wake_rec_t *r = &b->wake[b->nwake++];
    *r = (wake_rec_t){.devid = devid, .seq = seq, .off = 0, .len = 0};
    size_t at = b->frames.size;
    if (at < UINT32_MAX / 2 && rt_whereis_key(b->sys, devid) &&
        chat_entry_encode(&b->frames, seq, entry, size, msg) == 0) {
        r->off = (uint32_t)at;
        r->len = (uint32_t)(b->frames.size - at);
    }
}

int chat_next_id(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out)
{
    return chat_txn_next_id(txn, meta, name, out);
}

static int op_create_user(chat_db_t *db, MDB_txn *txn, pending_op_t *p)
{
    chat_user_rec_t u = {.created = p->op.now};
    MDB_val k = {strlen(p->op.user), p->op.user};
    MDB_val v = {sizeof(u), &u};
    int rc;

    if (mdb_get(txn, db->users, &k, &v) == 0)
        return p->done.result = -EEXIST, 0;
    if (p->op.invite) {
        uint8_t key[48];
        MDB_val ik = {invite_key(key, p->op.token_hash), key};
        rc = mdb_del(txn, db->meta, &ik, NULL);
        if (rc == MDB_NOTFOUND)
            return p->done.result = -EACCES, 0;
        if (rc)
            return rc;
    }
    if ((rc = chat_next_id(txn, db->meta, "next_uid", &u.uid)))
        return rc;
    memcpy(u.pwhash, p->op.pwhash, sizeof(u.pwhash));
    v.mv_size = sizeof(u);
    v.mv_data = &u;
    p->done.uid = u.uid;
    return mdb_put(txn, db->users, &k, &v, 0);
}

static int op_add_device(chat_db_t *db, MDB_txn *txn, pending_op_t *p)
{
    chat_device_rec_t d = {.created = p->op.now, .last_seen = p->op.now};
    uint8_t key[16], ids[16];
    int rc;

    if ((rc = chat_next_id(txn, db->meta, "next_dev", &p->done.devid)))
        return rc;
    memcpy(d.token_hash, p->op.token_hash, CHAT_TOKEN_HASH);
    memcpy(d.name, p->op.device, sizeof(d.name));
    memcpy(d.user, p->op.user, sizeof(d.user));
    dev_key(key, p->op.uid, p->done.devid);
    memcpy(ids, key, sizeof(ids));
    MDB_val k = {sizeof(key), key}, v = {sizeof(d), &d};
    if ((rc = mdb_put(txn, db->devices, &k, &v, 0)))
        return rc;
    MDB_val tk = {CHAT_TOKEN_HASH, p->op.token_hash}, tv = {16, ids};
    p->done.uid = p->op.uid;
    chat_txn_devices_changed(txn, p->op.uid);
    return mdb_put(txn, db->tokens, &tk, &tv, 0);
}

/* Revoke and touch both read the device first; -ENOENT is the op's own
 * result and does not fail the batch. */
static int op_device(chat_db_t *db, MDB_txn *txn, pending_op_t *p)
{
    uint8_t key[16];
    MDB_val k = {sizeof(key), key}, v;
    chat_device_rec_t d;
    int rc;

    dev_key(key, p->op.uid, p->op.devid);
    rc = mdb_get(txn, db->devices, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != sizeof(d)))
        return p->done.result = -ENOENT, 0;
    if (rc)
        return rc;
    memcpy(&d, v.mv_data, sizeof(d));
    p->done.uid = p->op.uid;
    p->done.devid = p->op.devid;
    if (p->op.kind == CHAT_STORE_TOUCH_DEVICE) {
        d.last_seen = p->op.now;
        v.mv_size = sizeof(d);
        v.mv_data = &d;
        return mdb_put(txn, db->devices, &k, &v, 0);
    }
    MDB_val tk = {CHAT_TOKEN_HASH, d.token_hash};
    chat_txn_devices_changed(txn, p->op.uid);
    rc = mdb_del(txn, db->tokens, &tk, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    return mdb_del(txn, db->devices, &k, NULL);
}

/* Block, unblock and invites: operator writes to the meta table. */
static int op_operator(chat_db_t *db, MDB_txn *txn, pending_op_t *p)
{
    uint8_t key[48];
    uint64_t now = p->op.now;
    MDB_val k = {0, key}, v = {sizeof(now), &now};
    int rc;

    p->done.uid = p->op.uid;
    if (p->op.kind == CHAT_STORE_ADD_INVITE) {
        k.mv_size = invite_key(key, p->op.token_hash);
        return mdb_put(txn, db->meta, &k, &v, 0);
    }
    k.mv_size = blocked_key(key, p->op.uid);
    if (p->op.kind == CHAT_STORE_BLOCK_USER)
        return mdb_put(txn, db->meta, &k, &v, 0);
    rc = mdb_del(txn, db->meta, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return p->done.result = -ENOENT, 0;
    return rc;
}

static int apply(batch_t *b, MDB_txn *txn, pending_op_t *p)
{
    chat_db_t *db = b->db;

    if (p->chat)
        return chat_op_apply(db, txn, p->chat, &p->cres, note_wake, b);
    switch (p->op.kind) {
    case CHAT_STORE_BLOCK_USER:
    case CHAT_STORE_UNBLOCK_USER:
    case CHAT_STORE_ADD_INVITE:
        return op_operator(db, txn, p);
    case CHAT_STORE_CREATE_USER:
        return op_create_user(db, txn, p);
    case CHAT_STORE_ADD_DEVICE:
        return op_add_device(db, txn, p);
    case CHAT_STORE_REVOKE_DEVICE:
    case CHAT_STORE_TOUCH_DEVICE:
        return op_device(db, txn, p);
    }
    p->done.result = -EINVAL;
    return 0;
}

/* One transaction for the whole batch. An LMDB error fails every write
 * of the batch with -EIO; an op's own answer (-EEXIST, -ENOENT) fails
 * only that op. */
static int commit_batch(batch_t *b, chat_txn_cache_t *cache)
{
    MDB_txn *txn;
    int rc;

    if (rt_fault("store.commit") == RT_FAULT_FAIL)
        return -EIO;
    if ((rc = mdb_txn_begin(b->db->env, NULL, 0, &txn)))
        return db_err("begin", rc);
    chat_txn_cache_begin(cache);
    for (size_t i = 0; i < b->n && rc == 0; i++)
        rc = apply(b, txn, &b->ops[i]);
    if (rc == 0)
        rc = chat_txn_cache_flush(cache, txn);
    chat_txn_cache_end(cache);
    if (rc) {
        mdb_txn_abort(txn);
        return db_err("write", rc);
    }
    if ((rc = mdb_txn_commit(txn)))
        return db_err("commit", rc);
    return 0;
}

static void reply_all(rt_system_t *sys, batch_t *b, int result)
{
    for (size_t i = 0; i < b->n; i++) {
        pending_op_t *p = &b->ops[i];
        if (result < 0)
            p->done.result = p->cres.result = result;
        if (!p->ref)
            continue;
        rt_msg_t *m = p->chat
                          ? rt_msg_new(CHAT_STORE_CHAT_DONE, sizeof(p->cres))
                          : rt_msg_new(CHAT_STORE_DONE, sizeof(p->done));
        rt_msg_t req = {.from = p->from, .ref = p->ref};
        if (m) {
            if (p->chat)
                memcpy(m->data, &p->cres, sizeof(p->cres));
            else
                memcpy(m->data, &p->done, sizeof(p->done));
            rt_reply(sys, &req, m);
        }
    }
}

static int cmp_wake(const void *a, const void *b)
{
    const wake_rec_t *x = a, *y = b;

    if (x->devid != y->devid)
        return x->devid < y->devid ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The wake of one device from its records r[0..n): the encoded events
 * when every entry has one and the seqs follow each other, else none. */
static rt_msg_t *wake_msg(const batch_t *b, const wake_rec_t *r, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        if (r[i].len == 0 || (i && r[i].seq != r[i - 1].seq + 1))
            return rt_msg_new(CHAT_MBOX_WAKE, 0);
        len += r[i].len;
    }
    if (len > UINT32_MAX - sizeof(chat_mbox_wake_t))
        return rt_msg_new(CHAT_MBOX_WAKE, 0);
    rt_msg_t *m =
        rt_msg_new(CHAT_MBOX_WAKE, (uint32_t)(sizeof(chat_mbox_wake_t) + len));
    if (!m)
        return rt_msg_new(CHAT_MBOX_WAKE, 0);
    chat_mbox_wake_t *w = (chat_mbox_wake_t *)m->data;
    *w = (chat_mbox_wake_t){
        .first = r[0].seq, .last = r[n - 1].seq, .len = (uint32_t)len};
    uint8_t *p = w->frames;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, b->frames.data + r[i].off, r[i].len);
        p += r[i].len;
    }
    return m;
}

/* After a commit: one wake per session whose mailbox grew. */
static void wake_all(rt_system_t *sys, batch_t *b)
{
    if (b->nwake > 1)
        qsort(b->wake, b->nwake, sizeof(*b->wake), cmp_wake);
    for (size_t i = 0, j; i < b->nwake; i = j) {
        for (j = i + 1; j < b->nwake && b->wake[j].devid == b->wake[i].devid;)
            j++;
        rt_id_t s = rt_whereis_key(sys, b->wake[i].devid);
        rt_msg_t *m = s ? wake_msg(b, &b->wake[i], j - i) : NULL;
        if (m)
            rt_send(sys, s, m);
    }
}

static void batch_free(batch_t *b)
{
    if (b) {
        for (size_t i = 0; i < b->n; i++)
            free(b->ops[i].chat);
        free(b->ops);
        free(b->wake);
        msgpack_sbuffer_destroy(&b->frames);
        free(b);
    }
}

/*
 * The writer: the store actor queues writes in `next`; one pool thread at
 * a time runs writer_run, which takes the queue, commits it and answers
 * its writers itself, and goes on with what arrived meanwhile until the
 * queue is empty. So a busy store costs no round trip through a
 * scheduler between two commits, and the writes of a commit are grouped
 * while the previous one runs.
 */
typedef struct writer {
    uv_mutex_t lock;
    batch_t *next; /* writes waiting for the writer: under lock */
    bool running;  /* a pool thread is in writer_run: under lock */
    bool stopping; /* the actor ended: under lock */
    chat_db_t *db;
    rt_system_t *sys;
    chat_txn_cache_t *cache; /* the writer thread's alone */
} writer_t;

/* Pool thread: a committed batch is durable; answer it and wake the
 * sessions of the mailboxes it appended to. After the actor ended no one
 * is left to answer. */
static void finish(writer_t *w, batch_t *b, int result, bool stopping)
{
    if (result == 0) {
        atomic_fetch_add_explicit(&store_commits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&store_writes, b->n, memory_order_relaxed);
    }
    if (!stopping) {
        reply_all(w->sys, b, result);
        if (result == 0)
            wake_all(w->sys, b);
    }
    batch_free(b);
}

static void writer_free(writer_t *w)
{
    uv_mutex_destroy(&w->lock);
    chat_txn_cache_free(w->cache);
    free(w);
}

/* Pool thread: commits batches until the queue is empty. Whether the
 * actor has ended is read in the same critical section that marks the
 * writer idle: either the actor sees it idle and frees it, or this thread
 * sees the actor gone and frees it; never both, never neither. */
static int writer_run(void *arg)
{
    writer_t *w = arg;
    bool orphan = false;

    for (;;) {
        uv_mutex_lock(&w->lock);
        batch_t *b = w->next;
        bool stopping = w->stopping;
        w->next = NULL;
        if (!b) {
            w->running = false;
            orphan = stopping;
        }
        uv_mutex_unlock(&w->lock);
        if (!b)
            break;
        finish(w, b, commit_batch(b, w->cache), stopping);
    }
    if (orphan)
        writer_free(w);
    return 0;
}

/* ---- the actor --------------------------------------------------------- */

typedef struct store_state {
    writer_t *w;
} store_state_t;

/* Queues one write; starts the writer if it is idle. */
static int add_write(rt_actor_t *self, rt_msg_t *msg)
{
    store_state_t *st = rt_state(self);
    writer_t *w = st->w;
    bool chat = msg->type == CHAT_STORE_CHAT;
    chat_op_t *op = NULL;
    int rc = 0;

    if (chat) {
        if (msg->size < sizeof(chat_op_t) ||
            msg->size - sizeof(chat_op_t) !=
                ((const chat_op_t *)msg->data)->body_len)
            return 0;
        if (!(op = malloc(msg->size)))
            return RT_ENOMEM;
        memcpy(op, msg->data, msg->size);
        op->user[CHAT_NAME_CAP - 1] = op->peer[CHAT_NAME_CAP - 1] = '\0';
    } else if (msg->size != sizeof(chat_store_op_t)) {
        return 0;
    }
    uv_mutex_lock(&w->lock);
    if (!w->next && (w->next = calloc(1, sizeof(batch_t)))) {
        w->next->db = w->db;
        w->next->sys = w->sys;
        msgpack_sbuffer_init(&w->next->frames);
    }
    batch_t *b = w->next;
    if (b && b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        pending_op_t *ops = realloc(b->ops, cap * sizeof(*ops));
        if (ops) {
            b->ops = ops;
            b->cap = cap;
        }
    }
    if (!b || b->n == b->cap) {
        uv_mutex_unlock(&w->lock);
        free(op);
        return RT_ENOMEM;
    }
    pending_op_t *p = &b->ops[b->n++];
    memset(p, 0, sizeof(*p));
    if (op)
        p->chat = op;
    else
        memcpy(&p->op, msg->data, sizeof(p->op));
    p->from = msg->from;
    p->ref = msg->ref;
    bool start = !w->running;
    w->running = true;
    uv_mutex_unlock(&w->lock);
    if (start && (rc = rt_work(self, writer_run, w, 0)) < 0) {
        /* the queue stays; the next write tries again */
        uv_mutex_lock(&w->lock);
        w->running = false;
        uv_mutex_unlock(&w->lock);
    }
    return rc < 0 ? rc : RT_CONTINUE;
}

static int store_init(rt_actor_t *self, void *arg)
{
    store_state_t *st = rt_state(self);
    writer_t *w = calloc(1, sizeof(*w));

    if (!w)
        return RT_ENOMEM;
    if (!(w->cache = chat_txn_cache_new(arg))) {
        free(w);
        return RT_ENOMEM;
    }
    if (uv_mutex_init(&w->lock) < 0) {
        chat_txn_cache_free(w->cache);
        free(w);
        return RT_ENOMEM;
    }
    w->db = arg;
    w->sys = rt_system(self);
    st->w = w;
    return rt_register(rt_system(self), CHAT_STORE_NAME, rt_self(self));
}

static int store_handle(rt_actor_t *self, rt_msg_t *msg)
{
    store_state_t *st = rt_state(self);

    if (msg->type == CHAT_STORE_WRITE || msg->type == CHAT_STORE_CHAT)
        return add_write(self, msg);
    if (msg->type == RT_MSG_WORK_DONE) {
        /* writer_run always returns 0; an error here means the pool
         * never ran it, so the writer is idle and must be started anew */
        rt_work_done_t d;
        memcpy(&d, msg->data, sizeof(d));
        if (d.result < 0) {
            writer_t *w = st->w;
            uv_mutex_lock(&w->lock);
            bool again = w->next != NULL;
            w->running = again;
            uv_mutex_unlock(&w->lock);
            if (again && rt_work(self, writer_run, w, 0) < 0) {
                uv_mutex_lock(&w->lock);
                w->running = false;
                uv_mutex_unlock(&w->lock);
            }
        }
    }
    return RT_CONTINUE;
}

static void store_terminate(rt_actor_t *self, int reason)
{
    store_state_t *st = rt_state(self);
    writer_t *w = st->w;
    uint64_t commits, writes;

    chat_store_counters(&commits, &writes);
    rt_log(RT_LOG_INFO, "store", "event=stats commits=%llu writes=%llu",
           (unsigned long long)commits, (unsigned long long)writes);
    if (!w)
        return;
    /* Writes not yet taken by the writer are answered, so no one waits
     * for them; a batch the writer is committing is not answered. */
    uv_mutex_lock(&w->lock);
    batch_t *b = w->next;
    w->next = NULL;
    w->stopping = true;
    bool running = w->running;
    uv_mutex_unlock(&w->lock);
    if (b) {
        reply_all(rt_system(self), b, -EIO);
        batch_free(b);
    }
    if (!running)
        writer_free(w);
}

static void store_describe(rt_actor_t *self, char *buf, size_t len)
{
    store_state_t *st = rt_state(self);
    writer_t *w = st->w;
    uint64_t commits, writes;
    size_t waiting = 0;
    bool running = false;

    chat_store_counters(&commits, &writes);
    if (w) {
        uv_mutex_lock(&w->lock);
        waiting = w->next ? w->next->n : 0;
        running = w->running;
        uv_mutex_unlock(&w->lock);
    }
    snprintf(buf, len, "commits=%llu writes=%llu waiting=%zu committing=%d",
             (unsigned long long)commits, (unsigned long long)writes, waiting,
             running);
}

const rt_behaviour_t chat_store_behaviour = {
    .kind = "store",
    .state_size = sizeof(store_state_t),
    .init = store_init,
    .handle = store_handle,
    .terminate = store_terminate,
    .describe = store_describe,
};
