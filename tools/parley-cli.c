/*
 * tools/parley-cli.c - a terminal chat client on proto/client.h.
 *
 *   parley-cli [--server HOST:PORT] [--timeout-ms N]
 *
 * Lines starting with '/' are commands (/help lists them); any other line
 * is sent to the peer of the last /msg. Replies and server events are
 * printed as they arrive. Message bodies go out as the UTF-8 of the text:
 * this client does no end-to-end encryption, so it is a tool for testing
 * and demonstrations, not for private conversations.
 *
 * Structure: one libuv loop on the main thread owns the connection; a
 * reader thread blocks on stdin (a terminal, a pipe or a file alike) and
 * hands each line to the loop through a uv_async_t. At the end of input
 * the client waits for the replies still due (at most --timeout-ms), then
 * closes. Exit status: 0, 1 when the connection failed or was closed by
 * the server, 2 for bad arguments.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "client.h"
#include "codec.h"

#define LINE_MAX_BYTES 4096
#define DEFAULT_SERVER "127.0.0.1:7070"

/* A line read by the reader thread, queued for the loop. */
struct line {
    struct line *next;
    bool eof;
    char text[];
};

static struct {
    uv_loop_t *loop;
    proto_client_t *cl;
    proto_client_config_t cfg;
    uv_async_t wake;
    uv_timer_t drain;
    pthread_mutex_t lock;
    struct line *head, **tail;        /* from the reader, under lock */
    struct line *ready, **ready_tail; /* the loop's own, in order */
    int timeout_ms;
    int in_flight;   /* requests without a reply yet */
    bool connected;  /* the upgrade finished */
    bool input_done; /* stdin ended or /quit */
    bool closing;
    bool wake_closed; /* under lock */
    int exit_code;
    char peer[PROTO_MAX_NAME + 1]; /* of the last /msg */
    uint8_t token[PROTO_MAX_TOKEN];
    size_t token_len;
    uint64_t cid;
    /* the next line is a password for this pending command */
    enum { PW_NONE, PW_REGISTER, PW_LOGIN } pw_for;
    char pw_user[PROTO_MAX_NAME + 1];
} g;

/* What a reply callback needs to print its result. */
struct call {
    proto_op_t op;
    char what[80];
};

/* ---- output helpers ---- */

static void stamp(void)
{
    time_t t = time(NULL);
    struct tm tm;
    char b[16];

    localtime_r(&t, &tm);
    strftime(b, sizeof(b), "%H:%M:%S", &tm);
    printf("[%s] ", b);
}

/* Prints the string or binary field `key` of map o, as text. */
static void print_field(const msgpack_object *o, const char *key)
{
    const msgpack_object *v = proto_map_get(o, key);

    if (!v)
        printf("?");
    else if (v->type == MSGPACK_OBJECT_STR)
        printf("%.*s", (int)v->via.str.size, v->via.str.ptr);
    else if (v->type == MSGPACK_OBJECT_BIN)
        printf("%.*s", (int)v->via.bin.size, v->via.bin.ptr);
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        printf("%" PRIu64, v->via.u64);
    else if (v->type == MSGPACK_OBJECT_BOOLEAN)
        printf("%s", v->via.boolean ? "true" : "false");
    else
        printf("<%d>", (int)v->type);
}

static uint64_t get_uint(const msgpack_object *o, const char *key)
{
    const msgpack_object *v = proto_map_get(o, key);

    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static void print_error(const struct call *c, int status,
                        const msgpack_object *reply)
{
    stamp();
    if (status < 0) {
        printf("%s: no reply: %s\n", c->what, strerror(-status));
        return;
    }
    const msgpack_object *err = reply ? proto_map_get(reply, "err") : NULL;
    printf("%s: error %d %s", c->what, status, proto_err_name(status));
    if (err) {
        printf(": ");
        print_field(err, "msg");
    }
    if (status == PROTO_E_RATE_LIMITED && reply)
        printf(" (retry in %" PRIu64 " ms)", get_uint(reply, "retry"));
    printf("\n");
}

/* ---- replies ---- */

static void print_devices(const msgpack_object *reply)
{
    const msgpack_object *d = proto_map_get(reply, "devices");

    if (!d || d->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < d->via.array.size; i++) {
        const msgpack_object *dev = &d->via.array.ptr[i];
        const msgpack_object *cur = proto_map_get(dev, "current");
        printf("  device %" PRIu64 " ", get_uint(dev, "id"));
        print_field(dev, "name");
        printf(" last seen %" PRIu64 "%s\n", get_uint(dev, "last_seen"),
               cur && cur->type == MSGPACK_OBJECT_BOOLEAN && cur->via.boolean
                   ? " (this one)"
                   : "");
    }
}

static void print_history(const msgpack_object *reply)
{
    const msgpack_object *m = proto_map_get(reply, "msgs");

    if (!m || m->type != MSGPACK_OBJECT_ARRAY)
        return;
    /* newest first on the wire: print oldest first */
    for (uint32_t i = m->via.array.size; i-- > 0;) {
        const msgpack_object *e = &m->via.array.ptr[i];
        printf("  #%" PRIu64 " ", get_uint(e, "sid"));
        print_field(e, "from");
        printf(": ");
        print_field(e, "body");
        printf("\n");
    }
}

static void maybe_finish(void);
static void run_lines(void);

static void on_reply(proto_client_t *cl, void *arg, int status,
                     const msgpack_object *reply, const uint8_t *raw,
                     size_t len)
{
    struct call *c = arg;

    g.in_flight--;
    if (status != 0) {
        print_error(c, status, reply);
    } else {
        stamp();
        printf("%s: ok", c->what);
        switch (c->op) {
        case PROTO_OP_LOGIN: {
            const msgpack_object *t = proto_map_get(reply, "token");
            if (t && t->type == MSGPACK_OBJECT_BIN &&
                t->via.bin.size <= sizeof(g.token)) {
                memcpy(g.token, t->via.bin.ptr, t->via.bin.size);
                g.token_len = t->via.bin.size;
            }
            printf(", device %" PRIu64 " (/token shows the resume token)",
                   get_uint(reply, "device"));
            break;
        }
        case PROTO_OP_RESUME:
            printf(", user ");
            print_field(reply, "user");
            printf(", device %" PRIu64, get_uint(reply, "device"));
            break;
        case PROTO_OP_SEND:
            printf(", sent: sid %" PRIu64, get_uint(reply, "sid"));
            if (proto_map_get(reply, "dup"))
                printf(" (duplicate)");
            break;
        case PROTO_OP_HELLO:
            printf(", server ");
            print_field(reply, "server");
            printf(" ");
            print_field(reply, "version");
            break;
        default:
            break;
        }
        printf("\n");
        if (c->op == PROTO_OP_DEVICE_LIST)
            print_devices(reply);
        else if (c->op == PROTO_OP_HISTORY)
            print_history(reply);
    }
    fflush(stdout);
    free(c);
    maybe_finish();
    run_lines();
}

/* Sends req; the reply is printed under the label `what`. */
static void request(proto_req_t *req, const char *what)
{
    struct call *c = calloc(1, sizeof(*c));

    if (!c) {
        fprintf(stderr, "parley-cli: out of memory\n");
        return;
    }
    c->op = req->op;
    snprintf(c->what, sizeof(c->what), "%s", what);
    int64_t id = proto_client_request(g.cl, req, on_reply, c);
    if (id < 0) {
        printf("%s: not sent: %s\n", what, strerror((int)-id));
        free(c);
        return;
    }
    g.in_flight++;
}

/* ---- events ---- */

static void ack_upto(uint64_t seq)
{
    proto_req_t req = {.op = PROTO_OP_ACK};

    req.u.ack.upto = seq;
    /* the reply to an ack says nothing worth printing */
    if (proto_client_request(g.cl, &req, NULL, NULL) < 0)
        printf("ack %" PRIu64 ": not sent\n", seq);
}

static void on_event(proto_client_t *cl, void *user, const msgpack_object *ev,
                     const uint8_t *raw, size_t len)
{
    const msgpack_object *name = proto_map_get(ev, "ev");
    char kind[32] = "";

    if (name && name->type == MSGPACK_OBJECT_STR)
        snprintf(kind, sizeof(kind), "%.*s", (int)name->via.str.size,
                 name->via.str.ptr);
    stamp();
    if (!strcmp(kind, "msg")) {
        print_field(ev, "from");
        if (proto_map_get(ev, "gid"))
            printf(" in group %" PRIu64, get_uint(ev, "gid"));
        if (proto_map_get(ev, "to")) {
            printf(" -> ");
            print_field(ev, "to");
        }
        printf(": ");
        print_field(ev, "body");
        printf("   (#%" PRIu64 ")\n", get_uint(ev, "sid"));
    } else if (!strcmp(kind, "delivered")) {
        printf("delivered #%" PRIu64 " to ", get_uint(ev, "sid"));
        print_field(ev, "by");
        printf("\n");
    } else if (!strcmp(kind, "read")) {
        print_field(ev, "by");
        printf(" read up to #%" PRIu64 "\n", get_uint(ev, "upto"));
    } else if (!strcmp(kind, "presence")) {
        print_field(ev, "user");
        const msgpack_object *on = proto_map_get(ev, "online");
        printf(" is %s\n",
               on && on->type == MSGPACK_OBJECT_BOOLEAN && on->via.boolean
                   ? "online"
                   : "offline");
    } else if (!strcmp(kind, "typing")) {
        print_field(ev, "from");
        printf(" typing: ");
        print_field(ev, "on");
        printf("\n");
    } else if (!strcmp(kind, "revoked")) {
        printf("this device was revoked by the server\n");
    } else if (proto_map_get(ev, "re")) {
        printf("reply to an unreadable request: ");
        print_field(proto_map_get(ev, "err") ? proto_map_get(ev, "err") : ev,
                    "msg");
        printf("\n");
    } else {
        printf("event %s\n", kind[0] ? kind : "(unnamed)");
    }
    /* stored events carry a seq: acknowledge so they are not replayed */
    uint64_t seq = get_uint(ev, "seq");
    if (seq)
        ack_upto(seq);
    fflush(stdout);
}

/* ---- connection ---- */

static void close_all(void)
{
    if (g.closing)
        return;
    g.closing = true;
    if (g.cl)
        proto_client_close(g.cl);
    pthread_mutex_lock(&g.lock);
    g.wake_closed = true;
    uv_close((uv_handle_t *)&g.wake, NULL);
    pthread_mutex_unlock(&g.lock);
    uv_close((uv_handle_t *)&g.drain, NULL);
}

/* After the input ends: close once every reply is in. */
static void maybe_finish(void)
{
    if (g.input_done && g.in_flight <= 0)
        close_all();
}

static void on_drain_timeout(uv_timer_t *t)
{
    printf("%d repl%s still due after %d ms; closing\n", g.in_flight,
           g.in_flight == 1 ? "y" : "ies", g.timeout_ms);
    close_all();
}

static void on_connect(proto_client_t *cl, void *user, int status)
{
    if (status < 0) {
        fprintf(stderr, "parley-cli: cannot connect: %s\n",
                status == -EPROTO ? "the server refused the upgrade"
                                  : uv_strerror(status));
        g.exit_code = 1;
        return;
    }
    g.connected = true;
    printf("connected; /help lists the commands\n");
    fflush(stdout);
    run_lines();
}

static void on_close(proto_client_t *cl, void *user, int code)
{
    g.cl = NULL;
    if (!g.closing && g.connected) {
        printf("connection closed by the server (code %d)\n", code);
        g.exit_code = 1;
    }
    fflush(stdout);
    close_all();
}

/* ---- commands ---- */

static void set_echo(bool on)
{
    struct termios t;

    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &t) < 0)
        return;
    if (on)
        t.c_lflag |= ECHO;
    else
        t.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static proto_str_t str_of(const char *s)
{
    return (proto_str_t){s, (uint32_t)strlen(s)};
}

static void do_register(const char *user, const char *pw)
{
    proto_req_t req = {.op = PROTO_OP_REGISTER};

    req.u.reg.user = str_of(user);
    req.u.reg.password = str_of(pw);
    request(&req, "register");
}

static void do_login(const char *user, const char *pw)
{
    proto_req_t req = {.op = PROTO_OP_LOGIN};
    char dev[PROTO_MAX_TEXT + 1], host[40] = "localhost";

    gethostname(host, sizeof(host) - 1);
    snprintf(dev, sizeof(dev), "parley-cli@%s", host);
    req.u.login.user = str_of(user);
    req.u.login.password = str_of(pw);
    req.u.login.device = str_of(dev);
    request(&req, "login");
}

/* /register NAME [PASSWORD] and /login NAME [PASSWORD]: without a
 * password, the next line is read as one, unechoed on a terminal. */
static void account_cmd(bool reg, const char *args)
{
    char user[64] = "";
    int off = -1;

    if (sscanf(args, "%63s %n", user, &off) < 1) {
        printf("usage: /%s NAME [PASSWORD]\n", reg ? "register" : "login");
        return;
    }
    size_t ulen = strlen(user);
    if (ulen > PROTO_MAX_NAME) {
        printf("a user name has at most %d bytes\n", PROTO_MAX_NAME);
        return;
    }
    /* the password is the rest of the line: it may hold spaces */
    const char *pw = off >= 0 ? args + off : "";
    if (!pw[0]) {
        g.pw_for = reg ? PW_REGISTER : PW_LOGIN;
        memcpy(g.pw_user, user, ulen + 1);
        printf("password: ");
        fflush(stdout);
        set_echo(false);
        return;
    }
    if (reg)
        do_register(user, pw);
    else
        do_login(user, pw);
}

static int hex_decode(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s);

    if (n == 0 || n % 2 || n / 2 > cap)
        return -EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -EINVAL;
        out[i] = (uint8_t)v;
    }
    return (int)(n / 2);
}

static void resume_cmd(const char *args)
{
    proto_req_t req = {.op = PROTO_OP_RESUME};
    char hex[2 * PROTO_MAX_TOKEN + 2] = "";

    if (sscanf(args, "%129s", hex) == 1) {
        int n = hex_decode(hex, g.token, sizeof(g.token));
        if (n < 0) {
            printf("usage: /resume [TOKEN as hex]\n");
            return;
        }
        g.token_len = (size_t)n;
    }
    if (!g.token_len) {
        printf("no token yet: /login first, or /resume HEX\n");
        return;
    }
    req.u.resume.token = (proto_bin_t){g.token, (uint32_t)g.token_len};
    request(&req, "resume");
}

static void send_text(const char *to, const char *text)
{
    proto_req_t req = {.op = PROTO_OP_SEND};
    char what[80];

    req.u.send.to = str_of(to);
    req.u.send.cid = ++g.cid;
    req.u.send.body =
        (proto_bin_t){(const uint8_t *)text, (uint32_t)strlen(text)};
    snprintf(what, sizeof(what), "msg to %s", to);
    request(&req, what);
}

static void msg_cmd(const char *args)
{
    char to[64];
    int off = -1;

    if (sscanf(args, "%63s %n", to, &off) < 1 || off < 0 || !args[off]) {
        printf("usage: /msg NAME TEXT\n");
        return;
    }
    size_t n = strlen(to);
    if (n > PROTO_MAX_NAME) {
        printf("a user name has at most %d bytes\n", PROTO_MAX_NAME);
        return;
    }
    memcpy(g.peer, to, n + 1);
    send_text(to, args + off);
}

static void history_cmd(const char *args)
{
    proto_req_t req = {.op = PROTO_OP_HISTORY};
    char peer[64];

    if (sscanf(args, "%63s", peer) != 1) {
        printf("usage: /history NAME\n");
        return;
    }
    req.u.history.peer = str_of(peer);
    req.u.history.limit = 20;
    req.has = 1u << PROTO_F_PEER | 1u << PROTO_F_LIMIT;
    request(&req, "history");
}

static void read_cmd(const char *args)
{
    proto_req_t req = {.op = PROTO_OP_READ};
    char peer[64];
    uint64_t upto;

    if (sscanf(args, "%63s %" SCNu64, peer, &upto) != 2) {
        printf("usage: /read NAME SID\n");
        return;
    }
    req.u.read.peer = str_of(peer);
    req.u.read.upto = upto;
    request(&req, "read");
}

static void simple_cmd(proto_op_t op, const char *what)
{
    proto_req_t req = {.op = op};

    request(&req, what);
}

static void help(void)
{
    printf("commands:\n"
           "  /register NAME [PASSWORD]  create an account\n"
           "  /login NAME [PASSWORD]     log in (a new device)\n"
           "  /resume [TOKEN]            log in again with a token\n"
           "  /token                     show this device's token\n"
           "  /msg NAME TEXT             send TEXT to NAME\n"
           "  TEXT                       send to the peer of the last /msg\n"
           "  /read NAME SID             mark NAME's messages read\n"
           "  /history NAME              the last 20 messages with NAME\n"
           "  /devices                   list this account's devices\n"
           "  /logout, /hello, /help, /quit\n"
           "A password left out is asked for on the next line.\n"
           "Bodies are sent as plain UTF-8: no end-to-end encryption.\n");
}

/* One input line; returns false after /quit. */
static bool command(char *line)
{
    char *args;

    line[strcspn(line, "\r\n")] = 0;
    if (g.pw_for != PW_NONE) {
        set_echo(true);
        printf("\n");
        if (g.pw_for == PW_REGISTER)
            do_register(g.pw_user, line);
        else
            do_login(g.pw_user, line);
        g.pw_for = PW_NONE;
        return true;
    }
    if (!line[0])
        return true;
    if (line[0] != '/') {
        if (!g.peer[0])
            printf("no peer yet: /msg NAME TEXT first (/help)\n");
        else
            send_text(g.peer, line);
        return true;
    }
    args = line + strcspn(line, " ");
    if (*args)
        *args++ = 0;
    if (!strcmp(line, "/quit"))
        return false;
    if (!strcmp(line, "/help"))
        help();
    else if (!strcmp(line, "/register"))
        account_cmd(true, args);
    else if (!strcmp(line, "/login"))
        account_cmd(false, args);
    else if (!strcmp(line, "/resume"))
        resume_cmd(args);
    else if (!strcmp(line, "/token")) {
        for (size_t i = 0; i < g.token_len; i++)
            printf("%02x", g.token[i]);
        printf(g.token_len ? "\n" : "no token yet\n");
    } else if (!strcmp(line, "/msg"))
        msg_cmd(args);
    else if (!strcmp(line, "/read"))
        read_cmd(args);
    else if (!strcmp(line, "/history"))
        history_cmd(args);
    else if (!strcmp(line, "/devices"))
        simple_cmd(PROTO_OP_DEVICE_LIST, "devices");
    else if (!strcmp(line, "/logout"))
        simple_cmd(PROTO_OP_LOGOUT, "logout");
    else if (!strcmp(line, "/hello"))
        simple_cmd(PROTO_OP_HELLO, "hello");
    else
        printf("unknown command %s (/help)\n", line);
    return true;
}

/* ---- input: a thread blocking on stdin, lines to the loop ---- */

static void push_line(const char *text, bool eof)
{
    size_t n = text ? strlen(text) : 0;
    struct line *l = malloc(sizeof(*l) + n + 1);

    if (!l)
        return;
    l->next = NULL;
    l->eof = eof;
    memcpy(l->text, text ? text : "", n + 1);
    pthread_mutex_lock(&g.lock);
    /* once the loop closed g.wake, sending on it is undefined */
    if (g.wake_closed) {
        pthread_mutex_unlock(&g.lock);
        free(l);
        return;
    }
    *g.tail = l;
    g.tail = &l->next;
    uv_async_send(&g.wake);
    pthread_mutex_unlock(&g.lock);
}

static void *reader(void *arg)
{
    char buf[LINE_MAX_BYTES];

    while (fgets(buf, sizeof(buf), stdin))
        push_line(buf, false);
    push_line(NULL, true);
    return NULL;
}

static void end_input(void)
{
    g.input_done = true;
    if (g.in_flight > 0)
        uv_timer_start(&g.drain, on_drain_timeout, (uint64_t)g.timeout_ms, 0);
    maybe_finish();
}

/* Runs queued lines one at a time: the next waits for the reply of the
 * one before and for the upgrade, so replies print in input order. */
static void run_lines(void)
{
    while (g.connected && !g.input_done && !g.closing && g.in_flight <= 0 &&
           g.ready) {
        struct line *l = g.ready;
        g.ready = l->next;
        if (!g.ready)
            g.ready_tail = &g.ready;
        if (l->eof || !command(l->text))
            end_input();
        free(l);
    }
}

static void on_wake(uv_async_t *a)
{
    pthread_mutex_lock(&g.lock);
    if (g.head) {
        *g.ready_tail = g.head;
        g.ready_tail = g.tail;
    }
    g.head = NULL;
    g.tail = &g.head;
    pthread_mutex_unlock(&g.lock);
    run_lines();
}

/* ---- main ---- */

static int parse_server(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    char *end;

    if (!colon || (size_t)(colon - s) >= cap || colon == s)
        return -EINVAL;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535)
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    *port = (int)p;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: parley-cli [--server HOST:PORT] "
                    "[--timeout-ms N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *server = DEFAULT_SERVER;
    char host[256];
    int port;
    pthread_t th;

    g.timeout_ms = 5000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc)
            server = argv[++i];
        else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
            g.timeout_ms = atoi(argv[++i]);
        else
            return usage();
    }
    if (parse_server(server, host, sizeof(host), &port) < 0 ||
        g.timeout_ms <= 0)
        return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);

    g.loop = uv_default_loop();
    g.tail = &g.head;
    g.ready_tail = &g.ready;
    g.cid = (uint64_t)time(NULL) << 20; /* fresh cids across runs */
    pthread_mutex_init(&g.lock, NULL);
    uv_async_init(g.loop, &g.wake, on_wake);
    uv_timer_init(g.loop, &g.drain);
    g.cfg = (proto_client_config_t){
        .on_connect = on_connect, .on_event = on_event, .on_close = on_close};
    int rc = proto_client_connect(g.loop, host, port, &g.cfg, NULL, &g.cl);
    if (rc < 0) {
        fprintf(stderr, "parley-cli: %s\n", strerror(-rc));
        return 1;
    }
    if (pthread_create(&th, NULL, reader, NULL) != 0) {
        fprintf(stderr, "parley-cli: cannot start the input thread\n");
        return 1;
    }
    pthread_detach(th);
    uv_run(g.loop, UV_RUN_DEFAULT);
    set_echo(true);
    /* the reader may still block in fgets: exit without joining it */
    return g.exit_code;
}
