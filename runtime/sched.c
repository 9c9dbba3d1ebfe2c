/*
 * sched.c - schedulers: one thread per core, each created by libuv and
 * owning a uv_loop_t, running ready actors between turns of its loop.
 *
 * Where a ready actor goes:
 *   - pinned to scheduler P: P's locked pin queue (P wakes if asleep);
 *   - unpinned, made ready on a scheduler thread: that scheduler's ring,
 *     so a request and its reply stay on one core and in its cache;
 *   - unpinned, made ready on any other thread, or a full ring: the global
 *     queue, and one sleeping scheduler is woken.
 * An idle scheduler steals from the head of another's ring. A scheduler
 * with surplus work (two or more actors waiting in its ring) wakes a
 * sleeping one; a single waiting actor does not, which keeps ping-pong
 * pairs on one core instead of bouncing a cache line and a wake-up
 * syscall between two.
 *
 * Sleeping is a Dekker handshake: the sleeper announces itself (seq_cst),
 * then looks for work once more; a producer publishes work, then (seq_cst)
 * looks for sleepers. At least one of them sees the other, so no wake-up
 * is lost. Sleeping itself is uv_run(UV_RUN_ONCE) on the loop, so a
 * scheduler asleep still serves its sockets and timers; the uv_async_t
 * `wake` makes it return.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static _Thread_local rt_sched_t *this_sched;

#define MAX_CLEANUPS 16
static uv_mutex_t cleanup_lock;
static uv_once_t cleanup_once = UV_ONCE_INIT;
static void (*cleanups[MAX_CLEANUPS])(void);
static int ncleanups;

static void cleanup_init(void)
{
    uv_mutex_init(&cleanup_lock);
}

int rt_thread_cleanup(void (*fn)(void))
{
    uv_once(&cleanup_once, cleanup_init);
    int rc = 0;
    uv_mutex_lock(&cleanup_lock);
    int i;
    for (i = 0; i < ncleanups && cleanups[i] != fn; i++)
        ;
    if (i == ncleanups) {
        if (ncleanups < MAX_CLEANUPS)
            cleanups[ncleanups++] = fn;
        else
            rc = RT_ELIMIT;
    }
    uv_mutex_unlock(&cleanup_lock);
    return rc;
}

static void run_cleanups(void)
{
    uv_once(&cleanup_once, cleanup_init);
    uv_mutex_lock(&cleanup_lock);
    int n = ncleanups;
    void (*fns[MAX_CLEANUPS])(void);
    memcpy(fns, cleanups, sizeof(fns));
    uv_mutex_unlock(&cleanup_lock);
    for (int i = 0; i < n; i++)
        fns[i]();
}
static _Thread_local rt_actor_t *this_actor;

rt_sched_t *rt__this_sched(void)
{
    return this_sched;
}

void rt__set_this_sched(rt_sched_t *s)
{
    this_sched = s;
}

rt_actor_t *rt_current(void)
{
    return this_actor;
}

void rt__set_current(rt_actor_t *a)
{
    this_actor = a;
}

uint64_t rt__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- locked actor queues ---------------------------------------------------
 */

static void actorq_push(rt_actorq_t *q, rt_actor_t *a)
{
    if (q->len == q->cap) {
        uint32_t ncap = q->cap ? q->cap * 2 : 64;
        rt_actor_t **nv = malloc(ncap * sizeof(*nv));
        if (!nv) {
            /* a ready actor with nowhere to go would hang forever: stop
             * loudly instead, as crash-only design asks */
            fprintf(stderr, "parley runtime: out of memory scheduling\n");
            abort();
        }
        for (uint32_t i = 0; i < q->len; i++)
            nv[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = nv;
        q->head = 0;
        q->cap = ncap;
    }
    q->v[(q->head + q->len) % q->cap] = a;
    q->len++;
}

static rt_actor_t *actorq_pop(rt_actorq_t *q)
{
    if (!q->len)
        return NULL;
    rt_actor_t *a = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return a;
}

/* ---- the ring --------------------------------------------------------------
 */

/* Owner only. False when full. */
static bool ring_push(rt_sched_t *s, rt_actor_t *a)
{
    uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
    uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
    if (t - h >= RT_RUNQ_CAP)
        return false;
    atomic_store_explicit(&s->rq_buf[t & (RT_RUNQ_CAP - 1)], a,
                          memory_order_relaxed);
    /* release: a thief that sees the new tail sees the slot */
    atomic_store_explicit(&s->rq_tail, t + 1, memory_order_release);
    return true;
}

/* Owner or thief. The slot is read before the CAS; if the CAS succeeds the
 * head had not moved, so the owner cannot have reused that slot (it only
 * writes slots outside [head, tail)). */
static rt_actor_t *ring_pop(rt_sched_t *s)
{
    uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
    for (;;) {
        uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_acquire);
        if (h == t)
            return NULL;
        rt_actor_t *a = atomic_load_explicit(&s->rq_buf[h & (RT_RUNQ_CAP - 1)],
                                             memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&s->rq_head, &h, h + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            return a;
    }
}

static uint32_t ring_len(rt_sched_t *s)
{
    uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_acquire);
    uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
    return t - h;
}

/* Takes up to `max` actors, and at most half, from the head of v's ring
 * in one CAS (v's owner or a thief). Returns how many. */
static uint32_t ring_take(rt_sched_t *v, rt_actor_t **out, uint32_t max)
{
    uint32_t h = atomic_load_explicit(&v->rq_head, memory_order_acquire);
    for (;;) {
        uint32_t t = atomic_load_explicit(&v->rq_tail, memory_order_acquire);
        uint32_t avail = t - h;
        if (avail == 0 || avail > RT_RUNQ_CAP)
            return 0;
        uint32_t n = avail - avail / 2; /* at least one */
        if (n > max)
            n = max;
        for (uint32_t i = 0; i < n; i++)
            out[i] = atomic_load_explicit(
                &v->rq_buf[(h + i) & (RT_RUNQ_CAP - 1)], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&v->rq_head, &h, h + n,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            return n;
    }
}

/* Takes up to half of v's ring, keeps the first and queues the rest on
 * s's own ring: one contended operation per batch rather than per actor,
 * and the stolen actors then stay on this core for a while. */
static rt_actor_t *steal_half(rt_sched_t *s, rt_sched_t *v)
{
    rt_actor_t *got[RT_RUNQ_CAP / 2];
    /* our own ring must have room for all but the one we run */
    uint32_t room = RT_RUNQ_CAP - ring_len(s) + 1;
    uint32_t n =
        ring_take(v, got, room < RT_RUNQ_CAP / 2 ? room : RT_RUNQ_CAP / 2);
    if (!n)
        return NULL;
    for (uint32_t i = 1; i < n; i++)
        ring_push(s, got[i]);
    atomic_store_explicit(
        &s->steals, atomic_load_explicit(&s->steals, memory_order_relaxed) + n,
        memory_order_relaxed);
    return got[0];
}

/* ---- waking
 * ------------------------------------------------------------------ */

static void wake_sched(rt_sched_t *s)
{
    int one = 1;
    /* 1 -> 2: only the first waker pays for the syscall */
    if (atomic_compare_exchange_strong(&s->sleeping, &one, 2))
        uv_async_send(&s->wake);
}

static void wake_one(rt_system_t *sys, rt_sched_t *except)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&sys->nsleeping, memory_order_relaxed) == 0)
        return;
    for (int i = 0; i < sys->nsched; i++) {
        rt_sched_t *s = sys->sched[i];
        if (s != except &&
            atomic_load_explicit(&s->sleeping, memory_order_relaxed) == 1) {
            wake_sched(s);
            return;
        }
    }
}

void rt__wake_all(rt_system_t *sys)
{
    for (int i = 0; i < sys->nsched; i++)
        uv_async_send(&sys->sched[i]->wake);
}

void rt__schedule(rt_system_t *sys, rt_actor_t *a)
{
    rt_sched_t *me = rt__this_sched();
    if (me && me->sys != sys)
        me = NULL;

    if (a->pin >= 0) {
        rt_sched_t *p = sys->sched[a->pin];
        uv_mutex_lock(&p->pin_lock);
        actorq_push(&p->pinq, a);
        atomic_store_explicit(&p->pin_len, p->pinq.len, memory_order_relaxed);
        uv_mutex_unlock(&p->pin_lock);
        if (p != me) {
            atomic_thread_fence(memory_order_seq_cst);
            if (atomic_load_explicit(&p->sleeping, memory_order_relaxed))
                wake_sched(p);
        }
        return;
    }
    if (me && ring_push(me, a)) {
        /* Surplus on our own ring: worth a sleeper's help. No fence here:
         * we are awake and will run the ring ourselves, so a sleeper that
         * misses this push costs parallelism for a moment, never
         * progress, and the fence would cost every send. */
        if (ring_len(me) >= 2 &&
            atomic_load_explicit(&sys->nsleeping, memory_order_relaxed))
            wake_one(sys, me);
        return;
    }
    /* A full ring sends half of itself along, so that a burst (a spawn
     * loop, a fan-out) takes the lock once per half ring, not per actor. */
    rt_actor_t *batch[RT_RUNQ_CAP / 2];
    uint32_t n = me ? ring_take(me, batch, RT_RUNQ_CAP / 2) : 0;
    uv_mutex_lock(&sys->glob_lock);
    for (uint32_t i = 0; i < n; i++)
        actorq_push(&sys->globq, batch[i]);
    actorq_push(&sys->globq, a);
    atomic_store_explicit(&sys->glob_len, sys->globq.len, memory_order_relaxed);
    uv_mutex_unlock(&sys->glob_lock);
    wake_one(sys, me);
}

/* ---- finding work
 * ---------------------------------------------------------------- */

static rt_actor_t *take_locked(uv_mutex_t *lock, rt_actorq_t *q,
                               _Atomic uint32_t *len)
{
    if (!atomic_load_explicit(len, memory_order_relaxed))
        return NULL;
    uv_mutex_lock(lock);
    rt_actor_t *a = actorq_pop(q);
    atomic_store_explicit(len, q->len, memory_order_relaxed);
    uv_mutex_unlock(lock);
    return a;
}

static rt_actor_t *steal(rt_sched_t *s)
{
    rt_system_t *sys = s->sys;
    for (int k = 1; k < sys->nsched; k++) {
        rt_sched_t *v = sys->sched[(s->index + k) % sys->nsched];
        rt_actor_t *a = steal_half(s, v);
        if (a)
            return a;
    }
    return NULL;
}

/*
 * A busy scheduler never steals, so two busy ones can stay unevenly loaded
 * for good: one with a long ring, the other cycling a few actors that are
 * never idle (a producer and its own consumer, or a pinned actor). With
 * two cores that lets a producer run far ahead of consumers queued on the
 * other one. So at each periodic look at the shared queues a scheduler
 * also takes half of a ring much longer than its own.
 */
static rt_actor_t *balance(rt_sched_t *s)
{
    rt_system_t *sys = s->sys;
    uint32_t mine = ring_len(s);
    for (int k = 1; k < sys->nsched; k++) {
        rt_sched_t *v = sys->sched[(s->index + k) % sys->nsched];
        if (ring_len(v) > 2 * mine + 8)
            return steal_half(s, v);
    }
    return NULL;
}

/* Counts a turn; true every `n` turns, or sooner once `n` batches of
 * messages have been handled since the last time (a deep mailbox's turn
 * may be RT_DEEP_TURNS batches long). `turns` and `mark` are the caller's
 * record of the last time. */
static bool due(rt_sched_t *s, uint32_t *turns, uint64_t *mark, uint32_t n)
{
    uint64_t msgs = atomic_load_explicit(&s->messages, memory_order_relaxed);
    if (++*turns < n && msgs - *mark < (uint64_t)n * s->sys->cfg.batch)
        return false;
    *turns = 0;
    *mark = msgs;
    return true;
}

static rt_actor_t *next_actor(rt_sched_t *s)
{
    rt_system_t *sys = s->sys;
    rt_actor_t *a;
    /* now and then the shared queues go first, so a busy ring cannot
     * starve actors woken from outside */
    if (due(s, &s->tick, &s->shared_msgs, 32)) {
        if ((a = balance(s)))
            return a;
        if ((a = take_locked(&s->pin_lock, &s->pinq, &s->pin_len)))
            return a;
        if ((a = take_locked(&sys->glob_lock, &sys->globq, &sys->glob_len)))
            return a;
    }
    if ((a = ring_pop(s)))
        return a;
    if ((a = take_locked(&s->pin_lock, &s->pinq, &s->pin_len)))
        return a;
    if ((a = take_locked(&sys->glob_lock, &sys->globq, &sys->glob_len)))
        return a;
    return steal(s);
}

/* ---- commands from other threads
 * ------------------------------------------------------ */

void rt__post(rt_sched_t *s, void (*fn)(rt_sched_t *, void *), void *arg)
{
    rt_cmd_t *c = malloc(sizeof(*c));
    if (!c)
        return;
    c->fn = fn;
    c->arg = arg;
    uv_mutex_lock(&s->cmd_lock);
    c->next = s->cmds;
    s->cmds = c;
    uv_mutex_unlock(&s->cmd_lock);
    uv_async_send(&s->wake);
}

static void run_cmds(rt_sched_t *s)
{
    uv_mutex_lock(&s->cmd_lock);
    rt_cmd_t *c = s->cmds;
    s->cmds = NULL;
    uv_mutex_unlock(&s->cmd_lock);
    /* they were pushed newest first; run them oldest first */
    rt_cmd_t *rev = NULL;
    while (c) {
        rt_cmd_t *n = c->next;
        c->next = rev;
        rev = c;
        c = n;
    }
    while (rev) {
        rt_cmd_t *n = rev->next;
        rev->fn(s, rev->arg);
        free(rev);
        rev = n;
    }
}

static void on_limbo_timer(uv_timer_t *h)
{
    (void)h; /* waking up was the point */
}

static void on_wake(uv_async_t *h)
{
    rt_sched_t *s = h->data;
    run_cmds(s);
}

/* ---- the loop
 * -----------------------------------------------------------------------------
 */

static void sched_main(void *arg)
{
    rt_sched_t *s = arg;
    rt_system_t *sys = s->sys;
    rt__set_this_sched(s);
    uint32_t since_poll = 0;
    uint64_t poll_msgs = 0;
    atomic_store_explicit(&s->busy_since, rt__now_ns(), memory_order_relaxed);

    rt__quiescent(s, true);
    for (;;) {
        rt_actor_t *a = next_actor(s);
        if (a) {
            rt__run_actor(s, a);
            rt__quiescent(s, true);
            atomic_store_explicit(
                &s->turns,
                atomic_load_explicit(&s->turns, memory_order_relaxed) + 1,
                memory_order_relaxed);
            /* I/O, timers and limbo get a look-in every so many turns
             * (connections flush their output here) */
            if (due(s, &since_poll, &poll_msgs, 64)) {
                uv_run(&s->loop, UV_RUN_NOWAIT);
                rt__reclaim(sys, s);
            }
            continue;
        }
        since_poll = 0;
        /* serve I/O that is ready before considering sleep */
        uv_run(&s->loop, UV_RUN_NOWAIT);
        rt__reclaim(sys, s);
        if (ring_len(s) || atomic_load(&s->pin_len) ||
            atomic_load(&sys->glob_len))
            continue;

        if (atomic_load(&sys->stopping) == 2)
            break;

        atomic_store(&s->sleeping, 1);
        atomic_fetch_add(&sys->nsleeping, 1);
        /* the Dekker re-check: see the comment at the top */
        a = next_actor(s);
        if (a) {
            atomic_store(&s->sleeping, 0);
            atomic_fetch_sub(&sys->nsleeping, 1);
            rt__run_actor(s, a);
            rt__quiescent(s, true);
            continue;
        }
        atomic_store_explicit(
            &s->sleeps,
            atomic_load_explicit(&s->sleeps, memory_order_relaxed) + 1,
            memory_order_relaxed);
        /* Busy time is time awake: two clock reads per sleep rather than
         * two per actor turn. Event callbacks run while "asleep" count as
         * idle, which is close enough for a load gauge. */
        uint64_t now = rt__now_ns();
        uint64_t since =
            atomic_load_explicit(&s->busy_since, memory_order_relaxed);
        atomic_store_explicit(
            &s->busy_ns,
            atomic_load_explicit(&s->busy_ns, memory_order_relaxed) +
                (now - since),
            memory_order_relaxed);
        atomic_store_explicit(&s->busy_since, 0, memory_order_relaxed);
        /* asleep we hold no actor pointers; callbacks use references */
        rt__quiescent(s, false);
        /* slots still in limbo wait for another scheduler's quiescent
         * point: come back for them soon rather than sleep on them */
        if (s->nlimbo)
            uv_timer_start(&s->limbo_timer, on_limbo_timer, 1, 0);
        uv_run(&s->loop, UV_RUN_ONCE);
        rt__quiescent(s, true);
        atomic_store_explicit(&s->busy_since, rt__now_ns(),
                              memory_order_relaxed);
        atomic_store(&s->sleeping, 0);
        atomic_fetch_sub(&sys->nsleeping, 1);
    }
    rt__quiescent(s, false);
    run_cleanups();
    rt__msg_cache_flush();
    rt__set_this_sched(NULL);
}

/* ---- the system
 * -----------------------------------------------------------------------------
 */

static int sched_new(rt_system_t *sys, int index, rt_sched_t **out)
{
    rt_sched_t *s = calloc(1, sizeof(*s));
    if (!s)
        return RT_ENOMEM;
    s->sys = sys;
    s->index = index;
    s->free_idx = malloc(256 * sizeof(uint32_t));
    int rc = s->free_idx ? uv_loop_init(&s->loop) : UV_ENOMEM;
    if (rc < 0)
        goto fail_loop;
    rc = uv_async_init(&s->loop, &s->wake, on_wake);
    if (rc < 0)
        goto fail_async;
    s->wake.data = s;
    uv_timer_init(&s->loop, &s->limbo_timer);
    uv_unref((uv_handle_t *)&s->limbo_timer);
    uv_mutex_init(&s->pin_lock);
    uv_mutex_init(&s->cmd_lock);
    uv_mutex_init(&s->timer_lock);
    rt__timers_init(s);
    *out = s;
    return 0;

fail_async:
    uv_loop_close(&s->loop);
fail_loop:
    free(s->free_idx);
    free(s);
    return rc;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void sched_free(rt_sched_t *s)
{
    rt__timers_close(s);
    run_cmds(s);
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    uv_mutex_destroy(&s->pin_lock);
    uv_mutex_destroy(&s->cmd_lock);
    uv_mutex_destroy(&s->timer_lock);
    free(s->pinq.v);
    free(s->free_idx);
    free(s);
}

static long ncores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

rt_system_t *rt_system_start(const rt_config_t *cfg, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    rt_system_t *sys = calloc(1, sizeof(*sys));
    if (!sys) {
        *err = RT_ENOMEM;
        return NULL;
    }
    if (cfg)
        sys->cfg = *cfg;
    if (sys->cfg.schedulers <= 0)
        sys->cfg.schedulers = (int)ncores();
    if (!sys->cfg.max_actors)
        sys->cfg.max_actors = 4u << 20;
    if (sys->cfg.max_actors > RT_MAX_ACTORS_LIMIT)
        sys->cfg.max_actors = RT_MAX_ACTORS_LIMIT;
    if (!sys->cfg.batch)
        sys->cfg.batch = 64;
    /* An actor 16,384 messages behind is already far behind: refusing
     * more (RT_EFULL) keeps its backlog in cache and its producers in
     * step. An actor meant to absorb bursts from many producers is
     * spawned with a bound of its own. */
    if (!sys->cfg.mailbox_limit)
        sys->cfg.mailbox_limit = 16384;
    sys->max_actors = sys->cfg.max_actors;
    sys->nsched = sys->cfg.schedulers;
    atomic_init(&sys->next_ref, 1);
    atomic_init(&sys->epoch, 1);

    int rc = RT_ENOMEM;
    size_t bytes = (size_t)sys->max_actors * RT_SLOT_SIZE;
    sys->slots = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sys->slots == MAP_FAILED)
        goto fail_sys;
    /* Huge pages: a million actors would otherwise cost 31,000 page
     * faults of several microseconds each on first touch. */
    madvise(sys->slots, bytes, MADV_HUGEPAGE);

    uv_mutex_init(&sys->free_lock);
    uv_mutex_init(&sys->glob_lock);
    uv_mutex_init(&sys->room_lock);
    uv_mutex_init(&sys->limbo_lock);
    if ((rc = rt__registry_init(sys)) < 0)
        goto fail_map;

    sys->sched = calloc((size_t)sys->nsched, sizeof(*sys->sched));
    if (!sys->sched)
        goto fail_reg;
    int i;
    for (i = 0; i < sys->nsched; i++)
        if ((rc = sched_new(sys, i, &sys->sched[i])) < 0)
            goto fail_sched;
    if (sys->cfg.fault_seed)
        rt_fault_seed(sys->cfg.fault_seed);
    for (i = 0; i < sys->nsched; i++) {
        rc =
            uv_thread_create(&sys->sched[i]->thread, sched_main, sys->sched[i]);
        if (rc < 0) {
            /* the threads already running stop with the system */
            sys->nsched = i;
            *err = rc;
            rt_system_stop(sys);
            return NULL;
        }
    }
    *err = 0;
    return sys;

fail_sched:
    while (i-- > 0)
        sched_free(sys->sched[i]);
    free(sys->sched);
fail_reg:
    rt__registry_free(sys);
fail_map:
    munmap(sys->slots, bytes);
fail_sys:
    free(sys);
    *err = rc;
    return NULL;
}

int rt_system_schedulers(const rt_system_t *sys)
{
    return sys->nsched;
}

static bool all_idle(rt_system_t *sys)
{
    /* ports stay alive until freed; everything else must have gone */
    return atomic_load(&sys->live) <= atomic_load(&sys->ports);
}

void rt_system_stop(rt_system_t *sys)
{
    atomic_store(&sys->stopping, 1);
    rt__kill_all(sys);
    /* give killed actors time to run their terminate callbacks */
    uint64_t deadline = rt__now_ns() + 5000000000u;
    while (!all_idle(sys) && rt__now_ns() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&sys->stopping, 2);
    rt__wake_all(sys);
    for (int i = 0; i < sys->nsched; i++)
        uv_thread_join(&sys->sched[i]->thread);
    rt__reclaim_all(sys);
    for (int i = 0; i < sys->nsched; i++)
        sched_free(sys->sched[i]);
    free(sys->sched);
    rt__registry_free(sys);
    rt__room_free(sys);
    uv_mutex_destroy(&sys->room_lock);
    uv_mutex_destroy(&sys->free_lock);
    uv_mutex_destroy(&sys->glob_lock);
    uv_mutex_destroy(&sys->limbo_lock);
    free(sys->globq.v);
    free(sys->free_idx);
    munmap(sys->slots, (size_t)sys->max_actors * RT_SLOT_SIZE);
    free(sys);
}

/* ---- introspection
 * ----------------------------------------------------------------------- */

void rt_system_info(rt_system_t *sys, rt_system_info_t *out)
{
    memset(out, 0, sizeof(*out));
    out->schedulers = sys->nsched;
    out->live_actors = atomic_load_explicit(&sys->live, memory_order_relaxed);
    out->spawned = atomic_load_explicit(&sys->spawned, memory_order_relaxed);
    out->exited = atomic_load_explicit(&sys->exited, memory_order_relaxed);
    out->crashed = atomic_load_explicit(&sys->crashed, memory_order_relaxed);
    out->mailbox_full =
        atomic_load_explicit(&sys->mailbox_full, memory_order_relaxed);
    for (int i = 0; i < sys->nsched; i++)
        out->messages += atomic_load_explicit(&sys->sched[i]->messages,
                                              memory_order_relaxed);
}

int rt_sched_info(rt_system_t *sys, int index, rt_sched_info_t *out)
{
    if (index < 0 || index >= sys->nsched)
        return RT_EINVAL;
    rt_sched_t *s = sys->sched[index];
    out->index = index;
    out->turns = atomic_load_explicit(&s->turns, memory_order_relaxed);
    out->messages = atomic_load_explicit(&s->messages, memory_order_relaxed);
    out->steals = atomic_load_explicit(&s->steals, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&s->sleeps, memory_order_relaxed);
    out->runq =
        ring_len(s) + atomic_load_explicit(&s->pin_len, memory_order_relaxed);
    /* The busy ratio is over the interval since the previous call; two
     * callers at once would each see part of it, which is acceptable for
     * a gauge. */
    uint64_t now = rt__now_ns();
    uint64_t busy = atomic_load_explicit(&s->busy_ns, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&s->busy_since, memory_order_relaxed);
    if (since && since < now)
        busy += now - since; /* awake right now */
    uv_mutex_lock(&s->timer_lock);
    uint64_t dw = now - s->last_wall_ns, db = busy - s->last_busy_ns;
    s->last_wall_ns = now;
    s->last_busy_ns = busy;
    uv_mutex_unlock(&s->timer_lock);
    out->busy = dw ? (double)db / (double)dw : 0.0;
    if (out->busy > 1.0)
        out->busy = 1.0;
    return 0;
}
