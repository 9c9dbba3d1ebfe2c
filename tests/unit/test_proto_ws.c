/*
 * Unit tests of proto/ws: the HTTP upgrade, frame policy (1002, 1003,
 * 1009), fragmentation with pings in between, the close handshake, and the
 * idle footprint (no wslay context, nothing on the heap).
 */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROTO_HAS_ASAN 1
#endif
#endif
#ifndef PROTO_HAS_ASAN
#define PROTO_HAS_ASAN 0
#endif

#include "sha1.h"
#include "ws.h"

static uint8_t out[1 << 20];
static size_t out_len;
static uint8_t msg[1 << 20];
static size_t msg_len;
static int msgs, opens;

static int on_write(void *user, const uint8_t *d, size_t n, bool more)
{
    assert_true(out_len + n <= sizeof(out));
    memcpy(out + out_len, d, n);
    out_len += n;
    return 0;
}

static void on_message(void *user, const uint8_t *m, size_t n)
{
    memcpy(msg, m, n);
    msg_len = n;
    msgs++;
}

static void on_open(void *user)
{
    opens++;
}

static ws_config_t cfg = {
    .max_message = 4096,
    .on_write = on_write,
    .on_message = on_message,
    .on_open = on_open,
};

static const char req_ok[] = "GET / HTTP/1.1\r\n"
                             "Host: x\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: keep-alive, Upgrade\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Protocol: chat, parley.v1\r\n"
                             "\r\n";

static int reset(void **state)
{
    out_len = msg_len = 0;
    msgs = opens = 0;
    cfg.max_message = 4096;
    cfg.lazy_trim = false;
    return 0;
}

/* Build a client frame: masked unless mask is false. */
static size_t frame(uint8_t *f, int fin, int op, const void *p, size_t n,
                    bool mask)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    size_t h = 0;

    f[h++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        f[h++] = (uint8_t)((mask ? 0x80 : 0) | n);
    } else if (n < 65536) {
        f[h++] = (mask ? 0x80 : 0) | 126;
        f[h++] = (uint8_t)(n >> 8);
        f[h++] = (uint8_t)n;
    } else {
        f[h++] = (mask ? 0x80 : 0) | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (mask) {
        memcpy(f + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < n; i++)
        f[h + i] = ((const uint8_t *)p)[i] ^ (mask ? key[i % 4] : 0);
    return h + n;
}

/* Parse the server frame at out[*pos]; returns opcode, sets payload. */
static int next_out(size_t *pos, const uint8_t **p, size_t *n)
{
    const uint8_t *f = out + *pos;
    size_t h = 2, len = f[1] & 0x7f;

    assert_true(*pos + 2 <= out_len);
    assert_int_equal(f[1] & 0x80, 0); /* server frames are unmasked */
    if (len == 126) {
        len = (size_t)f[2] << 8 | f[3];
        h = 4;
    }
    *p = f + h;
    *n = len;
    *pos += h + len;
    return f[0] & 0x0f;
}

static uint16_t out_close_code(void)
{
    size_t pos = 0, n = 0;
    const uint8_t *p = NULL;
    int op = 0;
    while (pos < out_len && (op = next_out(&pos, &p, &n)) != 8)
        ;
    assert_int_equal(op, 8);
    assert_true(n >= 2);
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void open_conn(ws_conn_t *c)
{
    opens = msgs = 0;
    out_len = 0;
    assert_int_equal(ws_conn_init_server(c, &cfg, NULL), 0);
    assert_int_equal(ws_feed(c, (const uint8_t *)req_ok, strlen(req_ok)), 0);
    assert_int_equal(ws_phase(c), WS_PHASE_OPEN);
    assert_int_equal(opens, 1);
    out_len = 0;
}

/* ---- HTTP ---- */

static void test_accept_key(void **state)
{
    char acc[29];
    uint8_t d[PROTO_SHA1_LEN];

    /* RFC 6455, section 1.3 */
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, acc);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* FIPS 180 sample "abc" and a two-block message */
    proto_sha1("abc", 3, d);
    assert_memory_equal(d,
                        "\xa9\x99\x3e\x36\x47\x06\x81\x6a\xba\x3e"
                        "\x25\x71\x78\x50\xc2\x6c\x9c\xd0\xd8\x9d",
                        20);
    proto_sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
               d);
    assert_memory_equal(d,
                        "\x84\x98\x3e\x44\x1c\x3b\xd2\x6e\xba\xae"
                        "\x4a\xa1\xf9\x51\x29\xe5\xe5\x46\x70\xf1",
                        20);
}

static void test_upgrade(void **state)
{
    ws_conn_t c;

    assert_int_equal(ws_conn_init_server(&c, &cfg, NULL), 0);
    /* one byte at a time */
    for (size_t i = 0; i < strlen(req_ok); i++)
        assert_int_equal(ws_feed(&c, (const uint8_t *)req_ok + i, 1), 0);
    assert_int_equal(ws_phase(&c), WS_PHASE_OPEN);
    out[out_len] = 0;
    assert_non_null(strstr((char *)out, "HTTP/1.1 101 "));
    assert_non_null(strstr(
        (char *)out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_non_null(strstr((char *)out, "Sec-WebSocket-Protocol: parley.v1"));
    assert_false(ws_has_context(&c));
    ws_conn_free(&c);
}

static void test_upgrade_with_frame(void **state)
{
    uint8_t buf[1024];
    size_t n = strlen(req_ok);
    ws_conn_t c;

    memcpy(buf, req_ok, n);
    n += frame(buf + n, 1, 2, "hi", 2, true);
    assert_int_equal(ws_conn_init_server(&c, &cfg, NULL), 0);
    assert_int_equal(ws_feed(&c, buf, n), 0);
    assert_int_equal(msgs, 1);
    assert_memory_equal(msg, "hi", 2);
    ws_conn_free(&c);
}

static int http(const char *req, const char *expect)
{
    ws_http_answer_t a;
    int st = ws_http_answer(req, strlen(req), NULL, &a);
    a.text[a.len < sizeof(a.text) ? a.len : sizeof(a.text) - 1] = 0;
    if (expect)
        assert_non_null(strstr(a.text, expect));
    return st;
}

static void test_http_answers(void **state)
{
    char big[WS_MAX_HEAD_DEFAULT + 100];
    ws_conn_t c;

    assert_int_equal(http("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "ok\n"),
                     200);
    assert_int_equal(http("GET /nope HTTP/1.1\r\n\r\n", NULL), 404);
    assert_int_equal(
        http("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "Allow: GET"),
        405);
    assert_int_equal(http("garbage\r\n\r\n", NULL), 400);
    assert_int_equal(http("GET / HTTP/1.1\r\n\r\n", "upgrade"), 400);
    assert_int_equal(http("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 8\r\n"
                          "Sec-WebSocket-Protocol: parley.v1\r\n\r\n",
                          "Sec-WebSocket-Version: 13"),
                     426);
    assert_int_equal(http("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: c2hvcnQ=\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Protocol: parley.v1\r\n\r\n",
                          "Key"),
                     400);
    assert_int_equal(http("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Protocol: parley.v2\r\n\r\n",
                          "supported: parley.v1"),
                     400);
    assert_int_equal(http("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          "supported: parley.v1"),
                     400);

    /* healthz through a connection ends it */
    assert_int_equal(ws_conn_init_server(&c, &cfg, NULL), 0);
    assert_int_equal(
        ws_feed(&c, (const uint8_t *)"GET /healthz HTTP/1.1\r\n\r\n", 25),
        WS_DONE);
    assert_int_equal(ws_phase(&c), WS_PHASE_DONE);
    ws_conn_free(&c);

    /* a head that never ends */
    out_len = 0;
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(ws_conn_init_server(&c, &cfg, NULL), 0);
    assert_int_equal(ws_feed(&c, (const uint8_t *)big, sizeof(big)), WS_DONE);
    assert_memory_equal(out, "HTTP/1.1 400", 12);
    ws_conn_free(&c);
}

/* ---- frames ---- */

static void test_message_and_idle(void **state)
{
    uint8_t f[64];
    size_t n = frame(f, 1, 2, "hello", 5, true);
    ws_conn_t c;

    open_conn(&c);
    /* byte by byte: a partial header needs no wslay context */
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(ws_feed(&c, f + i, 1), 0);
        assert_false(ws_has_context(&c));
    }
    assert_int_equal(ws_feed(&c, f + 2, 4), 0); /* mask key: header done */
    assert_true(ws_has_context(&c));
    assert_int_equal(ws_feed(&c, f + 6, n - 6), 0);
    assert_int_equal(msgs, 1);
    assert_memory_equal(msg, "hello", 5);
    assert_false(ws_has_context(&c));

    /* two messages in one read */
    memcpy(f + n, f, n);
    assert_int_equal(ws_feed(&c, f, 2 * n), 0);
    assert_int_equal(msgs, 3);
    assert_false(ws_has_context(&c));
    ws_conn_free(&c);
}

static void test_fragmented_with_ping(void **state)
{
    uint8_t f[256];
    size_t n = 0, pos = 0, pn;
    const uint8_t *p;
    ws_conn_t c;

    open_conn(&c);
    n += frame(f + n, 0, 2, "abc", 3, true);
    n += frame(f + n, 1, 9, "pi", 2, true); /* ping between fragments */
    assert_int_equal(ws_feed(&c, f, n), 0);
    assert_int_equal(msgs, 0);
    assert_true(ws_has_context(&c)); /* message in progress */
    assert_int_equal(next_out(&pos, &p, &pn), 0xa);
    assert_int_equal(pn, 2);
    assert_memory_equal(p, "pi", 2);

    n = frame(f, 0, 0, "def", 3, true);
    n += frame(f + n, 1, 0, "g", 1, true);
    assert_int_equal(ws_feed(&c, f, n), 0);
    assert_int_equal(msgs, 1);
    assert_int_equal(msg_len, 7);
    assert_memory_equal(msg, "abcdefg", 7);
    assert_false(ws_has_context(&c));
    ws_conn_free(&c);
}

static void expect_fail(const uint8_t *f, size_t n, uint16_t code)
{
    ws_conn_t c;

    open_conn(&c);
    assert_int_equal(ws_feed(&c, f, n), WS_DONE);
    assert_int_equal(ws_phase(&c), WS_PHASE_DONE);
    assert_int_equal(out_close_code(), code);
    assert_int_equal(ws_close_code(&c), code);
    assert_int_equal(msgs, 0);
    assert_false(ws_has_context(&c));
    ws_conn_free(&c);
}

static void test_policy(void **state)
{
    uint8_t f[8192], big[5000] = {0};
    size_t n;

    expect_fail(f, frame(f, 1, 1, "text", 4, true), WS_CLOSE_UNSUPPORTED);
    expect_fail(f, frame(f, 1, 2, "x", 1, false), WS_CLOSE_PROTOCOL);
    n = frame(f, 1, 2, "x", 1, true);
    f[0] |= 0x40; /* RSV1 */
    expect_fail(f, n, WS_CLOSE_PROTOCOL);
    expect_fail(f, frame(f, 1, 3, "x", 1, true), WS_CLOSE_PROTOCOL);
    expect_fail(f, frame(f, 1, 0xb, "x", 1, true), WS_CLOSE_PROTOCOL);
    expect_fail(f, frame(f, 0, 9, "x", 1, true), WS_CLOSE_PROTOCOL);
    expect_fail(f, frame(f, 1, 9, big, 126, true), WS_CLOSE_PROTOCOL);
    expect_fail(f, frame(f, 1, 0, "x", 1, true), WS_CLOSE_PROTOCOL);
    n = frame(f, 0, 2, "x", 1, true);
    n += frame(f + n, 1, 2, "y", 1, true); /* new message inside one */
    expect_fail(f, n, WS_CLOSE_PROTOCOL);
    /* non-minimal length: 5 bytes in the 16-bit form */
    {
        static const uint8_t nm[] = {0x82, 0xfe, 0, 5, 1, 2, 3,
                                     4,    0,    0, 0, 0, 0};
        expect_fail(nm, sizeof(nm), WS_CLOSE_PROTOCOL);
    }
    /* too big: refused from the header alone, before any payload */
    n = frame(f, 1, 2, big, sizeof(big), true);
    expect_fail(f, 8, WS_CLOSE_TOO_BIG);
    /* too big across fragments */
    n = frame(f, 0, 2, big, 3000, true);
    n += frame(f + n, 1, 0, big, 3000, true);
    expect_fail(f, n, WS_CLOSE_TOO_BIG);
    /* invalid close code from the peer: wslay answers 1002 */
    {
        uint8_t cl[2] = {0x03, 0xe4}; /* 996 */
        expect_fail(f, frame(f, 1, 8, cl, 2, true), WS_CLOSE_PROTOCOL);
    }
}

static void test_close_handshake(void **state)
{
    uint8_t f[64], cl[2] = {0x03, 0xe8}; /* 1000 */
    ws_conn_t c;

    /* the peer closes */
    open_conn(&c);
    assert_int_equal(ws_feed(&c, f, frame(f, 1, 8, cl, 2, true)), WS_DONE);
    assert_int_equal(out_close_code(), 1000);
    assert_int_equal(ws_close_code(&c), 1000);
    ws_conn_free(&c);

    /* we close; messages after that are dropped; the peer answers */
    reset(NULL);
    open_conn(&c);
    assert_int_equal(ws_close(&c, WS_CLOSE_GOING_AWAY, "bye"), 0);
    assert_int_equal(ws_phase(&c), WS_PHASE_CLOSING);
    assert_int_equal(out_close_code(), 1001);
    assert_int_equal(ws_send(&c, "x", 1), -EPIPE);
    assert_int_equal(ws_feed(&c, f, frame(f, 1, 2, "late", 4, true)), 0);
    assert_int_equal(msgs, 0);
    assert_int_equal(ws_feed(&c, f, frame(f, 1, 8, cl, 2, true)), WS_DONE);
    assert_int_equal(ws_phase(&c), WS_PHASE_DONE);
    assert_int_equal(ws_close_code(&c), 1001);
    ws_conn_free(&c);
}

static void test_send(void **state)
{
    static uint8_t big[70000];
    size_t pos = 0, n;
    const uint8_t *p;
    ws_conn_t c;

    open_conn(&c);
    assert_int_equal(ws_send(&c, "reply", 5), 0);
    assert_int_equal(next_out(&pos, &p, &n), 2);
    assert_int_equal(n, 5);
    assert_memory_equal(p, "reply", 5);
    assert_false(ws_has_context(&c));
    assert_int_equal(ws_ping(&c, "p", 1), 0);
    assert_int_equal(next_out(&pos, &p, &n), 9);
    assert_int_equal(ws_ping(&c, big, 126), -EINVAL);

    /* a 64-bit length */
    out_len = 0;
    assert_int_equal(ws_send(&c, big, sizeof(big)), 0);
    assert_int_equal(out[1], 127);
    assert_int_equal(out_len, 10 + sizeof(big));

    /* lazy trim keeps the context until asked */
    cfg.lazy_trim = true;
    assert_int_equal(ws_send(&c, "x", 1), 0);
    assert_true(ws_has_context(&c));
    assert_int_equal(ws_trim(&c), 1);
    assert_false(ws_has_context(&c));
    ws_conn_free(&c);

    /* nothing to send before the upgrade */
    assert_int_equal(ws_conn_init_server(&c, &cfg, NULL), 0);
    assert_int_equal(ws_send(&c, "x", 1), -EPIPE);
    ws_conn_free(&c);
}

static void test_client_role(void **state)
{
    uint8_t f[64];
    ws_conn_t c;

    assert_int_equal(ws_conn_init_client(&c, &cfg, NULL), 0);
    assert_int_equal(ws_send(&c, "abc", 3), 0);
    assert_int_equal(out_len, 2 + 4 + 3);
    assert_int_equal(out[1], 0x80 | 3); /* masked */
    /* the server's frames are unmasked; masked ones are refused */
    assert_int_equal(ws_feed(&c, f, frame(f, 1, 2, "ok", 2, false)), 0);
    assert_int_equal(msgs, 1);
    assert_int_equal(ws_feed(&c, f, frame(f, 1, 2, "no", 2, true)), WS_DONE);
    assert_int_equal(ws_close_code(&c), WS_CLOSE_PROTOCOL);
    ws_conn_free(&c);
}

/*
 * The memory goal: an idle logged-in connection costs the server at most
 * 2 KiB. This layer's share is sizeof(ws_conn_t) and no heap at all; the
 * wslay context it frees when idle is several KiB (printed below).
 */
static void test_idle_footprint(void **state)
{
    uint8_t f[64];
    size_t n = frame(f, 0, 2, "part", 4, true);
    struct mallinfo2 a, b, d;
    (void)d;
    ws_conn_t c;

    _Static_assert(sizeof(ws_conn_t) <= 128, "ws_conn_t grew past 128 B");
    open_conn(&c);
    a = mallinfo2();
    assert_int_equal(ws_feed(&c, f, n), 0); /* start a fragmented message */
    b = mallinfo2();
    assert_true(ws_has_context(&c));
    n = frame(f, 1, 0, "!", 1, true);
    assert_int_equal(ws_feed(&c, f, n), 0);
    d = mallinfo2();
    assert_false(ws_has_context(&c));
    print_message("sizeof(ws_conn_t) = %zu B idle, no heap; "
                  "wslay context while busy = %zu B\n",
                  sizeof(ws_conn_t), (size_t)(b.uordblks - a.uordblks));
#if !defined(__SANITIZE_ADDRESS__) && !PROTO_HAS_ASAN
    /* glibc's counters; sanitizers replace malloc and report nothing */
    assert_int_equal(d.uordblks, a.uordblks); /* idle: back to zero heap */
    assert_true(b.uordblks - a.uordblks > 2048);
#endif
    ws_conn_free(&c);
}

/* Masking keys come from a pool: consecutive draws differ, and a forked
 * child does not hand out the bytes its parent will. */
static void test_random_pool(void **state)
{
    uint8_t a[16], b[16], mine[16], child[16];
    int fds[2];

    ws_random(a, sizeof(a));
    ws_random(b, sizeof(b));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ws_random(child, sizeof(child));
        _exit(write(fds[1], child, sizeof(child)) == sizeof(child) ? 0 : 1);
    }
    ws_random(mine, sizeof(mine));
    assert_int_equal(read(fds[0], child, sizeof(child)), sizeof(child));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_memory_not_equal(mine, child, sizeof(mine));
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_accept_key, reset),
        cmocka_unit_test_setup(test_upgrade, reset),
        cmocka_unit_test_setup(test_upgrade_with_frame, reset),
        cmocka_unit_test_setup(test_http_answers, reset),
        cmocka_unit_test_setup(test_message_and_idle, reset),
        cmocka_unit_test_setup(test_fragmented_with_ping, reset),
        cmocka_unit_test_setup(test_policy, reset),
        cmocka_unit_test_setup(test_close_handshake, reset),
        cmocka_unit_test_setup(test_send, reset),
        cmocka_unit_test_setup(test_client_role, reset),
        cmocka_unit_test_setup(test_idle_footprint, reset),
        cmocka_unit_test(test_random_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
