/*
 * bench/loadgen/loadgen.c - the load generator's parent process.
 *
 *   loadgen WORKLOAD --run-dir DIR (--parleyd PATH | --server HOST:PORT
 *           [--server-pid PID]) [options]
 *
 * It keeps pre-created accounts in DIR/tokens (one "name hextoken" a
 * line), creating the missing ones with register + login once, so that a
 * run logs in by token resume only and argon2 is not what is measured.
 * With --parleyd it runs its own server on DIR/data (log in
 * DIR/parleyd.log), restarted after account creation so that its memory
 * baseline is clean. Then it forks the workers, drives the workload's
 * phases, samples parleyd and itself through /proc, and prints a table
 * and one JSON line. See bench/README.md.
 *
 * Exit status: 0 when every unit of work succeeded, 1 when some failed or
 * timed out, 2 for bad arguments or setup, 3 when the server lacks the
 * operations the workload needs.
 */
#include "lg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "client.h"
#include "codec.h"

#define PREP_PARALLEL  64
#define PREP_PASSWORD  "loadgen-password"
#define SAMPLE_MS      250
#define PROGRESS_EVERY 4  /* samples between two progress lines */
#define HARD_EXTRA_S   20 /* past --timeout, the parent gives up */

typedef struct phase_result {
    lg_phase_rec_t sum;
    int reported;
    lg_hist_t hist;
    uint64_t t_first, t_last;
    double seconds;
    /* CPU over the phase, in % of one core */
    double server_cpu, gen_cpu, gen_cpu_max, other_cpu;
    uint64_t server_rss_peak_kb;
} phase_result_t;

static struct {
    lg_opts_t o;
    const lg_workload_t *wl;
    lg_account_t *acc;
    int nacc;
    pid_t server; /* spawned by us */
    pid_t wpid[LG_MAX_WORKERS];
    int wfd[LG_MAX_WORKERS];
    lg_phase_rec_t progress[LG_MAX_WORKERS];
    phase_result_t ph[LG_MAX_PHASES];
    /* CPU sampling: the last sample of each source */
    uint64_t srv_ticks, gen_ticks[LG_MAX_WORKERS], sys_busy, sys_total;
    uint64_t samples;
    uint64_t rss_base_kb, rss_held_kb, hwm_kb;
    uint64_t anon_base_kb, anon_held_kb, file_base_kb, file_held_kb;
    int server_fds;
    char server_addr[80];
    int next_name;  /* lg<n>: above every name in the token file */
    long log_start; /* size of parleyd.log when this server started */
} G;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

/* ---- the server ---- */

static int spawn_server(void)
{
    char data[512], log[512], buf[256];
    const char *argv[32];
    int out[2], n = 0, port = -1;
    size_t len = 0;

    snprintf(data, sizeof(data), "%s/data", G.o.run_dir);
    snprintf(log, sizeof(log), "%s/parleyd.log", G.o.run_dir);
    argv[n++] = G.o.parleyd;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data";
    argv[n++] = data;
    /* only account creation hashes passwords; resume does not */
    argv[n++] = "--pwhash-ops";
    argv[n++] = "min";
    argv[n++] = "--pwhash-mem";
    argv[n++] = "min";
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    for (int i = 0; i < G.o.server_args; i++)
        argv[n++] = G.o.server_argv[i];
    argv[n] = NULL;
    struct stat st;
    G.log_start = stat(log, &st) == 0 ? (long)st.st_size : 0;
    if (pipe(out) < 0)
        return -errno;
    G.server = fork();
    if (G.server < 0)
        return -errno;
    if (G.server == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(out[1], STDOUT_FILENO);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        close(out[0]);
        execv(G.o.parleyd, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    for (int waited = 0; waited < 100 && port < 0; waited++) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        buf[len] = 0;
        char *l = strstr(buf, "listening ");
        char *c = l ? strrchr(l, ':') : NULL;
        if (c && strchr(c, '\n'))
            port = atoi(c + 1);
    }
    close(out[0]);
    if (port <= 0) {
        kill(G.server, SIGKILL);
        waitpid(G.server, NULL, 0);
        G.server = 0;
        return -EIO;
    }
    snprintf(G.o.host, sizeof(G.o.host), "127.0.0.1");
    G.o.port = port;
    G.o.server_pid = G.server;
    return 0;
}

static void stop_server(void)
{
    if (G.server <= 0)
        return;
    kill(G.server, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(G.server, NULL, WNOHANG) == G.server) {
            G.server = 0;
            return;
        }
        usleep(100000);
    }
    kill(G.server, SIGKILL);
    waitpid(G.server, NULL, 0);
    G.server = 0;
}

/* ---- accounts: DIR/tokens ---- */

static void load_tokens(void)
{
    char path[512], line[256], hex[2 * LG_TOKEN_LEN + 2];
    FILE *f;

    snprintf(path, sizeof(path), "%s/tokens", G.o.run_dir);
    G.acc = calloc((size_t)G.o.conns, sizeof(*G.acc));
    if (!G.acc)
        die("%s", "out of memory");
    if (!(f = fopen(path, "r")))
        return;
    while (G.nacc < G.o.conns && fgets(line, sizeof(line), f)) {
        lg_account_t *a = &G.acc[G.nacc];
        if (sscanf(line, "%32s %65s", a->name, hex) != 2 ||
            strlen(hex) != 2 * LG_TOKEN_LEN)
            continue;
        for (int i = 0; i < LG_TOKEN_LEN; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            a->token[i] = (uint8_t)v;
        }
        int k;
        if (sscanf(a->name, "lg%d", &k) == 1 && k >= G.next_name)
            G.next_name = k + 1;
        G.nacc++;
    }
    fclose(f);
}

typedef struct prep {
    uv_loop_t loop;
    proto_client_config_t cfg;
    FILE *out;
    int next, running, made, failed;
} prep_t;

static void prep_next(prep_t *p);

static void prep_login_reply(proto_client_t *cl, void *arg, int status,
                             const msgpack_object *reply, const uint8_t *raw,
                             size_t len)
{
    prep_t *p = proto_client_user(cl);
    lg_account_t *a = arg;
    const msgpack_object *t = reply ? proto_map_get(reply, "token") : NULL;

    if (status == 0 && t && t->type == MSGPACK_OBJECT_BIN &&
        t->via.bin.size == LG_TOKEN_LEN) {
        memcpy(a->token, t->via.bin.ptr, LG_TOKEN_LEN);
        fprintf(p->out, "%s ", a->name);
        for (int i = 0; i < LG_TOKEN_LEN; i++)
            fprintf(p->out, "%02x", a->token[i]);
        fprintf(p->out, "\n");
        p->made++;
    } else {
        p->failed++;
        if (p->failed <= 3)
            fprintf(stderr, "loadgen: login of %s failed: %d %s\n", a->name,
                    status, status > 0 ? proto_err_name(status) : "");
    }
    proto_client_close(cl);
}

/* The login waits for the register reply: the server may answer two
 * account requests of one connection in either order. */
static void prep_registered(proto_client_t *cl, void *arg, int status,
                            const msgpack_object *reply, const uint8_t *raw,
                            size_t len)
{
    prep_t *p = proto_client_user(cl);
    lg_account_t *a = arg;
    proto_req_t login = {.op = PROTO_OP_LOGIN};

    /* "exists": registered by an earlier run that stopped before its
     * login; the password is ours, so the login decides */
    if (status != 0 && status != PROTO_E_EXISTS) {
        p->failed++;
        if (p->failed <= 3)
            fprintf(stderr, "loadgen: register of %s failed: %d %s\n", a->name,
                    status, status > 0 ? proto_err_name(status) : "");
        proto_client_close(cl);
        return;
    }
    login.u.login.user = (proto_str_t){a->name, (uint32_t)strlen(a->name)};
    login.u.login.password =
        (proto_str_t){PREP_PASSWORD, sizeof(PREP_PASSWORD) - 1};
    login.u.login.device = (proto_str_t){"loadgen", 7};
    if (proto_client_request(cl, &login, prep_login_reply, a) < 0) {
        p->failed++;
        proto_client_close(cl);
    }
}

static void prep_closed(proto_client_t *cl, void *user, int code)
{
    prep_t *p = user;

    p->running--;
    prep_next(p);
}

static void prep_next(prep_t *p)
{
    while (p->running < PREP_PARALLEL && p->next < G.o.conns &&
           p->failed < 100) {
        lg_account_t *a = &G.acc[p->next++];
        proto_client_t *cl;
        proto_req_t reg = {.op = PROTO_OP_REGISTER};

        if (proto_client_connect(&p->loop, G.o.host, G.o.port, &p->cfg, p,
                                 &cl) < 0) {
            p->failed++;
            continue;
        }
        p->running++;
        reg.u.reg.user = (proto_str_t){a->name, (uint32_t)strlen(a->name)};
        reg.u.reg.password =
            (proto_str_t){PREP_PASSWORD, sizeof(PREP_PASSWORD) - 1};
        proto_client_request(cl, &reg, prep_registered, a);
    }
}

/* Creates accounts lg<i> for i >= G.nacc up to --conns. Returns the
 * number created, or -EIO. */
static int prepare_accounts(void)
{
    char path[512];
    prep_t p;

    if (G.nacc >= G.o.conns)
        return 0;
    memset(&p, 0, sizeof(p));
    snprintf(path, sizeof(path), "%s/tokens", G.o.run_dir);
    if (!(p.out = fopen(path, "a")))
        die("cannot write %s", path);
    for (int i = G.nacc; i < G.o.conns; i++)
        snprintf(G.acc[i].name, sizeof(G.acc[i].name), "lg%06d", G.next_name++);
    fprintf(stderr, "loadgen: creating %d accounts (once per run dir)\n",
            G.o.conns - G.nacc);
    uint64_t t0 = lg_now_ns();
    uv_loop_init(&p.loop);
    p.cfg = (proto_client_config_t){.on_close = prep_closed};
    p.next = G.nacc;
    prep_next(&p);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    uv_loop_close(&p.loop);
    fclose(p.out);
    fprintf(stderr, "loadgen: created %d accounts in %.1f s, %d failed\n",
            p.made, (double)(lg_now_ns() - t0) / 1e9, p.failed);
    if (p.failed)
        return -EIO;
    G.nacc = G.o.conns;
    return p.made;
}

/* Whether the server implements `send`: resume account 0 and send one
 * byte to account 1. Returns 0, or the error code the server gave. */
static int probe_send(void)
{
    proto_sync_t *s;
    proto_req_t req = {.op = PROTO_OP_RESUME};
    const msgpack_object *r;
    int rc = proto_sync_connect(G.o.host, G.o.port, 5000, &s);

    if (rc < 0)
        return rc;
    req.u.resume.token = (proto_bin_t){G.acc[0].token, LG_TOKEN_LEN};
    if ((rc = proto_sync_call(s, &req, 5000, &r)) == 0) {
        proto_req_t send = {.op = PROTO_OP_SEND};
        send.u.send.to =
            (proto_str_t){G.acc[1].name, (uint32_t)strlen(G.acc[1].name)};
        send.u.send.cid = (uint64_t)lg_now_ns();
        send.u.send.body = (proto_bin_t){(const uint8_t *)"p", 1};
        rc = proto_sync_call(s, &send, 5000, &r);
        if (rc > 0) {
            const msgpack_object *e = proto_map_get(r, "err");
            const msgpack_object *m = e ? proto_map_get(e, "msg") : NULL;
            if (m && m->type == MSGPACK_OBJECT_STR)
                fprintf(stderr, "loadgen: server says: %.*s\n",
                        (int)m->via.str.size, m->via.str.ptr);
        }
    }
    proto_sync_close(s);
    return rc;
}

/* ---- workers ---- */

static void start_workers(void)
{
    int per = (G.o.conns / G.o.workers) & ~1, first = 0;
    int s = G.o.group_size, groups = s ? G.o.conns / s : 0;

    for (int i = 0; i < G.o.workers; i++) {
        int sv[2];
        int n = i == G.o.workers - 1 ? G.o.conns - first : per;
        /* group: whole groups in each worker, the rest in the last */
        if (s && i < G.o.workers - 1)
            n = (groups / G.o.workers + (i < groups % G.o.workers)) * s;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            die("%s", "socketpair failed");
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die("%s", "fork failed");
        if (pid == 0) {
            close(sv[0]);
            for (int k = 0; k < i; k++)
                close(G.wfd[k]);
            lg_worker_main(&G.o, G.wl, G.acc, first, n, sv[1], i);
        }
        close(sv[1]);
        G.wpid[i] = pid;
        G.wfd[i] = sv[0];
        first += n;
    }
}

static void send_all(char cmd)
{
    for (int i = 0; i < G.o.workers; i++)
        if (G.wfd[i] >= 0 && write(G.wfd[i], &cmd, 1) != 1) {
            close(G.wfd[i]);
            G.wfd[i] = -1;
        }
}

static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;

    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -EPIPE;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One record from worker i. */
static void read_record(int i)
{
    lg_rec_head_t h;
    lg_phase_rec_t r;

    if (read_full(G.wfd[i], &h, sizeof(h)) < 0 || h.len < sizeof(r) ||
        read_full(G.wfd[i], &r, sizeof(r)) < 0) {
        close(G.wfd[i]);
        G.wfd[i] = -1;
        return;
    }
    size_t rest = h.len - sizeof(r);
    uint8_t *buf = rest ? malloc(rest) : NULL;
    if (rest && (!buf || read_full(G.wfd[i], buf, rest) < 0)) {
        free(buf);
        close(G.wfd[i]);
        G.wfd[i] = -1;
        return;
    }
    G.progress[i] = r;
    if (h.type == LG_REC_PHASE && r.phase >= 1 && r.phase <= LG_MAX_PHASES) {
        phase_result_t *p = &G.ph[r.phase - 1];
        lg_hist_unpack_merge(&p->hist, buf, rest);
        p->sum.ok += r.ok;
        p->sum.failed += r.failed;
        if (r.t_first && (!p->t_first || r.t_first < p->t_first))
            p->t_first = r.t_first;
        if (r.t_last > p->t_last)
            p->t_last = r.t_last;
        p->reported++;
    }
    free(buf);
}

/* ---- sampling ---- */

typedef struct cpu_mark {
    uint64_t t, srv, gen, gen_each[LG_MAX_WORKERS], busy, total;
} cpu_mark_t;

static void cpu_mark(cpu_mark_t *m)
{
    lg_proc_sample_t s;

    memset(m, 0, sizeof(*m));
    m->t = lg_now_ns();
    if (G.o.server_pid && lg_proc_sample(G.o.server_pid, &s) == 0)
        m->srv = s.cpu_ticks;
    for (int i = 0; i < G.o.workers; i++)
        if (lg_proc_sample(G.wpid[i], &s) == 0) {
            m->gen_each[i] = s.cpu_ticks;
            m->gen += s.cpu_ticks;
        }
    if (lg_proc_sample(getpid(), &s) == 0)
        m->gen += s.cpu_ticks;
    lg_sys_cpu(&m->busy, &m->total);
}

/* CPU between two marks, in % of one core. */
static void cpu_between(const cpu_mark_t *a, const cpu_mark_t *b,
                        phase_result_t *p)
{
    double secs = (double)(b->t - a->t) / 1e9, hz = (double)lg_ticks_per_s();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (secs <= 0)
        return;
    p->server_cpu = (double)(b->srv - a->srv) / hz / secs * 100;
    p->gen_cpu = (double)(b->gen - a->gen) / hz / secs * 100;
    p->gen_cpu_max = 0;
    for (int i = 0; i < G.o.workers; i++) {
        double w = (double)(b->gen_each[i] - a->gen_each[i]) / hz / secs * 100;
        if (w > p->gen_cpu_max)
            p->gen_cpu_max = w;
    }
    /* the machine's busy time, in the same unit, minus ours */
    double tot = (double)(b->total - a->total);
    double busy =
        tot > 0 ? (double)(b->busy - a->busy) / tot * 100 * (double)cores : 0;
    p->other_cpu = busy - p->server_cpu - p->gen_cpu;
    if (p->other_cpu < 0)
        p->other_cpu = 0;
}

static uint64_t server_rss(uint64_t *hwm)
{
    lg_proc_sample_t s;

    if (!G.o.server_pid || lg_proc_sample(G.o.server_pid, &s) < 0)
        return 0;
    if (hwm)
        *hwm = s.hwm_kb;
    return s.rss_kb;
}

/* The server's anonymous resident memory (heap, stacks): what grows per
 * connection. RssFile is left out: LMDB's map is file-backed, and its
 * pages come into the resident set as records are read, whoever holds
 * a connection. */
static uint64_t server_anon(uint64_t *file_kb)
{
    lg_proc_sample_t s;

    if (!G.o.server_pid || lg_proc_sample(G.o.server_pid, &s) < 0)
        return 0;
    *file_kb = s.file_kb;
    return s.anon_kb;
}

static void progress_line(int phase, uint64_t t0)
{
    lg_counts_t c = {0};
    uint64_t ok = 0, failed = 0;

    for (int i = 0; i < G.o.workers; i++) {
        const lg_phase_rec_t *r = &G.progress[i];
        c.open += r->counts.open;
        c.sent += r->counts.sent;
        c.received += r->counts.received;
        c.behind += r->counts.behind;
        if (r->phase == phase) {
            ok += r->ok;
            failed += r->failed;
        }
    }
    fprintf(stderr,
            "[%s] phase %d/%d %.1fs ok %" PRIu64 " failed %" PRIu64
            " open %" PRIu64 " sent %" PRIu64 " recv %" PRIu64
            " server rss %" PRIu64 " MiB\n",
            G.wl->name, phase, G.wl->phases, (double)(lg_now_ns() - t0) / 1e9,
            ok, failed, c.open, c.sent, c.received, server_rss(NULL) / 1024);
}

/* Waits for records until every worker has reported `phase` (or, with
 * phase 0, for `hold_s`). Returns 0, or -ETIMEDOUT. */
static int wait_phase(int phase, double hold_s)
{
    uint64_t t0 = lg_now_ns(), peak = 0;
    uint64_t hard =
        (uint64_t)((hold_s > 0 ? hold_s : G.o.timeout_s + HARD_EXTRA_S) * 1e9);
    struct pollfd pf[LG_MAX_WORKERS];
    int ticks = 0;

    for (;;) {
        int live = 0;
        for (int i = 0; i < G.o.workers; i++) {
            pf[i] = (struct pollfd){.fd = G.wfd[i], .events = POLLIN};
            live += G.wfd[i] >= 0;
        }
        if (phase && (G.ph[phase - 1].reported >= G.o.workers || !live))
            break;
        if (lg_now_ns() - t0 >= hard)
            return phase ? -ETIMEDOUT : 0;
        if (poll(pf, (nfds_t)G.o.workers, SAMPLE_MS) > 0)
            for (int i = 0; i < G.o.workers; i++)
                if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
                    read_record(i);
        uint64_t rss = server_rss(NULL);
        if (rss > peak)
            peak = rss;
        if (++ticks % PROGRESS_EVERY == 0)
            progress_line(phase ? phase : G.wl->phases, t0);
    }
    if (phase && peak > G.ph[phase - 1].server_rss_peak_kb)
        G.ph[phase - 1].server_rss_peak_kb = peak;
    return 0;
}

/* ---- the report ---- */

static int count_log_lines(const char *needle)
{
    char path[512], line[1024];
    int n = 0;

    snprintf(path, sizeof(path), "%s/parleyd.log", G.o.run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    fseek(f, G.log_start, SEEK_SET); /* this server's lines only */
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static lg_counts_t total_counts(void)
{
    lg_counts_t c = {0};

    for (int i = 0; i < G.o.workers; i++) {
        const lg_counts_t *r = &G.progress[i].counts;
        c.open += r->open;
        c.resumed += r->resumed;
        c.conn_fail += r->conn_fail;
        c.resume_fail += r->resume_fail;
        c.dropped += r->dropped;
        c.sent += r->sent;
        c.send_err += r->send_err;
        c.received += r->received;
        c.receipts += r->receipts;
        c.behind += r->behind;
        c.stale += r->stale;
        if (r->last_error)
            c.last_error = r->last_error;
    }
    return c;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void report(int phases_done, bool timed_out, int log_emfile)
{
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    char machine[1024];
    lg_counts_t c = total_counts();
    const lg_opts_t *o = &G.o;

    lg_machine_json(machine, sizeof(machine));
    printf("\nloadgen %s: %d connections, %d workers, rate %s, server %s\n",
           G.wl->name, o->conns, o->workers, o->rate > 0 ? "fixed" : "max",
           G.server_addr);
    printf("%-5s %-18s %9s %7s %9s %10s %9s %9s %9s %9s %9s %6s %6s %6s\n",
           "phase", "measures", "ok", "failed", "seconds", "rate/s", "p50 ms",
           "p90 ms", "p99 ms", "p99.9 ms", "max ms", "srv%", "gen%", "other%");
    for (int p = 0; p < phases_done; p++) {
        phase_result_t *r = &G.ph[p];
        printf("%-5d %-18s %9" PRIu64 " %7" PRIu64 " %9.3f %10.0f", p + 1,
               G.wl->measures[p], r->sum.ok, r->sum.failed, r->seconds,
               r->seconds > 0 ? (double)r->sum.ok / r->seconds : 0);
        for (size_t k = 0; k < 4; k++)
            printf(" %9.3f", us(lg_hist_quantile(&r->hist, qs[k])) / 1000);
        printf(" %9.3f %6.0f %6.0f %6.0f\n", us(r->hist.max) / 1000,
               r->server_cpu, r->gen_cpu, r->other_cpu);
    }
    if (G.rss_held_kb) {
        double n = c.open ? (double)c.open : 1;
        printf("server memory: RSS %" PRIu64 " -> %" PRIu64
               " KiB holding %" PRIu64 " connections (%d fds): %.0f bytes "
               "a connection\n",
               G.rss_base_kb, G.rss_held_kb, c.open, G.server_fds,
               ((double)G.rss_held_kb - (double)G.rss_base_kb) * 1024 / n);
        printf("  anonymous %" PRIu64 " -> %" PRIu64 " KiB: %.0f bytes a "
               "connection; file-backed (LMDB map) %" PRIu64 " -> %" PRIu64
               " KiB\n",
               G.anon_base_kb, G.anon_held_kb,
               ((double)G.anon_held_kb - (double)G.anon_base_kb) * 1024 / n,
               G.file_base_kb, G.file_held_kb);
    }
    printf("counts: resumed %" PRIu64 " conn_fail %" PRIu64
           " resume_fail %" PRIu64 " dropped_by_server %" PRIu64
           " sent %" PRIu64 " send_err %" PRIu64 " received %" PRIu64
           " receipts %" PRIu64 " behind %" PRIu64 " stale %" PRIu64
           " last_error %d\n",
           c.resumed, c.conn_fail, c.resume_fail, c.dropped, c.sent, c.send_err,
           c.received, c.receipts, c.behind, c.stale, c.last_error);
    if (log_emfile > 0)
        printf("server log: %d accept_failed line(s) (out of file "
               "descriptors) in %s/parleyd.log\n",
               log_emfile, o->run_dir);
    if (timed_out)
        printf("TIMED OUT after --timeout %.0f s\n", o->timeout_s);

    /* the JSON line */
    printf("{\"tool\":\"loadgen\",\"workload\":\"%s\",\"ok\":%s,"
           "\"machine\":{%s},",
           G.wl->name,
           !timed_out && c.conn_fail + c.resume_fail + c.send_err == 0 &&
                   phases_done == G.wl->phases
               ? "true"
               : "false",
           machine);
    printf("\"settings\":{\"conns\":%d,\"workers\":%d,\"rate\":%.0f,"
           "\"window\":%d,\"sources\":%d,\"duration_s\":%.1f,"
           "\"hold_s\":%.1f,\"timeout_s\":%.0f,\"body\":%d,"
           "\"backlog\":%d,\"group_size\":%d,\"server\":\"%s\","
           "\"spawned\":%s},",
           o->conns, o->workers, o->rate, o->window, o->sources, o->duration_s,
           o->hold_s, o->timeout_s, o->body, o->backlog, o->group_size,
           G.server_addr, o->parleyd ? "true" : "false");
    printf("\"phases\":[");
    for (int p = 0; p < phases_done; p++) {
        phase_result_t *r = &G.ph[p];
        printf("%s{\"phase\":%d,\"measures\":\"%s\",\"ok\":%" PRIu64
               ",\"failed\":%" PRIu64 ",\"seconds\":%.4f,\"rate\":%.1f,"
               "\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
               "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
               "\"server_cpu_pct\":%.1f,\"gen_cpu_pct\":%.1f,"
               "\"gen_cpu_max_worker_pct\":%.1f,\"other_cpu_pct\":%.1f,"
               "\"server_rss_peak_kb\":%" PRIu64 "}",
               p ? "," : "", p + 1, G.wl->measures[p], r->sum.ok, r->sum.failed,
               r->seconds, r->seconds > 0 ? (double)r->sum.ok / r->seconds : 0,
               us(lg_hist_quantile(&r->hist, 0.5)),
               us(lg_hist_quantile(&r->hist, 0.9)),
               us(lg_hist_quantile(&r->hist, 0.99)),
               us(lg_hist_quantile(&r->hist, 0.999)), us(r->hist.max),
               lg_hist_mean(&r->hist) / 1000, r->server_cpu, r->gen_cpu,
               r->gen_cpu_max, r->other_cpu, r->server_rss_peak_kb);
    }
    printf("],\"server\":{\"rss_base_kb\":%" PRIu64 ",\"rss_held_kb\":%" PRIu64
           ",\"hwm_kb\":%" PRIu64 ",\"fds\":%d,\"bytes_per_conn\":%.0f,"
           "\"accept_failed_lines\":%d,\"anon_base_kb\":%" PRIu64
           ",\"anon_held_kb\":%" PRIu64 ",\"anon_bytes_per_conn\":%.0f,"
           "\"file_base_kb\":%" PRIu64 ",\"file_held_kb\":%" PRIu64 "},",
           G.rss_base_kb, G.rss_held_kb, G.hwm_kb, G.server_fds,
           G.rss_held_kb && c.open
               ? (double)(G.rss_held_kb - G.rss_base_kb) * 1024 / (double)c.open
               : 0,
           log_emfile, G.anon_base_kb, G.anon_held_kb,
           G.anon_held_kb && c.open
               ? ((double)G.anon_held_kb - (double)G.anon_base_kb) * 1024 /
                     (double)c.open
               : 0,
           G.file_base_kb, G.file_held_kb);
    printf("\"counts\":{\"resumed\":%" PRIu64 ",\"conn_fail\":%" PRIu64
           ",\"resume_fail\":%" PRIu64 ",\"dropped\":%" PRIu64
           ",\"sent\":%" PRIu64 ",\"send_err\":%" PRIu64
           ",\"received\":%" PRIu64 ",\"receipts\":%" PRIu64
           ",\"behind\":%" PRIu64 ",\"stale\":%" PRIu64
           ",\"last_error\":%d}}\n",
           c.resumed, c.conn_fail, c.resume_fail, c.dropped, c.sent, c.send_err,
           c.received, c.receipts, c.behind, c.stale, c.last_error);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: loadgen WORKLOAD --run-dir DIR (--parleyd PATH | "
                    "--server HOST:PORT [--server-pid PID]) [options]\n"
                    "workloads:\n");
    for (const lg_workload_t *w = lg_workloads; w->name; w++)
        fprintf(stderr, "  %-16s %s\n", w->name, w->help);
    fprintf(stderr,
            "options:\n"
            "  --conns N         clients in all (default 1000)\n"
            "  --workers N       processes (default: 2, more so that each "
            "holds at most %d)\n"
            "  --rate R          offered connects or messages a second "
            "(default 0: as fast as possible)\n"
            "  --window N        connects in flight per worker "
            "(default 256)\n"
            "  --sources N       connect from 127.0.0.2 .. 127.0.0.N+1 "
            "(default 16 for a 127.x server, else 0: the kernel's choice; "
            "at most %d)\n"
            "  --duration S      traffic seconds (default 10)\n"
            "  --hold S          idle: seconds held before sampling "
            "(default 5)\n"
            "  --timeout S       bound on each phase (default 120)\n"
            "  --body B          message body bytes (default 64)\n"
            "  --backlog N       catch-up messages per receiver "
            "(default 100)\n"
            "  --group-size S    group: members of each group, its "
            "sender included (required)\n"
            "  --server-arg ARG  one more argument for the spawned "
            "parleyd (repeatable)\n",
            LG_CONNS_WORKER, LG_MAX_SOURCES);
    exit(2);
}

static double num(const char *s)
{
    char *end;
    double v = strtod(s, &end);

    if (*end || v < 0)
        die("bad number: %s", s);
    return v;
}

static void parse(int argc, char **argv)
{
    lg_opts_t *o = &G.o;

    if (argc < 2)
        usage();
    o->workload = argv[1];
    o->conns = 1000;
    o->window = 256;
    o->sources = -1;
    o->duration_s = 10;
    o->hold_s = 5;
    o->timeout_s = 120;
    o->body = 64;
    o->backlog = 100;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--run-dir"))
            o->run_dir = v;
        else if (!strcmp(a, "--parleyd"))
            o->parleyd = v;
        else if (!strcmp(a, "--server")) {
            const char *c = strrchr(v, ':');
            if (!c || (size_t)(c - v) >= sizeof(o->host))
                die("bad --server: %s", v);
            memcpy(o->host, v, (size_t)(c - v));
            o->port = atoi(c + 1);
        } else if (!strcmp(a, "--server-pid"))
            o->server_pid = (pid_t)num(v);
        else if (!strcmp(a, "--conns"))
            o->conns = (int)num(v);
        else if (!strcmp(a, "--workers"))
            o->workers = (int)num(v);
        else if (!strcmp(a, "--rate"))
            o->rate = num(v);
        else if (!strcmp(a, "--window"))
            o->window = (int)num(v);
        else if (!strcmp(a, "--sources"))
            o->sources = (int)num(v);
        else if (!strcmp(a, "--duration"))
            o->duration_s = num(v);
        else if (!strcmp(a, "--hold"))
            o->hold_s = num(v);
        else if (!strcmp(a, "--timeout"))
            o->timeout_s = num(v);
        else if (!strcmp(a, "--body"))
            o->body = (int)num(v);
        else if (!strcmp(a, "--backlog"))
            o->backlog = (int)num(v);
        else if (!strcmp(a, "--group-size"))
            o->group_size = (int)num(v);
        else if (!strcmp(a, "--server-arg") && o->server_args < 16)
            o->server_argv[o->server_args++] = v;
        else
            usage();
    }
    if (!(G.wl = lg_workload_find(o->workload)))
        usage();
    if (!o->run_dir || (!o->parleyd && !o->port))
        usage();
    if (o->sources < 0) /* not given: spread when the server is local */
        o->sources = o->parleyd || strncmp(o->host, "127.", 4) == 0 ? 16 : 0;
    if (o->sources > LG_MAX_SOURCES)
        usage();
    bool group = !strcmp(G.wl->name, "group");
    if (!group) {
        o->conns += o->conns & 1; /* accounts talk in pairs */
        o->group_size = 0;
    } else if (o->group_size < 2 || o->group_size > o->conns || o->body < 24) {
        die("%s", "group needs 2 <= --group-size <= --conns, --body >= 24");
    }
    if (o->conns < 2 || o->window < 1 || o->body < 16 ||
        o->body > PROTO_MAX_BODY || o->timeout_s <= 0)
        usage();
    int need = (o->conns + LG_CONNS_WORKER - 1) / LG_CONNS_WORKER;
    int groups = group ? o->conns / o->group_size : 0;
    if (o->workers <= 0) {
        o->workers = need > 2 ? need : 2;
        if (group && o->workers > groups)
            o->workers = groups; /* a group never spans two workers */
    }
    if (o->workers < need || o->workers > LG_MAX_WORKERS ||
        o->workers * 2 > o->conns || (group && o->workers > groups))
        die("%s", "--workers must give each worker 2 to 15,000 clients");
}

int main(int argc, char **argv)
{
    cpu_mark_t a, b;
    int phases_done = 0, rc;
    bool timed_out = false;

    parse(argc, argv);
    G.o.run_id = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
    signal(SIGPIPE, SIG_IGN);
    lg_raise_nofile();
    mkdir(G.o.run_dir, 0755);
    load_tokens();
    if (G.o.parleyd && spawn_server() < 0)
        die("cannot start %s (see its log in the run dir)", G.o.parleyd);
    rc = prepare_accounts();
    if (rc < 0) {
        stop_server();
        die("%s", "account creation failed");
    }
    if (rc > 0 && G.o.parleyd) {
        /* a fresh process for a clean memory baseline */
        stop_server();
        if (spawn_server() < 0)
            die("cannot restart %s", G.o.parleyd);
    }
    snprintf(G.server_addr, sizeof(G.server_addr), "%s:%d", G.o.host, G.o.port);
    if (G.wl->needs_send && (rc = probe_send()) != 0) {
        fprintf(stderr,
                "loadgen: %s needs the send operation; the server "
                "answered %d (%s)\n",
                G.wl->name, rc, rc > 0 ? proto_err_name(rc) : strerror(-rc));
        stop_server();
        return 3;
    }
    for (int p = 0; p < G.wl->phases; p++)
        lg_hist_init(&G.ph[p].hist, LG_HIST_BITS);

    start_workers();
    usleep(200000); /* let the workers' loops start: a clean baseline */
    G.rss_base_kb = server_rss(NULL);
    G.anon_base_kb = server_anon(&G.file_base_kb);
    for (int p = 1; p <= G.wl->phases && !timed_out; p++) {
        cpu_mark(&a);
        send_all(LG_CMD_GO);
        timed_out = wait_phase(p, 0) < 0;
        cpu_mark(&b);
        phase_result_t *r = &G.ph[p - 1];
        cpu_between(&a, &b, r);
        r->seconds =
            r->t_last > r->t_first ? (double)(r->t_last - r->t_first) / 1e9 : 0;
        phases_done = p;
        if (!strcmp(G.wl->name, "idle") && G.o.hold_s > 0) {
            wait_phase(0, G.o.hold_s);
            G.rss_held_kb = server_rss(&G.hwm_kb);
            G.anon_held_kb = server_anon(&G.file_held_kb);
            G.server_fds = G.o.server_pid ? lg_proc_fds(G.o.server_pid) : 0;
        }
    }
    send_all(LG_CMD_QUIT);
    for (int i = 0; i < G.o.workers; i++) {
        int waited = 0;
        while (waitpid(G.wpid[i], NULL, WNOHANG) == 0 && waited++ < 50)
            usleep(100000);
        if (waited > 50) {
            kill(G.wpid[i], SIGKILL);
            waitpid(G.wpid[i], NULL, 0);
        }
    }
    if (!G.hwm_kb)
        server_rss(&G.hwm_kb);
    int emfile = G.o.parleyd ? count_log_lines("accept_failed") : -1;
    report(phases_done, timed_out, emfile);
    stop_server();
    lg_counts_t c = total_counts();
    bool failed = timed_out || c.conn_fail + c.resume_fail + c.send_err > 0;
    for (int p = 0; p < phases_done; p++)
        failed |= G.ph[p].sum.failed > 0;
    return failed ? 1 : 0;
}
