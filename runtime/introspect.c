/*
 * introspect.c - reading actors without stopping them, for the operator
 * shell and tests.
 */
#include "rt_internal.h"

#include <string.h>

/* ---- introspection
 * ------------------------------------------------------------------ */

static void fill_info(rt_actor_t *a, rt_id_t id, rt_actor_info_t *out)
{
    out->id = id;
    out->kind = a->beh->kind ? a->beh->kind : "actor";
    out->parent = a->parent;
    /* one reading of the popped count for both figures, so that handled
     * plus waiting never exceeds what was pushed */
    uint64_t popped = atomic_load_explicit(&a->mb_out, memory_order_acquire);
    int32_t waiting =
        (int32_t)(atomic_load_explicit(&a->mb_in, memory_order_acquire) -
                  (uint32_t)popped);
    out->mailbox = waiting > 0 ? (uint32_t)waiting : 0;
    out->handled = popped;
    out->restarts = a->restarts;
    out->scheduler = a->pin;
    out->is_port = rt__is_port(a);
}

int rt_actor_info(rt_system_t *sys, rt_id_t id, rt_actor_info_t *out)
{
    rt_actor_t *a = rt__acquire(sys, id);
    if (!a)
        return RT_ENOPROC;
    fill_info(a, id, out);
    rt__release(sys, a);
    return 0;
}

/* A reference on the live actor in slot i, or NULL: the reference makes
 * the fields read next belong to one tenant. */
static rt_actor_t *acquire_index(rt_system_t *sys, uint32_t i)
{
    rt_actor_t *a = rt__slot(sys, i);
    uint64_t c = atomic_load_explicit(&a->ctl, memory_order_acquire);
    if (c & CTL_DEAD || !(c & CTL_REFS_MASK))
        return NULL;
    return rt__acquire(sys, atomic_load_explicit(&a->id, memory_order_relaxed));
}

void rt_actor_foreach(rt_system_t *sys,
                      int (*fn)(const rt_actor_info_t *ai, void *ctx),
                      void *ctx)
{
    uint32_t hi = atomic_load_explicit(&sys->next_fresh, memory_order_acquire);
    for (uint32_t i = 0; i < hi; i++) {
        rt_actor_t *b = acquire_index(sys, i);
        if (!b)
            continue;
        rt_actor_info_t ai;
        fill_info(b, b->id, &ai);
        rt__release(sys, b);
        if (fn(&ai, ctx))
            return;
    }
}

int rt_actor_detail(rt_system_t *sys, rt_id_t id, rt_id_t to, uint64_t ref)
{
    rt_msg_t *m = rt_msg_new(SYS_DETAIL_REQ, sizeof(rt_id_t));
    if (!m)
        return RT_ENOMEM;
    memcpy(m->data, &to, sizeof(to));
    m->ref = ref;
    rt_actor_t *cur = rt_current();
    m->from = cur ? cur->id : 0;
    return rt__send_sys(sys, id, m);
}

/* supervisor.c fills in children; weak so the runtime links without it */
void rt__sup_children(rt_actor_t *a, rt_actor_detail_t *d)
    __attribute__((weak));

struct detail_ctx {
    rt_actor_detail_t *d;
    uint32_t n;
};

static void detail_link(rt_id_t id, void *ctx)
{
    struct detail_ctx *dc = ctx;
    if (dc->n < 16)
        dc->d->links[dc->n++] = id;
}

void rt__send_detail(rt_system_t *sys, rt_actor_t *a, rt_id_t to, uint64_t ref)
{
    rt_msg_t *m = rt_msg_new(RT_MSG_DETAIL, sizeof(rt_actor_detail_t));
    if (!m)
        return;
    rt_actor_detail_t *d = (rt_actor_detail_t *)m->data;
    memset(d, 0, sizeof(*d));
    fill_info(a, a->id, &d->info);
    rt_actor_ext_t *x = a->ext;
    if (x) {
        d->nlinks = rt__idvec_len(&x->links);
        d->nmonitors = x->monitors.n;
        d->nmonitored_by = x->monitored_by.n;
        struct detail_ctx dc = {d, 0};
        rt__idvec_each(&x->links, detail_link, &dc);
        for (uint32_t i = 0; i < x->monitors.n && i < 16; i++)
            d->monitors[i] = x->monitors.v[i].id;
    }
    if (a->beh->describe)
        a->beh->describe(a, d->summary, sizeof(d->summary));
    if (a->beh == &rt_supervisor && rt__sup_children)
        rt__sup_children(a, d);
    m->from = a->id;
    m->ref = ref;
    rt__send_sys(sys, to, m);
}

/* Used by rt_system_stop(): every live actor gets an untrappable kill. */
void rt__kill_all(rt_system_t *sys)
{
    uint32_t hi = atomic_load_explicit(&sys->next_fresh, memory_order_acquire);
    for (uint32_t i = hi; i-- > 0;) {
        rt_actor_t *b = acquire_index(sys, i);
        if (!b)
            continue;
        bool port = rt__is_port(b);
        rt_id_t id = b->id;
        rt__release(sys, b);
        if (!port)
            rt_kill(sys, id, RT_EKILLED);
    }
}
