/*
 * timer.c - delayed sends and request/reply timeouts.
 *
 * A timer belongs to the loop of one scheduler: the caller's when it is a
 * scheduler, else one picked in turn. Its reference encodes that
 * scheduler's index in the low 8 bits, so rt_cancel_timer() finds the
 * owner's table from any thread. Firing and cancelling both remove the
 * record from that table under the owner's timer lock; whichever removes
 * it owns the message, so a cancelled timer never delivers.
 */
#include "rt_internal.h"

#include <string.h>

typedef struct rt_timer_rec {
    uv_timer_t h;
    int64_t ref;
    rt_id_t to;
    rt_msg_t *msg;
    uint64_t ms;
    rt_sched_t *s;
    bool started;   /* owner thread only */
    bool cancelled; /* owner thread only: cancelled before it started */
} rt_timer_rec_t;

static void rec_free(uv_handle_t *h)
{
    free(h->data);
}

static bool table_take(rt_sched_t *s, int64_t ref)
{
    uv_mutex_lock(&s->timer_lock);
    bool found = rt_map_del(&s->timers, (uint64_t)ref, NULL);
    uv_mutex_unlock(&s->timer_lock);
    return found;
}

static void on_fire(uv_timer_t *h)
{
    rt_timer_rec_t *t = h->data;
    /* If the take fails, a cancel won the race and its stop command,
     * run on this thread, closes the handle: closing here too would close
     * it twice. */
    if (!table_take(t->s, t->ref))
        return;
    rt__send_sys(t->s->sys, t->to, t->msg);
    t->msg = NULL;
    uv_close((uv_handle_t *)h, rec_free);
}

static void start(rt_sched_t *s, void *arg)
{
    rt_timer_rec_t *t = arg;
    if (t->cancelled) {
        free(t);
        return;
    }
    uv_timer_init(&s->loop, &t->h);
    t->h.data = t;
    t->started = true;
    /* The loop's clock was read at its last turn, which may be many actor
     * turns ago: without a fresh reading the timer would fire early. */
    uv_update_time(&s->loop);
    uv_timer_start(&t->h, on_fire, t->ms, 0);
}

/* The record is already out of the table, and its message freed. */
static void stop(rt_sched_t *s, void *arg)
{
    rt_timer_rec_t *t = arg;
    (void)s;
    if (!t->started) {
        t->cancelled = true;
        return;
    }
    uv_timer_stop(&t->h);
    uv_close((uv_handle_t *)&t->h, rec_free);
}

int64_t rt_send_after(rt_system_t *sys, rt_id_t to, rt_msg_t *m, uint64_t ms)
{
    if (!m)
        return RT_EINVAL;
    rt_sched_t *me = rt__this_sched();
    if (me && me->sys != sys)
        me = NULL;
    rt_sched_t *s = me;
    if (!s) {
        uint32_t k =
            atomic_fetch_add_explicit(&sys->next_pick, 1, memory_order_relaxed);
        s = sys->sched[k % (uint32_t)sys->nsched];
    }
    rt_timer_rec_t *t = calloc(1, sizeof(*t));
    if (!t) {
        rt_msg_free(m);
        return RT_ENOMEM;
    }
    rt_actor_t *cur = rt_current();
    m->from = cur ? cur->id : 0;
    t->ref = (int64_t)((rt__new_ref(sys) << 8) | (uint64_t)s->index);
    t->to = to;
    t->msg = m;
    t->ms = ms;
    t->s = s;
    uv_mutex_lock(&s->timer_lock);
    int rc = rt_map_put(&s->timers, (uint64_t)t->ref, (uint64_t)(uintptr_t)t);
    uv_mutex_unlock(&s->timer_lock);
    if (rc < 0) {
        rt_msg_free(m);
        free(t);
        return RT_ENOMEM;
    }
    int64_t ref = t->ref;
    if (s == me)
        start(s, t);
    else
        rt__post(s, start, t);
    return ref;
}

int rt_cancel_timer(rt_system_t *sys, int64_t ref)
{
    if (ref <= 0)
        return RT_ENOENT;
    int idx = (int)(ref & 0xff);
    if (idx >= sys->nsched)
        return RT_ENOENT;
    rt_sched_t *s = sys->sched[idx];
    uint64_t val;
    uv_mutex_lock(&s->timer_lock);
    bool found = rt_map_del(&s->timers, (uint64_t)ref, &val);
    uv_mutex_unlock(&s->timer_lock);
    if (!found)
        return RT_ENOENT;
    rt_timer_rec_t *t = (rt_timer_rec_t *)(uintptr_t)val;
    rt_msg_free(t->msg);
    t->msg = NULL;
    if (rt__this_sched() == s)
        stop(s, t);
    else
        rt__post(s, stop, t);
    return 0;
}

void rt__timers_init(rt_sched_t *s)
{
    memset(&s->timers, 0, sizeof(s->timers));
}

/* At shutdown, on the owner thread after it stopped: the timers still in
 * the table never fired. */
void rt__timers_close(rt_sched_t *s)
{
    for (uint32_t i = 0; i < s->timers.cap; i++) {
        if (!s->timers.e[i].key)
            continue;
        rt_timer_rec_t *t = (rt_timer_rec_t *)(uintptr_t)s->timers.e[i].val;
        rt_msg_free(t->msg);
        if (t->started)
            uv_close((uv_handle_t *)&t->h, rec_free);
        else
            t->cancelled = true; /* its start command frees it */
    }
    rt_map_free(&s->timers);
}

/* ---- requests
 * ---------------------------------------------------------------------- */

int64_t rt_request(rt_actor_t *self, rt_id_t to, rt_msg_t *m,
                   uint64_t timeout_ms)
{
    rt_system_t *sys = rt_system(self);
    rt_actor_ext_t *x = rt__ext(self);
    if (!m)
        return RT_EINVAL;
    rt_msg_t *tm = rt_msg_new(RT_MSG_TIMEOUT, 0);
    if (!x || !tm) {
        rt_msg_free(m);
        rt_msg_free(tm);
        return RT_ENOMEM;
    }
    uint64_t ref = rt__new_ref(sys);
    tm->ref = ref;
    int64_t tref = rt_send_after(sys, self->id, tm, timeout_ms);
    if (tref < 0) {
        rt_msg_free(m);
        return tref;
    }
    if (rt__refvec_add(&x->pending, ref, (rt_id_t)tref) < 0) {
        rt_cancel_timer(sys, tref);
        rt_msg_free(m);
        return RT_ENOMEM;
    }
    m->ref = ref;
    int rc = rt_send(sys, to, m);
    if (rc < 0) {
        rt__refvec_del(&x->pending, ref, NULL);
        rt_cancel_timer(sys, tref);
        return rc;
    }
    return (int64_t)ref;
}

int rt_reply(rt_system_t *sys, const rt_msg_t *req, rt_msg_t *reply)
{
    if (!reply)
        return RT_EINVAL;
    rt_actor_t *cur = rt_current();
    reply->from = cur ? cur->id : 0;
    reply->ref = req->ref | RT_REF_REPLY;
    /* a reply is never refused for backpressure: its requester waits */
    return rt__send_sys(sys, req->from, reply);
}

/* A reply or time-out for `ref` arrived: true if it was awaited (and is
 * no longer), false if it is late and must be dropped. */
bool rt__pending_take(rt_system_t *sys, rt_actor_t *a, uint64_t ref)
{
    rt_id_t tref;
    if (!a->ext || !rt__refvec_del(&a->ext->pending, ref, &tref))
        return false;
    rt_cancel_timer(sys, (int64_t)tref);
    return true;
}

void rt__pending_drop(rt_system_t *sys, rt_actor_t *a)
{
    for (uint32_t i = 0; a->ext && i < a->ext->pending.n; i++)
        rt_cancel_timer(sys, (int64_t)a->ext->pending.v[i].id);
}
