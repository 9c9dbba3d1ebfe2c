/*
 * bench/groupbench.c - one sender into a group of MEMBERS members, all
 * online, against a running parleyd, on proto/client.h.
 *
 *   groupbench HOST PORT MEMBERS MODE [options]
 *
 *   MODE paced N      one message at a time, N of them: the next is sent
 *                     when the last member has the previous one
 *   MODE rate R S     R messages a second for S seconds, on a 1 ms timer
 *   MODE max S        as fast as possible for S seconds, with at most
 *                     WINDOW messages sent and not yet at every member
 *
 * Options: --procs P (member connections spread over P processes, one
 * libuv loop each; default 1), --ack-every N (a member acks the group's
 * stream every N entries; default 100), --body B (bytes, at least 16;
 * default 100), --server-pid PID and --data DIR (bytes written by the
 * server, its CPU time and growth of DIR/data.mdb per message).
 *
 * Accounts are registered fresh (run parleyd with --pwhash-ops min
 * --pwhash-mem min and a high --request-rate). The first user creates
 * the group and sends; the others only receive and ack.
 *
 * What is timed, on CLOCK_MONOTONIC (uv_hrtime, one clock for every
 * process on the machine): from just before the sender's `group.send`
 * is written to the moment the last of the MEMBERS - 1 receivers has
 * decoded its `msg` event (`last_*`), and, when members ack every entry,
 * to the sender's `receipts` event that counts every member delivered
 * (`rcpt_*`); also to the sender's reply (`reply_*`, after the commit)
 * and to the first member (`first_*`). Member processes share one
 * anonymous mapping: per message, a count of members that have it and the
 * time the last one did; the one that completes a message writes its
 * index to a pipe the sender reads.
 *
 * Output: one line of key=value results on stdout; progress on stderr.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "bench_account.h"

#include "client.h"
#include "codec.h"
#include "hist.h"

#define MAX_MEMBERS   4096
#define MAX_MSGS      (1u << 20)
#define MAX_PROCS     16
#define WINDOW        16 /* max mode: messages not yet at every member */
#define SETUP_MS      20000
#define CONNECT_BATCH 64 /* connects in flight per process */

typedef struct shared {
    _Atomic uint32_t ready;         /* member connections resumed and settled */
    _Atomic uint32_t failed;        /* member connections lost */
    _Atomic uint32_t go_away;       /* the sender is done: members exit */
    _Atomic uint32_t timing;        /* the timed run has begun */
    _Atomic uint64_t member_cpu_us; /* member processes, during the run */
    _Atomic uint32_t got[MAX_MSGS];
    _Atomic uint64_t last_ns[MAX_MSGS];
    uint64_t first_ns[MAX_MSGS]; /* written by the member that counted 1 */
    uint64_t sent_ns[MAX_MSGS];
} shared_t;

typedef struct member {
    proto_client_t *cl;
    char name[PROTO_MAX_NAME + 1];
    uint8_t token[32];
    uint64_t top, acked;
    bool ready, settled;
} member_t;

typedef enum mode { M_PACED, M_RATE, M_MAX } bmode_t;

static struct {
    const char *host;
    int port, nmembers, procs, ack_every, body;
    bmode_t mode;
    uint32_t paced_n;
    double rate, seconds;
    long server_pid;
    const char *data;
    member_t m[MAX_MEMBERS];
    shared_t *sh;
    int done_pipe[2];
    uint64_t gid;
    uv_loop_t *loop;
    proto_client_config_t ccfg;
    int proc;      /* this member process's index */
    int connected; /* members of this process resumed */
    int next_conn; /* next member index this process connects */
    /* the sender */
    uint32_t nsent, ncomplete, inflight;
    uint64_t sids[MAX_MSGS];
    bool running;
    double tokens;
    uint64_t t_start, t_stop, t_last;
    uint64_t errors;
    lg_hist_t last, rcpt, first, reply;
    uv_timer_t tick, stop;
    uv_pipe_t done;
} B;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static bool ev_is(const msgpack_object *ev, const char *name)
{
    const msgpack_object *e = proto_map_get(ev, "ev");
    size_t n = strlen(name);

    return e && e->type == MSGPACK_OBJECT_STR && e->via.str.size == n &&
           memcmp(e->via.str.ptr, name, n) == 0;
}

static uint64_t get_u64(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = proto_map_get(map, key);

    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

/* ---- setup: accounts and the group through the blocking client ---------- */

static int call(proto_sync_t *s, proto_req_t *q, const msgpack_object **r)
{
    return proto_sync_call(s, q, SETUP_MS, r);
}

static int setup_user(member_t *p, int i)
{
    snprintf(p->name, sizeof(p->name), "gb%d_%d", (int)getpid() % 100000, i);
    return bench_account(B.host, B.port, p->name, SETUP_MS, p->token);
}

/* The first user creates the group of all the others. */
static int create_group(void)
{
    proto_str_t *names = calloc((size_t)B.nmembers, sizeof(*names));
    const msgpack_object *r;
    proto_sync_t *s;
    proto_req_t q;
    int rc;

    if (!names)
        return -ENOMEM;
    for (int i = 1; i < B.nmembers; i++)
        names[i - 1] = proto_cstr(B.m[i].name);
    if ((rc = proto_sync_connect(B.host, B.port, SETUP_MS, &s)) < 0)
        goto out;
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_RESUME;
    q.u.resume.token = (proto_bin_t){B.m[0].token, 32};
    if ((rc = call(s, &q, &r)) == 0) {
        memset(&q, 0, sizeof(q));
        q.op = PROTO_OP_GROUP_CREATE;
        q.u.group_create.name = proto_cstr("bench");
        q.u.group_create.members =
            (proto_names_t){names, (size_t)B.nmembers - 1};
        if ((rc = call(s, &q, &r)) == 0 && !(B.gid = get_u64(r, "gid")))
            rc = -EPROTO;
    }
    proto_sync_close(s);
out:
    free(names);
    return rc;
}

/* ---- members ------------------------------------------------------------ */

static void member_ack(member_t *p)
{
    proto_req_t q;

    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_ACK;
    q.has = 1u << PROTO_F_GID; /* an optional field: sent when marked */
    q.u.ack.gid = B.gid;
    q.u.ack.upto = p->top;
    if (proto_client_request(p->cl, &q, NULL, NULL) > 0)
        p->acked = p->top;
}

static void on_msg(const msgpack_object *ev)
{
    const msgpack_object *body = proto_map_get(ev, "body");
    uint64_t idx, t = now_ns();

    if (!body || body->type != MSGPACK_OBJECT_BIN || body->via.bin.size < 16)
        return;
    memcpy(&idx, body->via.bin.ptr + 8, 8);
    if (idx >= MAX_MSGS)
        return;
    /* the member that takes the count to nmembers - 1 is the last: the
     * others' times are all earlier (each wrote before it counted) */
    uint64_t prev =
        atomic_load_explicit(&B.sh->last_ns[idx], memory_order_relaxed);
    while (t > prev &&
           !atomic_compare_exchange_weak(&B.sh->last_ns[idx], &prev, t))
        ;
    uint32_t n = atomic_fetch_add(&B.sh->got[idx], 1) + 1;
    if (n == 1)
        B.sh->first_ns[idx] = t;
    if (n == (uint32_t)B.nmembers - 1) {
        uint32_t i32 = (uint32_t)idx;
        if (write(B.done_pipe[1], &i32, sizeof(i32)) != sizeof(i32))
            abort();
    }
}

static void member_event(proto_client_t *cl, void *user,
                         const msgpack_object *ev, const uint8_t *raw,
                         size_t len)
{
    member_t *p = user;

    if (get_u64(ev, "gid") != B.gid)
        return;
    uint64_t seq = get_u64(ev, "seq");
    if (seq > p->top)
        p->top = seq;
    if (ev_is(ev, "msg"))
        on_msg(ev);
    else if (!p->settled && ev_is(ev, "group")) {
        /* the group's system events arrived: this member is caught up */
        p->settled = true;
        atomic_fetch_add(&B.sh->ready, 1);
    }
    if (p->top - p->acked >= (uint64_t)B.ack_every)
        member_ack(p);
}

static void member_close(proto_client_t *cl, void *user, int code)
{
    member_t *p = user;

    p->cl = NULL;
    if (!atomic_load(&B.sh->go_away)) {
        fprintf(stderr, "groupbench: %s closed (%d)\n", p->name, code);
        atomic_fetch_add(&B.sh->failed, 1);
    }
}

static void connect_next(void);

static void member_resumed(proto_client_t *cl, void *arg, int status,
                           const msgpack_object *reply, const uint8_t *raw,
                           size_t len)
{
    member_t *p = arg;

    if (status != 0) {
        fprintf(stderr, "groupbench: resume of %s failed: %d\n", p->name,
                status);
        exit(1);
    }
    p->ready = true;
    B.connected++;
    connect_next();
}

static void connect_member(member_t *p, const proto_client_config_t *cfg,
                           proto_reply_cb cb)
{
    proto_req_t q;

    if (proto_client_connect(B.loop, B.host, B.port, cfg, p, &p->cl) < 0) {
        fprintf(stderr, "groupbench: connect failed\n");
        exit(1);
    }
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_RESUME;
    q.u.resume.token = (proto_bin_t){p->token, 32};
    proto_client_request(p->cl, &q, cb, p);
}

/* Members 1..nmembers-1 with index % procs == proc belong here. */
static void connect_next(void)
{
    while (B.next_conn < B.nmembers) {
        int i = B.next_conn++;
        if (i % B.procs != B.proc)
            continue;
        connect_member(&B.m[i], &B.ccfg, member_resumed);
        return;
    }
}

static uint64_t cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Counts this process's CPU time from the start of the timed run. */
static void check_exit(uv_timer_t *t)
{
    static uint64_t cpu0;

    if (!cpu0 && atomic_load(&B.sh->timing))
        cpu0 = cpu_us();
    if (atomic_load(&B.sh->go_away)) {
        if (cpu0)
            atomic_fetch_add(&B.sh->member_cpu_us, cpu_us() - cpu0);
        uv_stop(B.loop);
    }
}

static int member_proc(int proc)
{
    uv_timer_t t;

    B.proc = proc;
    B.loop = uv_default_loop();
    B.ccfg = (proto_client_config_t){.on_event = member_event,
                                     .on_close = member_close};
    B.next_conn = 1;
    for (int i = 0; i < CONNECT_BATCH; i++)
        connect_next();
    uv_timer_init(B.loop, &t);
    uv_timer_start(&t, check_exit, 50, 50);
    uv_run(B.loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- the sender --------------------------------------------------------- */

static void send_msg(void);

static void on_sent(proto_client_t *cl, void *arg, int status,
                    const msgpack_object *reply, const uint8_t *raw, size_t len)
{
    uint32_t idx = (uint32_t)(uintptr_t)arg;

    if (status != 0) {
        B.errors++;
        return;
    }
    B.sids[idx] = get_u64(reply, "sid");
    lg_hist_record(&B.reply, now_ns() - B.sh->sent_ns[idx]);
}

static void send_msg(void)
{
    uint8_t *body = calloc(1, (size_t)B.body);
    uint32_t idx = B.nsent;
    proto_req_t q;

    if (!body || idx >= MAX_MSGS) {
        free(body);
        return;
    }
    B.sh->sent_ns[idx] = now_ns();
    memcpy(body, &B.sh->sent_ns[idx], 8);
    uint64_t i64 = idx;
    memcpy(body + 8, &i64, 8);
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_GROUP_SEND;
    q.u.group_send.gid = B.gid;
    q.u.group_send.cid = idx + 1;
    q.u.group_send.body = (proto_bin_t){body, (size_t)B.body};
    if (proto_client_request(B.m[0].cl, &q, on_sent, (void *)(uintptr_t)idx) >
        0) {
        B.nsent++;
        B.inflight++;
    } else {
        B.errors++;
    }
    free(body);
}

/* The sids are increasing in send order: find the index of one. */
static int64_t idx_of_sid(uint64_t sid)
{
    uint32_t lo = 0, hi = B.nsent;

    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (B.sids[mid] && B.sids[mid] == sid)
            return mid;
        if (B.sids[mid] && B.sids[mid] < sid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void sender_event(proto_client_t *cl, void *user,
                         const msgpack_object *ev, const uint8_t *raw,
                         size_t len)
{
    if (!ev_is(ev, "receipts") || get_u64(ev, "gid") != B.gid)
        return;
    uint64_t nd = get_u64(ev, "ndelivered");
    if (nd == 0 || nd != get_u64(ev, "members"))
        return;
    int64_t idx = idx_of_sid(get_u64(ev, "sid"));
    if (idx >= 0 && B.running)
        lg_hist_record(&B.rcpt, now_ns() - B.sh->sent_ns[idx]);
}

static void sender_close(proto_client_t *cl, void *user, int code)
{
    B.m[0].cl = NULL;
    fprintf(stderr, "groupbench: the sender's connection closed (%d)\n", code);
    exit(1);
}

static void sender_resumed(proto_client_t *cl, void *arg, int status,
                           const msgpack_object *reply, const uint8_t *raw,
                           size_t len)
{
    if (status != 0) {
        fprintf(stderr, "groupbench: sender resume failed: %d\n", status);
        exit(1);
    }
    B.m[0].ready = true;
    uv_stop(B.loop);
}

static void top_up(void)
{
    if (!B.running)
        return;
    switch (B.mode) {
    case M_PACED:
        if (B.inflight == 0 && B.nsent < B.paced_n)
            send_msg();
        break;
    case M_RATE:
        while (B.tokens >= 1) {
            B.tokens -= 1;
            send_msg();
        }
        break;
    case M_MAX:
        while (B.inflight < WINDOW)
            send_msg();
        break;
    }
}

static void on_done_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        fprintf(stderr, "groupbench: completion pipe: %s\n",
                uv_strerror((int)n));
        exit(1);
    }
    for (ssize_t off = 0; off + 4 <= n; off += 4) {
        uint32_t idx;
        memcpy(&idx, buf->base + off, 4);
        uint64_t t = atomic_load(&B.sh->last_ns[idx]);
        lg_hist_record(&B.last, t - B.sh->sent_ns[idx]);
        lg_hist_record(&B.first, B.sh->first_ns[idx] - B.sh->sent_ns[idx]);
        B.inflight--;
        B.ncomplete++;
        B.t_last = t;
    }
    free(buf->base);
    if (B.mode == M_PACED && B.ncomplete >= B.paced_n)
        uv_stop(B.loop);
    if (!B.running && B.ncomplete == B.nsent)
        uv_stop(B.loop);
    top_up();
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = malloc(4096);
    buf->len = buf->base ? 4096 : 0;
}

static void on_tick(uv_timer_t *t)
{
    static uint64_t last;
    uint64_t now = now_ns();

    B.tokens += B.rate * (double)(now - (last ? last : now)) / 1e9;
    last = now;
    if (B.tokens > WINDOW)
        B.tokens = WINDOW;
    top_up();
}

static void on_stop(uv_timer_t *t)
{
    B.t_stop = now_ns();
    B.running = false;
    uv_timer_stop(&B.tick);
    if (B.ncomplete == B.nsent)
        uv_stop(B.loop);
}

static uint64_t io_written(void)
{
    char path[64], line[128];
    uint64_t v = 0;

    if (B.server_pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/io", B.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "write_bytes: %lu", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* User and system time of the server so far, in clock ticks. */
static uint64_t server_ticks(void)
{
    char path[64], buf[1024];
    unsigned long ut = 0, st = 0;

    if (B.server_pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", B.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* fields 14 and 15, counted after the command's closing parenthesis */
    char *p = strrchr(buf, ')');
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return 0;
    return ut + st;
}

static uint64_t mdb_size(void)
{
    char path[4096];
    struct stat st;

    if (!B.data)
        return 0;
    snprintf(path, sizeof(path), "%s/data.mdb", B.data);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static int sender(void)
{
    static const char *names[] = {"paced", "rate", "max"};

    B.loop = uv_default_loop();
    B.ccfg = (proto_client_config_t){.on_event = sender_event,
                                     .on_close = sender_close};
    connect_member(&B.m[0], &B.ccfg, sender_resumed);
    uv_run(B.loop, UV_RUN_DEFAULT);
    uv_pipe_init(B.loop, &B.done, 0);
    uv_pipe_open(&B.done, B.done_pipe[0]);
    uv_read_start((uv_stream_t *)&B.done, alloc_cb, on_done_read);
    uv_timer_init(B.loop, &B.tick);
    uv_timer_init(B.loop, &B.stop);

    uint64_t io0 = io_written(), mdb0 = mdb_size(), cpu0 = server_ticks();
    atomic_store(&B.sh->timing, 1);
    usleep(100000); /* members read their clocks within 50 ms */
    B.running = true;
    B.t_start = now_ns();
    if (B.mode != M_PACED)
        uv_timer_start(&B.stop, on_stop, (uint64_t)(B.seconds * 1000), 0);
    if (B.mode == M_RATE)
        uv_timer_start(&B.tick, on_tick, 1, 1);
    top_up();
    uv_run(B.loop, UV_RUN_DEFAULT);
    if (B.mode == M_PACED)
        B.t_stop = now_ns();
    uint64_t io1 = io_written(), mdb1 = mdb_size(), cpu1 = server_ticks();
    double secs = (double)(B.t_stop - B.t_start) / 1e9;
    double to_all =
        (double)((B.t_last > B.t_start ? B.t_last : B.t_stop) - B.t_start) /
        1e9;

    printf("mode=%s members=%d procs=%d ack_every=%d body=%d sent=%u "
           "complete=%u errors=%llu seconds=%.2f sent_per_s=%.1f "
           "to_all_per_s=%.1f last_p50_ms=%.2f last_p99_ms=%.2f "
           "last_max_ms=%.2f",
           names[B.mode], B.nmembers, B.procs, B.ack_every, B.body, B.nsent,
           B.ncomplete, (unsigned long long)B.errors, secs,
           (double)B.nsent / secs, (double)B.ncomplete / to_all,
           ms(lg_hist_quantile(&B.last, 0.5)),
           ms(lg_hist_quantile(&B.last, 0.99)),
           ms(lg_hist_quantile(&B.last, 1.0)));
    printf(" reply_p50_ms=%.2f first_p50_ms=%.2f first_p99_ms=%.2f",
           ms(lg_hist_quantile(&B.reply, 0.5)),
           ms(lg_hist_quantile(&B.first, 0.5)),
           ms(lg_hist_quantile(&B.first, 0.99)));
    if (B.rcpt.total)
        printf(" rcpt_n=%llu rcpt_p50_ms=%.2f rcpt_p99_ms=%.2f",
               (unsigned long long)B.rcpt.total,
               ms(lg_hist_quantile(&B.rcpt, 0.5)),
               ms(lg_hist_quantile(&B.rcpt, 0.99)));
    if (B.server_pid > 0 && B.nsent)
        printf(" io_written_per_msg=%.0f", (double)(io1 - io0) / B.nsent);
    if (B.server_pid > 0 && B.nsent)
        printf(" server_cpu_ms_per_msg=%.2f server_cpu_pct=%.0f",
               (double)(cpu1 - cpu0) * 1000.0 / (double)sysconf(_SC_CLK_TCK) /
                   B.nsent,
               (double)(cpu1 - cpu0) * 100.0 / (double)sysconf(_SC_CLK_TCK) /
                   ((double)(now_ns() - B.t_start) / 1e9));
    if (B.data && B.nsent)
        printf(" mdb_growth_per_msg=%.0f", (double)(mdb1 - mdb0) / B.nsent);
    printf("\n");
    return B.ncomplete == B.nsent && !B.errors ? 0 : 1;
}

/* ---- main --------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr,
            "usage: groupbench HOST PORT MEMBERS paced N [options]\n"
            "       groupbench HOST PORT MEMBERS rate R SECONDS [options]\n"
            "       groupbench HOST PORT MEMBERS max SECONDS [options]\n"
            "options: --procs P --ack-every N --body B --server-pid PID "
            "--data DIR\n");
    return 2;
}

static int parse(int argc, char **argv)
{
    int i;

    if (argc < 6)
        return -1;
    B.host = argv[1];
    B.port = atoi(argv[2]);
    B.nmembers = atoi(argv[3]);
    if (!strcmp(argv[4], "paced")) {
        B.mode = M_PACED;
        B.paced_n = (uint32_t)atoi(argv[5]);
        i = 6;
    } else if (!strcmp(argv[4], "rate") && argc >= 7) {
        B.mode = M_RATE;
        B.rate = atof(argv[5]);
        B.seconds = atof(argv[6]);
        i = 7;
    } else if (!strcmp(argv[4], "max")) {
        B.mode = M_MAX;
        B.seconds = atof(argv[5]);
        i = 6;
    } else {
        return -1;
    }
    B.procs = 1;
    B.ack_every = 100;
    B.body = 100;
    for (; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--procs"))
            B.procs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ack-every"))
            B.ack_every = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--body"))
            B.body = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--server-pid"))
            B.server_pid = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--data"))
            B.data = argv[i + 1];
        else
            return -1;
    }
    if (i != argc || B.nmembers < 2 || B.nmembers > MAX_MEMBERS ||
        B.procs < 1 || B.procs > MAX_PROCS || B.ack_every < 1 || B.body < 16 ||
        B.body > PROTO_MAX_BODY)
        return -1;
    return 0;
}

/* Every member process needs a descriptor per connection. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    pid_t kids[MAX_PROCS];

    if (parse(argc, argv) < 0)
        return usage();
    raise_nofile();
    B.sh = mmap(NULL, sizeof(*B.sh), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (B.sh == MAP_FAILED || pipe(B.done_pipe) < 0 ||
        lg_hist_init(&B.last, 7) < 0 || lg_hist_init(&B.rcpt, 7) < 0 ||
        lg_hist_init(&B.first, 7) < 0 || lg_hist_init(&B.reply, 7) < 0)
        return 1;
    for (int i = 0; i < B.nmembers; i++) {
        int rc = setup_user(&B.m[i], i);
        if (rc != 0) {
            fprintf(stderr, "groupbench: account setup failed: %d\n", rc);
            return 1;
        }
    }
    int rc = create_group();
    if (rc != 0) {
        fprintf(stderr, "groupbench: group.create failed: %d\n", rc);
        return 1;
    }
    fprintf(stderr, "groupbench: %d accounts, group %llu\n", B.nmembers,
            (unsigned long long)B.gid);
    pid_t parent = getpid();
    for (int p = 0; p < B.procs; p++) {
        if ((kids[p] = fork()) < 0)
            return 1;
        if (kids[p] == 0) {
            /* the parent may exit(1) from any callback without waiting
             * for its members: they go with it */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            close(B.done_pipe[0]);
            _exit(member_proc(p));
        }
    }
    close(B.done_pipe[1]);
    /* wait until every member has its group events */
    uint64_t t0 = now_ns();
    while (atomic_load(&B.sh->ready) < (uint32_t)B.nmembers - 1) {
        if (atomic_load(&B.sh->failed) || now_ns() - t0 > 120e9) {
            fprintf(stderr, "groupbench: members not ready (%u)\n",
                    atomic_load(&B.sh->ready));
            atomic_store(&B.sh->go_away, 1);
            return 1;
        }
        usleep(10000);
    }
    usleep(500000); /* let the setup's pushes and acks settle */
    fprintf(stderr, "groupbench: %d members online\n", B.nmembers - 1);
    rc = sender();
    atomic_store(&B.sh->go_away, 1);
    for (int p = 0; p < B.procs; p++)
        waitpid(kids[p], NULL, 0);
    /* the member processes' CPU, which shares the machine with the server */
    printf("members_cpu_ms_per_msg=%.2f\n",
           B.nsent
               ? (double)atomic_load(&B.sh->member_cpu_us) / 1000.0 / B.nsent
               : 0.0);
    return rc;
}
