/*
 * Integration tests of the C client library (proto/client.h, blocking
 * layer) against a real parleyd: started once on a free port with a fresh
 * data directory, stopped with SIGTERM at the end. Covers hello,
 * register, login, resume with the token, bad credentials, an unknown
 * op, requests before login, logout, and parley-cli driven through a
 * pipe.
 *
 * Environment: PARLEYD (the server binary, required), PARLEY_CLI (the
 * terminal client; its test is skipped without it).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "codec.h"

#define HOST       "127.0.0.1"
#define TIMEOUT_MS 10000
#define PASSWORD   "correct horse"

static struct {
    pid_t pid;
    int port;
    char data[64];
} srv;

/* ---- the server ---- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the server's stdout until "listening HOST:PORT" or the deadline.
 * Returns the port or -1. */
static int read_port(int fd)
{
    char buf[512];
    size_t len = 0;
    int64_t end = now_ms() + TIMEOUT_MS;

    while (len < sizeof(buf) - 1 && now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = 0;
        char *l = strstr(buf, "listening ");
        char *colon = l ? strchr(l, ':') : NULL;
        if (colon && strchr(colon, '\n'))
            return atoi(colon + 1);
    }
    return -1;
}

static int start_server(void **state)
{
    const char *bin = getenv("PARLEYD");
    int out[2];

    if (!bin) {
        fprintf(stderr, "PARLEYD is not set\n");
        return -1;
    }
    snprintf(srv.data, sizeof(srv.data), "/tmp/parley-cit-XXXXXX");
    if (!mkdtemp(srv.data) || pipe(out) < 0)
        return -1;
    srv.pid = fork();
    if (srv.pid < 0)
        return -1;
    if (srv.pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execl(bin, bin, "--listen", HOST ":0", "--data", srv.data,
              "--pwhash-ops", "min", "--pwhash-mem", "min", "--log-level",
              "warn", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    srv.port = read_port(out[0]);
    close(out[0]); /* parleyd writes nothing more to stdout */
    return srv.port > 0 ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static int stop_server(void **state)
{
    int status = 0;

    if (srv.pid > 0) {
        kill(srv.pid, SIGTERM);
        waitpid(srv.pid, &status, 0);
    }
    nftw(srv.data, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    /* an orderly stop is part of what is tested */
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static proto_sync_t *connect_or_fail(void)
{
    proto_sync_t *s = NULL;

    assert_int_equal(proto_sync_connect(HOST, srv.port, TIMEOUT_MS, &s), 0);
    assert_non_null(s);
    return s;
}

static proto_str_t str_of(const char *s)
{
    return (proto_str_t){s, (uint32_t)strlen(s)};
}

static int do_register(proto_sync_t *s, const char *user, const char *pw)
{
    proto_req_t req = {.op = PROTO_OP_REGISTER};

    req.u.reg.user = str_of(user);
    req.u.reg.password = str_of(pw);
    return proto_sync_call(s, &req, TIMEOUT_MS, NULL);
}

static int do_login(proto_sync_t *s, const char *user, const char *pw,
                    const msgpack_object **reply)
{
    proto_req_t req = {.op = PROTO_OP_LOGIN};

    req.u.login.user = str_of(user);
    req.u.login.password = str_of(pw);
    req.u.login.device = str_of("c-test");
    return proto_sync_call(s, &req, TIMEOUT_MS, reply);
}

static int do_resume(proto_sync_t *s, const uint8_t *tok, size_t len,
                     const msgpack_object **reply)
{
    proto_req_t req = {.op = PROTO_OP_RESUME};

    req.u.resume.token = (proto_bin_t){tok, (uint32_t)len};
    return proto_sync_call(s, &req, TIMEOUT_MS, reply);
}

static uint64_t get_uint(const msgpack_object *o, const char *key)
{
    const msgpack_object *v = proto_map_get(o, key);

    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return v->via.u64;
}

/* The error code of an error reply, checked against status. */
static void assert_err_reply(const msgpack_object *reply, int status)
{
    const msgpack_object *err = proto_map_get(reply, "err");

    assert_non_null(err);
    assert_int_equal(get_uint(err, "code"), (uint64_t)status);
}

/* Registers user and logs in; copies the token to tok (32 bytes). */
static uint64_t register_login(const char *user, uint8_t *tok, size_t *len)
{
    proto_sync_t *s = connect_or_fail();
    const msgpack_object *r;

    assert_int_equal(do_register(s, user, PASSWORD), 0);
    assert_int_equal(do_login(s, user, PASSWORD, &r), 0);
    const msgpack_object *t = proto_map_get(r, "token");
    assert_non_null(t);
    assert_int_equal(t->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(t->via.bin.size, 32);
    memcpy(tok, t->via.bin.ptr, t->via.bin.size);
    *len = t->via.bin.size;
    uint64_t dev = get_uint(r, "device");
    assert_true(dev > 0);
    assert_int_equal(get_uint(r, "acked"), 0);
    proto_sync_close(s);
    return dev;
}

/* ---- tests ---- */

static void test_hello(void **state)
{
    proto_sync_t *s = connect_or_fail();
    proto_req_t req = {.op = PROTO_OP_HELLO};
    const msgpack_object *r;

    assert_int_equal(proto_sync_call(s, &req, TIMEOUT_MS, &r), 0);
    const msgpack_object *v = proto_map_get(r, "version");
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_STR);
    assert_memory_equal(v->via.str.ptr, PROTO_VERSION, strlen(PROTO_VERSION));
    assert_true(get_uint(r, "max_message") >= 1024);
    proto_sync_close(s);
}

static void test_register_login_resume(void **state)
{
    uint8_t tok[PROTO_MAX_TOKEN];
    size_t len;
    const msgpack_object *r;
    uint64_t dev = register_login("carol", tok, &len);

    /* a second connection comes back as the same device */
    proto_sync_t *s = connect_or_fail();
    assert_int_equal(do_resume(s, tok, len, &r), 0);
    assert_int_equal(get_uint(r, "device"), dev);
    const msgpack_object *u = proto_map_get(r, "user");
    assert_non_null(u);
    assert_int_equal(u->via.str.size, 5);
    assert_memory_equal(u->via.str.ptr, "carol", 5);

    /* logged in now: the session operations answer */
    proto_req_t list = {.op = PROTO_OP_DEVICE_LIST};
    assert_int_equal(proto_sync_call(s, &list, TIMEOUT_MS, &r), 0);
    const msgpack_object *d = proto_map_get(r, "devices");
    assert_non_null(d);
    assert_int_equal(d->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(d->via.array.size, 1);

    /* and a second resume on it is refused */
    assert_int_equal(do_resume(s, tok, len, &r), PROTO_E_ALREADY_LOGGED_IN);
    assert_err_reply(r, PROTO_E_ALREADY_LOGGED_IN);
    proto_sync_close(s);
}

static void test_register_taken(void **state)
{
    proto_sync_t *s = connect_or_fail();
    const msgpack_object *r;
    proto_req_t req = {.op = PROTO_OP_REGISTER};

    assert_int_equal(do_register(s, "dave", PASSWORD), 0);
    req.u.reg.user = str_of("dave");
    req.u.reg.password = str_of(PASSWORD);
    assert_int_equal(proto_sync_call(s, &req, TIMEOUT_MS, &r), PROTO_E_EXISTS);
    assert_err_reply(r, PROTO_E_EXISTS);
    proto_sync_close(s);
}

static void test_bad_credentials(void **state)
{
    proto_sync_t *s = connect_or_fail();
    const msgpack_object *r;
    uint8_t bogus[32];

    assert_int_equal(do_register(s, "erin", PASSWORD), 0);
    assert_int_equal(do_login(s, "erin", "not the password", &r),
                     PROTO_E_BAD_CREDENTIALS);
    assert_err_reply(r, PROTO_E_BAD_CREDENTIALS);
    assert_int_equal(do_login(s, "nobody", PASSWORD, &r),
                     PROTO_E_BAD_CREDENTIALS);
    memset(bogus, 0xa5, sizeof(bogus));
    assert_int_equal(do_resume(s, bogus, sizeof(bogus), &r),
                     PROTO_E_BAD_CREDENTIALS);
    /* the connection is still usable, not logged in */
    assert_int_equal(do_login(s, "erin", PASSWORD, &r), 0);
    proto_sync_close(s);
}

static void test_logout_revokes_token(void **state)
{
    uint8_t tok[PROTO_MAX_TOKEN];
    size_t len;
    const msgpack_object *r;

    register_login("frank", tok, &len);
    proto_sync_t *s = connect_or_fail();
    assert_int_equal(do_resume(s, tok, len, &r), 0);
    proto_req_t out = {.op = PROTO_OP_LOGOUT};
    assert_int_equal(proto_sync_call(s, &out, TIMEOUT_MS, &r), 0);
    /* the connection stays open, logged out */
    proto_req_t list = {.op = PROTO_OP_DEVICE_LIST};
    assert_int_equal(proto_sync_call(s, &list, TIMEOUT_MS, &r),
                     PROTO_E_NOT_LOGGED_IN);
    assert_int_equal(do_resume(s, tok, len, &r), PROTO_E_BAD_CREDENTIALS);
    proto_sync_close(s);
}

static void test_unknown_op(void **state)
{
    proto_sync_t *s = connect_or_fail();
    const msgpack_object *r;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "frobnicate", 10);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 77);
    assert_int_equal(
        proto_sync_call_raw(s, sb.data, sb.size, 77, TIMEOUT_MS, &r),
        PROTO_E_UNKNOWN_OP);
    assert_err_reply(r, PROTO_E_UNKNOWN_OP);
    msgpack_sbuffer_destroy(&sb);

    /* the connection survives one bad request */
    proto_req_t hello = {.op = PROTO_OP_HELLO};
    assert_int_equal(proto_sync_call(s, &hello, TIMEOUT_MS, NULL), 0);
    assert_int_equal(proto_sync_close_code(s), 0);
    proto_sync_close(s);
}

static void test_request_before_login(void **state)
{
    proto_sync_t *s = connect_or_fail();
    const msgpack_object *r;
    static const proto_op_t ops[] = {PROTO_OP_DEVICE_LIST, PROTO_OP_LOGOUT,
                                     PROTO_OP_CONTACT_LIST};

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        proto_req_t req = {.op = ops[i]};
        assert_int_equal(proto_sync_call(s, &req, TIMEOUT_MS, &r),
                         PROTO_E_NOT_LOGGED_IN);
        assert_err_reply(r, PROTO_E_NOT_LOGGED_IN);
    }
    proto_req_t send = {.op = PROTO_OP_SEND};
    send.u.send.to = str_of("carol");
    send.u.send.cid = 1;
    send.u.send.body = (proto_bin_t){(const uint8_t *)"hi", 2};
    assert_int_equal(proto_sync_call(s, &send, TIMEOUT_MS, &r),
                     PROTO_E_NOT_LOGGED_IN);
    proto_sync_close(s);
}

/* Reads all of fd into buf (NUL-terminated) until EOF or the deadline. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    int64_t end = now_ms() + TIMEOUT_MS;

    while (len < cap - 1 && now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return len;
}

static void test_cli(void **state)
{
    const char *cli = getenv("PARLEY_CLI");
    char server[64], out[8192];
    int in[2], res[2], status;
    static const char script[] = "/hello\n"
                                 "/devices\n"
                                 "/register gina " PASSWORD "\n"
                                 "/login gina\n" PASSWORD "\n"
                                 "/msg carol hello from the cli\n"
                                 "/devices\n"
                                 "/quit\n";

    if (!cli)
        skip();
    snprintf(server, sizeof(server), HOST ":%d", srv.port);
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(res), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(res[1], STDOUT_FILENO);
        close(in[1]);
        close(res[0]);
        execl(cli, cli, "--server", server, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(res[1]);
    assert_int_equal(write(in[1], script, sizeof(script) - 1),
                     (ssize_t)sizeof(script) - 1);
    close(in[1]);
    read_all(res[0], out, sizeof(out));
    close(res[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* replies print in input order */
    char *p = strstr(out, "hello: ok");
    assert_non_null(p);
    assert_non_null(p = strstr(p, "devices: error 200 not_logged_in"));
    assert_non_null(p = strstr(p, "register: ok"));
    assert_non_null(p = strstr(p, "login: ok"));
    /* the server's answer to a send, whatever it is, is shown */
    assert_non_null(p = strstr(p, "msg to carol: "));
    assert_non_null(p = strstr(p, "devices: ok"));
    assert_non_null(strstr(p, "parley-cli@"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_register_login_resume),
        cmocka_unit_test(test_register_taken),
        cmocka_unit_test(test_bad_credentials),
        cmocka_unit_test(test_logout_revokes_token),
        cmocka_unit_test(test_unknown_op),
        cmocka_unit_test(test_request_before_login),
        cmocka_unit_test(test_cli),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
