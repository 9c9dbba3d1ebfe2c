/*
 * actors/conn.c - one connection actor per client socket. See conn.h.
 *
 * Libuv callbacks (reads, writes, the tick) run on the actor's scheduler
 * between its turns, outside its handler, where rt_current() is NULL. So
 * they use only calls documented "any thread", and a connection that must
 * end sends itself CHAT_CONN_STOP; its handler returns RT_STOP and the
 * runtime closes the handles.
 *
 * Each scheduler's loop has one conn_loop_t shared by the connections
 * pinned to it, so that a connection owns one libuv handle (its socket):
 *
 *  - one timer ticks for all of them (keepalive, idle, handshake and
 *    close deadlines), walking the loop's list of connections;
 *  - one check handle flushes output. Frames written during a turn, or
 *    during a read callback, are appended to the connection's out buffer
 *    and the connection joins the loop's dirty list; the check handle,
 *    which runs in every iteration of the loop after its I/O (and the
 *    scheduler runs an iteration at least every 64 actor turns, or 64
 *    batches of messages, and before it sleeps), writes each buffer with
 *    one uv_try_write(). So a burst of events costs one syscall, and an
 *    idle server adds no delay. A buffer that reaches OUT_FLUSH is
 *    written at once. A client is too slow a reader when what its socket
 *    would not take (libuv's write queue) passes send_queue_max.
 */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accounts.h"
#include "codec.h"
#include "log.h"
#include "session.h"
#include "trace.h"

#define READ_BUF       65536 /* one per scheduler thread */
#define ACC_SLOTS      4     /* account requests in flight per connection */
#define ACC_TIMEOUT_MS 15000
#define CLOSE_GRACE_MS 2000 /* for the peer's close frame and our writes */
#define SERVER_NAME    "parleyd/0.1.0"
#define MAX_INFLIGHT   64 /* chat requests awaiting their reply */
#define SESS_START_MS  5000
#define SESS_RETRIES   3
#define MAX_LOOPS      256   /* schedulers with connections */
#define OUT_MIN        512   /* first size of an out buffer */
#define OUT_FLUSH      65536 /* an out buffer this full is written at once */

_Atomic long chat_conn_live;

typedef enum conn_phase {
    CP_OPEN,    /* HTTP or WebSocket in progress */
    CP_CLOSING, /* our close frame is out: waiting for the peer's */
    CP_ENDING,  /* shutting the socket down after the last write */
    CP_DEAD,    /* STOP sent to self */
} conn_phase_t;

typedef struct conn conn_t;

/* A login or resume reply held until the session is attached. */
typedef struct conn_login {
    uint64_t re;
    uint32_t op, len;
    uint8_t wire[];
} conn_login_t;

/* Output waiting for the end of the loop iteration; handed to uv_write()
 * itself when the socket does not take it all. */
typedef struct conn_write {
    uv_write_t req;
    conn_t *dirty_next; /* while queued on the loop's dirty list */
    uint32_t len, cap;
    char data[];
} conn_write_t;

typedef struct conn_loop {
    uv_loop_t *loop;
    rt_system_t *sys;
    const chat_listener_args_t *la; /* of the listener on this loop */
    uint64_t tick_ms;
    uv_timer_t tick;
    uv_check_t flush;
    conn_t *all;   /* every connection of the loop, by next/prev */
    conn_t *dirty; /* those with output queued, by dirty_next */
} conn_loop_t;

/* One per scheduler, made by its first connection and touched only on
 * its thread; kept to the end of the process (the runtime's loops close
 * their handles). */
static conn_loop_t *loops[MAX_LOOPS];

struct conn {
    conn_loop_t *cl; /* its loop's shared part: system, listener args */
    rt_id_t id;
    uv_tcp_t *tcp;
    conn_t *next, *prev;
    conn_write_t *out; /* NULL while nothing is queued */
    uv_shutdown_t *shut;
    ws_conn_t ws;
    uint64_t last_rx;   /* uv_now() of the last byte read */
    uint64_t deadline;  /* CLOSING/ENDING: when to give up, uv_now() */
    uint64_t bucket_at; /* request rate: tokens are milli-requests */
    uint64_t bucket;
    uint64_t uid, devid;
    /* the device's session, once attached (see session.h) */
    rt_id_t sess;
    uint64_t sess_mon;
    int64_t start_ref;   /* rt_sup_start_child_async in flight */
    uint64_t seq_seen;   /* highest mailbox seq forwarded, or resume's after */
    uint32_t inflight;   /* requests forwarded to the session */
    uint32_t retries;    /* of finding the session */
    conn_login_t *login; /* the login or resume reply, until attached */
    struct {
        uint64_t reqid, deadline;
    } acc[ACC_SLOTS];
    uint16_t bad; /* malformed requests in a row */
    uint8_t phase;
    uint8_t pinged;
    uint8_t slow;    /* send queue over its bound */
    uint8_t counted; /* in chat_conn_live */
    uint8_t dirty;   /* on cl->dirty */
    char user[PROTO_MAX_NAME + 1];
};

static _Thread_local char read_buf[READ_BUF];
static _Thread_local proto_dec_t *decoder;

/* ---- ending ------------------------------------------------------------- */

static void conn_stop(conn_t *c)
{
    if (c->phase == CP_DEAD)
        return;
    c->phase = CP_DEAD;
    uv_read_stop((uv_stream_t *)c->tcp);
    rt_send_copy(c->cl->sys, c->id, CHAT_CONN_STOP, NULL, 0);
}

static void conn_flush(conn_t *c);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;

    free(req);
    if (c) {
        c->shut = NULL;
        conn_stop(c);
    }
}

/* Lets queued writes finish, then ends; the timer ends it anyway after
 * CLOSE_GRACE_MS. */
static void conn_end(conn_t *c)
{
    if (c->phase >= CP_ENDING)
        return;
    c->phase = CP_ENDING;
    c->deadline = uv_now(c->tcp->loop) + CLOSE_GRACE_MS;
    uv_read_stop((uv_stream_t *)c->tcp);
    conn_flush(c); /* the shutdown waits for writes handed to libuv only */
    c->shut = malloc(sizeof(*c->shut));
    if (!c->shut ||
        uv_shutdown(c->shut, (uv_stream_t *)c->tcp, on_shutdown) < 0) {
        free(c->shut);
        c->shut = NULL;
        conn_stop(c);
        return;
    }
    c->shut->data = c;
}

/* Starts the close handshake; ends at once when there is nothing to
 * close (before the upgrade). */
static void conn_close(conn_t *c, uint16_t code, const char *reason)
{
    if (c->phase != CP_OPEN)
        return;
    int rc = ws_close(&c->ws, code, reason);
    if (rc != 0) {
        conn_end(c);
        return;
    }
    c->phase = CP_CLOSING;
    c->deadline = uv_now(c->tcp->loop) + CLOSE_GRACE_MS;
}

static void after_io(conn_t *c, int rc)
{
    if (c->slow && c->phase == CP_OPEN) {
        rt_log(RT_LOG_INFO, "conn",
               "id=%llu event=slow_reader queued=%zu action=close",
               (unsigned long long)c->id, c->tcp->write_queue_size);
        uv_read_stop((uv_stream_t *)c->tcp);
        conn_close(c, WS_CLOSE_POLICY, "send queue full: reading too slowly");
        conn_end(c);
    } else if (rc < 0) {
        conn_stop(c);
    } else if (rc == WS_DONE) {
        conn_end(c);
    }
}

/* ---- writing ---------------------------------------------------------------
 */

static void on_written(uv_write_t *req, int status)
{
    free(req->data);
}

/* Takes c off its loop's dirty list: a walk, but the list holds only the
 * connections written to since the last check. */
static void dirty_remove(conn_t *c)
{
    for (conn_t **p = &c->cl->dirty; *p; p = &(*p)->out->dirty_next)
        if (*p == c) {
            *p = c->out->dirty_next;
            break;
        }
    c->dirty = 0;
}

/* Writes c->out now: what the socket does not take is handed to libuv. */
static void conn_flush(conn_t *c)
{
    uv_stream_t *s = (uv_stream_t *)c->tcp;
    conn_write_t *w = c->out;
    size_t off = 0;

    if (!w)
        return;
    if (c->dirty)
        dirty_remove(c);
    c->out = NULL;
    if (c->phase == CP_DEAD) {
        free(w);
        return;
    }
    if (s->write_queue_size == 0) {
        uv_buf_t b = uv_buf_init(w->data, w->len);
        int n = uv_try_write(s, &b, 1);
        if (n >= 0)
            off = (size_t)n;
        else if (n != UV_EAGAIN)
            goto failed;
    }
    if (off == w->len) {
        free(w);
        return;
    }
    memmove(w->data, w->data + off, w->len - off);
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)(w->len - off));
    if (uv_write(&w->req, s, &b, 1, on_written) == 0)
        return;
failed:
    free(w);
    conn_stop(c);
}

static void on_flush(uv_check_t *h)
{
    conn_loop_t *cl = h->data;
    conn_t *c;

    while ((c = cl->dirty)) {
        cl->dirty = c->out->dirty_next;
        c->dirty = 0;
        conn_flush(c);
    }
}

/* Appends to c->out; the loop's check handle writes it. */
static int on_write(void *user, const uint8_t *data, size_t len, bool more)
{
    conn_t *c = user;
    conn_write_t *w = c->out;

    if (c->phase == CP_DEAD)
        return -EPIPE;
    CHAT_TRACE(c->cl->sys, c->id, "conn", c->user, "out", "bytes=%zu", len);
    if (rt_fault("ws.write") == RT_FAULT_FAIL)
        return -EIO;
    /* Slow is what the socket would not take: libuv's queue. Our own out
     * buffer is not counted; it is flushed at the end of the loop
     * iteration, or here once it reaches OUT_FLUSH, so a burst to a
     * client that reads (a turn of a deep mailbox, many replies to one
     * read) is not taken for a slow reader. */
    if (c->tcp->write_queue_size > CHAT_CFG(c->cl->la->cfg, send_queue_max))
        c->slow = 1; /* queued all the same: cut after this event */
    if ((w ? w->len : 0) + len > UINT32_MAX)
        return -ENOMEM;
    if (!w || w->cap - w->len < len) {
        size_t cap = w ? (size_t)w->cap * 2 : OUT_MIN;
        while (cap < (w ? w->len : 0) + len)
            cap *= 2;
        conn_write_t *nw = realloc(w, sizeof(*nw) + cap);
        if (!nw)
            return -ENOMEM;
        if (!w)
            nw->len = 0;
        nw->cap = (uint32_t)cap;
        c->out = w = nw;
    }
    memcpy(w->data + w->len, data, len);
    w->len += (uint32_t)len;
    if (w->len >= OUT_FLUSH) {
        conn_flush(c);
        return 0;
    }
    if (!c->dirty) {
        c->dirty = 1;
        w->dirty_next = c->cl->dirty;
        c->cl->dirty = c;
    }
    return 0;
}

static void send_sb(conn_t *c, msgpack_sbuffer *sb)
{
    if (c->phase == CP_OPEN)
        ws_send(&c->ws, sb->data, sb->size);
}

static void send_err(conn_t *c, uint64_t re, int code, const char *msg,
                     uint64_t retry)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_err(&sb, re, code, msg, retry) == 0)
        send_sb(c, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- requests
 * ---------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, proto_str_t s)
{
    size_t n = s.ptr ? (s.len < cap - 1 ? s.len : cap - 1) : 0;

    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static void peer_addr(conn_t *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss);

    snprintf(buf, len, "?");
    if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &n) < 0)
        return;
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
    else
        uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
}

static void to_accounts(conn_t *c, const proto_req_t *req)
{
    chat_acc_req_t a;
    int slot = -1;

    for (int i = 0; i < ACC_SLOTS && slot < 0; i++)
        if (!c->acc[i].reqid)
            slot = i;
    if (slot < 0)
        return send_err(c, req->id, PROTO_E_BUSY,
                        "too many account requests in flight", 0);
    memset(&a, 0, sizeof(a));
    a.op = req->op;
    a.reply_to = c->id;
    a.reqid = req->id;
    a.uid = c->uid;
    a.devid = c->devid;
    switch (req->op) {
    case PROTO_OP_REGISTER:
        copy_str(a.user, sizeof(a.user), req->u.reg.user);
        copy_str(a.password, sizeof(a.password), req->u.reg.password);
        copy_str(a.invite, sizeof(a.invite), req->u.reg.invite);
        break;
    case PROTO_OP_LOGIN:
        copy_str(a.user, sizeof(a.user), req->u.login.user);
        copy_str(a.password, sizeof(a.password), req->u.login.password);
        copy_str(a.device, sizeof(a.device), req->u.login.device);
        break;
    case PROTO_OP_RESUME:
        a.token_len = req->u.resume.token.len;
        c->seq_seen = req->u.resume.after; /* where the session starts */
        memcpy(a.token, req->u.resume.token.ptr, a.token_len);
        break;
    case PROTO_OP_DEVICE_REVOKE:
        a.target = req->u.device_revoke.device;
        break;
    default:
        break;
    }
    peer_addr(c, a.addr, sizeof(a.addr));
    rt_id_t acc = rt_whereis(c->cl->sys, CHAT_ACCOUNTS_NAME);
    int rc = acc ? rt_send_copy(c->cl->sys, acc, CHAT_ACC_REQ, &a, sizeof(a))
                 : RT_ENOPROC;
    sodium_memzero(&a, sizeof(a));
    if (rc == RT_EFULL)
        return send_err(c, req->id, PROTO_E_BUSY, "accounts busy", 1000);
    if (rc < 0)
        return send_err(c, req->id, PROTO_E_INTERNAL, "accounts unavailable",
                        0);
    c->acc[slot].reqid = req->id ? req->id : UINT64_MAX;
    c->acc[slot].deadline = uv_now(c->tcp->loop) + ACC_TIMEOUT_MS;
}

/* Token bucket in milli-requests. Returns 0, or the ms to wait. */
static uint64_t rate_wait(conn_t *c)
{
    const chat_config_t *cfg = c->cl->la->cfg;
    uint64_t now = uv_now(c->tcp->loop);
    uint64_t cap = CHAT_CFG(cfg, request_burst) * 1000ull;
    uint64_t rate = CHAT_CFG(cfg, request_rate); /* one reading of each */

    c->bucket += (now - c->bucket_at) * rate;
    c->bucket_at = now;
    if (c->bucket > cap)
        c->bucket = cap;
    if (c->bucket >= 1000) {
        c->bucket -= 1000;
        return 0;
    }
    return (1000 - c->bucket + rate - 1) / rate;
}

/* The names of presence.sub and presence.unsub, or none. */
static proto_names_t req_names(const proto_req_t *req)
{
    if (req->op == PROTO_OP_PRESENCE_SUB || req->op == PROTO_OP_PRESENCE_UNSUB)
        return req->u.presence.users;
    if (req->op == PROTO_OP_GROUP_CREATE)
        return req->u.group_create.members;
    if (req->op == PROTO_OP_GROUP_ADD)
        return req->u.group_add.users;
    return (proto_names_t){NULL, 0};
}

/* The bytes a request carries before its names: a message body, or a
 * group's name. */
static proto_bin_t req_bytes(const proto_req_t *req)
{
    switch (req->op) {
    case PROTO_OP_SEND:
        return req->u.send.body;
    case PROTO_OP_GROUP_SEND:
        return req->u.group_send.body;
    case PROTO_OP_GROUP_CREATE:
        return (proto_bin_t){(const uint8_t *)req->u.group_create.name.ptr,
                             req->u.group_create.name.len};
    case PROTO_OP_GROUP_RENAME:
        return (proto_bin_t){(const uint8_t *)req->u.group_rename.name.ptr,
                             req->u.group_rename.name.len};
    default:
        return (proto_bin_t){NULL, 0};
    }
}

static void fill_session_req(chat_sess_req_t *q, const proto_req_t *req)
{
    switch (req->op) {
    case PROTO_OP_SEND:
        copy_str(q->peer, sizeof(q->peer), req->u.send.to);
        q->cid = req->u.send.cid;
        break;
    case PROTO_OP_ACK:
        q->upto = req->u.ack.upto;
        q->gid = req->u.ack.gid;
        break;
    case PROTO_OP_GROUP_ADD:
        q->gid = req->u.group_add.gid;
        break;
    case PROTO_OP_GROUP_REMOVE:
    case PROTO_OP_GROUP_PROMOTE:
        q->gid = req->u.group_member.gid;
        copy_str(q->peer, sizeof(q->peer), req->u.group_member.user);
        break;
    case PROTO_OP_GROUP_LEAVE:
    case PROTO_OP_GROUP_INFO:
        q->gid = req->u.group.gid;
        break;
    case PROTO_OP_GROUP_RENAME:
        q->gid = req->u.group_rename.gid;
        break;
    case PROTO_OP_GROUP_SEND:
        q->gid = req->u.group_send.gid;
        q->cid = req->u.group_send.cid;
        break;
    case PROTO_OP_GROUP_READ:
        q->gid = req->u.group_read.gid;
        q->upto = req->u.group_read.upto;
        break;
    case PROTO_OP_READ:
        copy_str(q->peer, sizeof(q->peer), req->u.read.peer);
        q->upto = req->u.read.upto;
        break;
    case PROTO_OP_HISTORY:
        copy_str(q->peer, sizeof(q->peer), req->u.history.peer);
        q->gid = req->u.history.gid;
        q->before = req->u.history.before;
        q->limit = req->u.history.limit;
        break;
    case PROTO_OP_TYPING:
        copy_str(q->peer, sizeof(q->peer), req->u.typing.to);
        q->gid = req->u.typing.gid;
        q->on = req->u.typing.on;
        break;
    case PROTO_OP_PRIVACY_SET:
        q->privacy = req->u.privacy.presence;
        break;
    case PROTO_OP_CONTACT_ADD:
    case PROTO_OP_CONTACT_REMOVE:
    case PROTO_OP_BLOCK:
    case PROTO_OP_UNBLOCK:
        copy_str(q->peer, sizeof(q->peer), req->u.user.user);
        break;
    default:
        break;
    }
    proto_bin_t bytes = req_bytes(req);
    q->body_len = bytes.len;
    if (bytes.len)
        memcpy(q->data, bytes.ptr, bytes.len);
    proto_names_t names = req_names(req);
    for (uint32_t i = 0; i < names.count; i++)
        copy_str((char *)q->data + q->body_len +
                     i * (size_t)(PROTO_MAX_NAME + 1),
                 PROTO_MAX_NAME + 1, names.items[i]);
}

/* Hands a chat request to the device's session, which answers it. */
static void to_session(conn_t *c, const proto_req_t *req)
{
    proto_names_t names = req_names(req);
    uint32_t body = req_bytes(req).len;
    size_t size = sizeof(chat_sess_req_t) + body +
                  names.count * (size_t)(PROTO_MAX_NAME + 1);

    if (!c->sess)
        return send_err(c, req->id, PROTO_E_INTERNAL,
                        "session restarting; retry", 0);
    if (c->inflight >= MAX_INFLIGHT)
        return send_err(c, req->id, PROTO_E_BUSY, "too many requests in flight",
                        0);
    rt_msg_t *m = rt_msg_new(CHAT_SESS_REQ, (uint32_t)size);
    if (!m)
        return send_err(c, req->id, PROTO_E_INTERNAL, "out of memory", 0);
    chat_sess_req_t *q = (chat_sess_req_t *)m->data;
    memset(q, 0, sizeof(*q));
    q->conn = c->id;
    q->reqid = req->id;
    q->op = req->op;
    q->has = req->has;
    q->nusers = names.count;
    fill_session_req(q, req);
    int rc = rt_send(c->cl->sys, c->sess, m);
    if (rc == RT_EFULL)
        return send_err(c, req->id, PROTO_E_BUSY, "session busy", 100);
    if (rc < 0)
        return send_err(c, req->id, PROTO_E_INTERNAL,
                        "session restarting; retry", 0);
    c->inflight++;
}

static void on_request(conn_t *c, const proto_req_t *req)
{
    const chat_config_t *cfg = c->cl->la->cfg;
    msgpack_sbuffer sb;

    if (proto_op_needs_session(req->op) && !c->uid)
        return send_err(c, req->id, PROTO_E_NOT_LOGGED_IN,
                        "log in or resume first", 0);
    switch (req->op) {
    case PROTO_OP_HELLO:
        msgpack_sbuffer_init(&sb);
        if (proto_enc_hello_ok(&sb, req->id, SERVER_NAME, cfg->max_message,
                               PROTO_MAX_BODY) == 0)
            send_sb(c, &sb);
        msgpack_sbuffer_destroy(&sb);
        return;
    case PROTO_OP_REGISTER:
    case PROTO_OP_LOGIN:
    case PROTO_OP_RESUME:
        if (c->uid)
            return send_err(c, req->id, PROTO_E_ALREADY_LOGGED_IN,
                            "already logged in", 0);
        return to_accounts(c, req);
    case PROTO_OP_LOGOUT:
    case PROTO_OP_DEVICE_LIST:
    case PROTO_OP_DEVICE_REVOKE:
        return to_accounts(c, req);
    default:
        return to_session(c, req);
    }
}

/* Each scheduler thread's decoder goes with the thread. */
static void free_decoder(void)
{
    if (decoder) {
        proto_dec_free(decoder);
        free(decoder);
        decoder = NULL;
    }
}

static void on_message(void *user, const uint8_t *msg, size_t len)
{
    conn_t *c = user;
    proto_req_t req;
    msgpack_sbuffer sb;

    if (c->phase != CP_OPEN)
        return;
    if (!decoder) {
        /* once per scheduler thread */
        if ((decoder = malloc(sizeof(*decoder))) &&
            proto_dec_init(decoder) < 0) {
            free(decoder);
            decoder = NULL;
        }
        if (decoder)
            rt_thread_cleanup(free_decoder);
    }
    if (!decoder)
        return send_err(c, 0, PROTO_E_INTERNAL, "out of memory", 0);
    int rc = proto_decode_req(decoder, msg, len, &req);
    CHAT_TRACE(c->cl->sys, c->id, "conn", c->user, "in",
               "op=%s id=%llu bytes=%zu result=%d", proto_op_name(req.op),
               (unsigned long long)req.id, len, rc);
    uint64_t wait = rate_wait(c); /* bad requests count too */
    if (wait)
        return send_err(c, req.id, PROTO_E_RATE_LIMITED, "too many requests",
                        wait);
    if (rc == 0) {
        c->bad = 0;
        return on_request(c, &req);
    }
    msgpack_sbuffer_init(&sb);
    if (proto_enc_decode_error(&sb, &req, rc) == 0)
        send_sb(c, &sb);
    msgpack_sbuffer_destroy(&sb);
    c->bad = rc == -PROTO_E_MALFORMED ? c->bad + 1 : 0;
    if (c->bad >= CHAT_CFG(c->cl->la->cfg, max_bad_frames)) {
        rt_log(RT_LOG_INFO, "conn", "id=%llu event=too_many_bad_requests",
               (unsigned long long)c->id);
        conn_close(c, WS_CLOSE_POLICY, "too many malformed requests");
    }
}

/* ---- reading and the timer
 * ---------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        conn_stop(c);
        return;
    }
    c->last_rx = uv_now(s->loop);
    c->pinged = 0;
    int rc = ws_feed(&c->ws, (const uint8_t *)buf->base, (size_t)nread);
    after_io(c, rc);
}

static void expire_accounts(conn_t *c, uint64_t now)
{
    for (int i = 0; i < ACC_SLOTS; i++) {
        if (c->acc[i].reqid && now >= c->acc[i].deadline) {
            uint64_t re = c->acc[i].reqid;
            c->acc[i].reqid = 0;
            send_err(c, re == UINT64_MAX ? 0 : re, PROTO_E_INTERNAL,
                     "accounts did not answer", 0);
        }
    }
}

static void conn_tick(conn_t *c, uint64_t now)
{
    const chat_config_t *cfg = c->cl->la->cfg;
    uint64_t quiet = now - c->last_rx;

    if (c->phase == CP_CLOSING || c->phase == CP_ENDING) {
        if (now >= c->deadline)
            conn_stop(c);
        return;
    }
    if (c->phase != CP_OPEN)
        return;
    if (ws_phase(&c->ws) == WS_PHASE_HTTP) {
        if (quiet >= CHAT_CFG(cfg, handshake_timeout_ms))
            conn_stop(c);
        return;
    }
    expire_accounts(c, now);
    if (quiet >= CHAT_CFG(cfg, idle_timeout_ms)) {
        conn_close(c, WS_CLOSE_NORMAL, "idle timeout");
    } else if (quiet >= CHAT_CFG(cfg, ping_interval_ms) && !c->pinged) {
        c->pinged = 1;
        after_io(c, ws_ping(&c->ws, NULL, 0));
    }
}

/* Every connection of the loop, each tick. Removal happens only in
 * conn_terminate, in an actor turn, never during this walk.
 * TODO: the walk costs O(connections) a tick (about 20,000 checks a
 * second per 10,000 connections at the 500 ms tick); a timing wheel
 * would visit only the connections due. */
static void on_loop_tick(uv_timer_t *t)
{
    conn_loop_t *cl = t->data;
    uint64_t now = uv_now(t->loop);

    for (conn_t *c = cl->all; c; c = c->next)
        conn_tick(c, now);
}

/* The tick: often enough to see each deadline within a quarter of it. */
static uint64_t tick_ms(const chat_config_t *cfg)
{
    uint64_t t = CHAT_CFG(cfg, ping_interval_ms) / 4;

    if (CHAT_CFG(cfg, handshake_timeout_ms) / 4 < t)
        t = CHAT_CFG(cfg, handshake_timeout_ms) / 4;
    if (CLOSE_GRACE_MS / 4 < t)
        t = CLOSE_GRACE_MS / 4;
    return t < 25 ? 25 : t;
}

/* ---- the actor
 * --------------------------------------------------------------- */

/* The loop's shared handles, made on first use. NULL when out of memory
 * or past MAX_LOOPS schedulers. */
static conn_loop_t *conn_loop(uv_loop_t *loop, rt_system_t *sys,
                              const chat_listener_args_t *la)
{
    conn_loop_t *cl;

    if (la->index < 0 || la->index >= MAX_LOOPS)
        return NULL;
    cl = loops[la->index];
    if (cl && cl->loop == loop)
        return cl;
    /* a new system in this process: the old one closed its handles */
    if (!(cl = calloc(1, sizeof(*cl))))
        return NULL;
    cl->loop = loop;
    cl->sys = sys;
    cl->la = la;
    uv_timer_init(loop, &cl->tick);
    uv_check_init(loop, &cl->flush);
    cl->tick.data = cl->flush.data = cl;
    cl->tick_ms = tick_ms(la->cfg);
    uv_check_start(&cl->flush, on_flush);
    uv_unref((uv_handle_t *)&cl->flush);
    uv_unref((uv_handle_t *)&cl->tick);
    loops[la->index] = cl;
    return cl;
}

typedef struct conn_arg {
    const chat_listener_args_t *la;
    int fd;
} conn_arg_t;

static int conn_init(rt_actor_t *self, void *arg)
{
    conn_t *c = rt_state(self);
    conn_arg_t a = *(conn_arg_t *)arg;
    uv_loop_t *loop = rt_loop(self);

    free(arg);
    c->counted = 1; /* the slot chat_conn_reserve() took is ours now */
    c->id = rt_self(self);
    if (!(c->cl = conn_loop(loop, rt_system(self), a.la))) {
        close(a.fd);
        return RT_ENOMEM;
    }
    c->tcp = rt_handle_new(self, sizeof(uv_tcp_t));
    if (!c->tcp || uv_tcp_init(loop, c->tcp) < 0) {
        close(a.fd);
        return RT_ENOMEM;
    }
    c->tcp->data = c;
    if (uv_tcp_open(c->tcp, a.fd) < 0) {
        close(a.fd);
        return RT_EINVAL;
    }
    /* TCP_NODELAY comes from the listening socket (main.c) */
    ws_conn_init_server(&c->ws, &c->cl->la->ws, c);
    c->last_rx = c->bucket_at = uv_now(loop);
    c->bucket = CHAT_CFG(c->cl->la->cfg, request_burst) * 1000ull;
    if (!c->cl->all)
        uv_timer_start(&c->cl->tick, on_loop_tick, c->cl->tick_ms,
                       c->cl->tick_ms);
    c->next = c->cl->all;
    if (c->next)
        c->next->prev = c;
    c->cl->all = c;
    if (uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read) < 0)
        return RT_EINVAL;
    return 0;
}

/* ---- the session ------------------------------------------------------- */

static void free_login(conn_t *c)
{
    free(c->login);
    c->login = NULL;
}

/* The session could not be found or started: a pending login fails as a
 * server fault (the client may retry), and later requests get 500. */
static void sess_failed(conn_t *c)
{
    rt_log(RT_LOG_WARN, "conn", "id=%llu event=no_session device=%llu",
           (unsigned long long)c->id, (unsigned long long)c->devid);
    c->sess = 0;
    if (!c->login)
        return;
    send_err(c, c->login->re, PROTO_E_INTERNAL, "session unavailable; retry",
             0);
    free_login(c);
    c->uid = c->devid = 0;
    c->user[0] = '\0';
}

static void sess_find(rt_actor_t *self, conn_t *c);

static void sess_attach(rt_actor_t *self, conn_t *c, rt_id_t id)
{
    chat_sess_attach_t a = {.conn = c->id, .after = c->seq_seen};

    if (rt_send_copy(c->cl->sys, id, CHAT_SESS_ATTACH, &a, sizeof(a)) < 0)
        sess_find(self, c);
}

/* Finds the device's session, or starts it under the session supervisor,
 * then attaches; CHAT_SESS_ATTACHED ends it. */
static void sess_find(rt_actor_t *self, conn_t *c)
{
    chat_session_arg_t *a;
    rt_id_t id = rt_whereis_key(c->cl->sys, c->devid), sup;

    if (c->retries++ >= SESS_RETRIES)
        return sess_failed(c);
    if (id)
        return sess_attach(self, c, id);
    sup = rt_whereis(c->cl->sys, CHAT_SESSIONS_NAME);
    if (!sup || !(a = calloc(1, sizeof(*a))))
        return sess_failed(c);
    a->uid = c->uid;
    a->devid = c->devid;
    memcpy(a->user, c->user, sizeof(a->user));
    c->start_ref = rt_sup_start_child_async(self, sup, a, SESS_START_MS);
    if (c->start_ref < 0) {
        c->start_ref = 0;
        free(a);
        sess_failed(c);
    }
}

static void on_sess_started(rt_actor_t *self, conn_t *c, const rt_msg_t *msg)
{
    rt_sup_started_t r;

    c->start_ref = 0;
    if (msg->type == RT_MSG_TIMEOUT || msg->size != sizeof(r))
        return sess_failed(c); /* the arg may be in use: left to leak */
    memcpy(&r, msg->data, sizeof(r));
    if (r.err < 0 || !r.child)
        return sess_failed(c);
    /* a session of this device that registered first wins */
    rt_id_t owner = rt_whereis_key(c->cl->sys, c->devid);
    sess_attach(self, c, owner ? owner : r.child);
}

static void on_attached(rt_actor_t *self, conn_t *c, const rt_msg_t *msg)
{
    chat_sess_attached_t a;
    msgpack_sbuffer sb;

    if (msg->size != sizeof(a) || !c->uid)
        return;
    memcpy(&a, msg->data, sizeof(a));
    if (c->sess != msg->from) {
        if (c->sess_mon)
            rt_demonitor(self, c->sess_mon);
        c->sess = msg->from;
        c->sess_mon = rt_monitor(self, c->sess);
    }
    c->retries = 0;
    if (!c->login)
        return;
    if (c->login->op == PROTO_OP_RESUME) {
        /* the reply carries the acked seq that only the session knows */
        msgpack_sbuffer_init(&sb);
        if (proto_enc_resume_ok(&sb, c->login->re, proto_cstr(c->user),
                                c->devid, a.acked) == 0)
            send_sb(c, &sb);
        msgpack_sbuffer_destroy(&sb);
    } else if (c->phase == CP_OPEN) {
        after_io(c, ws_send(&c->ws, c->login->wire, c->login->len));
    }
    free_login(c);
}

static void on_wire(conn_t *c, const rt_msg_t *msg)
{
    const chat_wire_t *w = (const chat_wire_t *)msg->data;
    int rc = 0;

    if (msg->size < sizeof(*w) || msg->size - sizeof(*w) != w->len)
        return;
    c->inflight = w->replies > c->inflight ? 0 : c->inflight - w->replies;
    if (w->max_seq > c->seq_seen)
        c->seq_seen = w->max_seq;
    for (uint32_t off = 0; off + 4 <= w->len && c->phase == CP_OPEN;) {
        uint32_t len;
        memcpy(&len, w->frames + off, 4);
        off += 4;
        if (len > w->len - off)
            break;
        rc = ws_send(&c->ws, w->frames + off, len);
        off += len;
        if (rc < 0)
            break;
    }
    after_io(c, rc);
}

static void sess_leave(rt_actor_t *self, conn_t *c)
{
    if (c->sess)
        rt_send_copy(c->cl->sys, c->sess, CHAT_SESS_DETACH, &c->id,
                     sizeof(c->id));
    if (c->sess_mon)
        rt_demonitor(self, c->sess_mon);
    c->sess = 0;
    c->sess_mon = 0;
    c->seq_seen = 0;
}

static void on_acc_reply(rt_actor_t *self, conn_t *c, const rt_msg_t *msg)
{
    const chat_acc_reply_t *r = (const chat_acc_reply_t *)msg->data;

    if (msg->size < sizeof(*r) || msg->size - sizeof(*r) < r->wire_len)
        return;
    for (int i = 0; i < ACC_SLOTS; i++)
        if (c->acc[i].reqid == (r->reqid ? r->reqid : UINT64_MAX)) {
            c->acc[i].reqid = 0;
            break;
        }
    if (r->code == 0 && (r->op == PROTO_OP_LOGIN || r->op == PROTO_OP_RESUME)) {
        c->uid = r->uid;
        c->devid = r->devid;
        memcpy(c->user, r->user, sizeof(c->user));
        /* not registered: a revocation or a kick reaches it through the
         * device's session, which knows all of the device's connections */
        /* the reply waits until the session is attached, so that it goes
         * out before the mailbox entries the session pushes */
        free_login(c);
        if ((c->login = malloc(sizeof(*c->login) + r->wire_len))) {
            memcpy(c->login->wire, r->wire, r->wire_len);
            c->login->len = r->wire_len;
            c->login->op = r->op;
            c->login->re = r->reqid;
            c->retries = 0;
            sess_find(self, c);
            return;
        }
    } else if (r->code == 0 && r->op == PROTO_OP_LOGOUT) {
        sess_leave(self, c);
        c->uid = c->devid = 0;
        c->user[0] = '\0';
    }
    if (c->phase == CP_OPEN)
        after_io(c, ws_send(&c->ws, r->wire, r->wire_len));
}

static void on_revoked(conn_t *c)
{
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    if (proto_enc_ev_revoked(&sb) == 0)
        send_sb(c, &sb);
    msgpack_sbuffer_destroy(&sb);
    c->uid = c->devid = 0;
    conn_close(c, WS_CLOSE_POLICY, "device revoked");
}

static int conn_handle(rt_actor_t *self, rt_msg_t *msg)
{
    conn_t *c = rt_state(self);

    if (c->start_ref && msg->ref == (uint64_t)c->start_ref &&
        msg->type != CHAT_SESS_ATTACHED) {
        on_sess_started(self, c, msg);
        return RT_CONTINUE;
    }
    switch (msg->type) {
    case CHAT_CONN_STOP:
        return RT_STOP;
    case CHAT_ACC_REPLY:
        on_acc_reply(self, c, msg);
        break;
    case CHAT_SESS_ATTACHED:
        on_attached(self, c, msg);
        break;
    case CHAT_CONN_WIRE:
        on_wire(c, msg);
        break;
    case CHAT_SESS_DETACH: /* the session has too many connections */
        conn_close(c, WS_CLOSE_POLICY, "too many connections of this device");
        break;
    case RT_MSG_DOWN:
        /* the session ended under us: find it again (its supervisor
         * restarts it after a crash) and attach past what we forwarded */
        if (msg->ref == c->sess_mon && c->uid) {
            c->sess = 0;
            c->sess_mon = 0;
            c->retries = 0;
            sess_find(self, c);
        }
        break;
    case CHAT_ACC_REVOKED:
        on_revoked(c);
        break;
    case CHAT_CONN_KICK:
        rt_log(RT_LOG_INFO, "conn", "id=%llu event=kicked user=%s",
               (unsigned long long)c->id, c->user[0] ? c->user : "-");
        conn_close(c, WS_CLOSE_POLICY, "disconnected by the operator");
        break;
    case CHAT_CONN_SHUTDOWN:
        if (ws_phase(&c->ws) == WS_PHASE_HTTP)
            conn_end(c);
        else
            conn_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        break;
    }
    return RT_CONTINUE;
}

static void conn_terminate(rt_actor_t *self, int reason)
{
    conn_t *c = rt_state(self);

    if (c->counted)
        atomic_fetch_sub_explicit(&chat_conn_live, 1, memory_order_relaxed);
    if (!c->cl || !c->tcp)
        return;
    if (c->cl) {
        if (c->prev)
            c->prev->next = c->next;
        else if (c->cl->all == c)
            c->cl->all = c->next;
        if (c->next)
            c->next->prev = c->prev;
        if (!c->cl->all)
            uv_timer_stop(&c->cl->tick);
        if (c->dirty)
            dirty_remove(c);
    }
    free(c->out);
    c->out = NULL;
    if (c->shut)
        c->shut->data = NULL; /* its callback may run after we are gone */
    free_login(c);
    ws_conn_free(&c->ws);
    CHAT_TRACE(c->cl->sys, c->id, "conn", c->user, "end", "reason=\"%s\"",
               rt_strerror(reason));
}

static void conn_describe(rt_actor_t *self, char *buf, size_t len)
{
    conn_t *c = rt_state(self);

    snprintf(buf, len, "user=%s device=%llu phase=%d queued=%zu",
             c->user[0] ? c->user : "-", (unsigned long long)c->devid, c->phase,
             c->tcp ? c->tcp->write_queue_size : 0);
}

const rt_behaviour_t chat_conn_behaviour = {
    .kind = "conn",
    .state_size = sizeof(conn_t),
    .init = conn_init,
    .handle = conn_handle,
    .terminate = conn_terminate,
    .describe = conn_describe,
};

void chat_listener_args_init(chat_listener_args_t *a, const chat_config_t *cfg,
                             int fd, int index)
{
    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    a->fd = fd;
    a->index = index;
    a->ws.max_message = cfg->max_message;
    a->ws.subprotocol = PROTO_VERSION;
    a->ws.on_write = on_write;
    a->ws.on_message = on_message;
}

int chat_conn_shutdown_all(rt_system_t *sys, int index)
{
    conn_loop_t *cl = index >= 0 && index < MAX_LOOPS ? loops[index] : NULL;
    int n = 0;

    for (conn_t *c = cl ? cl->all : NULL; c; c = c->next)
        if (rt_send_copy(sys, c->id, CHAT_CONN_SHUTDOWN, NULL, 0) == 0)
            n++;
    return n;
}

int chat_conn_reserve(const chat_listener_args_t *a)
{
    /* relaxed: the counter orders nothing else; the atomic add alone keeps
     * two listeners from both taking the last slot */
    long held =
        atomic_fetch_add_explicit(&chat_conn_live, 1, memory_order_relaxed);
    if (held < a->max_conns)
        return 0;
    atomic_fetch_sub_explicit(&chat_conn_live, 1, memory_order_relaxed);
    return RT_ELIMIT;
}

int chat_conn_spawn(rt_system_t *sys, const chat_listener_args_t *a,
                    rt_id_t listener, int fd)
{
    conn_arg_t *arg = malloc(sizeof(*arg));
    /* no link to the listener: a link costs each side a vector entry,
     * and the listener reaches its connections through their loop */
    rt_spawn_opts_t o = {.pinned = true, .pin = a->index, .parent = listener};
    int err = 0;

    if (!arg) {
        err = RT_ENOMEM;
        goto failed;
    }
    arg->la = a;
    arg->fd = fd;
    if (rt_spawn(sys, &chat_conn_behaviour, arg, &o, &err))
        return 0;
    free(arg);
failed:
    close(fd);
    atomic_fetch_sub_explicit(&chat_conn_live, 1, memory_order_relaxed);
    return err;
}
