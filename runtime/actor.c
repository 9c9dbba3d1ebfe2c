/*
 * actor.c - an actor's life: spawn, its turns on a scheduler, the runtime
 * messages it handles itself, and its death.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    uint32_t idx = rt__slot_alloc(sys);
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
    /* An actor with no init has nothing to do until its first message:
     * born idle (the mark set), it costs no run-queue trip, and the first
     * producer schedules it. */
    atomic_store_explicit(
        &a->mb_head,
        b->init ? stub_of(a) : (rt_msg_t *)((uintptr_t)stub_of(a) | MB_MARK),
        memory_order_relaxed);
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
    a->lflags = b->init ? 0 : AF_INITED;
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
            rt__slot_free(sys, idx);
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
            rt__slot_free(sys, idx);
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
    if (b->init)
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
    /* a port marks itself idle when it waits; nobody knows its id yet */
    atomic_store_explicit(&a->mb_head, stub_of(a), memory_order_relaxed);
    a->state = port;
    atomic_fetch_add_explicit(&sys->ports, 1, memory_order_relaxed);
    return a;
}

rt_id_t rt_self(const rt_actor_t *self)
{
    return self->id;
}

rt_id_t rt_parent(const rt_actor_t *self)
{
    return self->parent;
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
    rt__send_exit(ec->sys, to, ec->who, ec->reason, true);
}

/* Dying with messages unread: links and monitors among them are answered
 * now, as if made after the death, so their makers hear at once. What
 * arrives later is answered when the slot is reclaimed. */
static void answer_queued(rt_system_t *sys, rt_actor_t *a)
{
    rt_msg_t *m; /* we are the consumer: its turn, or a port's owner */
    bool inited = a->lflags & AF_INITED;
    while ((m = mb_pop(a))) {
        if (m->type == SYS_LINK)
            rt__send_exit(sys, m->from, a->id, a->exit_reason, true);
        else if (m->type == SYS_MONITOR)
            rt__send_down(sys, m->from, m->ref, a->id, a->exit_reason);
        else if (inited && a->beh->undelivered &&
                 (m->type < RT_MSG_SYSTEM || m->type >= RT_MSG_LIB))
            a->beh->undelivered(a, m);
    }
}

void rt__die(rt_system_t *sys, rt_actor_t *a, int reason)
{
    a->exit_reason = reason;
    if ((a->lflags & AF_INITED) && a->beh->terminate)
        a->beh->terminate(a, reason);

    /* From here no sender can take a reference; those holding one may
     * still push, and their messages are freed with the slot. A sender
     * waiting for room learns of the death instead. */
    uint64_t was =
        atomic_fetch_or_explicit(&a->ctl, CTL_DEAD, memory_order_acq_rel);
    if (was & CTL_ROOM)
        rt__room_wake(sys, a, a->id);

    answer_queued(sys, a);

    rt_actor_ext_t *x = a->ext;
    if (x) {
        rt__unregister_all(sys, a);
        struct exit_ctx ec = {sys, a->id, reason};
        rt__idvec_each(&x->links, exit_link, &ec);
        for (uint32_t i = 0; i < x->monitored_by.n; i++)
            rt__send_down(sys, x->monitored_by.v[i].id,
                          x->monitored_by.v[i].ref, a->id, reason);
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
        rt__send_detail(sys, a, to, m->ref);
        return SYSMSG_DONE;
    }
    default:
        return m->type == SYS_WAKE ? SYSMSG_DONE : SYSMSG_PASS;
    }
}

/* ---- a turn
 * ----------------------------------------------------------------------- */

/*
 * Messages this turn may handle: the configured batch, or as many as wait,
 * up to RT_DEEP_TURNS batches. An actor that has fallen behind is what
 * holds its producers up (they pile messages into its mailbox, or are
 * refused and wait for room), so it gets more of the core until it has
 * caught up; a fixed batch would give a single consumer of many producers
 * one turn in as many as there are producers. The turn stays bounded, so
 * no actor waits longer than RT_DEEP_TURNS batches for another.
 */
static uint32_t turn_length(const rt_system_t *sys, rt_actor_t *a)
{
    uint32_t batch = sys->cfg.batch, waiting = mb_depth(a);
    if (waiting <= batch)
        return batch;
    if (waiting / RT_DEEP_TURNS >= batch)
        return batch * RT_DEEP_TURNS;
    return waiting;
}

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
    uint32_t batch = turn_length(sys, a);
    while (!dead && n < batch) {
        /* every 8th message: ctl shares its cache line with what senders
         * write, and a read per message would pull it back each time */
        if ((n & 7) == 0 &&
            (atomic_load_explicit(&a->ctl, memory_order_relaxed) & CTL_KILL)) {
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
    /* a kill whose wake message this turn took, after the last look */
    if (!dead && (n & 7) != 0 &&
        (atomic_load_explicit(&a->ctl, memory_order_relaxed) & CTL_KILL)) {
        reason = RT_EKILLED;
        dead = true;
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
    if (atomic_load_explicit(&a->ctl, memory_order_relaxed) & CTL_ROOM)
        rt__room_check(sys, a);
    /* A full batch means more may wait; an empty queue may be marked idle
     * unless a producer slipped in, in which case we go round again. */
    if (n == batch || !mb_mark_idle(a))
        rt__schedule(sys, a);
}
