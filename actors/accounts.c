/*
 * actors/accounts.c - the accounts actor. See accounts.h.
 *
 * A request that must wait (for the thread pool or the store) becomes a
 * `pending` record, kept on a list until it is answered. Its stage says
 * what it waits for.
 */
#include "accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "log.h"

#define STORE_TIMEOUT_MS 10000
#define RL_SLOTS         4096 /* per table; a collision forgets a count */

typedef enum stage {
    ST_HASH = 1, /* register: argon2id on the pool */
    ST_VERIFY,   /* login: argon2id verify on the pool */
    ST_STORE,    /* waiting for the store's commit */
} stage_t;

typedef struct pending {
    struct pending *next;
    chat_acc_req_t req;
    stage_t stage;
    int64_t store_ref;
    bool have_user;  /* login: the account exists */
    bool use_invite; /* register: token_hash is the invite's hash */
    uint64_t ops;    /* argon2id parameters, copied for the pool thread */
    size_t mem;
    chat_user_rec_t user;
    char pwhash[crypto_pwhash_STRBYTES];
    uint8_t token[32];
    uint8_t token_hash[CHAT_TOKEN_HASH];
} pending_t;

typedef struct rl_slot {
    uint64_t key;
    uint64_t start; /* ms, monotonic */
    uint32_t fails;
} rl_slot_t;

typedef struct acc_state {
    const chat_config_t *cfg;
    chat_db_t *db;
    pending_t *pending;
    rl_slot_t *by_user, *by_addr;
    uint8_t sipkey[crypto_shorthash_KEYBYTES];
} acc_state_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* ---- rate limits of failed logins ---------------------------------------- */

static uint64_t rl_key(acc_state_t *st, const char *s)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t k;

    crypto_shorthash(h, (const uint8_t *)s, strlen(s), st->sipkey);
    memcpy(&k, h, sizeof(k));
    return k;
}

/* Milliseconds until `key` may try again, or 0 when it may now. */
static uint64_t rl_wait(acc_state_t *st, rl_slot_t *tab, const char *s,
                        uint32_t max)
{
    uint64_t key = rl_key(st, s), now = mono_ms();
    rl_slot_t *sl = &tab[key % RL_SLOTS];
    uint64_t end = sl->start + CHAT_CFG(st->cfg, login_fail_window_ms);

    if (sl->key != key || now >= end || sl->fails < max)
        return 0;
    return end - now;
}

static void rl_fail(acc_state_t *st, rl_slot_t *tab, const char *s)
{
    uint64_t key = rl_key(st, s), now = mono_ms();
    rl_slot_t *sl = &tab[key % RL_SLOTS];

    if (sl->key != key ||
        now >= sl->start + CHAT_CFG(st->cfg, login_fail_window_ms))
        *sl = (rl_slot_t){.key = key, .start = now};
    sl->fails++;
}

static void rl_clear(acc_state_t *st, rl_slot_t *tab, const char *s)
{
    uint64_t key = rl_key(st, s);
    rl_slot_t *sl = &tab[key % RL_SLOTS];

    if (sl->key == key)
        sl->fails = 0;
}

/* ---- replies --------------------------------------------------------- */

static void send_reply(rt_actor_t *self, const pending_t *p, int code,
                       const msgpack_sbuffer *sb, const char *user)
{
    rt_msg_t *m = rt_msg_new(CHAT_ACC_REPLY,
                             (uint32_t)(sizeof(chat_acc_reply_t) + sb->size));
    if (!m)
        return; /* the connection times out and answers 500 */
    chat_acc_reply_t *r = (chat_acc_reply_t *)m->data;
    memset(r, 0, sizeof(*r));
    r->reqid = p->req.reqid;
    r->op = p->req.op;
    r->code = code;
    r->uid = p->req.uid;
    r->devid = p->req.devid;
    if (user)
        snprintf(r->user, sizeof(r->user), "%s", user);
    r->wire_len = (uint32_t)sb->size;
    memcpy(r->wire, sb->data, sb->size);
    rt_send(rt_system(self), p->req.reply_to, m);
}

static void reply_err(rt_actor_t *self, const pending_t *p, int code,
                      const char *msg, uint64_t retry)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_err(&sb, p->req.reqid, code, msg, retry) == 0)
        send_reply(self, p, code, &sb, NULL);
    msgpack_sbuffer_destroy(&sb);
}

static void reply_ok(rt_actor_t *self, const pending_t *p)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_ok(&sb, p->req.reqid) == 0)
        send_reply(self, p, 0, &sb, NULL);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the pending list -----------------------------------------------------
 */

static void pending_free(pending_t *p)
{
    sodium_memzero(p, sizeof(*p));
    free(p);
}

static void pending_drop(acc_state_t *st, pending_t *p)
{
    for (pending_t **pp = &st->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pending_free(p);
}

static pending_t *pending_by_store_ref(acc_state_t *st, uint64_t ref)
{
    for (pending_t *p = st->pending; p; p = p->next)
        if (p->stage == ST_STORE && (uint64_t)p->store_ref == ref)
            return p;
    return NULL;
}

/* Sends a write for p; the answer comes back as CHAT_STORE_DONE. Returns
 * 0, or answers 500 and returns a negative code. */
static int store_write(rt_actor_t *self, pending_t *p,
                       const chat_store_op_t *op)
{
    rt_id_t store = rt_whereis(rt_system(self), CHAT_STORE_NAME);
    rt_msg_t *m = rt_msg_new(CHAT_STORE_WRITE, sizeof(*op));
    int64_t ref = RT_ENOPROC;

    if (m)
        memcpy(m->data, op, sizeof(*op));
    if (m && store)
        ref = rt_request(self, store, m, STORE_TIMEOUT_MS);
    else
        rt_msg_free(m);
    if (ref < 0) {
        reply_err(self, p, PROTO_E_INTERNAL, "store unavailable", 0);
        return (int)ref;
    }
    p->stage = ST_STORE;
    p->store_ref = ref;
    return 0;
}

/* ---- work on the thread pool ----------------------------------------------
 */

static int hash_work(void *arg)
{
    pending_t *p = arg;

    return crypto_pwhash_str(p->pwhash, p->req.password,
                             strlen(p->req.password), p->ops, p->mem) == 0
               ? 0
               : -ENOMEM;
}

/* An unknown account costs as much as a wrong password, so that timing
 * does not tell which names exist. */
static int verify_work(void *arg)
{
    pending_t *p = arg;
    size_t len = strlen(p->req.password);

    if (!p->have_user) {
        if (crypto_pwhash_str(p->pwhash, p->req.password, len, p->ops,
                              p->mem) != 0)
            return -ENOMEM;
        return -EACCES;
    }
    return crypto_pwhash_str_verify(p->user.pwhash, p->req.password, len) == 0
               ? 0
               : -EACCES;
}

/* ---- the operations --------------------------------------------------------
 */

static int start_work(rt_actor_t *self, pending_t *p, int (*fn)(void *),
                      stage_t stage)
{
    acc_state_t *st = rt_state(self);

    p->ops = st->cfg->pwhash_ops;
    p->mem = st->cfg->pwhash_mem;
    p->stage = stage;
    if (rt_work(self, fn, p, 0) < 0) {
        reply_err(self, p, PROTO_E_INTERNAL, "thread pool unavailable", 0);
        return -1;
    }
    return 0;
}

/* Registration is closed: an invite must come with the request. Its hash
 * is kept in p->token_hash for the store, which uses it up. Returns 0, or
 * answers 203 and returns -1. */
static int check_invite(rt_actor_t *self, pending_t *p)
{
    acc_state_t *st = rt_state(self);
    size_t len = strlen(p->req.invite);

    if (len == 0)
        return reply_err(self, p, PROTO_E_BAD_INVITE,
                         "registration is closed: an invite is needed", 0),
               -1;
    crypto_generichash(p->token_hash, sizeof(p->token_hash),
                       (const uint8_t *)p->req.invite, len, NULL, 0);
    int rc = chat_db_invite_get(st->db, p->token_hash, NULL);
    if (rc == -ENOENT)
        return reply_err(self, p, PROTO_E_BAD_INVITE,
                         "unknown or already used invite", 0),
               -1;
    if (rc < 0)
        return reply_err(self, p, PROTO_E_INTERNAL, "store read failed", 0), -1;
    p->use_invite = true;
    return 0;
}

/* Refuses an account the operator blocked; the caller has checked its
 * password or token already. Returns 0, or answers and returns -1. */
static int check_blocked(rt_actor_t *self, pending_t *p, uint64_t uid)
{
    acc_state_t *st = rt_state(self);
    int rc = chat_db_user_blocked(st->db, uid, NULL);

    if (rc == 0)
        return 0;
    if (rc > 0) {
        rt_log(RT_LOG_INFO, "accounts", "event=blocked_login uid=%llu",
               (unsigned long long)uid);
        reply_err(self, p, PROTO_E_FORBIDDEN, "account blocked by the operator",
                  0);
    } else {
        reply_err(self, p, PROTO_E_INTERNAL, "store read failed", 0);
    }
    return -1;
}

/* Each op_* answers now and returns < 0 (p is freed), or returns 0 and
 * keeps p for a later stage. */
static int op_register(rt_actor_t *self, pending_t *p)
{
    acc_state_t *st = rt_state(self);
    chat_user_rec_t u;
    char msg[64];
    int rc;

    if (!CHAT_CFG(st->cfg, registration_open) &&
        (rc = check_invite(self, p)) < 0)
        return rc;
    if (strlen(p->req.password) < CHAT_CFG(st->cfg, min_password)) {
        snprintf(msg, sizeof(msg), "password shorter than %u bytes",
                 CHAT_CFG(st->cfg, min_password));
        return reply_err(self, p, PROTO_E_BAD_VALUE, msg, 0), -1;
    }
    rc = chat_db_user_get(st->db, p->req.user, strlen(p->req.user), &u);
    if (rc == 0)
        return reply_err(self, p, PROTO_E_EXISTS, "user name taken", 0), -1;
    if (rc != -ENOENT)
        return reply_err(self, p, PROTO_E_INTERNAL, "store read failed", 0), -1;
    return start_work(self, p, hash_work, ST_HASH);
}

static int op_login(rt_actor_t *self, pending_t *p)
{
    acc_state_t *st = rt_state(self);
    uint64_t wu = rl_wait(st, st->by_user, p->req.user,
                          CHAT_CFG(st->cfg, login_fail_user));
    uint64_t wa = rl_wait(st, st->by_addr, p->req.addr,
                          CHAT_CFG(st->cfg, login_fail_addr));

    if (wu || wa) {
        rt_log(RT_LOG_INFO, "accounts", "event=login_limited user=%s addr=%s",
               p->req.user, p->req.addr);
        return reply_err(self, p, PROTO_E_RATE_LIMITED,
                         "too many failed logins", wu > wa ? wu : wa),
               -1;
    }
    int rc =
        chat_db_user_get(st->db, p->req.user, strlen(p->req.user), &p->user);
    if (rc < 0 && rc != -ENOENT)
        return reply_err(self, p, PROTO_E_INTERNAL, "store read failed", 0), -1;
    p->have_user = rc == 0;
    return start_work(self, p, verify_work, ST_VERIFY);
}

static int op_resume(rt_actor_t *self, pending_t *p)
{
    acc_state_t *st = rt_state(self);
    uint8_t hash[CHAT_TOKEN_HASH];
    chat_device_rec_t d;
    uint64_t uid = 0, devid = 0;
    uint64_t wait = rl_wait(st, st->by_addr, p->req.addr,
                            CHAT_CFG(st->cfg, login_fail_addr));

    if (wait)
        return reply_err(self, p, PROTO_E_RATE_LIMITED,
                         "too many failed attempts", wait),
               -1;
    crypto_generichash(hash, sizeof(hash), p->req.token, p->req.token_len, NULL,
                       0);
    int rc = chat_db_token_get(st->db, hash, &uid, &devid);
    if (rc == 0)
        rc = chat_db_device_get(st->db, uid, devid, &d);
    if (rc == 0 && sodium_memcmp(d.token_hash, hash, sizeof(hash)) != 0)
        rc = -ENOENT;
    if (rc == -ENOENT) {
        rl_fail(st, st->by_addr, p->req.addr);
        return reply_err(self, p, PROTO_E_BAD_CREDENTIALS,
                         "unknown or revoked token", 0),
               -1;
    }
    if (rc < 0)
        return reply_err(self, p, PROTO_E_INTERNAL, "store read failed", 0), -1;
    if (check_blocked(self, p, uid) < 0)
        return -1;

    chat_store_op_t touch = {.kind = CHAT_STORE_TOUCH_DEVICE,
                             .uid = uid,
                             .devid = devid,
                             .now = now_ms()};
    rt_id_t store = rt_whereis(rt_system(self), CHAT_STORE_NAME);
    if (store) /* last_seen is best effort: no answer awaited */
        rt_send_copy(rt_system(self), store, CHAT_STORE_WRITE, &touch,
                     sizeof(touch));

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    p->req.uid = uid;
    p->req.devid = devid;
    if (proto_enc_resume_ok(&sb, p->req.reqid, proto_cstr(d.user), devid, 0) ==
        0)
        send_reply(self, p, 0, &sb, d.user);
    msgpack_sbuffer_destroy(&sb);
    return -1;
}

typedef struct dev_list {
    size_t n, cap;
    uint64_t *ids;
    chat_device_rec_t *recs;
} dev_list_t;

static int collect_device(uint64_t devid, const chat_device_rec_t *d, void *ctx)
{
    dev_list_t *l = ctx;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        uint64_t *ids = realloc(l->ids, cap * sizeof(*ids));
        if (ids)
            l->ids = ids;
        chat_device_rec_t *recs = realloc(l->recs, cap * sizeof(*recs));
        if (recs)
            l->recs = recs;
        if (!ids || !recs)
            return 1;
        l->cap = cap;
    }
    l->ids[l->n] = devid;
    l->recs[l->n++] = *d;
    return 0;
}

static int op_device_list(rt_actor_t *self, pending_t *p)
{
    acc_state_t *st = rt_state(self);
    dev_list_t l = {0};
    msgpack_sbuffer sb;

    if (chat_db_devices_each(st->db, p->req.uid, collect_device, &l) < 0) {
        reply_err(self, p, PROTO_E_INTERNAL, "store read failed", 0);
        goto out;
    }
    proto_device_info_t *info = calloc(l.n ? l.n : 1, sizeof(*info));
    if (!info) {
        reply_err(self, p, PROTO_E_INTERNAL, "out of memory", 0);
        goto out;
    }
    for (size_t i = 0; i < l.n; i++)
        info[i] = (proto_device_info_t){
            .id = l.ids[i],
            .name = proto_cstr(l.recs[i].name),
            .created = l.recs[i].created,
            .last_seen = l.recs[i].last_seen,
            .current = l.ids[i] == p->req.devid,
        };
    msgpack_sbuffer_init(&sb);
    if (proto_enc_devices_ok(&sb, p->req.reqid, info, l.n) == 0)
        send_reply(self, p, 0, &sb, NULL);
    msgpack_sbuffer_destroy(&sb);
    free(info);
out:
    free(l.ids);
    free(l.recs);
    return -1;
}

static int op_revoke(rt_actor_t *self, pending_t *p)
{
    chat_store_op_t op = {
        .kind = CHAT_STORE_REVOKE_DEVICE,
        .uid = p->req.uid,
        .devid = p->req.op == PROTO_OP_LOGOUT ? p->req.devid : p->req.target};
    return store_write(self, p, &op);
}

static int dispatch(rt_actor_t *self, pending_t *p)
{
    switch (p->req.op) {
    case PROTO_OP_REGISTER:
        return op_register(self, p);
    case PROTO_OP_LOGIN:
        return op_login(self, p);
    case PROTO_OP_RESUME:
        return op_resume(self, p);
    case PROTO_OP_LOGOUT:
    case PROTO_OP_DEVICE_REVOKE:
        return op_revoke(self, p);
    case PROTO_OP_DEVICE_LIST:
        return op_device_list(self, p);
    }
    reply_err(self, p, PROTO_E_INTERNAL, "not an accounts operation", 0);
    return -1;
}

/* ---- later stages ----------------------------------------------------------
 */

static int after_work(rt_actor_t *self, pending_t *p, int result)
{
    acc_state_t *st = rt_state(self);

    if (p->stage == ST_HASH) {
        if (result < 0)
            return reply_err(self, p, PROTO_E_INTERNAL, "hashing failed", 0),
                   -1;
        chat_store_op_t op = {.kind = CHAT_STORE_CREATE_USER,
                              .now = now_ms(),
                              .invite = p->use_invite};
        memcpy(op.token_hash, p->token_hash, sizeof(op.token_hash));
        memcpy(op.user, p->req.user, sizeof(op.user));
        memcpy(op.pwhash, p->pwhash, sizeof(op.pwhash));
        return store_write(self, p, &op);
    }
    if (result == -EACCES) {
        rl_fail(st, st->by_user, p->req.user);
        rl_fail(st, st->by_addr, p->req.addr);
        rt_log(RT_LOG_DEBUG, "accounts", "event=login_failed user=%s addr=%s",
               p->req.user, p->req.addr);
        return reply_err(self, p, PROTO_E_BAD_CREDENTIALS,
                         "wrong user or password", 0),
               -1;
    }
    if (result < 0)
        return reply_err(self, p, PROTO_E_INTERNAL, "hashing failed", 0), -1;
    rl_clear(st, st->by_user, p->req.user);
    if (check_blocked(self, p, p->user.uid) < 0)
        return -1;
    randombytes_buf(p->token, sizeof(p->token));
    crypto_generichash(p->token_hash, sizeof(p->token_hash), p->token,
                       sizeof(p->token), NULL, 0);
    chat_store_op_t op = {
        .kind = CHAT_STORE_ADD_DEVICE, .uid = p->user.uid, .now = now_ms()};
    memcpy(op.user, p->req.user, sizeof(op.user));
    memcpy(op.device, p->req.device, sizeof(op.device));
    memcpy(op.token_hash, p->token_hash, sizeof(op.token_hash));
    return store_write(self, p, &op);
}

/* The device's session passes the news to each of its connections. */
static void notify_revoked(rt_actor_t *self, uint64_t devid)
{
    rt_id_t sess = rt_whereis_key(rt_system(self), devid);
    if (sess)
        rt_send_copy(rt_system(self), sess, CHAT_ACC_REVOKED, NULL, 0);
}

static void after_store(rt_actor_t *self, pending_t *p,
                        const chat_store_done_t *d)
{
    msgpack_sbuffer sb;

    if (d->result == -EEXIST && p->req.op == PROTO_OP_REGISTER)
        return reply_err(self, p, PROTO_E_EXISTS, "user name taken", 0);
    if (d->result == -EACCES && p->req.op == PROTO_OP_REGISTER)
        return reply_err(self, p, PROTO_E_BAD_INVITE,
                         "unknown or already used invite", 0);
    if (d->result == -ENOENT && p->req.op == PROTO_OP_DEVICE_REVOKE)
        return reply_err(self, p, PROTO_E_NOT_FOUND, "no such device", 0);
    if (d->result < 0 && d->result != -ENOENT)
        return reply_err(self, p, PROTO_E_INTERNAL, "store write failed", 0);

    switch (p->req.op) {
    case PROTO_OP_REGISTER:
        rt_log(RT_LOG_INFO, "accounts", "event=registered user=%s uid=%llu",
               p->req.user, (unsigned long long)d->uid);
        return reply_ok(self, p);
    case PROTO_OP_LOGIN:
        p->req.uid = d->uid;
        p->req.devid = d->devid;
        msgpack_sbuffer_init(&sb);
        if (proto_enc_login_ok(&sb, p->req.reqid,
                               (proto_bin_t){p->token, sizeof(p->token)},
                               d->devid, 0) == 0)
            send_reply(self, p, 0, &sb, p->req.user);
        msgpack_sbuffer_destroy(&sb);
        return;
    case PROTO_OP_DEVICE_REVOKE:
        reply_ok(self, p);
        return notify_revoked(self, p->req.target);
    default: /* logout */
        return reply_ok(self, p);
    }
}

/* ---- the actor ---------------------------------------------------------- */

static int acc_init(rt_actor_t *self, void *arg)
{
    acc_state_t *st = rt_state(self);
    const chat_accounts_args_t *a = arg;

    st->cfg = a->cfg;
    st->db = a->db;
    st->by_user = calloc(RL_SLOTS, sizeof(rl_slot_t));
    st->by_addr = calloc(RL_SLOTS, sizeof(rl_slot_t));
    if (!st->by_user || !st->by_addr)
        return RT_ENOMEM;
    crypto_shorthash_keygen(st->sipkey);
    return rt_register(rt_system(self), CHAT_ACCOUNTS_NAME, rt_self(self));
}

static int on_request(rt_actor_t *self, rt_msg_t *msg)
{
    acc_state_t *st = rt_state(self);
    pending_t *p;

    if (msg->size != sizeof(chat_acc_req_t) || !(p = calloc(1, sizeof(*p))))
        return RT_CONTINUE; /* the connection times out and answers 500 */
    memcpy(&p->req, msg->data, sizeof(p->req));
    sodium_memzero(msg->data, msg->size);
    p->req.user[PROTO_MAX_NAME] = '\0';
    p->req.password[PROTO_MAX_PASSWORD] = '\0';
    p->req.device[PROTO_MAX_TEXT] = '\0';
    p->req.invite[PROTO_MAX_TEXT] = '\0';
    p->req.addr[sizeof(p->req.addr) - 1] = '\0';
    if (p->req.token_len > PROTO_MAX_TOKEN)
        p->req.token_len = PROTO_MAX_TOKEN;
    p->next = st->pending;
    st->pending = p;
    if (dispatch(self, p) < 0)
        pending_drop(st, p);
    return RT_CONTINUE;
}

static int acc_handle(rt_actor_t *self, rt_msg_t *msg)
{
    acc_state_t *st = rt_state(self);
    pending_t *p;

    switch (msg->type) {
    case CHAT_ACC_REQ:
        return on_request(self, msg);
    case RT_MSG_WORK_DONE: {
        rt_work_done_t d;
        memcpy(&d, msg->data, sizeof(d));
        p = d.arg;
        if (after_work(self, p, d.result) < 0)
            pending_drop(st, p);
        return RT_CONTINUE;
    }
    case CHAT_STORE_DONE:
        if ((p = pending_by_store_ref(st, msg->ref))) {
            chat_store_done_t d;
            memcpy(&d, msg->data, sizeof(d));
            after_store(self, p, &d);
            pending_drop(st, p);
        }
        return RT_CONTINUE;
    case RT_MSG_TIMEOUT:
        if ((p = pending_by_store_ref(st, msg->ref))) {
            reply_err(self, p, PROTO_E_INTERNAL, "store timed out", 0);
            pending_drop(st, p);
        }
        return RT_CONTINUE;
    }
    return RT_CONTINUE;
}

static void acc_terminate(rt_actor_t *self, int reason)
{
    acc_state_t *st = rt_state(self);

    /* Records on the thread pool are still read there: they are left to
     * leak rather than freed under a running hash. */
    for (pending_t *p = st->pending, *next; p; p = next) {
        next = p->next;
        if (p->stage == ST_STORE)
            pending_free(p);
    }
    free(st->by_user);
    free(st->by_addr);
}

const rt_behaviour_t chat_accounts_behaviour = {
    .kind = "accounts",
    .state_size = sizeof(acc_state_t),
    .init = acc_init,
    .handle = acc_handle,
    .terminate = acc_terminate,
};
