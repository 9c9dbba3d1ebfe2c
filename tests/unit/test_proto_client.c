/*
 * Tests of proto/client against a small echo server built from proto/ws
 * and proto/codec on its own thread and loop: the blocking layer, events,
 * errors, and many asynchronous clients sharing one loop.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "client.h"
#include "codec.h"
#include "ws.h"

/* ---- the test server ---- */

struct sconn {
    uv_tcp_t tcp;
    ws_conn_t ws;
    proto_dec_t dec;
    bool closing;
};

static uv_loop_t sloop;
static uv_tcp_t listener;
static uv_async_t stop_async;
static pthread_t sthread;
static int port;
static ws_config_t scfg;

static void on_swritten(uv_write_t *w, int st)
{
    free(w);
}

static int s_write(void *user, const uint8_t *d, size_t n, bool more)
{
    struct sconn *c = user;
    uv_write_t *w = malloc(sizeof(*w) + n);
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);

    memcpy(w + 1, d, n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_swritten) < 0) {
        free(w);
        return -EPIPE;
    }
    return 0;
}

static void s_free(uv_handle_t *h)
{
    struct sconn *c = h->data;
    ws_conn_free(&c->ws);
    proto_dec_free(&c->dec);
    free(c);
}

static void s_shut(uv_shutdown_t *r, int st)
{
    uv_close((uv_handle_t *)r->handle, s_free);
    free(r);
}

static void s_end(struct sconn *c)
{
    uv_shutdown_t *r;
    if (c->closing)
        return;
    c->closing = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    r = malloc(sizeof(*r));
    if (uv_shutdown(r, (uv_stream_t *)&c->tcp, s_shut) < 0) {
        free(r);
        uv_close((uv_handle_t *)&c->tcp, s_free);
    }
}

static void s_message(void *user, const uint8_t *m, size_t n)
{
    struct sconn *c = user;
    msgpack_sbuffer sb;
    proto_req_t req;
    int rc = proto_decode_req(&c->dec, m, n, &req);

    msgpack_sbuffer_init(&sb);
    if (rc < 0) {
        proto_enc_decode_error(&sb, &req, rc);
    } else if (req.op == PROTO_OP_HELLO) {
        proto_enc_hello_ok(&sb, req.id, "test", 262144, PROTO_MAX_BODY);
    } else if (req.op == PROTO_OP_SEND) {
        proto_ev_msg_t ev = {.from = req.u.send.to,
                             .sid = 500 + req.u.send.cid,
                             .seq = 1,
                             .ts = 1700,
                             .body = req.u.send.body};
        proto_enc_sent_ok(&sb, req.id, 500 + req.u.send.cid, 1700, 0, false);
        ws_send(&c->ws, sb.data, sb.size);
        msgpack_sbuffer_clear(&sb);
        proto_enc_ev_msg(&sb, &ev);
    } else if (req.op == PROTO_OP_LOGOUT) {
        ws_close(&c->ws, WS_CLOSE_POLICY, "bye");
        msgpack_sbuffer_destroy(&sb);
        return;
    } else {
        proto_enc_ok(&sb, req.id);
    }
    ws_send(&c->ws, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void s_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void s_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct sconn *c = s->data;
    if (n < 0 || ws_feed(&c->ws, (uint8_t *)b->base, (size_t)n) != 0)
        s_end(c);
}

static void s_accept(uv_stream_t *l, int st)
{
    struct sconn *c = calloc(1, sizeof(*c));

    uv_tcp_init(&sloop, &c->tcp);
    c->tcp.data = c;
    proto_dec_init(&c->dec);
    ws_conn_init_server(&c->ws, &scfg, c);
    uv_accept(l, (uv_stream_t *)&c->tcp);
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

static void s_walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, h->data && h != (uv_handle_t *)&listener &&
                            h != (uv_handle_t *)&stop_async
                        ? s_free
                        : NULL);
}

static void s_stop(uv_async_t *a)
{
    uv_walk(&sloop, s_walk_close, NULL);
}

static void *s_main(void *arg)
{
    uv_run(&sloop, UV_RUN_DEFAULT);
    return NULL;
}

static int server_up(void **state)
{
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int len = sizeof(got);

    scfg.on_write = s_write;
    scfg.on_message = s_message;
    uv_loop_init(&sloop);
    uv_async_init(&sloop, &stop_async, s_stop);
    uv_tcp_init(&sloop, &listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&listener, 1024, s_accept), 0);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len);
    port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    pthread_create(&sthread, NULL, s_main, NULL);
    return 0;
}

static int server_down(void **state)
{
    uv_async_send(&stop_async);
    pthread_join(sthread, NULL);
    uv_loop_close(&sloop);
    return 0;
}

/* ---- blocking layer ---- */

static void test_sync_hello_send_event(void **state)
{
    static const uint8_t body[] = {1, 2, 3};
    proto_sync_t *s;
    const msgpack_object *r, *v;
    proto_req_t req = {.op = PROTO_OP_HELLO};

    assert_int_equal(proto_sync_connect("127.0.0.1", port, 2000, &s), 0);
    assert_int_equal(proto_sync_call(s, &req, 2000, &r), 0);
    v = proto_map_get(r, "version");
    assert_non_null(v);
    assert_memory_equal(v->via.str.ptr, PROTO_VERSION, v->via.str.size);

    memset(&req, 0, sizeof(req));
    req.op = PROTO_OP_SEND;
    req.u.send.to = proto_cstr("bob");
    req.u.send.cid = 7;
    req.u.send.body = (proto_bin_t){body, 3};
    assert_int_equal(proto_sync_call(s, &req, 2000, &r), 0);
    assert_int_equal(proto_map_get(r, "sid")->via.u64, 507);

    assert_int_equal(proto_sync_event(s, 2000, &r), 0);
    v = proto_map_get(r, "ev");
    assert_memory_equal(v->via.str.ptr, "msg", 3);
    assert_int_equal(proto_map_get(r, "body")->via.bin.size, 3);
    assert_int_equal(proto_sync_event(s, 50, &r), -ETIMEDOUT);
    proto_sync_close(s);
}

static void test_sync_errors(void **state)
{
    /* {"op": "nope", "id": 9} */
    static const uint8_t raw[] = {0x82, 0xa2, 'o',  'p', 0xa4, 'n', 'o',
                                  'p',  'e',  0xa2, 'i', 'd',  0x09};
    proto_sync_t *s;
    const msgpack_object *r;
    proto_req_t req = {.op = PROTO_OP_LOGOUT};

    assert_int_equal(proto_sync_connect("localhost", port, 2000, &s), 0);
    assert_int_equal(proto_sync_call_raw(s, raw, sizeof(raw), 9, 2000, &r),
                     PROTO_E_UNKNOWN_OP);
    assert_non_null(proto_map_get(r, "err"));
    /* the test server closes with 1008 on logout */
    assert_int_equal(proto_sync_call(s, &req, 2000, NULL), -ECONNRESET);
    assert_int_equal(proto_sync_close_code(s), WS_CLOSE_POLICY);
    proto_sync_close(s);

    /* nobody listens on port 1 */
    assert_int_equal(proto_sync_connect("127.0.0.1", 1, 2000, &s),
                     UV_ECONNREFUSED);
}

/* ---- many clients on one loop ---- */

#define NCLIENTS 200

static int connected, replies, closed;

static void a_reply(proto_client_t *cl, void *arg, int status,
                    const msgpack_object *reply, const uint8_t *raw, size_t len)
{
    assert_int_equal(status, 0);
    replies++;
    proto_client_close(cl);
}

static void a_connect(proto_client_t *cl, void *user, int status)
{
    assert_int_equal(status, 0);
    connected++;
}

static void a_close(proto_client_t *cl, void *user, int code)
{
    closed++;
}

static void test_many_clients_one_loop(void **state)
{
    static const proto_client_config_t cfg = {
        .on_connect = a_connect,
        .on_close = a_close,
    };
    uv_loop_t loop;

    uv_loop_init(&loop);
    for (int i = 0; i < NCLIENTS; i++) {
        proto_client_t *cl;
        proto_req_t req = {.op = PROTO_OP_HELLO};
        assert_int_equal(
            proto_client_connect(&loop, "127.0.0.1", port, &cfg, NULL, &cl), 0);
        /* queued before the upgrade, sent after it */
        assert_true(proto_client_request(cl, &req, a_reply, NULL) > 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(connected, NCLIENTS);
    assert_int_equal(replies, NCLIENTS);
    assert_int_equal(closed, NCLIENTS);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_hello_send_event),
        cmocka_unit_test(test_sync_errors),
        cmocka_unit_test(test_many_clients_one_loop),
    };
    return cmocka_run_group_tests(tests, server_up, server_down);
}
