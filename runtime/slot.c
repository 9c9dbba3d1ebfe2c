/*
 * slot.c - the actor table: claiming and freeing slots, references, and
 * the quiescent-state reclamation that lets schedulers send without them
 * (see the comment at the top of rt_internal.h).
 */
#include "rt_internal.h"

#include <sched.h>
#include <string.h>

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

uint32_t rt__slot_alloc(rt_system_t *sys)
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

void rt__slot_free(rt_system_t *sys, uint32_t idx)
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
                rt__send_exit(sys, n->from, id, a->exit_reason, true);
            else if (n->type == SYS_MONITOR)
                rt__send_down(sys, n->from, n->ref, id, a->exit_reason);
        }
        if (n != stub_of(a))
            rt_msg_free(n);
        n = next;
    }
    a->mb_tail = NULL;
    rt__slot_free(sys, (uint32_t)(id & RT_INDEX_MASK));
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
    atomic_store_explicit(&sys->limbo_hint, sys->nlimbo, memory_order_relaxed);
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

/* A list's stamps never decrease (each is the global epoch, which only
 * grows, at the time of appending), so what is safe is a prefix: free it
 * and move the rest down, without looking at entries still waiting. */
static uint32_t reclaim_list(rt_system_t *sys, rt_limbo_t *v, uint32_t n,
                             uint64_t safe)
{
    uint32_t k = 0;
    while (k < n && v[k].stamp <= safe) {
        slot_reclaim(sys, rt__slot(sys, v[k].index));
        k++;
    }
    if (k && k < n)
        memmove(v, v + k, (n - k) * sizeof(*v));
    return n - k;
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
