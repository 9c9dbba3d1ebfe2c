/*
 * rt_internal.h - what the runtime's files share and nothing else sees.
 *
 * Memory layout. Every actor lives in a fixed 128-byte slot of one big
 * table mapped at start (MAP_NORESERVE, so untouched slots cost nothing).
 * An actor id is (generation << RT_INDEX_BITS) | index: a sender finds the
 * slot with a mask, and the generation tells a live actor from an earlier
 * tenant of the same slot. Slots are never unmapped, so a stale id always
 * points at readable memory; the `ctl` word decides whether it may be used.
 *
 * The ctl word packs, from high to low bits: the low 32 bits of the
 * generation, 8 flag bits, and a 24-bit reference count. A sender takes a
 * reference with one CAS that also checks generation and DEAD, so it can
 * never pin a slot that has been (or is being) recycled. The actor holds
 * one reference while alive; whoever drops the last reference after DEAD
 * is set retires the slot. Since nothing can take a reference once DEAD is
 * set, exactly one party sees that last drop.
 *
 * Scheduler threads send without references, which would cost two
 * contended atomic operations per message on a popular receiver. Instead
 * a retired slot waits in limbo until every scheduler has passed a
 * quiescent point (the gap between two actor turns) since it was retired:
 * then none of them can still hold a pointer they found before DEAD was
 * set, and the slot is drained and freed. Each scheduler publishes the
 * global epoch it last saw at a quiescent point, or 0 while asleep (when
 * it holds no pointers, and the event callbacks it runs use references).
 */
#ifndef PARLEY_RT_INTERNAL_H
#define PARLEY_RT_INTERNAL_H

#include "rt.h"
#include "rt_map.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>

#define RT_INDEX_BITS       24
#define RT_INDEX_MASK       ((UINT64_C(1) << RT_INDEX_BITS) - 1)
#define RT_MAX_ACTORS_LIMIT (1u << RT_INDEX_BITS)
#define RT_SLOT_SIZE        128
#define RT_INLINE_STATE     24

/* ctl word */
#define CTL_REFS_MASK UINT64_C(0xffffff)
#define CTL_DEAD      (UINT64_C(1) << 24) /* no new references */
#define CTL_KILL      (UINT64_C(1) << 25) /* untrappable kill pending */
#define CTL_REG       (UINT64_C(1) << 26) /* has registry entries */
#define CTL_ROOM      (UINT64_C(1) << 27) /* refused senders wait (room.c) */
#define CTL_GEN_SHIFT 32
#define CTL_GEN(ctl)  ((uint32_t)((ctl) >> CTL_GEN_SHIFT))

/* local flags, touched only by the thread running the actor */
enum {
    AF_INITED = 1 << 0,
    AF_TRAP = 1 << 1,
    AF_EXITING = 1 << 2,
    AF_STATE_HEAP = 1 << 5,
};

/* Runtime-internal message types; never seen by handlers. */
enum {
    SYS_EXIT_SIGNAL = RT_MSG_SYSTEM + 32, /* payload sys_exit_t */
    SYS_LINK,                             /* from links to self */
    SYS_UNLINK,
    SYS_MONITOR,    /* ref: monitor ref; from: watcher */
    SYS_DEMONITOR,  /* ref */
    SYS_DETAIL_REQ, /* payload rt_id_t to; ref */
    SYS_WAKE,       /* no-op: wakes an actor to notice CTL_KILL */
};

/* Messages the supervisor library protocol uses: passed to handlers. */
#define RT_MSG_LIB RT_MSG_SUP_STARTED

/* Set on msg->ref by rt_reply(); stripped before the handler sees it. */
#define RT_REF_REPLY (UINT64_C(1) << 63)

typedef struct sys_exit {
    rt_id_t who;
    int reason;
    bool is_link; /* from a linked actor's death, not rt_kill() */
} sys_exit_t;

/* A set of ids: a small array, or a hash map once it outgrows
 * RT_IDVEC_SMALL (a supervisor links to all of its thousands of
 * children). */
#define RT_IDVEC_SMALL 16
typedef struct rt_idvec {
    rt_id_t *v;
    uint32_t n, cap;
    rt_map_t *big;
} rt_idvec_t;

typedef struct rt_refpair {
    uint64_t ref;
    rt_id_t id;
} rt_refpair_t;

typedef struct rt_refvec {
    rt_refpair_t *v;
    uint32_t n, cap;
} rt_refvec_t;

struct rt_arena_chunk;
struct rt_handle_rec;

/* What few actors need, allocated on first use. */
typedef struct rt_actor_ext {
    rt_idvec_t links;
    rt_refvec_t monitors;     /* (ref, target) this actor watches */
    rt_refvec_t monitored_by; /* (ref, watcher) watching this actor */
    rt_refvec_t pending;      /* (request ref, timeout timer ref) */
    struct rt_arena_chunk *arena;
    struct rt_handle_rec *handles;
} rt_actor_ext_t;

struct rt_actor {
    /* first cache line: what senders touch */
    _Atomic uint64_t ctl;
    rt_msg_t *_Atomic mb_head; /* producers' end; low bit: idle mark */
    _Atomic uint32_t mb_in;    /* messages ever pushed (wraps) */
    uint32_t mb_limit;
    _Atomic rt_id_t id;        /* written at spawn, read by senders */
    rt_msg_t *_Atomic mb_stub; /* the stub node: only `next` is used */
    rt_id_t parent;
    int8_t pin; /* scheduler index, or -1 if not pinned; set at spawn */
    uint8_t lflags;
    uint16_t restarts;   /* set at spawn by a supervisor; saturates */
    int32_t exit_reason; /* with AF_EXITING, and once dead */
    const rt_behaviour_t *beh;

    /* second cache line: the owner's, so the consumer does not fight
     * producers for the first */
    rt_msg_t *mb_tail;       /* last consumed node (or the stub) */
    _Atomic uint64_t mb_out; /* messages ever popped: "handled" */
    void *state;
    rt_actor_ext_t *ext;
    void *init_arg; /* for init; the spawner's, then the actor's */
    _Alignas(8) unsigned char istate[RT_INLINE_STATE];
};

static_assert(sizeof(struct rt_actor) == RT_SLOT_SIZE,
              "an actor slot is exactly 128 bytes");
static_assert(offsetof(rt_msg_t, next) == 0,
              "the stub node is a bare next pointer");

/* ---- mailbox primitives ---- */

/*
 * The mailbox is an intrusive multi-producer single-consumer queue. The
 * consumer keeps the last node it consumed as `mb_tail` (initially the
 * stub), and pops by following tail->next. Producers exchange themselves
 * into `mb_head` and then link the previous head to themselves. The low bit
 * of mb_head is the idle mark: the consumer sets it with a CAS when it finds
 * the queue empty, and the one producer whose exchange returns a marked
 * pointer knows the actor is on no run queue and schedules it. So an actor
 * is scheduled exactly once per idle period without a separate flag.
 */

#define MB_MARK ((uintptr_t)1)

static inline rt_msg_t *unmark(rt_msg_t *p)
{
    return (rt_msg_t *)((uintptr_t)p & ~MB_MARK);
}

static inline rt_msg_t *stub_of(rt_actor_t *a)
{
    return (rt_msg_t *)&a->mb_stub;
}

/* Messages waiting, as far as relaxed reads of the two counters tell;
 * never negative. */
static inline uint32_t mb_depth(rt_actor_t *a)
{
    uint32_t in = atomic_load_explicit(&a->mb_in, memory_order_relaxed);
    uint32_t out =
        (uint32_t)atomic_load_explicit(&a->mb_out, memory_order_relaxed);
    int32_t d = (int32_t)(in - out);
    return d > 0 ? (uint32_t)d : 0;
}

/* Pushes m; returns true if the actor was idle and must be scheduled. */
static inline bool mb_push(rt_actor_t *a, rt_msg_t *m)
{
    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    /* acq_rel: release publishes m's contents to the consumer; acquire
     * orders us after the consumer's idle-marking CAS. */
    rt_msg_t *prev =
        atomic_exchange_explicit(&a->mb_head, m, memory_order_acq_rel);
    bool was_idle = ((uintptr_t)prev & MB_MARK) != 0;
    atomic_store_explicit(&unmark(prev)->next, m, memory_order_release);
    return was_idle;
}

static inline rt_msg_t *mb_pop(rt_actor_t *a)
{
    rt_msg_t *tail = a->mb_tail;
    rt_msg_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (!next)
        return NULL;
    a->mb_tail = next;
    if (tail != stub_of(a))
        rt_msg_free(tail);
    return next;
}

/* Tries to mark the empty mailbox idle. False if a producer got in first:
 * then the actor must run again. On success the queue is reset to the
 * embedded stub and the last consumed message is freed, so an idle actor
 * keeps no message: a producer that exchanged the old tail into its
 * `prev` would have moved the head, and the CAS would have failed. */
static inline bool mb_mark_idle(rt_actor_t *a)
{
    rt_msg_t *tail = a->mb_tail, *stub = stub_of(a);
    rt_msg_t *expect = tail;
    if (tail != stub) {
        /* the stub leaves the queue only here and at a pop, so no
         * producer links to it now; the CAS publishes these stores */
        atomic_store_explicit(&a->mb_stub, NULL, memory_order_relaxed);
        a->mb_tail = stub;
    }
    if (!atomic_compare_exchange_strong_explicit(
            &a->mb_head, &expect, (rt_msg_t *)((uintptr_t)stub | MB_MARK),
            memory_order_acq_rel, memory_order_relaxed)) {
        a->mb_tail = tail;
        return false;
    }
    if (tail != stub)
        rt_msg_free(tail);
    return true;
}

/* ---- schedulers ---- */

#define RT_RUNQ_CAP 1024u
/* A turn handles up to this many batches when that many wait (actor.c). */
#define RT_DEEP_TURNS 16u

/* A growable ring of actors, guarded by its owner's lock. */
typedef struct rt_actorq {
    rt_actor_t **v;
    uint32_t head, len, cap;
} rt_actorq_t;

typedef struct rt_cmd rt_cmd_t;

typedef struct rt_sched {
    rt_system_t *sys;
    int index;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t limbo_timer; /* wakes a sleeper that left slots in limbo */

    /* Local run queue: a ring the owner pushes at tail; the owner and
     * thieves pop at head with a CAS. */
    _Atomic uint32_t rq_head;
    _Atomic uint32_t rq_tail;
    rt_actor_t *_Atomic rq_buf[RT_RUNQ_CAP];

    /* Actors pinned here that became ready on another thread. */
    uv_mutex_t pin_lock;
    rt_actorq_t pinq;
    _Atomic uint32_t pin_len;

    /* Commands from other threads (timers). */
    uv_mutex_t cmd_lock;
    rt_cmd_t *cmds;

    /* Timers owned by this loop: ref -> record. */
    uv_mutex_t timer_lock;
    rt_map_t timers;

    _Atomic int sleeping;

    /* free slot indexes cached by this thread */
    uint32_t *free_idx;
    uint32_t nfree;

    /* quiescent-state reclamation: the epoch seen at the last quiescent
     * point, or 0 while asleep; and slots retired here, waiting */
    _Atomic uint64_t qs_epoch;
    struct rt_limbo *limbo;
    uint32_t nlimbo, cap_limbo;

    /* counters, written by the owner, read by anyone */
    _Atomic uint64_t turns, messages, steals, sleeps;
    _Atomic uint64_t busy_ns;            /* time not asleep, up to busy_since */
    _Atomic uint64_t busy_since;         /* when it last woke; 0 while asleep */
    uint64_t last_busy_ns, last_wall_ns; /* for rt_sched_info's ratio */
    uint32_t tick;        /* turns, for the look at the shared queues */
    uint64_t shared_msgs; /* `messages` at that look */
} rt_sched_t;

struct rt_system {
    rt_config_t cfg;
    int nsched;
    rt_sched_t **sched;
    _Atomic int nsleeping;
    _Atomic int stopping;
    _Atomic int running_threads;

    /* the actor table */
    unsigned char *slots;
    uint32_t max_actors;
    _Atomic uint32_t next_fresh;
    uv_mutex_t free_lock;
    uint32_t *free_idx;
    uint32_t nfree, cap_free;

    /* senders waiting for room in a full mailbox: receiver id -> a
     * malloc'd rt_idvec_t of waiter ids (room.c) */
    uv_mutex_t room_lock;
    rt_map_t room;

    /* unpinned actors made ready outside a scheduler, or overflow */
    uv_mutex_t glob_lock;
    rt_actorq_t globq;
    _Atomic uint32_t glob_len;

    _Atomic uint64_t epoch;
    uv_mutex_t limbo_lock; /* slots retired outside schedulers */
    struct rt_limbo *limbo;
    uint32_t nlimbo, cap_limbo;
    _Atomic uint32_t limbo_hint; /* nlimbo, readable without the lock */

    _Atomic uint64_t next_ref;
    _Atomic uint32_t next_pick;

    struct rt_registry *reg;

    /* counters */
    _Atomic uint64_t ports; /* live actors that are ports */
    _Atomic uint64_t live, spawned, exited, crashed, mailbox_full;
};

static inline rt_actor_t *rt__slot(rt_system_t *sys, uint32_t index)
{
    return (rt_actor_t *)(sys->slots + (size_t)index * RT_SLOT_SIZE);
}

typedef struct rt_limbo {
    uint32_t index;
    uint64_t stamp; /* reclaimable once every scheduler has seen it */
} rt_limbo_t;

/* The scheduler of the calling thread, or NULL. */
rt_sched_t *rt__this_sched(void);
void rt__set_this_sched(rt_sched_t *s);
void rt__set_current(rt_actor_t *a);

/* actor.c */
rt_actor_t *rt__acquire(rt_system_t *sys, rt_id_t id);
/* A free slot's index, or UINT32_MAX when the table is full. */
uint32_t rt__slot_alloc(rt_system_t *sys);
void rt__slot_free(rt_system_t *sys, uint32_t idx);
/* Marks a quiescent point of scheduler s (or, online = false, puts it to
 * sleep); and frees what has waited long enough. */
void rt__quiescent(rt_sched_t *s, bool online);
void rt__reclaim(rt_system_t *sys, rt_sched_t *s);
/* Waits until every scheduler has passed a quiescent point. Blocking. */
void rt__synchronize(rt_system_t *sys);
void rt__reclaim_all(rt_system_t *sys);
void rt__release(rt_system_t *sys, rt_actor_t *a);

/* room.c: at the end of a turn of an actor with CTL_ROOM, and when an
 * actor whose ctl had CTL_ROOM dies; and at system stop. */
void rt__room_check(rt_system_t *sys, rt_actor_t *a);
void rt__room_wake(rt_system_t *sys, rt_actor_t *a, rt_id_t id);
void rt__room_free(rt_system_t *sys);
void rt__run_actor(rt_sched_t *s, rt_actor_t *a);
int rt__send_sys(rt_system_t *sys, rt_id_t to, rt_msg_t *m);
rt_actor_ext_t *rt__ext(rt_actor_t *a);
uint64_t rt__new_ref(rt_system_t *sys);
/* Doubles an array's capacity (from 1). 0 or RT_ENOMEM. */
int rt__grow(void **v, uint32_t *cap, size_t elem);
int rt__idvec_add(rt_idvec_t *v, rt_id_t id);
bool rt__idvec_del(rt_idvec_t *v, rt_id_t id);
uint32_t rt__idvec_len(const rt_idvec_t *v);
/* Calls fn for each id (the set must not change meanwhile). */
void rt__idvec_each(const rt_idvec_t *v, void (*fn)(rt_id_t, void *),
                    void *ctx);
void rt__idvec_free(rt_idvec_t *v);
int rt__refvec_add(rt_refvec_t *v, uint64_t ref, rt_id_t id);
bool rt__refvec_del(rt_refvec_t *v, uint64_t ref, rt_id_t *id_out);
void rt__kill_all(rt_system_t *sys);
int rt__send_exit(rt_system_t *sys, rt_id_t to, rt_id_t who, int reason,
                  bool is_link);
void rt__send_down(rt_system_t *sys, rt_id_t watcher, uint64_t ref, rt_id_t who,
                   int reason);
void rt__send_detail(rt_system_t *sys, rt_actor_t *a, rt_id_t to, uint64_t ref);

int rt__deliver(rt_system_t *sys, rt_actor_t *a, rt_msg_t *m, bool bounded);
void rt__die(rt_system_t *sys, rt_actor_t *a, int reason);
rt_actor_t *rt__spawn_port(rt_system_t *sys, void *port, int *err);
extern const rt_behaviour_t rt__port_behaviour;
static inline bool rt__is_port(const rt_actor_t *a)
{
    return a->beh == &rt__port_behaviour;
}
uint64_t rt__monitor(rt_system_t *sys, rt_actor_t *watcher, rt_id_t other);
enum { SYSMSG_DONE = 0, SYSMSG_PASS = 1, SYSMSG_DIE = 2 };
int rt__handle_system(rt_system_t *sys, rt_actor_t *a, rt_msg_t *m,
                      int *reason);

/* Frees the calling thread's cache of small messages. */
void rt__msg_cache_flush(void);

/* sched.c */
void rt__schedule(rt_system_t *sys, rt_actor_t *a);
int rt__sched_start(rt_system_t *sys);
void rt__sched_join(rt_system_t *sys);
void rt__wake_all(rt_system_t *sys);
uint64_t rt__now_ns(void);

/* commands run on a scheduler's own thread */
struct rt_cmd {
    rt_cmd_t *next;
    void (*fn)(rt_sched_t *s, void *arg);
    void *arg;
};
void rt__post(rt_sched_t *s, void (*fn)(rt_sched_t *, void *), void *arg);

/* timer.c */
void rt__timers_init(rt_sched_t *s);
void rt__timers_close(rt_sched_t *s);
void rt__pending_drop(rt_system_t *sys, rt_actor_t *a);
bool rt__pending_take(rt_system_t *sys, rt_actor_t *a, uint64_t ref);

/* registry.c */
int rt__registry_init(rt_system_t *sys);
void rt__registry_free(rt_system_t *sys);
void rt__unregister_all(rt_system_t *sys, rt_actor_t *a);

/* port.c */
void rt__port_notify(rt_actor_t *a);

/* handles */
void rt__handles_close(rt_actor_t *a);
void rt__arena_free(rt_actor_t *a);

#endif /* PARLEY_RT_INTERNAL_H */
