/*
 * actor.c - actor slots, mailboxes, the run of one actor turn, and death.
 *
 * The mailbox is an intrusive multi-producer single-consumer queue. The
 * consumer keeps the last node it consumed as `mb_tail` (initially the
 * stub), and pops by following tail->next. Producers exchange themselves
 * into `mb_head` and then link the previous head to themselves. The low bit
 * of mb_head is the idle mark: the consumer sets it with a CAS when it finds
 * the queue empty, and the one producer whose exchange returns a marked
 * pointer knows the actor is on no run queue and schedules it. So an actor
 * is scheduled exactly once per idle period without a separate flag.
 */
#include "rt_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small vectors ----------------------------------------------------- */

static int idvec_grow_big(rt_idvec_t *v)
{
    rt_map_t *m = calloc(1, sizeof(*m));
    if (!m)
        return RT_ENOMEM;
    for (uint32_t i = 0; i < v->n; i++) {
        if (rt_map_put(m, v->v[i], 1) < 0) {
            rt_map_free(m);
            free(m);
            return RT_ENOMEM;
        }
    }
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
    v->big = m;
    return 0;
}

int rt__idvec_add(rt_idvec_t *v, rt_id_t id)
{
    if (v->big)
        return rt_map_put(v->big, id, 1);
    for (uint32_t i = 0; i < v->n; i++)
        if (v->v[i] == id)
            return 0;
    if (v->n == RT_IDVEC_SMALL) {
        if (idvec_grow_big(v) < 0)
            return RT_ENOMEM;
        return rt_map_put(v->big, id, 1);
    }
    if (v->n == v->cap) {
        uint32_t ncap = v->cap ? v->cap * 2 : 4;
        rt_id_t *nv = realloc(v->v, ncap * sizeof(*nv));
        if (!nv)
            return RT_ENOMEM;
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = id;
    return 0;
}

bool rt__idvec_del(rt_idvec_t *v, rt_id_t id)
{
    if (v->big)
        return rt_map_del(v->big, id, NULL);
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->v[i] == id) {
            v->v[i] = v->v[--v->n];
            return true;
        }
    }
    return false;
}

uint32_t rt__idvec_len(const rt_idvec_t *v)
{
    return v->big ? v->big->len : v->n;
}

void rt__idvec_each(const rt_idvec_t *v, void (*fn)(rt_id_t, void *), void *ctx)
{
    if (!v->big) {
        for (uint32_t i = 0; i < v->n; i++)
            fn(v->v[i], ctx);
        return;
    }
    for (uint32_t i = 0; i < v->big->cap; i++)
        if (v->big->e[i].key)
            fn(v->big->e[i].key, ctx);
}

void rt__idvec_free(rt_idvec_t *v)
{
    free(v->v);
    if (v->big) {
        rt_map_free(v->big);
        free(v->big);
    }
    memset(v, 0, sizeof(*v));
}

int rt__refvec_add(rt_refvec_t *v, uint64_t ref, rt_id_t id)
{
    if (v->n == v->cap) {
        uint32_t ncap = v->cap ? v->cap * 2 : 4;
        rt_refpair_t *nv = realloc(v->v, ncap * sizeof(*nv));
        if (!nv)
            return RT_ENOMEM;
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n].ref = ref;
    v->v[v->n].id = id;
    v->n++;
    return 0;
}

bool rt__refvec_del(rt_refvec_t *v, uint64_t ref, rt_id_t *id_out)
{
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->v[i].ref == ref) {
            if (id_out)
                *id_out = v->v[i].id;
            v->v[i] = v->v[--v->n];
            return true;
        }
    }
    return false;
}

rt_actor_ext_t *rt__ext(rt_actor_t *a)
{
    if (!a->ext)
        a->ext = calloc(1, sizeof(*a->ext));
    return a->ext;
}

uint64_t rt__new_ref(rt_system_t *sys)
{
    /* Relaxed is enough: only uniqueness matters, not ordering. */
    return atomic_fetch_add_explicit(&sys->next_ref, 1, memory_order_relaxed);
}

/* ---- slots --------------------------------------------------------------- */

static void flush_free_cache(rt_sched_t *s, void *arg)
{
    (void)arg;
    rt_system_t *sys = s->sys;
    rt__reclaim(sys, s);
    uv_mutex_lock(&sys->free_lock);
    while (s->nfree) {
        if (sys->nfree == sys->cap_free) {
            uint32_t ncap = sys->cap_free ? sys->cap_free * 2 : 1024;
            uint32_t *n = realloc(sys->free_idx, ncap * sizeof(*n));
            if (!n)
                break;
            sys->free_idx = n;
            sys->cap_free = ncap;
        }
        sys->free_idx[sys->nfree++] = s->free_idx[--s->nfree];
    }
    uv_mutex_unlock(&sys->free_lock);
}

static uint32_t slot_alloc(rt_system_t *sys)
{
    rt_sched_t *s = rt__this_sched();
    if (s && s->sys == sys && s->nfree)
        return s->free_idx[--s->nfree];

    uv_mutex_lock(&sys->free_lock);
    if (sys->nfree) {
        uint32_t idx = sys->free_idx[--sys->nfree];
        /* refill this scheduler's cache in one go */
        if (s && s->sys == sys) {
            while (sys->nfree && s->nfree < 128)
                s->free_idx[s->nfree++] = sys->free_idx[--sys->nfree];
        }
        uv_mutex_unlock(&sys->free_lock);
        return idx;
    }
    uv_mutex_unlock(&sys->free_lock);

    uint32_t idx =
        atomic_fetch_add_explicit(&sys->next_fresh, 1, memory_order_relaxed);
    if (idx >= sys->max_actors) {
        atomic_fetch_sub_explicit(&sys->next_fresh, 1, memory_order_relaxed);
        /* Free slots may sit in schedulers' caches; have them handed back
         * so the caller's next try can succeed. */
        for (int i = 0; i < sys->nsched; i++)
            if (sys->sched[i] != s)
                rt__post(sys->sched[i], flush_free_cache, NULL);
        if (s && s->sys == sys)
            flush_free_cache(s, NULL);
        return UINT32_MAX;
    }
    return idx;
}

static void slot_free(rt_system_t *sys, uint32_t idx)
{
    rt_sched_t *s = rt__this_sched();
    if (s && s->sys == sys && s->nfree < 256) {
        s->free_idx[s->nfree++] = idx;
        return;
    }
    uv_mutex_lock(&sys->free_lock);
    if (sys->nfree == sys->cap_free) {
        uint32_t ncap = sys->cap_free ? sys->cap_free * 2 : 1024;
        uint32_t *n = realloc(sys->free_idx, ncap * sizeof(*n));
        if (!n) {
            /* The slot is lost until restart; better than corrupting. */
            uv_mutex_unlock(&sys->free_lock);
            return;
        }
        sys->free_idx = n;
        sys->cap_free = ncap;
    }
    sys->free_idx[sys->nfree++] = idx;
    /* hand back half of a full local cache with the same lock */
    if (s && s->sys == sys) {
        while (s->nfree > 128 && sys->nfree < sys->cap_free)
            sys->free_idx[sys->nfree++] = s->free_idx[--s->nfree];
    }
    uv_mutex_unlock(&sys->free_lock);
}

/*
 * Takes a reference on the live actor `id`, or returns NULL. The CAS checks
 * the generation and DEAD in the same step that adds the reference, so a
 * recycled or dying slot is never pinned.
 */
rt_actor_t *rt__acquire(rt_system_t *sys, rt_id_t id)
{
    uint64_t idx = id & RT_INDEX_MASK;
    if (!id || idx >= sys->max_actors)
        return NULL;
    rt_actor_t *a = rt__slot(sys, (uint32_t)idx);
    uint32_t gen = (uint32_t)(id >> RT_INDEX_BITS);
    /* Acquire pairs with the release store at spawn: a matching generation
     * means the slot's fields for this tenant are visible. */
    uint64_t c = atomic_load_explicit(&a->ctl, memory_order_acquire);
    for (;;) {
        if (CTL_GEN(c) != gen || (c & CTL_DEAD))
            return NULL;
        if (atomic_compare_exchange_weak_explicit(
                &a->ctl, &c, c + 1, memory_order_acquire, memory_order_acquire))
            break;
    }
    if (atomic_load_explicit(&a->id, memory_order_relaxed) != id) {
        /* same low 32 bits of generation, different tenant */
        rt__release(sys, a);
        return NULL;
    }
    return a;
}

static int send_exit(rt_system_t *sys, rt_id_t to, rt_id_t who, int reason,
                     bool is_link);
static void send_down(rt_system_t *sys, rt_id_t watcher, uint64_t ref,
                      rt_id_t who, int reason);

static void slot_reclaim(rt_system_t *sys, rt_actor_t *a)
{
    /* No producer holds a reference and none can take one: every push has
     * linked its node, so the whole chain is reachable from the tail. A
     * link or monitor that arrived too late to be seen is answered as if
     * made after the death, so nobody waits forever for it. */
    rt_id_t id = a->id;
    rt_msg_t *n = a->mb_tail;
    while (n) {
        rt_msg_t *next = atomic_load_explicit(&n->next, memory_order_acquire);
        if (n != a->mb_tail) { /* the tail was consumed already */
            if (n->type == SYS_LINK)
                send_exit(sys, n->from, id, a->exit_reason, true);
            else if (n->type == SYS_MONITOR)
                send_down(sys, n->from, n->ref, id, a->exit_reason);
        }
        if (n != stub_of(a))
            rt_msg_free(n);
        n = next;
    }
    a->mb_tail = NULL;
    slot_free(sys, (uint32_t)(id & RT_INDEX_MASK));
}

static bool limbo_add(rt_limbo_t **v, uint32_t *n, uint32_t *cap,
                      uint32_t index, uint64_t stamp)
{
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 256;
        rt_limbo_t *nv = realloc(*v, ncap * sizeof(*nv));
        if (!nv)
            return false;
        *v = nv;
        *cap = ncap;
    }
    (*v)[*n].index = index;
    (*v)[*n].stamp = stamp;
    (*n)++;
    return true;
}

/* The slot's last reference is gone: into limbo until no scheduler can
 * still be looking at it. */
static void retire(rt_system_t *sys, rt_actor_t *a)
{
    uint32_t idx = (uint32_t)(a->id & RT_INDEX_MASK);
    /* seq_cst: ordered after DEAD was set, before any later advance */
    uint64_t stamp = atomic_load(&sys->epoch) + 1;
    rt_sched_t *s = rt__this_sched();
    if (s && s->sys == sys &&
        limbo_add(&s->limbo, &s->nlimbo, &s->cap_limbo, idx, stamp))
        return;
    uv_mutex_lock(&sys->limbo_lock);
    bool ok = limbo_add(&sys->limbo, &sys->nlimbo, &sys->cap_limbo, idx, stamp);
    uv_mutex_unlock(&sys->limbo_lock);
    if (!ok) {
        /* cannot wait safely without memory: leak the slot, not corrupt */
        return;
    }
}

void rt__release(rt_system_t *sys, rt_actor_t *a)
{
    /* acq_rel: our earlier pushes happen before the reclaimer's drain, and
     * the reclaimer sees every other producer's links. */
    uint64_t old = atomic_fetch_sub_explicit(&a->ctl, 1, memory_order_acq_rel);
    if ((old & CTL_REFS_MASK) == 1 && (old & CTL_DEAD))
        retire(sys, a);
}

/* The oldest epoch any other awake scheduler may still be in; UINT64_MAX
 * if none is awake. The caller is at a quiescent point itself. Advances
 * the global epoch when all awake ones have seen it, so limbo keeps
 * moving. */
static uint64_t safe_epoch(rt_system_t *sys, rt_sched_t *self)
{
    uint64_t g = atomic_load(&sys->epoch);
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < sys->nsched; i++) {
        if (sys->sched[i] == self)
            continue;
        uint64_t q = atomic_load(&sys->sched[i]->qs_epoch);
        if (q && q < min)
            min = q;
    }
    if (min == UINT64_MAX || min == g)
        atomic_compare_exchange_strong(&sys->epoch, &g, g + 1);
    return min;
}

static uint32_t reclaim_list(rt_system_t *sys, rt_limbo_t *v, uint32_t n,
                             uint64_t safe)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (v[i].stamp <= safe)
            slot_reclaim(sys, rt__slot(sys, v[i].index));
        else
            v[kept++] = v[i];
    }
    return kept;
}

void rt__reclaim(rt_system_t *sys, rt_sched_t *s)
{
    bool global =
        atomic_load_explicit(&sys->limbo_hint, memory_order_relaxed) != 0;
    if (!(s && s->nlimbo) && !global)
        return;
    uint64_t safe = safe_epoch(sys, s);
    if (s)
        s->nlimbo = reclaim_list(sys, s->limbo, s->nlimbo, safe);
    if (global) {
        uv_mutex_lock(&sys->limbo_lock);
        sys->nlimbo = reclaim_list(sys, sys->limbo, sys->nlimbo, safe);
        atomic_store_explicit(&sys->limbo_hint, sys->nlimbo,
                              memory_order_relaxed);
        uv_mutex_unlock(&sys->limbo_lock);
    }
}

void rt__quiescent(rt_sched_t *s, bool online)
{
    /* release: our reads of actor slots come before a reclaimer's writes
     * to them. Going online is seq_cst so that what we read next is at
     * least as new as the epoch we announce. */
    if (!online)
        atomic_store_explicit(&s->qs_epoch, 0, memory_order_release);
    else
        atomic_store(&s->qs_epoch, atomic_load(&s->sys->epoch));
}

void rt__synchronize(rt_system_t *sys)
{
    uint64_t target = atomic_fetch_add(&sys->epoch, 1) + 1;
    for (;;) {
        bool done = true;
        for (int i = 0; i < sys->nsched; i++) {
            uint64_t q = atomic_load(&sys->sched[i]->qs_epoch);
            if (q && q < target)
                done = false;
        }
        if (done)
            return;
        rt__wake_all(sys);
        sched_yield();
    }
}

/* At shutdown, with every scheduler stopped. */
void rt__reclaim_all(rt_system_t *sys)
{
    for (int i = 0; i < sys->nsched; i++) {
        rt_sched_t *s = sys->sched[i];
        s->nlimbo = reclaim_list(sys, s->limbo, s->nlimbo, UINT64_MAX);
        free(s->limbo);
        s->limbo = NULL;
    }
    sys->nlimbo = reclaim_list(sys, sys->limbo, sys->nlimbo, UINT64_MAX);
    free(sys->limbo);
    sys->limbo = NULL;
}

/* ---- spawn ----------------------------------------------------------------
 */

/* Claims and fills a slot, and publishes it with the actor's own
 * reference. Nothing is scheduled yet. */
static rt_actor_t *spawn_slot(rt_system_t *sys, const rt_behaviour_t *b,
                              void *arg, const rt_spawn_opts_t *opts, int *err)
{
    if (!b || !b->handle) {
        *err = RT_EINVAL;
        return NULL;
    }
    if (atomic_load_explicit(&sys->stopping, memory_order_relaxed)) {
        *err = RT_ESHUTDOWN;
        return NULL;
    }
    uint32_t idx = slot_alloc(sys);
    if (idx == UINT32_MAX) {
        *err = RT_ELIMIT;
        return NULL;
    }
    rt_actor_t *a = rt__slot(sys, idx);
    /* The previous tenant's id carries the generation; a fresh slot reads
     * zero from the mapping. */
    uint64_t gen =
        (atomic_load_explicit(&a->id, memory_order_relaxed) >> RT_INDEX_BITS) +
        1;
    rt_id_t id = (gen << RT_INDEX_BITS) | idx;

    a->mb_stub = NULL;
    a->mb_tail = stub_of(a);
    atomic_store_explicit(&a->mb_head, stub_of(a), memory_order_relaxed);
    atomic_store_explicit(&a->mb_in, 0, memory_order_relaxed);
    atomic_store_explicit(&a->mb_out, 0, memory_order_relaxed);
    a->exit_reason = 0;
    atomic_store_explicit(&a->id, id, memory_order_relaxed);
    a->beh = b;
    a->ext = NULL;
    a->init_arg = arg;
    a->parent = opts ? opts->parent : 0;
    a->mb_limit = (opts && opts->mailbox_limit) ? opts->mailbox_limit
                                                : sys->cfg.mailbox_limit;
    a->lflags = 0;
    a->pin = -1;
    if (opts && opts->pinned) {
        int pin = opts->pin;
        if (pin < 0) {
            rt_sched_t *s = rt__this_sched();
            pin = (s && s->sys == sys) ? s->index : 0;
        }
        a->pin = (int8_t)(pin % sys->nsched);
    }
    if (opts && opts->trap_exit)
        a->lflags |= AF_TRAP;

    if (b->state_size <= RT_INLINE_STATE) {
        memset(a->istate, 0, sizeof(a->istate));
        a->state = a->istate;
    } else {
        a->state = calloc(1, b->state_size);
        if (!a->state) {
            slot_free(sys, idx);
            *err = RT_ENOMEM;
            return NULL;
        }
        a->lflags |= AF_STATE_HEAP;
    }

    a->restarts = 0;
    if (opts)
        a->restarts =
            opts->restarts > UINT16_MAX ? UINT16_MAX : (uint16_t)opts->restarts;
    if (opts && opts->link) {
        rt_actor_ext_t *x = rt__ext(a);
        if (!x || rt__idvec_add(&x->links, opts->link) < 0) {
            if (a->lflags & AF_STATE_HEAP)
                free(a->state);
            free(a->ext);
            slot_free(sys, idx);
            *err = RT_ENOMEM;
            return NULL;
        }
    }

    atomic_fetch_add_explicit(&sys->live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sys->spawned, 1, memory_order_relaxed);
    /* Publish: one reference held by the living actor. Release pairs with
     * the acquire in rt__acquire. */
    atomic_store_explicit(&a->ctl,
                          ((uint64_t)(uint32_t)gen << CTL_GEN_SHIFT) | 1,
                          memory_order_release);

    *err = 0;
    return a;
}

rt_id_t rt_spawn(rt_system_t *sys, const rt_behaviour_t *b, void *arg,
                 const rt_spawn_opts_t *opts, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    rt_actor_t *a = spawn_slot(sys, b, arg, opts, err);
    if (!a)
        return 0;
    rt_id_t id = a->id;
    if (opts && opts->link) {
        rt_msg_t *m = rt_msg_new(SYS_LINK, 0);
        if (m) {
            m->from = id;
            /* the other side learns of the link; if it is already dead we
             * get an exit at once */
            if (rt__send_sys(sys, opts->link, m) == RT_ENOPROC) {
                rt_msg_t *e = rt_msg_new(SYS_EXIT_SIGNAL, sizeof(sys_exit_t));
                if (e) {
                    sys_exit_t x = {opts->link, RT_ENOPROC, true};
                    memcpy(e->data, &x, sizeof(x));
                    e->from = opts->link;
                    rt__send_sys(sys, id, e);
                }
            }
        }
    }
    /* from here the actor may run and even die on another thread */
    rt__schedule(sys, a);
    return id;
}

static int port_handle(rt_actor_t *self, rt_msg_t *m)
{
    (void)self;
    (void)m;
    return RT_CONTINUE;
}

const rt_behaviour_t rt__port_behaviour = {
    .kind = "port",
    .handle = port_handle,
};

rt_actor_t *rt__spawn_port(rt_system_t *sys, void *port, int *err)
{
    rt_spawn_opts_t o = {.trap_exit = true};
    rt_actor_t *a = spawn_slot(sys, &rt__port_behaviour, NULL, &o, err);
    if (!a)
        return NULL;
    a->lflags |= AF_INITED;
    a->state = port;
    atomic_fetch_add_explicit(&sys->ports, 1, memory_order_relaxed);
    return a;
}

rt_id_t rt_self(const rt_actor_t *self)
{
    return self->id;
}

void *rt_state(rt_actor_t *self)
{
    return self->state;
}

const char *rt_kind(const rt_actor_t *self)
{
    return self->beh->kind ? self->beh->kind : "actor";
}

rt_system_t *rt_system(const rt_actor_t *self)
{
    (void)self;
    rt_sched_t *s = rt__this_sched();
    return s ? s->sys : NULL;
}

void rt_exit(rt_actor_t *self, int reason)
{
    self->lflags |= AF_EXITING;
    self->exit_reason = reason;
}

void rt_enter(rt_actor_t *self)
{
    rt__set_current(self);
}

void rt_leave(rt_actor_t *self)
{
    rt__set_current(NULL);
    if (!(self->lflags & AF_EXITING))
        return;
    /* the actor must end in a turn of its own: wake it */
    rt_msg_t *m = rt_msg_new(SYS_WAKE, 0);
    if (m) {
        m->from = self->id;
        rt__send_sys(rt_system(self), self->id, m);
    }
}

void rt_trap_exit(rt_actor_t *self, bool on)
{
    if (on)
        self->lflags |= AF_TRAP;
    else
        self->lflags &= (uint8_t)~AF_TRAP;
}

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

static int send_exit(rt_system_t *sys, rt_id_t to, rt_id_t who, int reason,
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
        return send_exit(sys, to, from, reason, false);

    rt_actor_t *a = rt__acquire(sys, to);
    if (!a)
        return RT_ENOPROC;
    /* The flag is seen between two messages, however long the queue; the
     * wake message makes an idle actor run to notice it. */
    atomic_fetch_or_explicit(&a->ctl, CTL_KILL, memory_order_release);
    rt_msg_t *m = rt_msg_new(SYS_WAKE, 0);
    int rc = m ? rt__deliver(sys, a, m, false) : RT_ENOMEM;
    rt__release(sys, a);
    return rc;
}

/* ---- links and monitors
 * ------------------------------------------------------ */

int rt_link(rt_actor_t *self, rt_id_t other)
{
    rt_system_t *sys = rt_system(self);
    rt_actor_ext_t *x = rt__ext(self);
    if (!x || rt__idvec_add(&x->links, other) < 0)
        return RT_ENOMEM;
    rt_msg_t *m = rt_msg_new(SYS_LINK, 0);
    if (!m)
        return RT_ENOMEM;
    m->from = self->id;
    if (rt__send_sys(sys, other, m) == RT_ENOPROC)
        send_exit(sys, self->id, other, RT_ENOPROC, true);
    return 0;
}

int rt_unlink(rt_actor_t *self, rt_id_t other)
{
    rt_system_t *sys = rt_system(self);
    if (self->ext)
        rt__idvec_del(&self->ext->links, other);
    rt_msg_t *m = rt_msg_new(SYS_UNLINK, 0);
    if (!m)
        return RT_ENOMEM;
    m->from = self->id;
    rt__send_sys(sys, other, m);
    return 0;
}

static void send_down(rt_system_t *sys, rt_id_t watcher, uint64_t ref,
                      rt_id_t who, int reason)
{
    rt_msg_t *m = rt_msg_new(RT_MSG_DOWN, sizeof(rt_exit_info_t));
    if (!m)
        return;
    rt_exit_info_t info = {who, reason};
    memcpy(m->data, &info, sizeof(info));
    m->from = who;
    m->ref = ref;
    rt__send_sys(sys, watcher, m);
}

/* Shared by actors and ports: `watcher` monitors `other` under `ref`. */
uint64_t rt__monitor(rt_system_t *sys, rt_actor_t *watcher, rt_id_t other)
{
    rt_actor_ext_t *x = rt__ext(watcher);
    uint64_t ref = rt__new_ref(sys);
    if (!x || rt__refvec_add(&x->monitors, ref, other) < 0)
        return 0;
    rt_msg_t *m = rt_msg_new(SYS_MONITOR, 0);
    if (!m)
        return 0;
    m->from = watcher->id;
    m->ref = ref;
    if (rt__send_sys(sys, other, m) == RT_ENOPROC)
        send_down(sys, watcher->id, ref, other, RT_ENOPROC);
    return ref;
}

uint64_t rt_monitor(rt_actor_t *self, rt_id_t other)
{
    return rt__monitor(rt_system(self), self, other);
}

void rt_demonitor(rt_actor_t *self, uint64_t ref)
{
    rt_id_t other;
    if (!self->ext || !rt__refvec_del(&self->ext->monitors, ref, &other))
        return;
    rt_msg_t *m = rt_msg_new(SYS_DEMONITOR, 0);
    if (!m)
        return;
    m->from = self->id;
    m->ref = ref;
    rt__send_sys(rt_system(self), other, m);
}

/* ---- arena
 * --------------------------------------------------------------------- */

struct rt_arena_chunk {
    struct rt_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

void *rt_alloc(rt_actor_t *self, size_t size)
{
    rt_actor_ext_t *x = rt__ext(self);
    if (!x)
        return NULL;
    size = (size + 15) & ~(size_t)15;
    struct rt_arena_chunk *c = x->arena;
    if (!c || c->cap - c->used < size) {
        /* chunks double from 256 bytes, so small actors stay small */
        size_t cap = c ? c->cap * 2 : 256;
        while (cap < size)
            cap *= 2;
        struct rt_arena_chunk *n = malloc(sizeof(*n) + cap);
        if (!n)
            return NULL;
        n->next = c;
        n->used = 0;
        n->cap = cap;
        x->arena = c = n;
    }
    void *p = c->mem + c->used;
    c->used += size;
    return p;
}

void rt__arena_free(rt_actor_t *a)
{
    struct rt_arena_chunk *c = a->ext ? a->ext->arena : NULL;
    while (c) {
        struct rt_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* ---- death
 * --------------------------------------------------------------------- */

static void ext_free(rt_actor_ext_t *x)
{
    if (!x)
        return;
    rt__idvec_free(&x->links);
    free(x->monitors.v);
    free(x->monitored_by.v);
    free(x->pending.v);
    free(x->names);
    free(x->keys);
    free(x);
}

struct exit_ctx {
    rt_system_t *sys;
    rt_id_t who;
    int reason;
};

static void exit_link(rt_id_t to, void *ctx)
{
    struct exit_ctx *ec = ctx;
    send_exit(ec->sys, to, ec->who, ec->reason, true);
}

/* Dying with messages unread: links and monitors among them are answered
 * now, as if made after the death, so their makers hear at once. What
 * arrives later is answered when the slot is reclaimed. */
static void answer_queued(rt_system_t *sys, rt_actor_t *a)
{
    rt_msg_t *m; /* we are the consumer: its turn, or a port's owner */
    while ((m = mb_pop(a))) {
        if (m->type == SYS_LINK)
            send_exit(sys, m->from, a->id, a->exit_reason, true);
        else if (m->type == SYS_MONITOR)
            send_down(sys, m->from, m->ref, a->id, a->exit_reason);
    }
}

void rt__die(rt_system_t *sys, rt_actor_t *a, int reason)
{
    a->exit_reason = reason;
    if ((a->lflags & AF_INITED) && a->beh->terminate)
        a->beh->terminate(a, reason);

    /* From here no sender can take a reference; those holding one may
     * still push, and their messages are freed with the slot. */
    atomic_fetch_or_explicit(&a->ctl, CTL_DEAD, memory_order_acq_rel);

    answer_queued(sys, a);

    rt_actor_ext_t *x = a->ext;
    if (x) {
        rt__unregister_all(sys, a);
        struct exit_ctx ec = {sys, a->id, reason};
        rt__idvec_each(&x->links, exit_link, &ec);
        for (uint32_t i = 0; i < x->monitored_by.n; i++)
            send_down(sys, x->monitored_by.v[i].id, x->monitored_by.v[i].ref,
                      a->id, reason);
        for (uint32_t i = 0; i < x->monitors.n; i++) {
            rt_msg_t *m = rt_msg_new(SYS_DEMONITOR, 0);
            if (m) {
                m->from = a->id;
                m->ref = x->monitors.v[i].ref;
                rt__send_sys(sys, x->monitors.v[i].id, m);
            }
        }
        rt__pending_drop(sys, a);
        rt__handles_close(a);
        rt__arena_free(a);
        ext_free(x);
        a->ext = NULL;
    }
    if (a->lflags & AF_STATE_HEAP)
        free(a->state);
    a->state = NULL;

    atomic_fetch_sub_explicit(&sys->live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sys->exited, 1, memory_order_relaxed);
    if (!rt_reason_is_normal(reason))
        atomic_fetch_add_explicit(&sys->crashed, 1, memory_order_relaxed);
    rt__release(sys, a);
}

/* ---- system messages
 * ------------------------------------------------------------ */

static void send_detail(rt_system_t *sys, rt_actor_t *a, rt_id_t to,
                        uint64_t ref);

static int on_exit_signal(rt_actor_t *a, rt_msg_t *m, int *reason)
{
    sys_exit_t e;
    memcpy(&e, m->data, sizeof(e));
    /* an exit from an actor we no longer link to is stale */
    if (e.is_link && (!a->ext || !rt__idvec_del(&a->ext->links, e.who)))
        return SYSMSG_DONE;
    if (a->lflags & AF_TRAP) {
        /* turn the signal into the visible message, in place */
        rt_exit_info_t info = {e.who, e.reason};
        m->type = RT_MSG_EXIT;
        m->size = sizeof(info);
        memcpy(m->data, &info, sizeof(info));
        return SYSMSG_PASS;
    }
    if (e.reason == RT_NORMAL)
        return SYSMSG_DONE;
    *reason = e.reason;
    return SYSMSG_DIE;
}

/* Handles a runtime message: consumed, passed on to the handler, or fatal
 * (with *reason set). */
int rt__handle_system(rt_system_t *sys, rt_actor_t *a, rt_msg_t *m, int *reason)
{
    rt_actor_ext_t *x;
    switch (m->type) {
    case SYS_EXIT_SIGNAL:
        return on_exit_signal(a, m, reason);
    case SYS_LINK:
        x = rt__ext(a);
        if (x)
            rt__idvec_add(&x->links, m->from);
        return SYSMSG_DONE;
    case SYS_UNLINK:
        if (a->ext)
            rt__idvec_del(&a->ext->links, m->from);
        return SYSMSG_DONE;
    case SYS_MONITOR:
        x = rt__ext(a);
        if (x)
            rt__refvec_add(&x->monitored_by, m->ref, m->from);
        return SYSMSG_DONE;
    case SYS_DEMONITOR:
        if (a->ext)
            rt__refvec_del(&a->ext->monitored_by, m->ref, NULL);
        return SYSMSG_DONE;
    case RT_MSG_DOWN:
        /* after rt_demonitor() a DOWN already on its way is dropped */
        return a->ext && rt__refvec_del(&a->ext->monitors, m->ref, NULL)
                   ? SYSMSG_PASS
                   : SYSMSG_DONE;
    case RT_MSG_TIMEOUT:
        return rt__pending_take(sys, a, m->ref) ? SYSMSG_PASS : SYSMSG_DONE;
    case SYS_DETAIL_REQ: {
        rt_id_t to;
        memcpy(&to, m->data, sizeof(to));
        send_detail(sys, a, to, m->ref);
        return SYSMSG_DONE;
    }
    default:
        return m->type == SYS_WAKE ? SYSMSG_DONE : SYSMSG_PASS;
    }
}

/* ---- a turn
 * ----------------------------------------------------------------------- */

void rt__run_actor(rt_sched_t *s, rt_actor_t *a)
{
    rt_system_t *sys = s->sys;
    rt__set_current(a);
    int reason = 0;
    bool dead = false;

    if (!(a->lflags & AF_INITED)) {
        void *arg = a->init_arg;
        a->lflags |= AF_INITED;
        int rc = a->beh->init ? a->beh->init(a, arg) : 0;
        if (rc < 0 || (a->lflags & AF_EXITING)) {
            reason = rc < 0 ? rc : a->exit_reason;
            dead = true;
        } else if (rc == RT_STOP) {
            dead = true;
        }
    }

    /* rt_exit() from a handle callback (rt_enter/rt_leave) */
    if (!dead && (a->lflags & AF_EXITING)) {
        reason = a->exit_reason;
        dead = true;
    }

    uint32_t n = 0;
    uint32_t batch = sys->cfg.batch;
    while (!dead && n < batch) {
        if (atomic_load_explicit(&a->ctl, memory_order_relaxed) & CTL_KILL) {
            reason = RT_EKILLED;
            dead = true;
            break;
        }
        rt_msg_t *m = mb_pop(a);
        if (!m)
            break;
        n++;
        /* the next message was most likely written on another core:
         * start fetching it while this one is handled */
        rt_msg_t *ahead = atomic_load_explicit(&m->next, memory_order_relaxed);
        if (ahead)
            __builtin_prefetch(ahead);
        /* the depth counts messages waiting, not the one in hand; only
         * this thread writes `out`, so a plain store will do */
        atomic_store_explicit(
            &a->mb_out,
            atomic_load_explicit(&a->mb_out, memory_order_relaxed) + 1,
            memory_order_relaxed);
        int what = SYSMSG_PASS;
        if (m->type >= RT_MSG_SYSTEM && m->type < RT_MSG_LIB) {
            what = rt__handle_system(sys, a, m, &reason);
        } else if (m->ref & RT_REF_REPLY) {
            m->ref &= ~RT_REF_REPLY;
            what = rt__pending_take(sys, a, m->ref) ? SYSMSG_PASS : SYSMSG_DONE;
        }
        if (what == SYSMSG_DIE) {
            dead = true;
            break;
        }
        if (what == SYSMSG_DONE)
            continue;
        int rc = a->beh->handle(a, m);
        if (rc < 0 || rc == RT_STOP || (a->lflags & AF_EXITING)) {
            if (rc < 0)
                reason = rc;
            else if (a->lflags & AF_EXITING)
                reason = a->exit_reason;
            else
                reason = RT_NORMAL;
            dead = true;
        }
    }
    if (n) {
        atomic_store_explicit(
            &s->messages,
            atomic_load_explicit(&s->messages, memory_order_relaxed) + n,
            memory_order_relaxed);
    }
    rt__set_current(NULL);

    if (dead) {
        rt__set_current(a);
        rt__die(sys, a, reason);
        rt__set_current(NULL);
        return;
    }
    /* A full batch means more may wait; an empty queue may be marked idle
     * unless a producer slipped in, in which case we go round again. */
    if (n == batch || !mb_mark_idle(a))
        rt__schedule(sys, a);
}

/* ---- introspection
 * ------------------------------------------------------------------ */

static void fill_info(rt_actor_t *a, rt_id_t id, rt_actor_info_t *out)
{
    out->id = id;
    out->kind = a->beh->kind ? a->beh->kind : "actor";
    out->parent = a->parent;
    out->mailbox = mb_depth(a);
    out->handled = atomic_load_explicit(&a->mb_out, memory_order_relaxed);
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

void rt_actor_foreach(rt_system_t *sys,
                      int (*fn)(const rt_actor_info_t *ai, void *ctx),
                      void *ctx)
{
    uint32_t hi = atomic_load_explicit(&sys->next_fresh, memory_order_acquire);
    for (uint32_t i = 0; i < hi; i++) {
        rt_actor_t *a = rt__slot(sys, i);
        uint64_t c = atomic_load_explicit(&a->ctl, memory_order_acquire);
        if (c & CTL_DEAD || !(c & CTL_REFS_MASK))
            continue;
        /* take a reference so the fields belong to one tenant */
        rt_actor_t *b = rt__acquire(
            sys, atomic_load_explicit(&a->id, memory_order_relaxed));
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

static void send_detail(rt_system_t *sys, rt_actor_t *a, rt_id_t to,
                        uint64_t ref)
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
        rt_actor_t *a = rt__slot(sys, i);
        uint64_t c = atomic_load_explicit(&a->ctl, memory_order_acquire);
        if (c & CTL_DEAD || !(c & CTL_REFS_MASK))
            continue;
        rt_actor_t *b = rt__acquire(
            sys, atomic_load_explicit(&a->id, memory_order_relaxed));
        if (!b)
            continue;
        bool port = rt__is_port(b);
        rt_id_t id = b->id;
        rt__release(sys, b);
        if (!port)
            rt_kill(sys, id, RT_EKILLED);
    }
}
