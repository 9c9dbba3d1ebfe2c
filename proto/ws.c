/*
 * proto/ws.c - a WebSocket connection on wslay that holds no wslay
 * context while idle. See ws.h for the design.
 *
 * Input goes through a small frame-header scanner before wslay sees it.
 * The scanner knows where every frame starts and ends, which is what lets
 * us free the wslay context between frames: wslay reads greedily into its
 * own buffer and does not say whether that buffer is empty, so we hand it
 * exactly one frame's bytes at a time and know that it holds nothing once
 * the frame is through.
 */
#include "ws.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <wslay/wslay.h>

#define MAX_MESSAGE_DEFAULT (256u * 1024)

static uint64_t max_message(const ws_conn_t *c)
{
    return c->cfg->max_message ? c->cfg->max_message : MAX_MESSAGE_DEFAULT;
}

/* ---- wslay callbacks ------------------------------------------------ */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user)
{
    ws_conn_t *c = user;
    size_t n = len < c->in_len ? len : c->in_len;

    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user)
{
    ws_conn_t *c = user;
    int rc = c->cfg->on_write(c->user, data, len, flags & WSLAY_MSG_MORE);

    if (rc < 0) {
        if (!c->err)
            c->err = rc;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static _Thread_local uint8_t pool[256];
static _Thread_local size_t left;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A forked child must not hand out its parent's bytes again. */
static void pool_forget(void)
{
    sodium_memzero(pool, sizeof(pool));
    left = 0;
}

static void pool_init(void)
{
    pthread_atfork(NULL, NULL, pool_forget);
}

void ws_random(void *out, size_t len)
{
    pthread_once(&pool_once, pool_init);
    if (len > sizeof(pool)) {
        randombytes_buf(out, len);
        return;
    }
    if (left < len) {
        randombytes_buf(pool, sizeof(pool));
        left = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - left, len);
    sodium_memzero(pool + sizeof(pool) - left, len);
    left -= len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                      void *user)
{
    ws_random(buf, len);
    return 0;
}

static void on_msg_cb(wslay_event_context_ptr ctx,
                      const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    ws_conn_t *c = user;

    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        if (!c->close_code)
            c->close_code =
                arg->status_code ? arg->status_code : WS_CLOSE_NO_STATUS;
    } else if (arg->opcode == WSLAY_BINARY_FRAME && c->phase == WS_PHASE_OPEN &&
               c->cfg->on_message) {
        c->cfg->on_message(c->user, arg->msg, arg->msg_length);
    }
    /* Pings are answered by wslay itself; pongs need nothing. */
}

static int ensure_ctx(ws_conn_t *c)
{
    struct wslay_event_callbacks cb = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .genmask_callback = genmask_cb,
        .on_msg_recv_callback = on_msg_cb,
    };
    int rc;

    if (c->ctx)
        return 0;
    if (c->server)
        rc = wslay_event_context_server_init(&c->ctx, &cb, c);
    else
        rc = wslay_event_context_client_init(&c->ctx, &cb, c);
    if (rc != 0) {
        c->ctx = NULL;
        return -ENOMEM;
    }
    /* A backstop only: the scanner refuses large messages first. */
    wslay_event_config_set_max_recv_msg_length(c->ctx, max_message(c));
    return 0;
}

/* ---- state ---------------------------------------------------------- */

static bool idle(const ws_conn_t *c)
{
    return c->phase == WS_PHASE_OPEN && !c->busy && !c->in_frame &&
           !c->in_msg && (!c->ctx || !wslay_event_want_write(c->ctx));
}

int ws_trim(ws_conn_t *c)
{
    if (!c->ctx || !idle(c))
        return 0;
    wslay_event_context_free(c->ctx);
    c->ctx = NULL;
    return 1;
}

static void finish(ws_conn_t *c)
{
    c->phase = WS_PHASE_DONE;
    wslay_event_context_free(c->ctx);
    c->ctx = NULL;
    free(c->head);
    c->head = NULL;
}

/*
 * Hand queued output to on_write and work out the phase from wslay's close
 * state. Returns 0, WS_DONE or a negative error.
 */
static int flush(ws_conn_t *c)
{
    if (c->busy || !c->ctx)
        return c->phase == WS_PHASE_DONE ? WS_DONE : 0;
    if (wslay_event_want_write(c->ctx) && wslay_event_send(c->ctx) != 0) {
        int err = c->err ? c->err : -ENOMEM;
        finish(c);
        return err;
    }
    if (wslay_event_get_close_sent(c->ctx)) {
        /* wslay may have closed on its own (a bad close code received) */
        if (!c->close_code)
            c->close_code = wslay_event_get_status_code_sent(c->ctx);
        /* Reading stops when the peer's close arrived or we failed. */
        if (!wslay_event_get_read_enabled(c->ctx))
            c->phase = WS_PHASE_DONE;
        else
            c->phase = WS_PHASE_CLOSING;
    }
    if (c->phase == WS_PHASE_DONE) {
        finish(c);
        return WS_DONE;
    }
    if (!c->cfg->lazy_trim)
        ws_trim(c);
    return 0;
}

/* Fail the connection: queue a close with `code` and read no more. */
static int fail(ws_conn_t *c, uint16_t code)
{
    int rc = ensure_ctx(c);

    if (rc < 0) {
        finish(c);
        return rc;
    }
    if (!c->close_code)
        c->close_code = code;
    /* Fails only if a close is queued already, which is fine. */
    wslay_event_queue_close(c->ctx, code, NULL, 0);
    wslay_event_shutdown_read(c->ctx);
    c->phase = WS_PHASE_CLOSING;
    return 0;
}

/* Give bytes of the current frame to wslay. */
static int to_wslay(ws_conn_t *c, const uint8_t *p, size_t n)
{
    int rc;

    c->in = p;
    c->in_len = n;
    c->busy = 1;
    rc = wslay_event_recv(c->ctx);
    c->busy = 0;
    c->in = NULL;
    c->in_len = 0;
    if (rc == WSLAY_ERR_NOMEM)
        return -ENOMEM;
    if (rc != 0) /* the scanner lets no malformed frame through */
        return fail(c, WS_CLOSE_PROTOCOL);
    return 0;
}

/* ---- frame-header scanner ------------------------------------------- */

static size_t hdr_need(const ws_conn_t *c)
{
    size_t n = 2;
    if (c->hdr_len < 2)
        return 2;
    if ((c->hdr[1] & 0x7f) == 126)
        n += 2;
    else if ((c->hdr[1] & 0x7f) == 127)
        n += 8;
    if (c->hdr[1] & 0x80)
        n += 4;
    return n;
}

/* Check a complete header. Returns 0 or the close code to fail with. */
static uint16_t check_hdr(ws_conn_t *c, uint64_t *plen)
{
    uint8_t fin = c->hdr[0] >> 7, rsv = (c->hdr[0] >> 4) & 7;
    uint8_t op = c->hdr[0] & 0x0f, masked = c->hdr[1] >> 7;
    uint8_t l7 = c->hdr[1] & 0x7f;
    uint64_t len = l7;

    if (l7 >= 126) {
        int n = l7 == 126 ? 2 : 8;
        len = 0;
        for (int i = 0; i < n; i++)
            len = (len << 8) | c->hdr[2 + i];
        if ((l7 == 126 && len < 126) ||
            (l7 == 127 && (len < 65536 || len >> 63)))
            return WS_CLOSE_PROTOCOL; /* non-minimal or too long */
    }
    *plen = len;
    if (rsv || masked != c->server)
        return WS_CLOSE_PROTOCOL;
    if (op >= 8) {
        if (op > 10 || !fin || len > 125)
            return WS_CLOSE_PROTOCOL;
        return 0;
    }
    if (op == WSLAY_TEXT_FRAME && !c->in_msg)
        return WS_CLOSE_UNSUPPORTED;
    if (op > 2 || (op == 0) != (c->in_msg != 0))
        return WS_CLOSE_PROTOCOL;
    if (len > max_message(c) - c->msg_len)
        return WS_CLOSE_TOO_BIG;
    return 0;
}

static void frame_end(ws_conn_t *c)
{
    c->in_frame = 0;
    c->hdr_len = 0;
    if (c->frame_data && c->frame_fin) {
        c->in_msg = 0;
        c->msg_len = 0;
    }
}

/* A complete header has been collected: check it and pass it on. */
static int start_frame(ws_conn_t *c)
{
    uint64_t len = 0;
    uint16_t code = check_hdr(c, &len);
    int rc;

    if (code)
        return fail(c, code);
    if ((rc = ensure_ctx(c)) < 0)
        return rc;
    c->frame_fin = c->hdr[0] >> 7;
    c->frame_data = (c->hdr[0] & 0x08) == 0;
    if (c->frame_data) {
        c->in_msg = 1;
        c->msg_len += len;
    }
    c->frame_left = len;
    c->in_frame = 1;
    if ((rc = to_wslay(c, c->hdr, c->hdr_len)) < 0)
        return rc;
    if (c->frame_left == 0)
        frame_end(c);
    return 0;
}

static bool reading(const ws_conn_t *c)
{
    if (c->phase != WS_PHASE_OPEN && c->phase != WS_PHASE_CLOSING)
        return false;
    return !c->ctx || wslay_event_get_read_enabled(c->ctx);
}

static int feed_frames(ws_conn_t *c, const uint8_t *p, size_t len)
{
    int rc = 0;

    while (len > 0 && rc == 0 && reading(c)) {
        if (!c->in_frame) {
            size_t need = hdr_need(c) - c->hdr_len;
            size_t n = need < len ? need : len;
            memcpy(c->hdr + c->hdr_len, p, n);
            c->hdr_len += (uint8_t)n;
            p += n, len -= n;
            /* the length byte may have made the header longer */
            if (c->hdr_len == hdr_need(c))
                rc = start_frame(c);
        } else {
            size_t n = c->frame_left < len ? (size_t)c->frame_left : len;
            rc = to_wslay(c, p, n);
            c->frame_left -= n;
            p += n, len -= n;
            if (c->frame_left == 0)
                frame_end(c);
        }
    }
    if (rc < 0) {
        finish(c);
        return rc;
    }
    return flush(c);
}

/* ---- HTTP phase ----------------------------------------------------- */

/* Offset just past the blank line ending the head, or 0. Searching starts
 * a little before `from` so that a terminator split between two reads is
 * found without rescanning the whole head. */
static size_t head_end(const uint8_t *h, size_t len, size_t from)
{
    for (size_t i = from > 3 ? from - 3 : 0; i < len; i++) {
        if (i + 4 <= len && memcmp(h + i, "\r\n\r\n", 4) == 0)
            return i + 4;
        if (i + 2 <= len && memcmp(h + i, "\n\n", 2) == 0)
            return i + 2;
    }
    return 0;
}

static int answer(ws_conn_t *c, size_t end)
{
    ws_http_answer_t ans;
    int rc =
        ws_http_answer((const char *)c->head, end, c->cfg->subprotocol, &ans);

    if (rc < 0)
        return rc;
    rc = c->cfg->on_write(c->user, (const uint8_t *)ans.text, ans.len, false);
    if (rc < 0)
        return rc;
    if (ans.status != 101)
        return WS_DONE;
    c->phase = WS_PHASE_OPEN;
    if (c->cfg->on_open)
        c->cfg->on_open(c->user);
    return 0;
}

static int feed_http(ws_conn_t *c, const uint8_t *data, size_t len)
{
    uint32_t max = c->cfg->max_head ? c->cfg->max_head : WS_MAX_HEAD_DEFAULT;
    size_t take = len, end, old = c->head_len;
    uint8_t *rest;
    size_t rest_len;
    int rc;

    if (take > max - c->head_len)
        take = max - c->head_len;
    if (c->head_len + take > c->head_cap) {
        uint32_t cap = c->head_cap ? c->head_cap : 512;
        uint8_t *h;
        while (cap < c->head_len + take)
            cap *= 2;
        if (cap > max)
            cap = max;
        if (!(h = realloc(c->head, cap)))
            return -ENOMEM;
        c->head = h;
        c->head_cap = cap;
    }
    memcpy(c->head + c->head_len, data, take);
    c->head_len += (uint32_t)take;
    end = head_end(c->head, c->head_len, old);
    if (!end) {
        if (c->head_len < max)
            return 0;
        end = c->head_len; /* too long: http-parser will call it bad */
    }
    rc = answer(c, end);
    if (rc != 0)
        return rc;
    /* Bytes after the head are the first frames: keep them, drop head. */
    rest_len = c->head_len - end + (len - take);
    rest = NULL;
    if (rest_len) {
        if (!(rest = malloc(rest_len)))
            return -ENOMEM;
        memcpy(rest, c->head + end, c->head_len - end);
        memcpy(rest + (c->head_len - end), data + take, len - take);
    }
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = 0;
    rc = rest_len ? feed_frames(c, rest, rest_len) : 0;
    free(rest);
    return rc;
}

/* ---- public --------------------------------------------------------- */

static int init(ws_conn_t *c, const ws_config_t *cfg, void *user)
{
    memset(c, 0, sizeof(*c));
    if (!cfg || !cfg->on_write)
        return -EINVAL;
    c->cfg = cfg;
    c->user = user;
    return 0;
}

int ws_conn_init_server(ws_conn_t *c, const ws_config_t *cfg, void *user)
{
    int rc = init(c, cfg, user);
    c->server = 1;
    c->phase = WS_PHASE_HTTP;
    return rc;
}

int ws_conn_init_client(ws_conn_t *c, const ws_config_t *cfg, void *user)
{
    int rc = init(c, cfg, user);
    if (sodium_init() < 0)
        return -ENOMEM;
    c->phase = WS_PHASE_OPEN;
    return rc;
}

void ws_conn_free(ws_conn_t *c)
{
    wslay_event_context_free(c->ctx);
    c->ctx = NULL;
    free(c->head);
    c->head = NULL;
}

int ws_feed(ws_conn_t *c, const uint8_t *data, size_t len)
{
    int rc;

    switch (c->phase) {
    case WS_PHASE_HTTP:
        rc = feed_http(c, data, len);
        if (rc != 0)
            finish(c);
        return rc;
    case WS_PHASE_OPEN:
    case WS_PHASE_CLOSING:
        return feed_frames(c, data, len);
    default:
        return WS_DONE;
    }
}

static int queue(ws_conn_t *c, uint8_t opcode, const void *msg, size_t len)
{
    struct wslay_event_msg m = {opcode, msg, len};
    int rc;

    if (c->phase != WS_PHASE_OPEN)
        return -EPIPE;
    if ((rc = ensure_ctx(c)) < 0)
        return rc;
    rc = wslay_event_queue_msg(c->ctx, &m);
    if (rc == WSLAY_ERR_NOMEM)
        return -ENOMEM;
    if (rc != 0)
        return -EPIPE;
    rc = flush(c);
    return rc == WS_DONE ? -EPIPE : rc;
}

int ws_send(ws_conn_t *c, const void *msg, size_t len)
{
    return queue(c, WSLAY_BINARY_FRAME, msg, len);
}

int ws_ping(ws_conn_t *c, const void *data, size_t len)
{
    if (len > 125)
        return -EINVAL;
    return queue(c, WSLAY_PING, data, len);
}

int ws_close(ws_conn_t *c, uint16_t code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;
    int rc;

    if (rlen > 123)
        return -EINVAL;
    if (c->phase == WS_PHASE_HTTP || c->phase == WS_PHASE_DONE) {
        finish(c);
        return WS_DONE;
    }
    if (c->phase == WS_PHASE_CLOSING)
        return 0;
    if ((rc = ensure_ctx(c)) < 0)
        return rc;
    if (!c->close_code)
        c->close_code = code;
    rc = wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, rlen);
    if (rc == WSLAY_ERR_NOMEM)
        return -ENOMEM;
    c->phase = WS_PHASE_CLOSING;
    return flush(c);
}

ws_phase_t ws_phase(const ws_conn_t *c)
{
    return (ws_phase_t)c->phase;
}

uint16_t ws_close_code(const ws_conn_t *c)
{
    return c->close_code;
}

bool ws_has_context(const ws_conn_t *c)
{
    return c->ctx != NULL;
}
