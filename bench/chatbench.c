/*
 * bench/chatbench.c - one-to-one chat throughput, latency and offline
 * catch-up against a running parleyd, on proto/client.h.
 *
 *   chatbench HOST PORT throughput PAIRS SECONDS
 *   chatbench HOST PORT rate PAIRS SECONDS MSGS_PER_SEC
 *   chatbench HOST PORT catchup MESSAGES
 *
 * Each pair is a sender and a receiver, two users with one device each.
 * Senders keep WINDOW sends in flight (throughput) or pace them from a
 * 1 ms timer (rate); receivers ack every ACK_EVERY entries. A body is
 * the send time (uv_hrtime) and a counter, so the receiver measures the
 * delivery latency from the sender's `send` to its own `msg` event on
 * one clock. catchup stores MESSAGES for an offline receiver, then times
 * its resume until the last one arrived.
 *
 * The server must allow the request rate: start it with a high
 * --request-rate and --request-burst. Accounts are registered fresh for
 * each run, so --pwhash-ops min --pwhash-mem min keeps setup short.
 *
 * Output: one line of key=value results on stdout.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "bench_account.h"

#include "client.h"
#include "codec.h"
#include "hist.h"

#define WINDOW    48 /* sends in flight per sender (server allows 64) */
#define ACK_EVERY 100
#define SETUP_MS  10000
#define MAX_PAIRS 512
#define TICK_MS   1

typedef struct peer {
    proto_client_t *cl;
    char name[PROTO_MAX_NAME + 1];
    uint8_t token[32];
    bool sender, ready;
    int inflight;
    uint64_t cid, sent, recv, acked, last_seq;
    double tokens; /* rate mode: sends allowed now */
    struct peer *to;
} peer_t;

typedef enum mode { M_THROUGHPUT, M_RATE, M_CATCHUP } mode_t_;

static struct {
    uv_loop_t *loop;
    const char *host;
    int port;
    mode_t_ mode;
    int pairs;
    double seconds, rate;
    uint64_t total; /* catchup: messages */
    peer_t peers[2 * MAX_PAIRS];
    int nready, nclosed;
    bool running, draining;
    uint64_t t_start, t_end, delivered, acked_sends, errors;
    lg_hist_t lat;   /* ns, send to the receiver's msg event */
    lg_hist_t reply; /* ns, send to the sender's reply (after the commit) */
    uv_timer_t tick, stop;
    proto_client_config_t ccfg;
} B;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- setup: accounts through the blocking client ------------------------ */

static int setup_user(peer_t *p, int i)
{
    snprintf(p->name, sizeof(p->name), "cb%d_%d", (int)getpid() % 100000, i);
    return bench_account(B.host, B.port, p->name, SETUP_MS, p->token);
}

/* ---- the run ------------------------------------------------------------ */

static void try_send(peer_t *p);

/* A send in flight: its peer and when it left. */
typedef struct send_req {
    peer_t *p;
    uint64_t t0;
} send_req_t;

static void on_sent(proto_client_t *cl, void *arg, int status,
                    const msgpack_object *reply, const uint8_t *raw, size_t len)
{
    send_req_t *r = arg;
    peer_t *p = r->p;

    if (status == 0 && B.running && !B.draining)
        lg_hist_record(&B.reply, now_ns() - r->t0);
    free(r);
    p->inflight--;
    if (status == 0) {
        p->sent++;
        B.acked_sends++;
    } else {
        B.errors++;
    }
    if (B.mode == M_CATCHUP && B.acked_sends + B.errors >= B.total &&
        !B.draining) {
        B.draining = true;
        uv_stop(B.loop);
        return;
    }
    try_send(p);
}

static void send_one(peer_t *p)
{
    proto_req_t q;
    uint64_t body[2] = {now_ns(), p->cid + 1};

    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_SEND;
    q.u.send.to = proto_cstr(p->to->name);
    q.u.send.cid = ++p->cid;
    q.u.send.body = (proto_bin_t){(const uint8_t *)body, sizeof(body)};
    send_req_t *r = malloc(sizeof(*r));
    if (!r) {
        B.errors++;
        return;
    }
    *r = (send_req_t){p, body[0]};
    if (proto_client_request(p->cl, &q, on_sent, r) > 0)
        p->inflight++;
    else
        free(r);
}

static void try_send(peer_t *p)
{
    if (!B.running || B.draining || !p->sender)
        return;
    while (p->inflight < WINDOW) {
        if (B.mode == M_RATE) {
            if (p->tokens < 1)
                return;
            p->tokens -= 1;
        }
        if (B.mode == M_CATCHUP &&
            (uint64_t)p->cid >= B.total / (uint64_t)B.pairs)
            return;
        send_one(p);
    }
}

static void ack(peer_t *p)
{
    proto_req_t q;

    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_ACK;
    q.u.ack.upto = p->last_seq;
    if (proto_client_request(p->cl, &q, NULL, NULL) > 0)
        p->acked = p->last_seq;
}

static void on_event(proto_client_t *cl, void *user, const msgpack_object *ev,
                     const uint8_t *raw, size_t len)
{
    peer_t *p = user;
    const msgpack_object *e = proto_map_get(ev, "ev");

    if (!e || e->type != MSGPACK_OBJECT_STR || e->via.str.size != 3 ||
        memcmp(e->via.str.ptr, "msg", 3) != 0)
        return;
    const msgpack_object *seq = proto_map_get(ev, "seq");
    const msgpack_object *body = proto_map_get(ev, "body");
    if (seq && seq->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        seq->via.u64 > p->last_seq)
        p->last_seq = seq->via.u64;
    p->recv++;
    if (B.running && !B.draining) {
        B.delivered++;
        if (body && body->type == MSGPACK_OBJECT_BIN &&
            body->via.bin.size == 16) {
            uint64_t t0;
            memcpy(&t0, body->via.bin.ptr, 8);
            lg_hist_record(&B.lat, now_ns() - t0);
        }
    }
    if (p->last_seq - p->acked >= ACK_EVERY)
        ack(p);
    if (B.mode == M_CATCHUP && p->recv == B.total / (uint64_t)B.pairs) {
        ack(p);
        if (++B.nclosed == B.pairs) {
            B.t_end = now_ns();
            uv_stop(B.loop);
        }
    }
}

static void on_resumed(proto_client_t *cl, void *arg, int status,
                       const msgpack_object *reply, const uint8_t *raw,
                       size_t len)
{
    peer_t *p = arg;

    if (status != 0) {
        fprintf(stderr, "chatbench: resume of %s failed: %d\n", p->name,
                status);
        exit(1);
    }
    p->ready = true;
    B.nready++;
    uv_stop(B.loop);
}

static void on_close(proto_client_t *cl, void *user, int code)
{
    peer_t *p = user;
    p->cl = NULL;
}

static void start_client(peer_t *p)
{
    proto_req_t q;

    if (proto_client_connect(B.loop, B.host, B.port, &B.ccfg, p, &p->cl) < 0) {
        fprintf(stderr, "chatbench: connect failed\n");
        exit(1);
    }
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_RESUME;
    q.u.resume.token = (proto_bin_t){p->token, 32};
    proto_client_request(p->cl, &q, on_resumed, p);
}

/* Runs the loop until n more clients are ready. */
static void wait_ready(int n)
{
    int want = B.nready + n;
    while (B.nready < want)
        uv_run(B.loop, UV_RUN_DEFAULT);
}

/* Tokens by elapsed time, not by ticks: a late timer fires once for
 * several periods. */
static void on_tick(uv_timer_t *t)
{
    static uint64_t last;
    uint64_t now = now_ns();
    double per = B.rate / B.pairs * (double)(now - (last ? last : now)) / 1e9;

    last = now;

    for (int i = 0; i < B.pairs; i++) {
        peer_t *p = &B.peers[2 * i];
        p->tokens += per;
        if (p->tokens > WINDOW)
            p->tokens = WINDOW; /* a stalled sender does not burst later */
        try_send(p);
    }
}

static void on_stop(uv_timer_t *t)
{
    B.t_end = now_ns();
    B.draining = true;
    uv_timer_stop(&B.tick);
    uv_stop(B.loop);
}

static void report(void)
{
    double secs = (double)(B.t_end - B.t_start) / 1e9;
    const char *m = B.mode == M_THROUGHPUT ? "throughput"
                    : B.mode == M_RATE     ? "rate"
                                           : "catchup";

    printf("mode=%s pairs=%d seconds=%.2f sent=%llu delivered=%llu "
           "delivered_per_s=%.0f sent_per_s=%.0f errors=%llu",
           m, B.pairs, secs, (unsigned long long)B.acked_sends,
           (unsigned long long)(B.mode == M_CATCHUP ? B.total : B.delivered),
           (B.mode == M_CATCHUP ? (double)B.total : (double)B.delivered) / secs,
           (double)B.acked_sends / secs, (unsigned long long)B.errors);
    if (B.lat.total)
        printf(" p50_ms=%.2f p99_ms=%.2f max_ms=%.2f",
               (double)lg_hist_quantile(&B.lat, 0.5) / 1e6,
               (double)lg_hist_quantile(&B.lat, 0.99) / 1e6,
               (double)lg_hist_quantile(&B.lat, 1.0) / 1e6);
    if (B.reply.total)
        printf(" reply_p50_ms=%.2f reply_p99_ms=%.2f",
               (double)lg_hist_quantile(&B.reply, 0.5) / 1e6,
               (double)lg_hist_quantile(&B.reply, 0.99) / 1e6);
    printf("\n");
}

static int usage(void)
{
    fprintf(stderr, "usage: chatbench HOST PORT throughput PAIRS SECONDS\n"
                    "       chatbench HOST PORT rate PAIRS SECONDS RATE\n"
                    "       chatbench HOST PORT catchup MESSAGES\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return usage();
    B.host = argv[1];
    B.port = atoi(argv[2]);
    if (!strcmp(argv[3], "throughput") && argc == 6) {
        B.mode = M_THROUGHPUT;
    } else if (!strcmp(argv[3], "rate") && argc == 7) {
        B.mode = M_RATE;
        B.rate = atof(argv[6]);
    } else if (!strcmp(argv[3], "catchup") && argc == 5) {
        B.mode = M_CATCHUP;
        B.pairs = 1;
        B.total = strtoull(argv[4], NULL, 10);
    } else {
        return usage();
    }
    if (B.mode != M_CATCHUP) {
        B.pairs = atoi(argv[4]);
        B.seconds = atof(argv[5]);
    }
    if (B.pairs < 1 || B.pairs > MAX_PAIRS)
        return usage();
    if (lg_hist_init(&B.lat, 7) < 0 || lg_hist_init(&B.reply, 7) < 0)
        return 1;
    for (int i = 0; i < 2 * B.pairs; i++) {
        int rc = setup_user(&B.peers[i], i);
        if (rc != 0) {
            fprintf(stderr, "chatbench: account setup failed: %d\n", rc);
            return 1;
        }
        B.peers[i].sender = i % 2 == 0;
        B.peers[i].to = &B.peers[i ^ 1];
    }
    B.loop = uv_default_loop();
    B.ccfg =
        (proto_client_config_t){.on_event = on_event, .on_close = on_close};
    uv_timer_init(B.loop, &B.tick);
    uv_timer_init(B.loop, &B.stop);

    if (B.mode == M_CATCHUP) {
        /* store everything for the offline receiver, then time its resume */
        start_client(&B.peers[0]);
        wait_ready(1);
        B.running = true;
        try_send(&B.peers[0]);
        while (!B.draining)
            uv_run(B.loop, UV_RUN_DEFAULT);
        fprintf(stderr, "chatbench: %llu stored, resuming the receiver\n",
                (unsigned long long)B.acked_sends);
        B.draining = false;
        B.running = false;
        B.t_start = now_ns();
        start_client(&B.peers[1]);
        while (B.nclosed < 1)
            uv_run(B.loop, UV_RUN_DEFAULT);
        report();
        return 0;
    }
    for (int i = 0; i < 2 * B.pairs; i++)
        start_client(&B.peers[i]);
    wait_ready(2 * B.pairs);
    B.running = true;
    B.t_start = now_ns();
    uv_timer_start(&B.stop, on_stop, (uint64_t)(B.seconds * 1000), 0);
    if (B.mode == M_RATE)
        uv_timer_start(&B.tick, on_tick, TICK_MS, TICK_MS);
    for (int i = 0; i < B.pairs; i++)
        try_send(&B.peers[2 * i]);
    while (!B.draining)
        uv_run(B.loop, UV_RUN_DEFAULT);
    report();
    return 0;
}
