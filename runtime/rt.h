/*
 * rt.h - Parley's actor runtime: the public contract.
 *
 * The runtime knows nothing of chat. It gives lightweight actors with
 * lock-free mailboxes, scheduled over threads that libuv creates (one
 * uv_loop_t per scheduler), plus the pieces of Erlang/OTP a server needs:
 * links, monitors, a name registry, timers, request/reply with timeouts,
 * supervisors, named fault points, and introspection that never stops the
 * world.
 *
 * Results: every call that can fail returns 0 (or a positive value) on
 * success and a negative RT_E* code on failure; rt_strerror() names each.
 * The codes are negative errno values where one fits.
 *
 * Threads: a function documented "any thread" may be called from a
 * scheduler (inside an actor's handler) or from any other thread. A function
 * documented "actor" must be called from inside the handler of the actor it
 * is given (`self`). Nothing here blocks a scheduler except the calls
 * documented "blocking", which are for threads that are not schedulers.
 */
#ifndef PARLEY_RT_H
#define PARLEY_RT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- results ---------------------------------------------------------- */

enum {
    RT_OK = 0,
    RT_ENOMEM = -ENOMEM,        /* allocation failed */
    RT_EINVAL = -EINVAL,        /* bad argument */
    RT_ENOPROC = -ESRCH,        /* no live actor has that id */
    RT_EFULL = -ENOBUFS,        /* mailbox at its bound: message refused */
    RT_EEXIST = -EEXIST,        /* name already registered */
    RT_ENOENT = -ENOENT,        /* no such name, child or fault point */
    RT_ETIMEDOUT = -ETIMEDOUT,  /* a deadline passed */
    RT_ELIMIT = -EMFILE,        /* actor table full (max_actors reached) */
    RT_ESHUTDOWN = -ESHUTDOWN,  /* the system is stopping */
    RT_EFAULT_INJECTED = -4096, /* an armed fault point said "fail" */
    RT_ECRASH = -4097,          /* a handler crashed (failed check, fault) */
    RT_EKILLED = -4098,         /* killed: an untrappable exit */
    RT_EINTENSITY = -4099,      /* supervisor: restart intensity exceeded */
};

/* The name of a result code, e.g. "RT_EFULL (mailbox full)". Never NULL. */
const char *rt_strerror(int code);

/* ---- types ------------------------------------------------------------ */

/* An actor id: 64 bits, never reused within a run of the process. 0 is
 * "no actor". Ids are not ordered: a newer actor may have a smaller id. */
typedef uint64_t rt_id_t;

typedef struct rt_system rt_system_t;
typedef struct rt_actor rt_actor_t;

/* Exit reasons are ints. RT_NORMAL is the quiet end: it alone does not
 * spread along links to actors that do not trap exits. RT_SHUTDOWN is what
 * a supervisor asks of a child; like any other reason it ends non-trapping
 * linked actors (as in Erlang), but it counts as normal for restart
 * decisions (a transient child is not restarted). RT_EKILLED sent with
 * rt_kill() cannot be trapped. Any other negative value is a crash with
 * that cause. */
enum { RT_NORMAL = 0, RT_SHUTDOWN = 1 };

static inline bool rt_reason_is_normal(int reason)
{
    return reason == RT_NORMAL || reason == RT_SHUTDOWN;
}

/*
 * A message. Allocated with rt_msg_new(), owned by the runtime once sent.
 * The receiver may read it during its handler only: the runtime frees it
 * afterwards. `data` holds `size` bytes of payload, 16-byte aligned.
 */
typedef struct rt_msg {
    struct rt_msg *_Atomic next; /* mailbox link: the runtime's */
    uint32_t type;               /* user types are below RT_MSG_SYSTEM */
    uint32_t size;               /* payload bytes */
    rt_id_t from;                /* sender, or 0 from outside any actor */
    uint64_t ref;                /* request/reply and timer correlation */
    _Alignas(16) unsigned char data[];
} rt_msg_t;

/* Message types at or above this value belong to the runtime. Those an actor
 * can see in its handler are listed here; others never reach it. */
#define RT_MSG_SYSTEM 0xffff0000u
enum {
    /* A linked actor exited and this actor traps exits. Payload:
     * rt_exit_info_t. */
    RT_MSG_EXIT = RT_MSG_SYSTEM + 1,
    /* A monitored actor exited. Payload: rt_exit_info_t; msg->ref is the
     * monitor's reference. */
    RT_MSG_DOWN,
    /* A request made with rt_request() got no reply in time; msg->ref is
     * the request's reference. Payload: none. */
    RT_MSG_TIMEOUT,
    /* Work handed to the thread pool with rt_work() finished. Payload:
     * rt_work_done_t. */
    RT_MSG_WORK_DONE,
    /* Asked for with rt_await_room(): msg->from's mailbox is down to half
     * its bound, or msg->from has died. Payload: none. */
    RT_MSG_ROOM,
    RT_MSG_SYSTEM_LAST_VISIBLE_,
};

typedef struct rt_exit_info {
    rt_id_t who;
    int reason;
} rt_exit_info_t;

/* Handler results: continue, stop normally, or (negative) crash. */
enum { RT_CONTINUE = 0, RT_STOP = 1 };

/*
 * A behaviour: what an actor does. `state_size` bytes of zeroed state are
 * given to init (rt_state()). The three callbacks run on the actor's
 * scheduler, never two at once for one actor.
 *
 * init:      returns 0 to start, negative to fail (the actor exits with that
 *            reason before handling any message), or RT_STOP to decline
 *            quietly (it exits with RT_NORMAL, so a transient or temporary
 *            child is not restarted: OTP's `ignore`). May be NULL.
 * handle:    one message; returns RT_CONTINUE, RT_STOP, or a negative crash
 *            reason. Required.
 * terminate: called once as the actor ends, whatever the reason, before its
 *            memory, handles, names, links and monitors are released. May be
 *            NULL.
 * describe:  writes a one-line summary of the state for introspection;
 *            called on the actor's own thread. May be NULL.
 * undelivered: called once for each message of the actor's own types
 *            still queued when it ends, after terminate and after it can
 *            take no new message, so that a request nobody will handle
 *            can still be answered (with an error). The actor's state is
 *            still there; the message is the runtime's. May be NULL: the
 *            messages are dropped. A sender that was already delivering
 *            at that instant may still lose its message: the window is
 *            one push wide.
 */
typedef struct rt_behaviour {
    const char *kind;
    size_t state_size;
    int (*init)(rt_actor_t *self, void *arg);
    int (*handle)(rt_actor_t *self, rt_msg_t *msg);
    void (*terminate)(rt_actor_t *self, int reason);
    void (*describe)(rt_actor_t *self, char *buf, size_t len);
    void (*undelivered)(rt_actor_t *self, rt_msg_t *msg);
} rt_behaviour_t;

/* ---- the system --------------------------------------------------------- */

typedef struct rt_config {
    int schedulers;         /* threads; 0 = one per core */
    uint32_t max_actors;    /* live actors at once; 0 = 4,194,304 */
    uint32_t batch;         /* messages per actor turn; 0 = 64. An actor
                             * with more waiting gets a longer turn, up
                             * to 16 batches */
    uint32_t mailbox_limit; /* default bound per mailbox; 0 = 16,384 */
    uint64_t fault_seed;    /* seed for fault points; 0 = from the clock */
} rt_config_t;

/* Creates and starts the schedulers. Returns NULL with *err set on failure.
 * Any thread, blocking. */
rt_system_t *rt_system_start(const rt_config_t *cfg, int *err);

/* Stops the system: every live actor is sent a kill in reverse order of
 * spawning unless it already exited, the schedulers drain and their threads
 * are joined, then all memory is freed. Call rt_sup_stop() on the root of a
 * supervision tree first for an ordered shutdown. Blocking. */
void rt_system_stop(rt_system_t *sys);

int rt_system_schedulers(const rt_system_t *sys);

/* Registers fn to run on every scheduler thread just before it exits, for
 * what a library keeps per thread (a decoder, a buffer). Registering the
 * same fn again does nothing. At most 16 functions. 0, RT_ELIMIT. Any
 * thread. */
int rt_thread_cleanup(void (*fn)(void));

/* The actor running on this thread now, or NULL outside any handler. */
rt_actor_t *rt_current(void);

/* ---- actors ---------------------------------------------------------------
 */

typedef struct rt_spawn_opts {
    rt_id_t link; /* link to this actor from birth (spawn_link) */
    int pin;      /* scheduler index to pin to; -1 = the
                   * caller's scheduler; 0 in a zeroed struct
                   * means "not pinned" only with `pinned` unset */
    bool pinned;
    bool trap_exit;         /* receive exits of links as RT_MSG_EXIT */
    uint32_t mailbox_limit; /* 0 = the system default */
    rt_id_t parent;         /* supervisor, for introspection */
    uint32_t restarts;      /* times this child slot was restarted before */
} rt_spawn_opts_t;

/* Spawns an actor. Its init runs on a scheduler soon after, not before this
 * returns. Returns the id (> 0), or 0 with *err set (RT_ELIMIT, RT_ENOMEM,
 * RT_ESHUTDOWN). `opts` may be NULL. Any thread. */
rt_id_t rt_spawn(rt_system_t *sys, const rt_behaviour_t *b, void *arg,
                 const rt_spawn_opts_t *opts, int *err);

rt_id_t rt_self(const rt_actor_t *self);
/* The supervisor (or other parent) named at spawn, or 0. */
rt_id_t rt_parent(const rt_actor_t *self);
rt_system_t *rt_system(const rt_actor_t *self);
void *rt_state(rt_actor_t *self);
const char *rt_kind(const rt_actor_t *self);

/* Allocates from the actor's own arena: the memory lives until the actor
 * ends and is released with it in one step. Never fails short of the process
 * running out of memory (NULL then). Actor. */
void *rt_alloc(rt_actor_t *self, size_t size);

/* Ends the actor after the current handler returns, with `reason`. Actor. */
void rt_exit(rt_actor_t *self, int reason);

/* Sets whether exits of linked actors arrive as RT_MSG_EXIT messages
 * (true) or end this actor too when abnormal (false). Actor. */
void rt_trap_exit(rt_actor_t *self, bool on);

/* ---- messages -------------------------------------------------------------
 */

/* A message with `size` bytes of uninitialised payload. NULL when out of
 * memory. Any thread. */
rt_msg_t *rt_msg_new(uint32_t type, uint32_t size);
void rt_msg_free(rt_msg_t *m);

/* Sends `m` to `to`; `m` is owned by the runtime from here, even on
 * failure. m->from is set to the current actor. Returns 0, RT_ENOPROC (no
 * such live actor) or RT_EFULL (its mailbox is at its bound: the message
 * was dropped, the caller decides what that means). Any thread. */
int rt_send(rt_system_t *sys, rt_id_t to, rt_msg_t *m);

/* After a send to `to` was refused with RT_EFULL: self gets one
 * RT_MSG_ROOM (from = to) once to's mailbox is down to half its bound,
 * soon if it already is, or when `to` dies; then it sends again. Asking
 * twice before the answer comes gets one answer. Returns 0, RT_ENOPROC
 * (no such live actor: nothing will come) or RT_ENOMEM. From self's own
 * handler. */
int rt_await_room(rt_actor_t *self, rt_id_t to);

/* rt_msg_new() + copy + rt_send(). Returns RT_ENOMEM too. Any thread. */
int rt_send_copy(rt_system_t *sys, rt_id_t to, uint32_t type, const void *data,
                 uint32_t size);

/* Sends an exit signal: RT_EKILLED kills even a trapping actor, within 8
 * messages of its queue however long; any other reason behaves as if a
 * linked actor had exited with it. Any thread. */
int rt_kill(rt_system_t *sys, rt_id_t to, int reason);

/* ---- links and monitors ----------------------------------------------------
 */

/* Links self and other both ways. If other is not alive, self receives an
 * exit with reason RT_ENOPROC as if it had died at once. Actor. */
int rt_link(rt_actor_t *self, rt_id_t other);
int rt_unlink(rt_actor_t *self, rt_id_t other);

/* Monitors `other`: self gets one RT_MSG_DOWN with the returned reference
 * when it exits (at once, reason RT_ENOPROC, if it is not alive). Returns
 * the reference (> 0). Actor. */
uint64_t rt_monitor(rt_actor_t *self, rt_id_t other);
void rt_demonitor(rt_actor_t *self, uint64_t ref);

/* ---- names -------------------------------------------------------------- */

/* Registers a name (a string) or a key (64 bits, any value but one
 * reserved constant, which gives RT_EINVAL) for `id`. A name is removed
 * when its actor ends. RT_EEXIST if taken by a live actor. Any thread. */
int rt_register(rt_system_t *sys, const char *name, rt_id_t id);
int rt_register_key(rt_system_t *sys, uint64_t key, rt_id_t id);
int rt_unregister(rt_system_t *sys, const char *name);
int rt_unregister_key(rt_system_t *sys, uint64_t key);
/* The actor registered under a name or key, or 0. Any thread. */
rt_id_t rt_whereis(rt_system_t *sys, const char *name);
rt_id_t rt_whereis_key(rt_system_t *sys, uint64_t key);

/* ---- timers, requests ------------------------------------------------------
 */

/* Sends `m` to `to` after `ms` milliseconds. Returns a timer reference
 * (> 0) for rt_cancel_timer(), or a negative code (m is freed then). Any
 * thread. */
int64_t rt_send_after(rt_system_t *sys, rt_id_t to, rt_msg_t *m, uint64_t ms);

/* Cancels a timer. Returns 0 if it will not fire, RT_ENOENT if it already
 * fired or never existed. Any thread. */
int rt_cancel_timer(rt_system_t *sys, int64_t ref);

/* Sends `m` to `to` as a request. The reply (rt_reply()) arrives later as a
 * message whose ref equals the returned reference; if none arrives within
 * `timeout_ms`, an RT_MSG_TIMEOUT with that ref arrives instead and a late
 * reply is dropped before the handler sees it. Returns the reference (> 0)
 * or a negative code (m freed). Actor. */
int64_t rt_request(rt_actor_t *self, rt_id_t to, rt_msg_t *m,
                   uint64_t timeout_ms);

/* Answers request `req` with `reply` (its ref is set from req). Any
 * thread. */
int rt_reply(rt_system_t *sys, const rt_msg_t *req, rt_msg_t *reply);

/* ---- blocking work ----------------------------------------------------------
 */

typedef struct rt_work_done {
    uint64_t tag; /* as given to rt_work() */
    int result;   /* what fn returned */
    void *arg;    /* as given to rt_work(): the actor owns it again */
} rt_work_done_t;

/* Runs fn(arg) on the libuv thread pool (for fsync, password hashing, file
 * I/O); when it returns, self gets RT_MSG_WORK_DONE carrying rt_work_done_t.
 * fn must not touch actor state other than through arg. Actor. */
int rt_work(rt_actor_t *self, int (*fn)(void *arg), void *arg, uint64_t tag);

/* ---- libuv handles ----------------------------------------------------------
 */

/* The loop of the scheduler that runs self. Only a pinned actor may own
 * handles on it; its handle callbacks run on the same thread between actor
 * turns, so they may use the actor's state freely. Actor. */
uv_loop_t *rt_loop(rt_actor_t *self);

/* Allocates a libuv handle of `size` bytes owned by self: when the actor
 * ends, the runtime closes it (if the actor has not) and frees it after its
 * close callback. The handle's `data` field is left to the caller. Pinned
 * actor. */
void *rt_handle_new(rt_actor_t *self, size_t size);

/* Closes a handle made with rt_handle_new() now and frees it afterwards.
 * Pinned actor. */
void rt_handle_close(rt_actor_t *self, void *handle);

/* Handle callbacks run between actor turns, outside any actor. Bracketing
 * a callback with rt_enter(self) ... rt_leave(self) makes it act as self:
 * rt_current() returns self, rt_send() stamps self's id, and the calls
 * documented "Actor" may be used. If the callback calls rt_exit(), the
 * actor ends at once when rt_leave() runs its next turn. Pinned actor's
 * own thread, outside a turn; not nestable. */
void rt_enter(rt_actor_t *self);
void rt_leave(rt_actor_t *self);

/* ---- ports: mailboxes for threads that are not schedulers ------------------
 */

/* A port is an actor id whose messages are taken by a plain thread (a test,
 * main, a CLI) with rt_port_recv() instead of by a handler. It can link,
 * monitor and be replied to like any actor. */
typedef struct rt_port rt_port_t;
rt_port_t *rt_port_new(rt_system_t *sys);
rt_id_t rt_port_id(const rt_port_t *p);
/* Waits up to timeout_ms (< 0: forever) for the next message; NULL on
 * time-out. The caller frees it with rt_msg_free(). Blocking. */
rt_msg_t *rt_port_recv(rt_port_t *p, int timeout_ms);
/* Monitors `who` from the port; see rt_monitor(). */
uint64_t rt_port_monitor(rt_port_t *p, rt_id_t who);
/* Sends a request and waits for its reply; NULL on time-out. Blocking. */
rt_msg_t *rt_port_call(rt_port_t *p, rt_id_t to, rt_msg_t *m, int timeout_ms);
void rt_port_free(rt_port_t *p);

/* ---- supervisors
 * ------------------------------------------------------------- */

typedef enum rt_strategy {
    RT_ONE_FOR_ONE,
    RT_ONE_FOR_ALL,
    RT_REST_FOR_ONE,
    RT_SIMPLE_ONE_FOR_ONE, /* dynamic children of the one spec */
} rt_strategy_t;

typedef enum rt_restart {
    RT_PERMANENT, /* always restarted */
    RT_TRANSIENT, /* restarted after an abnormal exit only */
    RT_TEMPORARY, /* never restarted */
} rt_restart_t;

typedef struct rt_child_spec {
    const char *name; /* for introspection; copied */
    const rt_behaviour_t *behaviour;
    void *arg; /* given to init at every (re)start */
    rt_restart_t restart;
    uint32_t shutdown_ms; /* grace before a kill; 0 = 5,000 */
    bool is_supervisor;   /* shown as such in the tree */
    bool pinned;          /* pin to `pin` */
    int pin;
} rt_child_spec_t;

typedef struct rt_sup_spec {
    const char *name; /* for introspection */
    rt_strategy_t strategy;
    uint32_t intensity; /* restarts allowed ... */
    uint32_t period_ms; /* ... within this window */
    const rt_child_spec_t *children;
    size_t nchildren;   /* with SIMPLE_ONE_FOR_ONE: exactly 1 */
    bool register_name; /* also rt_register() it under `name` */
} rt_sup_spec_t;

/* The behaviour of a supervisor; its spawn arg is a const rt_sup_spec_t *
 * that must outlive it. Its children start in order during its init. When
 * intensity is exceeded it stops all children and exits with
 * RT_EINTENSITY, so its own supervisor decides next. */
extern const rt_behaviour_t rt_supervisor;

/* Starts a supervisor (not linked to anything). Any thread. */
rt_id_t rt_sup_start(rt_system_t *sys, const rt_sup_spec_t *spec, int *err);

/* Starts a dynamic child (SIMPLE_ONE_FOR_ONE) with its own arg. Returns
 * the child's id, or 0 with *err set. Blocking (uses a port). */
rt_id_t rt_sup_start_child(rt_system_t *sys, rt_id_t sup, void *arg, int *err);

/* The same from inside an actor: the reply arrives as a message of type
 * RT_MSG_SUP_STARTED with the returned ref, whose payload is an
 * rt_sup_started_t. Actor. */
#define RT_MSG_SUP_STARTED (RT_MSG_SYSTEM + 128)
typedef struct rt_sup_started {
    rt_id_t child;
    int err;
} rt_sup_started_t;
int64_t rt_sup_start_child_async(rt_actor_t *self, rt_id_t sup, void *arg,
                                 uint64_t timeout_ms);

/* Stops a supervisor and its tree in order (children in reverse start
 * order, each given its shutdown grace) and waits until it has exited.
 * Blocking. */
int rt_sup_stop(rt_system_t *sys, rt_id_t sup, int timeout_ms);

/* ---- fault points
 * -------------------------------------------------------------- */

typedef enum rt_fault_action {
    RT_FAULT_NONE = 0,
    RT_FAULT_FAIL,  /* the caller returns an error */
    RT_FAULT_DELAY, /* the check sleeps delay_ms, then the caller goes on */
    RT_FAULT_CRASH, /* the calling actor crashes */
    RT_FAULT_DROP,  /* the caller drops what it was handling */
} rt_fault_action_t;

typedef struct rt_fault_arm {
    rt_fault_action_t action;
    double probability; /* per hit, 0..1; used when count is 0 */
    uint64_t count;     /* fire on the next `count` hits, then disarm */
    uint64_t after;     /* let this many hits pass first */
    uint32_t delay_ms;  /* for RT_FAULT_DELAY */
} rt_fault_arm_t;

/* A named place in the code that can be armed. Define with RT_FAULT_POINT,
 * check with rt_fault(). */
typedef struct rt_fault_point rt_fault_point_t;

/* Returns what to do at this hit: RT_FAULT_NONE when disarmed (a single
 * relaxed load). DELAY has already slept when it returns. Any thread. */
rt_fault_action_t rt_fault_hit(rt_fault_point_t *fp);

/* Looks up (or creates) the fault point `name`. The pointer lives as long
 * as the process. */
rt_fault_point_t *rt_fault_point(const char *name);

/* rt_fault("store.commit") at a site: cached lookup, then a hit. */
#define rt_fault(name)                                                         \
    __extension__({                                                            \
        static rt_fault_point_t *_rt_fp;                                       \
        if (!_rt_fp)                                                           \
            _rt_fp = rt_fault_point(name);                                     \
        rt_fault_hit(_rt_fp);                                                  \
    })

int rt_fault_arm(const char *name, const rt_fault_arm_t *arm);

/* Arms points from a text setting, as a config file or an operator writes
 * it: entries separated by ',' or ';', each
 *   NAME=ACTION[:p=PROB][:count=N][:after=N][:delay=MS]
 * with ACTION one of fail, delay, crash, drop; without p or count the
 * point fires on every hit. Returns the number of points armed, or
 * RT_EINVAL with a message naming the bad entry in err (if not NULL). */
int rt_fault_arm_spec(const char *spec, char *err, size_t errlen);
int rt_fault_disarm(const char *name);
/* Reseeds every point's generator: the same seed and the same sequence of
 * hits give the same faults. */
void rt_fault_seed(uint64_t seed);

typedef struct rt_fault_info {
    const char *name;
    rt_fault_arm_t arm; /* action NONE when disarmed */
    uint64_t hits;      /* times reached */
    uint64_t fired;     /* times it did something */
} rt_fault_info_t;
/* Calls fn for every known point. */
void rt_fault_foreach(void (*fn)(const rt_fault_info_t *fi, void *ctx),
                      void *ctx);

/* ---- introspection
 * ----------------------------------------------------------- */

typedef struct rt_actor_info {
    rt_id_t id;
    const char *kind;
    rt_id_t parent;
    uint32_t mailbox;  /* messages waiting */
    uint64_t handled;  /* messages handled */
    uint32_t restarts; /* times its supervisor restarted its child slot */
    int scheduler;     /* pinned scheduler, or -1 */
    bool is_port;
} rt_actor_info_t;

/* Reads one actor's counters without stopping it. RT_ENOPROC if dead.
 * Any thread. */
int rt_actor_info(rt_system_t *sys, rt_id_t id, rt_actor_info_t *out);

/* Calls fn for every live actor, reading each without stopping it; stops
 * early if fn returns non-zero. Any thread. */
void rt_actor_foreach(rt_system_t *sys,
                      int (*fn)(const rt_actor_info_t *ai, void *ctx),
                      void *ctx);

typedef struct rt_sched_info {
    int index;
    uint64_t turns;    /* actor turns run */
    uint64_t messages; /* messages handled */
    uint64_t steals;   /* actors taken from others */
    uint64_t sleeps;   /* times it went idle */
    uint32_t runq;     /* actors ready now */
    double busy;       /* fraction of wall time running actors, since
                        * the previous call */
} rt_sched_info_t;

typedef struct rt_system_info {
    int schedulers;
    uint64_t live_actors;
    uint64_t spawned;
    uint64_t exited;
    uint64_t crashed;
    uint64_t messages;
    uint64_t mailbox_full; /* sends refused by a bounded mailbox */
} rt_system_info_t;

void rt_system_info(rt_system_t *sys, rt_system_info_t *out);
int rt_sched_info(rt_system_t *sys, int index, rt_sched_info_t *out);

/* Asks actor `id` for the detail only it can read safely (its links,
 * monitors, state summary, supervisor's children) and sends it to `to` as a
 * message of type RT_MSG_DETAIL carrying rt_actor_detail_t, with msg->ref =
 * ref. Any thread. */
#define RT_MSG_DETAIL (RT_MSG_SYSTEM + 64)
typedef struct rt_actor_detail {
    rt_actor_info_t info;
    uint32_t nlinks, nmonitors, nmonitored_by, nchildren;
    rt_id_t links[16]; /* the first 16 of each */
    rt_id_t monitors[16];
    rt_id_t children[16];
    char summary[256];
} rt_actor_detail_t;
int rt_actor_detail(rt_system_t *sys, rt_id_t id, rt_id_t to, uint64_t ref);

#endif /* PARLEY_RT_H */
