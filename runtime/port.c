/*
 * port.c - mailboxes for threads that are not schedulers.
 *
 * A port is an actor slot that is never scheduled: when a producer finds
 * its mailbox marked idle it signals the port's condition variable
 * instead. The owning thread pops messages itself. Because the consumer
 * keeps the last node it popped as the queue's tail, rt_port_recv() hands
 * out a copy that the caller may keep and free.
 */
#include "rt_internal.h"

#include <sched.h>
#include <string.h>
#include <time.h>

struct rt_port {
    rt_system_t *sys;
    rt_actor_t *a;
    rt_id_t id;
    uv_mutex_t lock;
    uv_cond_t cond;
    bool signalled;
    /* messages set aside while rt_port_call() waited for its reply */
    rt_msg_t *stash_head, *stash_tail;
    /* references of calls that timed out: their replies are dropped */
    uint64_t abandoned[16];
    uint32_t nabandoned;
};

void rt__port_notify(rt_actor_t *a)
{
    rt_port_t *p = a->state;
    uv_mutex_lock(&p->lock);
    p->signalled = true;
    uv_cond_signal(&p->cond);
    uv_mutex_unlock(&p->lock);
}

rt_port_t *rt_port_new(rt_system_t *sys)
{
    rt_port_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->sys = sys;
    uv_mutex_init(&p->lock);
    uv_cond_init(&p->cond);
    int err;
    p->a = rt__spawn_port(sys, p, &err);
    if (!p->a) {
        uv_cond_destroy(&p->cond);
        uv_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    p->id = p->a->id;
    return p;
}

rt_id_t rt_port_id(const rt_port_t *p)
{
    return p->id;
}

static rt_msg_t *copy_out(const rt_msg_t *m)
{
    /* not `next`: a producer may be linking the following node into it */
    rt_msg_t *c = rt_msg_new(m->type, m->size);
    if (c) {
        c->from = m->from;
        c->ref = m->ref;
        memcpy(c->data, m->data, m->size);
    }
    return c;
}

static bool is_abandoned(rt_port_t *p, uint64_t ref)
{
    for (uint32_t i = 0; i < p->nabandoned; i++) {
        if (p->abandoned[i] == ref) {
            p->abandoned[i] = p->abandoned[--p->nabandoned];
            return true;
        }
    }
    return false;
}

/* The next message for the owner, after the runtime's own, or NULL. */
static rt_msg_t *pop_visible(rt_port_t *p)
{
    rt_actor_t *a = p->a;
    for (;;) {
        rt_msg_t *m = mb_pop(a);
        if (!m)
            return NULL;
        atomic_store_explicit(
            &a->mb_out,
            atomic_load_explicit(&a->mb_out, memory_order_relaxed) + 1,
            memory_order_relaxed);
        if (m->type >= RT_MSG_SYSTEM && m->type < RT_MSG_LIB) {
            int reason;
            /* a port traps exits, so nothing here is fatal */
            if (rt__handle_system(p->sys, a, m, &reason) != SYSMSG_PASS)
                continue;
        }
        if (m->ref & RT_REF_REPLY) {
            if (is_abandoned(p, m->ref & ~RT_REF_REPLY))
                continue;
        }
        return copy_out(m);
    }
}

/* Waits for a push, or the deadline (ns, 0 = forever). False on time-out. */
static bool wait_push(rt_port_t *p, uint64_t deadline)
{
    /* Mark the mailbox idle first: a producer that pushes after this sees
     * the mark and signals. If the mark fails, a message is on its way. */
    if (!mb_mark_idle(p->a))
        return true;
    bool got = true;
    uv_mutex_lock(&p->lock);
    while (!p->signalled) {
        if (!deadline) {
            uv_cond_wait(&p->cond, &p->lock);
            continue;
        }
        uint64_t now = rt__now_ns();
        if (now >= deadline ||
            uv_cond_timedwait(&p->cond, &p->lock, deadline - now) != 0) {
            got = p->signalled;
            break;
        }
    }
    p->signalled = false;
    uv_mutex_unlock(&p->lock);
    return got;
}

static uint64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? 0 : rt__now_ns() + (uint64_t)timeout_ms * 1000000u;
}

rt_msg_t *rt_port_recv(rt_port_t *p, int timeout_ms)
{
    if (p->stash_head) {
        rt_msg_t *m = p->stash_head;
        p->stash_head = atomic_load_explicit(&m->next, memory_order_relaxed);
        if (!p->stash_head)
            p->stash_tail = NULL;
        return m;
    }
    uint64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        rt_msg_t *m = pop_visible(p);
        if (m)
            return m;
        /* wait_push() also returns at once when a producer is between its
         * exchange and its link: the deadline still holds then */
        if (timeout_ms == 0 || !wait_push(p, deadline) ||
            (deadline && rt__now_ns() >= deadline)) {
            /* one last look: the push may have raced the deadline */
            return pop_visible(p);
        }
    }
}

uint64_t rt_port_monitor(rt_port_t *p, rt_id_t who)
{
    return rt__monitor(p->sys, p->a, who);
}

rt_msg_t *rt_port_call(rt_port_t *p, rt_id_t to, rt_msg_t *m, int timeout_ms)
{
    if (!m)
        return NULL;
    uint64_t ref = rt__new_ref(p->sys);
    m->ref = ref;
    m->from = p->id;
    /* from a port there is no current actor: rt_send would clear `from` */
    if (rt__send_sys(p->sys, to, m) < 0)
        return NULL;
    uint64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        rt_msg_t *r = pop_visible(p);
        if (r) {
            if (r->ref == (ref | RT_REF_REPLY)) {
                r->ref = ref;
                return r;
            }
            /* keep it for rt_port_recv(), in arrival order */
            atomic_store_explicit(&r->next, NULL, memory_order_relaxed);
            if (p->stash_tail)
                atomic_store_explicit(&p->stash_tail->next, r,
                                      memory_order_relaxed);
            else
                p->stash_head = r;
            p->stash_tail = r;
            continue;
        }
        if (timeout_ms == 0 || !wait_push(p, deadline) ||
            (deadline && rt__now_ns() >= deadline)) {
            if (p->nabandoned < 16)
                p->abandoned[p->nabandoned++] = ref;
            return NULL;
        }
    }
}

void rt_port_free(rt_port_t *p)
{
    if (!p)
        return;
    while (p->stash_head) {
        rt_msg_t *n =
            atomic_load_explicit(&p->stash_head->next, memory_order_relaxed);
        rt_msg_free(p->stash_head);
        p->stash_head = n;
    }
    /* No new producer can take a reference once DEAD is set; wait for
     * those holding one, since a producer that found the mailbox idle
     * signals through this struct. */
    atomic_fetch_or_explicit(&p->a->ctl, CTL_DEAD, memory_order_acq_rel);
    while ((atomic_load_explicit(&p->a->ctl, memory_order_acquire) &
            CTL_REFS_MASK) > 1)
        sched_yield();
    /* schedulers send without references: let each pass a quiescent
     * point, after which none can be inside rt__port_notify() */
    rt__synchronize(p->sys);
    atomic_fetch_sub_explicit(&p->sys->ports, 1, memory_order_relaxed);
    rt__die(p->sys, p->a, RT_NORMAL);
    uv_cond_destroy(&p->cond);
    uv_mutex_destroy(&p->lock);
    free(p);
}
