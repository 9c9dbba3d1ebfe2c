/*
 * test_rt_common.h - helpers shared by the runtime's unit tests.
 *
 * Tests never sleep to synchronise. They wait on events: a message reaching
 * a port (rt_port_recv() with a deadline) or an atomic reaching a value
 * (a bounded poll loop with a deadline). Handlers run on scheduler threads,
 * where cmocka's assertions (which longjmp) must not be used: they record
 * failures with TCHECK(), and the test thread asserts on the record.
 *
 * Counts scale down under ThreadSanitizer (about 5-10x slower) and can be
 * scaled further with the environment variable PARLEY_TEST_SCALE (a
 * multiplier, e.g. 0.5); deadlines scale up the same way.
 */
#ifndef PARLEY_TEST_RT_COMMON_H
#define PARLEY_TEST_RT_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt.h"

/* ---- sanitizer-aware scaling ------------------------------------------- */

#if defined(__SANITIZE_THREAD__)
#define TRT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TRT_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TRT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRT_ASAN 1
#endif
#endif

#ifdef TRT_TSAN
#define TRT_COUNT_SCALE 0.125
#define TRT_TIME_SCALE  6
#elif defined(TRT_ASAN)
#define TRT_COUNT_SCALE 0.5
#define TRT_TIME_SCALE  3
#else
#define TRT_COUNT_SCALE 1.0
#define TRT_TIME_SCALE  1
#endif

static inline double trt_env_scale(void)
{
    const char *s = getenv("PARLEY_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

/* A count of work items, scaled down for slow builds; never below `min`. */
static inline long trt_count(long n, long min)
{
    long v = (long)((double)n * TRT_COUNT_SCALE * trt_env_scale());
    return v < min ? min : v;
}

/* A deadline in ms, scaled up for slow builds. */
static inline int trt_ms(int ms)
{
    double f = trt_env_scale();
    return (int)(ms * TRT_TIME_SCALE * (f < 1.0 ? 1.0 / f : 1.0));
}

/* ---- time -------------------------------------------------------------- */

static inline int64_t trt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t trt_now_ms(void)
{
    return trt_now_us() / 1000;
}

/* Burns CPU for `us` microseconds: simulated work inside a handler. */
static inline void trt_spin_us(int64_t us)
{
    int64_t end = trt_now_us() + us;
    while (trt_now_us() < end)
        ;
}

/* The pause between two polls of a bounded wait: short, so a wait ends soon
 * after its event; it never stands in for the event itself. */
static inline void trt_poll_pause(void)
{
    struct timespec ts = {0, 200 * 1000};
    nanosleep(&ts, NULL);
}

/* Polls `cond` until it holds or `ms` (scaled) pass; true if it held. */
#define TRT_WAIT_UNTIL(cond, ms)                                               \
    __extension__({                                                            \
        int64_t trt_end_ = trt_now_ms() + trt_ms(ms);                          \
        bool trt_ok_ = false;                                                  \
        for (;;) {                                                             \
            if (cond) {                                                        \
                trt_ok_ = true;                                                \
                break;                                                         \
            }                                                                  \
            if (trt_now_ms() > trt_end_)                                       \
                break;                                                         \
            trt_poll_pause();                                                  \
        }                                                                      \
        trt_ok_;                                                               \
    })

/* ---- failures seen off the test thread ---------------------------------- */

static _Atomic int trt_failures;
static _Atomic int trt_first_line;

/* A check inside a handler or helper thread: counts the failure and keeps
 * the line of the first one for the report. */
#define TCHECK(cond)                                                           \
    do {                                                                       \
        if (!(cond)) {                                                         \
            int trt_zero_ = 0;                                                 \
            atomic_compare_exchange_strong(&trt_first_line, &trt_zero_,        \
                                           __LINE__);                          \
            atomic_fetch_add(&trt_failures, 1);                                \
        }                                                                      \
    } while (0)

static inline void trt_reset_checks(void)
{
    atomic_store(&trt_failures, 0);
    atomic_store(&trt_first_line, 0);
}

#define assert_no_handler_failures()                                           \
    do {                                                                       \
        if (atomic_load(&trt_failures) != 0)                                   \
            fail_msg("%d check(s) failed off the test thread, first at "       \
                     "line %d",                                                \
                     atomic_load(&trt_failures),                               \
                     atomic_load(&trt_first_line));                            \
    } while (0)

/* ---- systems ------------------------------------------------------------- */

static inline rt_system_t *trt_start(int schedulers, uint32_t batch,
                                     uint32_t mailbox_limit)
{
    rt_config_t cfg = {0};
    int err = 0;
    cfg.schedulers = schedulers;
    cfg.batch = batch;
    cfg.mailbox_limit = mailbox_limit;
    cfg.fault_seed = 1;
    rt_system_t *sys = rt_system_start(&cfg, &err);
    if (!sys)
        fail_msg("rt_system_start: %s", rt_strerror(err));
    return sys;
}

static inline rt_id_t trt_spawn(rt_system_t *sys, const rt_behaviour_t *b,
                                void *arg, const rt_spawn_opts_t *opts)
{
    int err = 0;
    rt_id_t id = rt_spawn(sys, b, arg, opts, &err);
    if (id == 0)
        fail_msg("rt_spawn(%s): %s", b->kind, rt_strerror(err));
    return id;
}

/* ---- ports with a stash ---------------------------------------------------
 *
 * A test often waits for one message while others it also expects arrive
 * first; those are kept in a stash and matched by later waits, so the order
 * of unrelated messages never makes a test fail.
 */

#define TRT_STASH 4096

typedef struct trt_port {
    rt_system_t *sys;
    rt_port_t *p;
    rt_id_t id;
    rt_msg_t *stash[TRT_STASH];
    size_t n;
} trt_port_t;

typedef bool (*trt_match_fn)(const rt_msg_t *m, const void *ctx);

static inline trt_port_t *trt_port_new(rt_system_t *sys)
{
    trt_port_t *tp = calloc(1, sizeof(*tp));
    assert_non_null(tp);
    tp->sys = sys;
    tp->p = rt_port_new(sys);
    assert_non_null(tp->p);
    tp->id = rt_port_id(tp->p);
    assert_true(tp->id > 0);
    return tp;
}

static inline void trt_port_free(trt_port_t *tp)
{
    for (size_t i = 0; i < tp->n; i++)
        rt_msg_free(tp->stash[i]);
    rt_port_free(tp->p);
    free(tp);
}

/* Waits up to `ms` (scaled) for a message that `match` accepts; returns it
 * (the caller frees it) or NULL on time-out. Others are stashed. */
static inline rt_msg_t *trt_wait(trt_port_t *tp, trt_match_fn match,
                                 const void *ctx, int ms)
{
    for (size_t i = 0; i < tp->n; i++) {
        if (match(tp->stash[i], ctx)) {
            rt_msg_t *m = tp->stash[i];
            memmove(&tp->stash[i], &tp->stash[i + 1],
                    (tp->n - i - 1) * sizeof(tp->stash[0]));
            tp->n--;
            return m;
        }
    }
    int64_t end = trt_now_ms() + trt_ms(ms);
    for (;;) {
        int64_t left = end - trt_now_ms();
        if (left < 0)
            return NULL;
        rt_msg_t *m = rt_port_recv(tp->p, (int)left);
        if (!m)
            return NULL;
        if (match(m, ctx))
            return m;
        if (tp->n == TRT_STASH) {
            rt_msg_free(m);
            fail_msg("port stash overflow");
        }
        tp->stash[tp->n++] = m;
    }
}

static inline bool trt_match_type(const rt_msg_t *m, const void *ctx)
{
    return m->type == *(const uint32_t *)ctx;
}

static inline rt_msg_t *trt_wait_type(trt_port_t *tp, uint32_t type, int ms)
{
    return trt_wait(tp, trt_match_type, &type, ms);
}

typedef struct trt_down_key {
    uint32_t type;
    uint64_t ref;
} trt_down_key_t;

static inline bool trt_match_ref(const rt_msg_t *m, const void *ctx)
{
    const trt_down_key_t *k = ctx;
    return m->type == k->type && m->ref == k->ref;
}

/* Waits for the DOWN of monitor `ref`; returns its exit info. Fails the
 * test on time-out. */
static inline rt_exit_info_t trt_wait_down(trt_port_t *tp, uint64_t ref, int ms)
{
    trt_down_key_t k = {RT_MSG_DOWN, ref};
    rt_msg_t *m = trt_wait(tp, trt_match_ref, &k, ms);
    if (!m)
        fail_msg("no DOWN for monitor %llu within %d ms",
                 (unsigned long long)ref, trt_ms(ms));
    rt_exit_info_t ei;
    assert_true(m->size >= sizeof(ei));
    memcpy(&ei, m->data, sizeof(ei));
    rt_msg_free(m);
    return ei;
}

/* Drops every stashed message of `type`; returns how many. */
static inline size_t trt_drop_type(trt_port_t *tp, uint32_t type)
{
    size_t k = 0, dropped = 0;
    for (size_t i = 0; i < tp->n; i++) {
        if (tp->stash[i]->type == type) {
            rt_msg_free(tp->stash[i]);
            dropped++;
        } else {
            tp->stash[k++] = tp->stash[i];
        }
    }
    tp->n = k;
    return dropped;
}

/* Asks `id` for its detail; fails the test if none comes. */
static inline void trt_detail(trt_port_t *tp, rt_id_t id,
                              rt_actor_detail_t *out)
{
    static _Atomic uint64_t next_ref = 1u << 30;
    uint64_t ref = atomic_fetch_add(&next_ref, 1);
    int rc = rt_actor_detail(tp->sys, id, tp->id, ref);
    if (rc < 0)
        fail_msg("rt_actor_detail(%llu): %s", (unsigned long long)id,
                 rt_strerror(rc));
    trt_down_key_t k = {RT_MSG_DETAIL, ref};
    rt_msg_t *m = trt_wait(tp, trt_match_ref, &k, 5000);
    if (!m)
        fail_msg("no detail from %llu", (unsigned long long)id);
    assert_true(m->size >= sizeof(*out));
    memcpy(out, m->data, sizeof(*out));
    rt_msg_free(m);
}

static inline bool trt_alive(rt_system_t *sys, rt_id_t id)
{
    rt_actor_info_t ai;
    return rt_actor_info(sys, id, &ai) == 0;
}

/* ---- a common event message ------------------------------------------------
 *
 * Test actors report what happens to them by sending a T_EVENT to a port.
 */

enum {
    TRT_EVENT = 0x7e000001u,
};

typedef struct trt_event {
    int kind;
    int tag;
    rt_id_t id;
    int64_t a;
    int64_t b;
} trt_event_t;

static inline int trt_emit(rt_system_t *sys, rt_id_t to, int kind, int tag,
                           rt_id_t id, int64_t a, int64_t b)
{
    trt_event_t ev = {kind, tag, id, a, b};
    return rt_send_copy(sys, to, TRT_EVENT, &ev, sizeof(ev));
}

typedef struct trt_ev_key {
    int kind;
    int tag; /* -1: any */
} trt_ev_key_t;

static inline bool trt_match_event(const rt_msg_t *m, const void *ctx)
{
    const trt_ev_key_t *k = ctx;
    if (m->type != TRT_EVENT || m->size < sizeof(trt_event_t))
        return false;
    const trt_event_t *ev = (const trt_event_t *)m->data;
    return ev->kind == k->kind && (k->tag < 0 || ev->tag == k->tag);
}

/* Waits for an event of `kind` (and `tag` unless -1); false on time-out. */
static inline bool trt_wait_event(trt_port_t *tp, int kind, int tag,
                                  trt_event_t *out, int ms)
{
    trt_ev_key_t k = {kind, tag};
    rt_msg_t *m = trt_wait(tp, trt_match_event, &k, ms);
    if (!m)
        return false;
    if (out)
        memcpy(out, m->data, sizeof(*out));
    rt_msg_free(m);
    return true;
}

#endif /* PARLEY_TEST_RT_COMMON_H */
