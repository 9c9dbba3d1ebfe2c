/*
 * msg.c - messages: allocation, delivery into mailboxes, sends and kills.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- messages --------------------------------------------------------------
 */

/*
 * Small messages (most of them: signals, acks, receipts) come from a cache
 * on each scheduler thread, refilled and drained in batches of
 * MSGQ_BATCH through a shared stack. A message is usually freed on another
 * core than the one that made it; without the shared stack the freeing
 * thread's cache would only grow while the sending thread's stayed empty,
 * and glibc's allocator would take an arena lock per message.
 *
 * Invariant: every message whose size is at most MSGQ_SMALL has room for
 * MSGQ_SMALL bytes, so any of them may go back to the cache.
 */
#define MSGQ_SMALL      32
#define MSGQ_BATCH      256
#define MSGQ_SHARED_MAX 256 /* batches kept in the shared stack */

typedef struct msg_cache {
    rt_msg_t *head;
    uint32_t n;
} msg_cache_t;

static _Thread_local msg_cache_t msg_cache;
static uv_once_t msg_once = UV_ONCE_INIT;
static uv_mutex_t msg_lock;
static rt_msg_t *msg_shared[MSGQ_SHARED_MAX];
static uint32_t msg_nshared;

static void msg_init(void)
{
    uv_mutex_init(&msg_lock);
}

static rt_msg_t *msg_link(const rt_msg_t *m)
{
    return atomic_load_explicit(&m->next, memory_order_relaxed);
}

static rt_msg_t *msg_alloc_small(void)
{
    msg_cache_t *c = &msg_cache;
    if (!c->head && rt__this_sched()) {
        uv_once(&msg_once, msg_init);
        uv_mutex_lock(&msg_lock);
        if (msg_nshared) {
            c->head = msg_shared[--msg_nshared];
            c->n = MSGQ_BATCH;
        }
        uv_mutex_unlock(&msg_lock);
    }
    rt_msg_t *m = c->head;
    if (m) {
        c->head = msg_link(m);
        c->n--;
        return m;
    }
    return malloc(sizeof(rt_msg_t) + MSGQ_SMALL);
}

static void msg_free_small(rt_msg_t *m)
{
    msg_cache_t *c = &msg_cache;
    if (!rt__this_sched()) {
        free(m);
        return;
    }
    atomic_store_explicit(&m->next, c->head, memory_order_relaxed);
    c->head = m;
    if (++c->n < 2 * MSGQ_BATCH)
        return;
    /* hand the older half to the shared stack, or to the allocator if
     * that is full */
    rt_msg_t *tail = c->head;
    for (uint32_t i = 1; i < MSGQ_BATCH; i++)
        tail = msg_link(tail);
    rt_msg_t *batch = msg_link(tail);
    atomic_store_explicit(&tail->next, NULL, memory_order_relaxed);
    c->n = MSGQ_BATCH;
    uv_once(&msg_once, msg_init);
    uv_mutex_lock(&msg_lock);
    if (msg_nshared < MSGQ_SHARED_MAX) {
        msg_shared[msg_nshared++] = batch;
        batch = NULL;
    }
    uv_mutex_unlock(&msg_lock);
    while (batch) {
        rt_msg_t *next = msg_link(batch);
        free(batch);
        batch = next;
    }
}

void rt__msg_cache_flush(void)
{
    rt_msg_t *m = msg_cache.head;
    while (m) {
        rt_msg_t *next = msg_link(m);
        free(m);
        m = next;
    }
    msg_cache.head = NULL;
    msg_cache.n = 0;
}

rt_msg_t *rt_msg_new(uint32_t type, uint32_t size)
{
    rt_msg_t *m = size <= MSGQ_SMALL ? msg_alloc_small()
                                     : malloc(sizeof(rt_msg_t) + size);
    if (!m)
        return NULL;
    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    m->type = type;
    m->size = size;
    m->from = 0;
    m->ref = 0;
    return m;
}

void rt_msg_free(rt_msg_t *m)
{
    if (!m)
        return;
    if (m->size <= MSGQ_SMALL)
        msg_free_small(m);
    else
        free(m);
}

int rt__deliver(rt_system_t *sys, rt_actor_t *a, rt_msg_t *m, bool bounded)
{
    if (!bounded) {
        atomic_fetch_add_explicit(&a->mb_in, 1, memory_order_relaxed);
    } else {
        /* a CAS, not add-then-undo, so the depth never shows more than
         * the bound, even for an instant; `out` only grows, so a stale
         * read of it errs on the side of refusing */
        uint32_t n = atomic_load_explicit(&a->mb_in, memory_order_relaxed);
        do {
            uint32_t out = (uint32_t)atomic_load_explicit(&a->mb_out,
                                                          memory_order_relaxed);
            /* `out` may be newer than our `n`: then the difference is
             * negative, the depth unknown but small, and the CAS below
             * fails and we look again */
            int32_t depth = (int32_t)(n - out);
            if (depth > 0 && (uint32_t)depth >= a->mb_limit) {
                atomic_fetch_add_explicit(&sys->mailbox_full, 1,
                                          memory_order_relaxed);
                rt_msg_free(m);
                return RT_EFULL;
            }
        } while (!atomic_compare_exchange_weak_explicit(
            &a->mb_in, &n, n + 1, memory_order_relaxed, memory_order_relaxed));
    }
    if (mb_push(a, m)) {
        if (rt__is_port(a))
            rt__port_notify(a);
        else
            rt__schedule(sys, a);
    }
    return 0;
}

/* On an awake scheduler thread: the live actor `id` without taking a
 * reference (see the reclamation comment in rt_internal.h), or NULL. */
static rt_actor_t *peek(rt_system_t *sys, rt_id_t id)
{
    uint64_t idx = id & RT_INDEX_MASK;
    if (!id || idx >= sys->max_actors)
        return NULL;
    rt_actor_t *a = rt__slot(sys, (uint32_t)idx);
    uint64_t c = atomic_load_explicit(&a->ctl, memory_order_acquire);
    if (CTL_GEN(c) != (uint32_t)(id >> RT_INDEX_BITS) || (c & CTL_DEAD) ||
        !(c & CTL_REFS_MASK))
        return NULL;
    if (atomic_load_explicit(&a->id, memory_order_relaxed) != id)
        return NULL;
    return a;
}

static bool can_peek(rt_system_t *sys)
{
    rt_sched_t *s = rt__this_sched();
    return s && s->sys == sys &&
           atomic_load_explicit(&s->qs_epoch, memory_order_relaxed) != 0;
}

static int send_to(rt_system_t *sys, rt_id_t to, rt_msg_t *m, bool bounded)
{
    bool ref = !can_peek(sys);
    rt_actor_t *a = ref ? rt__acquire(sys, to) : peek(sys, to);
    if (!a) {
        rt_msg_free(m);
        return RT_ENOPROC;
    }
    int rc = rt__deliver(sys, a, m, bounded);
    if (ref)
        rt__release(sys, a);
    return rc;
}

int rt_send(rt_system_t *sys, rt_id_t to, rt_msg_t *m)
{
    if (!m)
        return RT_EINVAL;
    rt_actor_t *cur = rt_current();
    m->from = cur ? cur->id : 0;
    return send_to(sys, to, m, true);
}

/* Runtime messages skip the mailbox bound: an exit or a reply must never
 * be lost to backpressure. `from` is left as the caller set it. */
int rt__send_sys(rt_system_t *sys, rt_id_t to, rt_msg_t *m)
{
    return send_to(sys, to, m, false);
}

int rt_send_copy(rt_system_t *sys, rt_id_t to, uint32_t type, const void *data,
                 uint32_t size)
{
    rt_msg_t *m = rt_msg_new(type, size);
    if (!m)
        return RT_ENOMEM;
    if (size)
        memcpy(m->data, data, size);
    return rt_send(sys, to, m);
}

int rt__send_exit(rt_system_t *sys, rt_id_t to, rt_id_t who, int reason,
                  bool is_link)
{
    rt_msg_t *m = rt_msg_new(SYS_EXIT_SIGNAL, sizeof(sys_exit_t));
    if (!m)
        return RT_ENOMEM;
    sys_exit_t x = {who, reason, is_link};
    memcpy(m->data, &x, sizeof(x));
    m->from = who;
    return rt__send_sys(sys, to, m);
}

int rt_kill(rt_system_t *sys, rt_id_t to, int reason)
{
    rt_actor_t *cur = rt_current();
    rt_id_t from = cur ? cur->id : 0;
    if (reason != RT_EKILLED)
        return rt__send_exit(sys, to, from, reason, false);

    rt_actor_t *a = rt__acquire(sys, to);
    if (!a)
        return RT_ENOPROC;
    /* The flag is seen within 8 messages, however long the queue; the
     * wake message makes an idle actor run to notice it. */
    atomic_fetch_or_explicit(&a->ctl, CTL_KILL, memory_order_release);
    rt_msg_t *m = rt_msg_new(SYS_WAKE, 0);
    int rc = m ? rt__deliver(sys, a, m, false) : RT_ENOMEM;
    rt__release(sys, a);
    return rc;
}
