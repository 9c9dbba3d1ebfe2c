/*
 * proto/client.c - parley.v1 client on libuv: upgrade, request/reply
 * matching, events, and the blocking layer on a private loop.
 */
#include "client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <http_parser.h>
#include <sodium.h>

#include "ws.h"

#define MAX_RESPONSE_HEAD 8192

enum cstate { C_RESOLVING, C_CONNECTING, C_UPGRADING, C_OPEN, C_CLOSED };

struct pending {
    struct pending *next;
    uint64_t id;
    proto_reply_cb cb;
    void *arg;
};

/* A request encoded before the upgrade finished. */
struct early {
    struct early *next;
    size_t len;
    uint8_t data[];
};

struct wreq {
    uv_write_t req;
    uint8_t data[];
};

struct proto_client {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    const proto_client_config_t *cfg;
    void *user;
    ws_config_t wscfg;
    ws_conn_t ws;
    proto_dec_t dec;
    enum cstate state;
    int refs; /* the tcp handle, plus one while resolving */
    int close_code;
    bool user_closed;
    int port;
    char key[25];
    char *resp;
    size_t resp_len;
    uint8_t *obuf;
    size_t olen, ocap;
    struct pending *pend;
    struct early *early, **early_tail;
    uint64_t next_id;
    char host[256];
};

void *proto_client_user(const proto_client_t *cl)
{
    return cl->user;
}

/* ---- teardown ------------------------------------------------------- */

static void unref(proto_client_t *cl)
{
    if (--cl->refs > 0)
        return;
    while (cl->early) {
        struct early *e = cl->early;
        cl->early = e->next;
        free(e);
    }
    ws_conn_free(&cl->ws);
    proto_dec_free(&cl->dec);
    free(cl->resp);
    free(cl->obuf);
    free(cl);
}

static void fail_pending(proto_client_t *cl)
{
    int st = cl->user_closed ? -ECANCELED : -ECONNRESET;

    while (cl->pend) {
        struct pending *p = cl->pend;
        cl->pend = p->next;
        if (p->cb)
            p->cb(cl, p->arg, st, NULL, NULL, 0);
        free(p);
    }
}

static void on_tcp_closed(uv_handle_t *h)
{
    proto_client_t *cl = h->data;

    fail_pending(cl);
    if (cl->cfg->on_close)
        cl->cfg->on_close(cl, cl->user, cl->close_code);
    unref(cl);
}

/* End the connection now; on_close follows from the loop. */
static void terminate(proto_client_t *cl, int code)
{
    if (cl->state == C_CLOSED)
        return;
    if (cl->state == C_RESOLVING)
        uv_cancel((uv_req_t *)&cl->gai);
    cl->state = C_CLOSED;
    if (!cl->close_code)
        cl->close_code = code;
    uv_close((uv_handle_t *)&cl->tcp, on_tcp_closed);
}

static void fail_connect(proto_client_t *cl, int status)
{
    if (cl->cfg->on_connect)
        cl->cfg->on_connect(cl, cl->user, status);
    terminate(cl, WS_CLOSE_ABNORMAL);
}

/* ---- output --------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    free(req);
}

static int write_out(proto_client_t *cl, const uint8_t *d, size_t n)
{
    struct wreq *w = malloc(sizeof(*w) + n);
    uv_buf_t b;
    int rc;

    if (!w)
        return -ENOMEM;
    memcpy(w->data, d, n);
    b = uv_buf_init((char *)w->data, (unsigned)n);
    if ((rc = uv_write(&w->req, (uv_stream_t *)&cl->tcp, &b, 1, on_written)) <
        0) {
        free(w);
        return rc;
    }
    return 0;
}

/* ws hands out a frame in pieces (header, payload): gather them so that
 * each frame is one write. */
static int ws_write(void *user, const uint8_t *d, size_t n, bool more)
{
    proto_client_t *cl = user;
    int rc;

    if (cl->state == C_CLOSED)
        return -EPIPE;
    if (cl->olen + n > cl->ocap) {
        size_t cap = cl->ocap ? cl->ocap : 256;
        uint8_t *b;
        while (cap < cl->olen + n)
            cap *= 2;
        if (!(b = realloc(cl->obuf, cap)))
            return -ENOMEM;
        cl->obuf = b;
        cl->ocap = cap;
    }
    memcpy(cl->obuf + cl->olen, d, n);
    cl->olen += n;
    if (more)
        return 0;
    rc = write_out(cl, cl->obuf, cl->olen);
    cl->olen = 0;
    return rc;
}

/* ---- input ---------------------------------------------------------- */

static int reply_status(const msgpack_object *o)
{
    const msgpack_object *err = proto_map_get(o, "err");
    const msgpack_object *code = proto_map_get(err, "code");

    if (!err)
        return 0;
    if (code && code->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        code->via.u64 > 0 && code->via.u64 < 65536)
        return (int)code->via.u64;
    return PROTO_E_INTERNAL;
}

static void ws_message(void *user, const uint8_t *msg, size_t len)
{
    proto_client_t *cl = user;
    const msgpack_object *re;
    struct pending **pp;
    msgpack_object o;

    if (proto_decode_obj(&cl->dec, msg, len, &o) < 0 ||
        o.type != MSGPACK_OBJECT_MAP)
        return; /* the server sent garbage: nothing to match it to */
    re = proto_map_get(&o, "re");
    if (!re || re->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        re->via.u64 == 0) {
        if (cl->cfg->on_event)
            cl->cfg->on_event(cl, cl->user, &o, msg, len);
        return;
    }
    for (pp = &cl->pend; *pp; pp = &(*pp)->next) {
        struct pending *p = *pp;
        if (p->id != re->via.u64)
            continue;
        *pp = p->next;
        if (p->cb)
            p->cb(cl, p->arg, reply_status(&o), &o, msg, len);
        free(p);
        return;
    }
}

struct resp {
    const char *field;
    size_t field_len;
    bool accept_ok, proto_ok;
    const char *want_accept;
};

static int resp_field(http_parser *p, const char *at, size_t n)
{
    struct resp *r = p->data;
    r->field = at;
    r->field_len = n;
    return 0;
}

static int resp_value(http_parser *p, const char *at, size_t n)
{
    struct resp *r = p->data;

    if (r->field_len == 20 &&
        strncasecmp(r->field, "sec-websocket-accept", 20) == 0)
        r->accept_ok = n == 28 && memcmp(at, r->want_accept, 28) == 0;
    else if (r->field_len == 22 &&
             strncasecmp(r->field, "sec-websocket-protocol", 22) == 0)
        r->proto_ok =
            n == strlen(PROTO_VERSION) && memcmp(at, PROTO_VERSION, n) == 0;
    return 0;
}

static int resp_done(http_parser *p)
{
    return 2; /* no body, nothing after: the rest is WebSocket */
}

/* Check the 101 response held in cl->resp[0..end). */
static bool upgrade_ok(proto_client_t *cl, size_t end)
{
    static const http_parser_settings s = {
        .on_header_field = resp_field,
        .on_header_value = resp_value,
        .on_headers_complete = resp_done,
    };
    char accept[29];
    struct resp r = {.want_accept = accept};
    http_parser p;

    ws_accept_key(cl->key, 24, accept);
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &r;
    http_parser_execute(&p, &s, cl->resp, end);
    return p.status_code == 101 && r.accept_ok && r.proto_ok;
}

static void flush_early(proto_client_t *cl)
{
    while (cl->early && cl->state == C_OPEN) {
        struct early *e = cl->early;
        cl->early = e->next;
        ws_send(&cl->ws, e->data, e->len);
        free(e);
    }
    cl->early_tail = &cl->early;
}

static void feed_ws(proto_client_t *cl, const uint8_t *d, size_t n)
{
    int rc = ws_feed(&cl->ws, d, n);
    if (rc != 0)
        terminate(cl, ws_close_code(&cl->ws) ? ws_close_code(&cl->ws)
                                             : WS_CLOSE_ABNORMAL);
}

static void feed_upgrade(proto_client_t *cl, const uint8_t *d, size_t n)
{
    char *b;
    char *end;
    size_t hl;

    if (cl->resp_len + n > MAX_RESPONSE_HEAD) {
        fail_connect(cl, -EPROTO);
        return;
    }
    if (!(b = realloc(cl->resp, cl->resp_len + n + 1))) {
        fail_connect(cl, -ENOMEM);
        return;
    }
    cl->resp = b;
    memcpy(b + cl->resp_len, d, n);
    cl->resp_len += n;
    b[cl->resp_len] = 0;
    if (!(end = memmem(b, cl->resp_len, "\r\n\r\n", 4)))
        return;
    hl = (size_t)(end - b) + 4;
    if (!upgrade_ok(cl, hl)) {
        fail_connect(cl, -EPROTO);
        return;
    }
    cl->state = C_OPEN;
    ws_conn_init_client(&cl->ws, &cl->wscfg, cl);
    if (cl->cfg->on_connect)
        cl->cfg->on_connect(cl, cl->user, 0);
    flush_early(cl);
    if (cl->state == C_OPEN && hl < cl->resp_len)
        feed_ws(cl, (const uint8_t *)b + hl, cl->resp_len - hl);
    free(cl->resp);
    cl->resp = NULL;
}

/* Reads are consumed before the next one starts, so the clients of a
 * thread can share one buffer. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static _Thread_local char rbuf[64 * 1024];
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    proto_client_t *cl = s->data;

    if (n < 0) {
        if (cl->state == C_UPGRADING)
            fail_connect(cl, (int)n);
        else
            terminate(cl, WS_CLOSE_ABNORMAL);
        return;
    }
    if (cl->state == C_UPGRADING)
        feed_upgrade(cl, (const uint8_t *)buf->base, (size_t)n);
    else if (cl->state == C_OPEN)
        feed_ws(cl, (const uint8_t *)buf->base, (size_t)n);
}

/* ---- connecting ----------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status)
{
    proto_client_t *cl = req->data;
    char head[512];
    uint8_t nonce[16];
    int n, rc;

    if (cl->state == C_CLOSED)
        return;
    if (status < 0) {
        fail_connect(cl, status);
        return;
    }
    ws_random(nonce, sizeof(nonce));
    sodium_bin2base64(cl->key, sizeof(cl->key), nonce, sizeof(nonce),
                      sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(head, sizeof(head),
                 "GET / HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: %s\r\n\r\n",
                 cl->host, cl->port, cl->key, PROTO_VERSION);
    cl->state = C_UPGRADING;
    if ((rc = write_out(cl, (const uint8_t *)head, (size_t)n)) < 0 ||
        (rc = uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read)) < 0)
        fail_connect(cl, rc);
}

/* Binds the socket to cfg->source, port 0. Returns 0 or a libuv error. */
static int bind_source(proto_client_t *cl, const struct sockaddr *peer)
{
    struct sockaddr_storage local;
    int one = 1, fd;

    memset(&local, 0, sizeof(local));
    if (uv_ip4_addr(cl->cfg->source, 0, (struct sockaddr_in *)&local) != 0 &&
        uv_ip6_addr(cl->cfg->source, 0, (struct sockaddr_in6 *)&local) != 0)
        return UV_EINVAL;
    if (local.ss_family != peer->sa_family)
        return UV_EAFNOSUPPORT;
    fd = socket(local.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
#ifdef IP_BIND_ADDRESS_NO_PORT
    /* best effort: without it the port is taken at bind time */
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                     sizeof(one));
#endif
    (void)one;
    int rc = uv_tcp_open(&cl->tcp, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return uv_tcp_bind(&cl->tcp, (const struct sockaddr *)&local, 0);
}

static void start_connect(proto_client_t *cl, const struct sockaddr *sa)
{
    int rc;

    cl->state = C_CONNECTING;
    cl->creq.data = cl;
    if ((cl->cfg->source && (rc = bind_source(cl, sa)) < 0) ||
        (rc = uv_tcp_connect(&cl->creq, &cl->tcp, sa, on_connected)) < 0)
        fail_connect(cl, rc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    proto_client_t *cl = req->data;

    if (cl->state == C_RESOLVING) {
        if (status < 0 || !res)
            fail_connect(cl, status < 0 ? status : UV_EAI_NONAME);
        else
            start_connect(cl, res->ai_addr);
    }
    uv_freeaddrinfo(res);
    unref(cl);
}

int proto_client_connect(uv_loop_t *loop, const char *host, int port,
                         const proto_client_config_t *cfg, void *user,
                         proto_client_t **out)
{
    struct sockaddr_storage sa;
    proto_client_t *cl;
    char portstr[8];
    int rc;

    if (!loop || !host || !cfg || port <= 0 || port > 65535 ||
        strlen(host) >= sizeof(cl->host))
        return -EINVAL;
    if (sodium_init() < 0 || !(cl = calloc(1, sizeof(*cl))))
        return -ENOMEM;
    if (proto_dec_init(&cl->dec) < 0) {
        free(cl);
        return -ENOMEM;
    }
    cl->loop = loop;
    cl->cfg = cfg;
    cl->user = user;
    cl->port = port;
    cl->next_id = 1;
    cl->early_tail = &cl->early;
    snprintf(cl->host, sizeof(cl->host), "%s", host);
    cl->wscfg.max_message = cfg->max_message;
    cl->wscfg.on_write = ws_write;
    cl->wscfg.on_message = ws_message;
    uv_tcp_init(loop, &cl->tcp);
    cl->tcp.data = cl;
    cl->refs = 1;
    *out = cl;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) == 0) {
        start_connect(cl, (struct sockaddr *)&sa);
        return 0;
    }
    snprintf(portstr, sizeof(portstr), "%d", port);
    cl->gai.data = cl;
    cl->refs++;
    cl->state = C_RESOLVING;
    rc = uv_getaddrinfo(loop, &cl->gai, on_resolved, host, portstr, NULL);
    if (rc < 0) {
        cl->refs--;
        cl->state = C_CONNECTING; /* nothing to cancel */
        fail_connect(cl, rc);
    }
    return 0;
}

/* ---- requests ------------------------------------------------------- */

static int send_bytes(proto_client_t *cl, const void *d, size_t n)
{
    struct early *e;

    if (cl->state == C_CLOSED || cl->user_closed)
        return -EPIPE;
    if (cl->state == C_OPEN)
        return ws_send(&cl->ws, d, n);
    if (!(e = malloc(sizeof(*e) + n)))
        return -ENOMEM;
    e->next = NULL;
    e->len = n;
    memcpy(e->data, d, n);
    *cl->early_tail = e;
    cl->early_tail = &e->next;
    return 0;
}

int64_t proto_client_request(proto_client_t *cl, proto_req_t *req,
                             proto_reply_cb cb, void *arg)
{
    msgpack_sbuffer sb;
    struct pending *p = NULL;
    int rc;

    if (!req->id)
        req->id = cl->next_id++;
    msgpack_sbuffer_init(&sb);
    rc = proto_enc_req(&sb, req);
    if (rc == 0 && cb && !(p = malloc(sizeof(*p))))
        rc = -ENOMEM;
    if (rc == 0)
        rc = send_bytes(cl, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc < 0) {
        free(p);
        return rc;
    }
    if (p) {
        *p = (struct pending){cl->pend, req->id, cb, arg};
        cl->pend = p;
    }
    return (int64_t)req->id;
}

int proto_client_send_raw(proto_client_t *cl, const void *msg, size_t len)
{
    return send_bytes(cl, msg, len);
}

void proto_client_close(proto_client_t *cl)
{
    if (cl->state == C_CLOSED || cl->user_closed)
        return;
    cl->user_closed = true;
    if (cl->state != C_OPEN) {
        terminate(cl, WS_CLOSE_NORMAL);
        return;
    }
    /* Wait for the server's close frame (or EOF), which ends the
     * connection through feed_ws. */
    if (ws_close(&cl->ws, WS_CLOSE_NORMAL, NULL) != 0)
        terminate(cl, WS_CLOSE_NORMAL);
}

/* ---- blocking layer ------------------------------------------------- */

struct evq {
    struct evq *next;
    size_t len;
    uint8_t data[];
};

struct proto_sync {
    uv_loop_t loop;
    uv_timer_t timer;
    proto_client_t *cl;
    proto_client_config_t cfg;
    proto_dec_t dec;
    bool connected, closed, timed_out;
    int connect_status, close_code;
    uint64_t want_id;
    bool got;
    int status;
    uint8_t *reply; /* raw reply of the current call */
    size_t reply_len;
    struct evq *evh, **evt;
    struct evq *cur_ev; /* returned by the last proto_sync_event */
    msgpack_object obj; /* the last reply or event, decoded */
};

static void sync_on_connect(proto_client_t *cl, void *user, int status)
{
    proto_sync_t *s = user;
    s->connected = true;
    s->connect_status = status;
}

static void sync_on_event(proto_client_t *cl, void *user,
                          const msgpack_object *ev, const uint8_t *raw,
                          size_t len)
{
    proto_sync_t *s = user;
    struct evq *e = malloc(sizeof(*e) + len);

    if (!e)
        return; /* TODO: an event lost to OOM is not reported */
    e->next = NULL;
    e->len = len;
    memcpy(e->data, raw, len);
    *s->evt = e;
    s->evt = &e->next;
}

static void sync_on_close(proto_client_t *cl, void *user, int code)
{
    proto_sync_t *s = user;
    s->closed = true;
    s->close_code = code;
    s->cl = NULL;
    if (!s->connected) {
        s->connected = true;
        s->connect_status = -ECONNRESET;
    }
}

static void sync_on_reply(proto_client_t *cl, void *arg, int status,
                          const msgpack_object *reply, const uint8_t *raw,
                          size_t len)
{
    proto_sync_t *s = arg;
    const msgpack_object *re = proto_map_get(reply, "re");

    if (reply && (!re || re->via.u64 != s->want_id))
        return; /* the answer to a call that timed out */
    if (!reply && s->got)
        return;
    s->got = true;
    s->status = status;
    free(s->reply);
    s->reply = NULL;
    s->reply_len = 0;
    if (raw && (s->reply = malloc(len))) {
        memcpy(s->reply, raw, len);
        s->reply_len = len;
    }
}

static void on_timer(uv_timer_t *t)
{
    proto_sync_t *s = t->data;
    s->timed_out = true;
}

/* Run the private loop until *flag is set, the deadline passes, or
 * nothing is left to run. Returns 0 or -ETIMEDOUT. */
static int run_until(proto_sync_t *s, const bool *flag, int timeout_ms)
{
    s->timed_out = false;
    if (timeout_ms >= 0)
        uv_timer_start(&s->timer, on_timer, (uint64_t)timeout_ms, 0);
    while (!*flag && !s->timed_out)
        if (uv_run(&s->loop, UV_RUN_ONCE) == 0 && !*flag)
            break;
    uv_timer_stop(&s->timer);
    return *flag ? 0 : -ETIMEDOUT;
}

int proto_sync_connect(const char *host, int port, int timeout_ms,
                       proto_sync_t **out)
{
    proto_sync_t *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return -ENOMEM;
    if (uv_loop_init(&s->loop) < 0 || proto_dec_init(&s->dec) < 0) {
        free(s);
        return -ENOMEM;
    }
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    s->evt = &s->evh;
    s->cfg.on_connect = sync_on_connect;
    s->cfg.on_event = sync_on_event;
    s->cfg.on_close = sync_on_close;
    rc = proto_client_connect(&s->loop, host, port, &s->cfg, s, &s->cl);
    if (rc == 0)
        rc = run_until(s, &s->connected, timeout_ms);
    if (rc == 0)
        rc = s->connect_status;
    if (rc < 0) {
        proto_sync_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int wait_reply(proto_sync_t *s, int timeout_ms,
                      const msgpack_object **reply)
{
    int rc = run_until(s, &s->got, timeout_ms);

    if (rc < 0)
        return rc;
    if (s->status < 0)
        return s->status;
    if (reply) {
        if (!s->reply ||
            proto_decode_obj(&s->dec, s->reply, s->reply_len, &s->obj) < 0)
            return -ENOMEM;
        *reply = &s->obj;
    }
    return s->status;
}

static int start_call(proto_sync_t *s, uint64_t id)
{
    if (!s->cl)
        return -ECONNRESET;
    s->want_id = id;
    s->got = false;
    s->status = 0;
    return 0;
}

int proto_sync_call(proto_sync_t *s, proto_req_t *req, int timeout_ms,
                    const msgpack_object **reply)
{
    int64_t id;
    int rc;

    if (!s->cl)
        return -ECONNRESET;
    if (!req->id)
        req->id = s->cl->next_id++;
    if ((rc = start_call(s, req->id)) < 0)
        return rc;
    if ((id = proto_client_request(s->cl, req, sync_on_reply, s)) < 0)
        return (int)id;
    return wait_reply(s, timeout_ms, reply);
}

int proto_sync_call_raw(proto_sync_t *s, const void *msg, size_t len,
                        uint64_t id, int timeout_ms,
                        const msgpack_object **reply)
{
    struct pending *p;
    int rc;

    if ((rc = start_call(s, id)) < 0)
        return rc;
    if (!(p = malloc(sizeof(*p))))
        return -ENOMEM;
    if ((rc = proto_client_send_raw(s->cl, msg, len)) < 0) {
        free(p);
        return rc;
    }
    *p = (struct pending){s->cl->pend, id, sync_on_reply, s};
    s->cl->pend = p;
    return wait_reply(s, timeout_ms, reply);
}

static bool has_event(proto_sync_t *s)
{
    return s->evh != NULL || s->closed;
}

int proto_sync_event(proto_sync_t *s, int timeout_ms, const msgpack_object **ev)
{
    bool ready;
    int rc;

    free(s->cur_ev);
    s->cur_ev = NULL;
    ready = has_event(s);
    if (!ready) {
        s->timed_out = false;
        if (timeout_ms >= 0)
            uv_timer_start(&s->timer, on_timer, (uint64_t)timeout_ms, 0);
        while (!(ready = has_event(s)) && !s->timed_out)
            if (uv_run(&s->loop, UV_RUN_ONCE) == 0)
                break;
        uv_timer_stop(&s->timer);
    }
    if (!s->evh)
        return s->closed ? -ECONNRESET : -ETIMEDOUT;
    s->cur_ev = s->evh;
    s->evh = s->evh->next;
    if (!s->evh)
        s->evt = &s->evh;
    rc = proto_decode_obj(&s->dec, s->cur_ev->data, s->cur_ev->len, &s->obj);
    if (rc < 0)
        return -ENOMEM;
    *ev = &s->obj;
    return 0;
}

int proto_sync_close_code(const proto_sync_t *s)
{
    return s->closed ? s->close_code : 0;
}

void proto_sync_close(proto_sync_t *s)
{
    if (s->cl) {
        proto_client_close(s->cl);
        run_until(s, &s->closed, 1000);
        if (s->cl)
            terminate(s->cl, WS_CLOSE_ABNORMAL);
        run_until(s, &s->closed, -1);
    }
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    while (s->evh) {
        struct evq *e = s->evh;
        s->evh = e->next;
        free(e);
    }
    free(s->cur_ev);
    free(s->reply);
    proto_dec_free(&s->dec);
    free(s);
}
