/*
 * supervisor.c - OTP-style supervisors as an actor behaviour.
 *
 * A supervisor traps exits and links to each child at its birth. When a
 * child exits it looks the child up by id in a hash map (O(1), which is
 * what lets it restart 100,000 children a second where OTP scans a list),
 * applies the child's restart type, counts the restart against its
 * intensity, and then, by strategy, restarts the one child, or stops the
 * others (in reverse start order, each given its grace) and restarts them
 * in start order.
 *
 * Stopping is asynchronous: the supervisor sends the child a shutdown exit
 * and a timer to itself, and moves on when the child's exit arrives, or
 * kills it when the timer does. A supervisor never blocks its scheduler.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <string.h>

enum {
    SUP_START_CHILD = RT_MSG_LIB + 1, /* payload: void *arg */
    SUP_STOP_TIMEOUT,                 /* ref: the child id being stopped */
};

typedef struct sup_child {
    const rt_child_spec_t *spec;
    void *arg;
    rt_id_t id; /* 0 while not running */
    uint32_t restarts;
} sup_child_t;

typedef enum { AFTER_NOTHING, AFTER_RESTART, AFTER_EXIT } sup_after_t;

typedef struct sup {
    const rt_sup_spec_t *spec;
    sup_child_t *kids;
    uint32_t n, cap;
    rt_map_t by_id; /* child actor id -> index + 1 */

    uint64_t *stamps; /* the last `intensity` restart times, a ring */
    uint32_t nstamps, stamp_pos;

    /* ordered stop in progress */
    uint32_t *stop; /* indexes, in the order to stop them */
    uint32_t nstop, stop_pos;
    int64_t stop_timer;
    sup_after_t after;
    uint32_t restart_from; /* AFTER_RESTART: restart kids[from..] */
    uint32_t restart_only; /* or only this one, when != UINT32_MAX */
    int exit_reason;       /* AFTER_EXIT */
} sup_t;

static uint64_t now_ms(void)
{
    return rt__now_ns() / 1000000u;
}

static sup_child_t *child_of(sup_t *s, rt_id_t id, uint32_t *idx)
{
    uint64_t v;
    if (!id || !rt_map_get(&s->by_id, id, &v))
        return NULL;
    *idx = (uint32_t)(v - 1);
    return &s->kids[*idx];
}

static int start_child(rt_actor_t *self, sup_t *s, uint32_t i)
{
    sup_child_t *c = &s->kids[i];
    rt_spawn_opts_t o = {
        .link = rt_self(self),
        .parent = rt_self(self),
        .pinned = c->spec->pinned,
        .pin = c->spec->pin,
        .restarts = c->restarts,
    };
    int err;
    rt_id_t id =
        rt_spawn(rt_system(self), c->spec->behaviour, c->arg, &o, &err);
    if (!id)
        return err;
    c->id = id;
    return rt_map_put(&s->by_id, id, (uint64_t)i + 1);
}

static int add_child(sup_t *s, const rt_child_spec_t *spec, void *arg)
{
    if (s->n == s->cap &&
        rt__grow((void **)&s->kids, &s->cap, sizeof(*s->kids)) < 0)
        return RT_ENOMEM;
    s->kids[s->n] = (sup_child_t){spec, arg, 0, 0};
    return (int)s->n++;
}

/* Dynamic children leave no trace when they end for good. */
static void remove_child(sup_t *s, uint32_t i)
{
    uint32_t last = s->n - 1;
    if (i != last) {
        s->kids[i] = s->kids[last];
        if (s->kids[i].id)
            rt_map_put(&s->by_id, s->kids[i].id, (uint64_t)i + 1);
    }
    s->n--;
}

/* Records a restart; false when intensity is exceeded. */
static bool allow_restart(sup_t *s)
{
    uint32_t k = s->spec->intensity;
    if (k == 0)
        return false;
    uint64_t now = now_ms();
    if (!s->stamps) {
        s->stamps = calloc(k, sizeof(*s->stamps));
        if (!s->stamps)
            return false;
    }
    /* The oldest of the last k restarts: if it is still within the
     * period, this one would make k + 1 inside it. */
    if (s->nstamps == k &&
        now - s->stamps[s->stamp_pos] < (uint64_t)s->spec->period_ms)
        return false;
    s->stamps[s->stamp_pos] = now;
    s->stamp_pos = (s->stamp_pos + 1) % k;
    if (s->nstamps < k)
        s->nstamps++;
    return true;
}

/* ---- ordered stop ---- */

static void stop_next(rt_actor_t *self, sup_t *s);

static void finish_stop(rt_actor_t *self, sup_t *s)
{
    free(s->stop);
    s->stop = NULL;
    s->nstop = s->stop_pos = 0;
    sup_after_t after = s->after;
    s->after = AFTER_NOTHING;
    if (after == AFTER_EXIT) {
        rt_exit(self, s->exit_reason);
        return;
    }
    if (after != AFTER_RESTART)
        return;
    if (s->restart_only != UINT32_MAX) {
        if (start_child(self, s, s->restart_only) < 0)
            rt_exit(self, RT_ECRASH);
        return;
    }
    for (uint32_t i = s->restart_from; i < s->n; i++) {
        if (s->kids[i].id)
            continue;
        s->kids[i].restarts++;
        if (start_child(self, s, i) < 0) {
            rt_exit(self, RT_ECRASH);
            return;
        }
    }
}

static void stop_next(rt_actor_t *self, sup_t *s)
{
    rt_system_t *sys = rt_system(self);
    while (s->stop_pos < s->nstop) {
        sup_child_t *c = &s->kids[s->stop[s->stop_pos]];
        if (!c->id) {
            s->stop_pos++;
            continue;
        }
        if (rt_kill(sys, c->id, RT_SHUTDOWN) == RT_ENOPROC) {
            /* already gone; its exit is on its way and will be stale */
            rt_map_del(&s->by_id, c->id, NULL);
            c->id = 0;
            s->stop_pos++;
            continue;
        }
        uint32_t grace = c->spec->shutdown_ms ? c->spec->shutdown_ms : 5000;
        rt_msg_t *t = rt_msg_new(SUP_STOP_TIMEOUT, 0);
        if (t) {
            t->ref = c->id;
            s->stop_timer = rt_send_after(sys, rt_self(self), t, grace);
        }
        return; /* wait for its exit */
    }
    finish_stop(self, s);
}

/* Stops kids[from..to) in reverse, then does `after`. */
static void begin_stop(rt_actor_t *self, sup_t *s, uint32_t from, uint32_t to,
                       sup_after_t after)
{
    s->after = after;
    s->nstop = 0;
    s->stop_pos = 0;
    free(s->stop);
    s->stop = to > from ? malloc((to - from) * sizeof(uint32_t)) : NULL;
    for (uint32_t i = to; s->stop && i-- > from;)
        s->stop[s->nstop++] = i;
    stop_next(self, s);
}

static void shut_down(rt_actor_t *self, sup_t *s, int reason)
{
    s->exit_reason = reason;
    begin_stop(self, s, 0, s->n, AFTER_EXIT);
}

/* ---- exits ---- */

static void on_child_exit(rt_actor_t *self, sup_t *s, uint32_t i, int reason)
{
    sup_child_t *c = &s->kids[i];
    rt_map_del(&s->by_id, c->id, NULL);
    c->id = 0;
    bool simple = s->spec->strategy == RT_SIMPLE_ONE_FOR_ONE;

    bool restart =
        c->spec->restart == RT_PERMANENT ||
        (c->spec->restart == RT_TRANSIENT && !rt_reason_is_normal(reason));
    if (!restart) {
        if (simple)
            remove_child(s, i);
        return;
    }
    if (!allow_restart(s)) {
        shut_down(self, s, RT_EINTENSITY);
        return;
    }
    c->restarts++;
    switch (s->spec->strategy) {
    case RT_ONE_FOR_ONE:
    case RT_SIMPLE_ONE_FOR_ONE:
        if (start_child(self, s, i) < 0)
            shut_down(self, s, RT_ECRASH);
        break;
    case RT_ONE_FOR_ALL:
        s->restart_from = 0;
        s->restart_only = UINT32_MAX;
        c->restarts--; /* counted again by finish_stop */
        begin_stop(self, s, 0, s->n, AFTER_RESTART);
        break;
    case RT_REST_FOR_ONE:
        s->restart_from = i;
        s->restart_only = UINT32_MAX;
        c->restarts--;
        begin_stop(self, s, i + 1, s->n, AFTER_RESTART);
        break;
    }
}

static int on_exit_msg(rt_actor_t *self, sup_t *s, const rt_exit_info_t *e)
{
    uint32_t i;
    sup_child_t *c = child_of(s, e->who, &i);
    if (!c) {
        /* Not a child: the parent, or someone asking us to stop. A normal
         * exit of a stranger means nothing. */
        if (e->reason == RT_NORMAL)
            return RT_CONTINUE;
        if (s->after != AFTER_EXIT)
            shut_down(self, s,
                      e->reason == RT_SHUTDOWN ? RT_SHUTDOWN : e->reason);
        return RT_CONTINUE;
    }
    if (s->stop && s->stop_pos < s->nstop && s->stop[s->stop_pos] == i) {
        /* the child we were stopping has stopped */
        rt_cancel_timer(rt_system(self), s->stop_timer);
        rt_map_del(&s->by_id, c->id, NULL);
        c->id = 0;
        s->stop_pos++;
        stop_next(self, s);
        return RT_CONTINUE;
    }
    if (s->after != AFTER_NOTHING) {
        /* Crashed while others are being stopped: it is restarted with
         * them if it is in the set, or stays down if we are exiting. */
        rt_map_del(&s->by_id, c->id, NULL);
        c->id = 0;
        return RT_CONTINUE;
    }
    on_child_exit(self, s, i, e->reason);
    return RT_CONTINUE;
}

/* ---- the behaviour ---- */

static int sup_init(rt_actor_t *self, void *arg)
{
    sup_t *s = rt_state(self);
    const rt_sup_spec_t *spec = arg;
    if (!spec ||
        (spec->strategy == RT_SIMPLE_ONE_FOR_ONE && spec->nchildren != 1))
        return RT_EINVAL;
    s->spec = spec;
    s->restart_only = UINT32_MAX;
    rt_trap_exit(self, true);
    if (spec->register_name && spec->name) {
        int rc = rt_register(rt_system(self), spec->name, rt_self(self));
        if (rc < 0)
            return rc;
    }
    if (spec->strategy == RT_SIMPLE_ONE_FOR_ONE)
        return 0;
    for (size_t i = 0; i < spec->nchildren; i++) {
        int idx = add_child(s, &spec->children[i], spec->children[i].arg);
        if (idx < 0)
            return idx;
        int rc = start_child(self, s, (uint32_t)idx);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int sup_handle(rt_actor_t *self, rt_msg_t *m)
{
    sup_t *s = rt_state(self);
    switch (m->type) {
    case RT_MSG_EXIT:
        return on_exit_msg(self, s, (const rt_exit_info_t *)m->data);
    case SUP_STOP_TIMEOUT: {
        uint32_t i;
        /* still not gone after its grace: kill it; its exit follows */
        if (s->stop && s->stop_pos < s->nstop && child_of(s, m->ref, &i) &&
            s->stop[s->stop_pos] == i)
            rt_kill(rt_system(self), m->ref, RT_EKILLED);
        return RT_CONTINUE;
    }
    case SUP_START_CHILD: {
        rt_sup_started_t r = {0, 0};
        void *arg;
        memcpy(&arg, m->data, sizeof(arg));
        if (s->spec->strategy != RT_SIMPLE_ONE_FOR_ONE) {
            r.err = RT_EINVAL;
        } else if (s->after != AFTER_NOTHING) {
            r.err = RT_ESHUTDOWN;
        } else {
            int idx = add_child(s, &s->spec->children[0], arg);
            r.err = idx < 0 ? idx : start_child(self, s, (uint32_t)idx);
            if (idx >= 0 && r.err < 0)
                remove_child(s, (uint32_t)idx);
            else if (idx >= 0)
                r.child = s->kids[idx].id;
        }
        rt_msg_t *rep = rt_msg_new(RT_MSG_SUP_STARTED, sizeof(r));
        if (rep) {
            memcpy(rep->data, &r, sizeof(r));
            rt_reply(rt_system(self), m, rep);
        }
        return RT_CONTINUE;
    }
    default:
        return RT_CONTINUE;
    }
}

static void sup_terminate(rt_actor_t *self, int reason)
{
    sup_t *s = rt_state(self);
    rt_system_t *sys = rt_system(self);
    /* Killed outright or ending on an error path: children must not
     * outlive us. Linked children get our exit too; this is for the ones
     * trapping exits. */
    if (reason == RT_EKILLED || s->after != AFTER_EXIT) {
        for (uint32_t i = s->n; i-- > 0;)
            if (s->kids[i].id)
                rt_kill(sys, s->kids[i].id, RT_EKILLED);
    }
    free(s->kids);
    free(s->stamps);
    free(s->stop);
    rt_map_free(&s->by_id);
}

static void sup_describe(rt_actor_t *self, char *buf, size_t len)
{
    sup_t *s = rt_state(self);
    static const char *const names[] = {"one_for_one", "one_for_all",
                                        "rest_for_one", "simple_one_for_one"};
    uint32_t running = 0;
    for (uint32_t i = 0; i < s->n; i++)
        running += s->kids[i].id != 0;
    snprintf(buf, len, "supervisor %s strategy=%s children=%u running=%u",
             s->spec->name ? s->spec->name : "-", names[s->spec->strategy],
             s->n, running);
}

const rt_behaviour_t rt_supervisor = {
    .kind = "supervisor",
    .state_size = sizeof(sup_t),
    .init = sup_init,
    .handle = sup_handle,
    .terminate = sup_terminate,
    .describe = sup_describe,
};

void rt__sup_children(rt_actor_t *a, rt_actor_detail_t *d)
{
    sup_t *s = rt_state(a);
    d->nchildren = s->n;
    for (uint32_t i = 0; i < s->n && i < 16; i++)
        d->children[i] = s->kids[i].id;
}

/* ---- API ---- */

rt_id_t rt_sup_start(rt_system_t *sys, const rt_sup_spec_t *spec, int *err)
{
    return rt_spawn(sys, &rt_supervisor, (void *)spec, NULL, err);
}

rt_id_t rt_sup_start_child(rt_system_t *sys, rt_id_t sup, void *arg, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    rt_port_t *p = rt_port_new(sys);
    rt_msg_t *m = rt_msg_new(SUP_START_CHILD, sizeof(arg));
    if (!p || !m) {
        rt_port_free(p);
        rt_msg_free(m);
        *err = RT_ENOMEM;
        return 0;
    }
    memcpy(m->data, &arg, sizeof(arg));
    rt_msg_t *r = rt_port_call(p, sup, m, 10000);
    rt_id_t id = 0;
    if (!r) {
        *err = RT_ETIMEDOUT;
    } else {
        rt_sup_started_t st;
        memcpy(&st, r->data, sizeof(st));
        id = st.child;
        *err = st.err;
        rt_msg_free(r);
    }
    rt_port_free(p);
    return id;
}

int64_t rt_sup_start_child_async(rt_actor_t *self, rt_id_t sup, void *arg,
                                 uint64_t timeout_ms)
{
    rt_msg_t *m = rt_msg_new(SUP_START_CHILD, sizeof(arg));
    if (!m)
        return RT_ENOMEM;
    memcpy(m->data, &arg, sizeof(arg));
    return rt_request(self, sup, m, timeout_ms);
}

int rt_sup_stop(rt_system_t *sys, rt_id_t sup, int timeout_ms)
{
    rt_port_t *p = rt_port_new(sys);
    if (!p)
        return RT_ENOMEM;
    uint64_t ref = rt_port_monitor(p, sup);
    int rc = rt_kill(sys, sup, RT_SHUTDOWN);
    if (rc == 0) {
        rc = RT_ETIMEDOUT;
        uint64_t deadline = rt__now_ns() + (uint64_t)timeout_ms * 1000000u;
        for (;;) {
            uint64_t now = rt__now_ns();
            if (now >= deadline)
                break;
            rt_msg_t *m =
                rt_port_recv(p, (int)((deadline - now) / 1000000u) + 1);
            if (!m)
                break;
            bool down = m->type == RT_MSG_DOWN && m->ref == ref;
            rt_msg_free(m);
            if (down) {
                rc = 0;
                break;
            }
        }
    } else if (rc == RT_ENOPROC) {
        rc = 0;
    }
    rt_port_free(p);
    return rc;
}
