/*
 * room.c - telling refused senders that a full mailbox has room again.
 *
 * A sender that a bounded mailbox refused (RT_EFULL) calls rt_await_room()
 * instead of polling on a timer. The waiters of every receiver live in one
 * map under one lock, which only refused senders and the receivers they
 * wait on ever take. A receiver with waiters carries CTL_ROOM; at the end
 * of each turn it tests that bit (in a word its turn has just read) and,
 * once its queue is down to half its bound, sends each waiter RT_MSG_ROOM.
 *
 * No waiter is forgotten: the waiter sets CTL_ROOM and then pushes a
 * SYS_WAKE past the bound, so the receiver runs at least one more turn and
 * its pop of that message makes the bit visible to it; the test at the end
 * of that turn, or of a later one, wakes the waiter. A receiver that dies
 * wakes its waiters from rt__die(); both sides set their bit with an RMW
 * on ctl, so whichever comes second sees the first's.
 */
#include "rt_internal.h"

#include <stdlib.h>

struct room_ctx {
    rt_system_t *sys;
    rt_id_t from;
};

static void send_room(rt_id_t waiter, void *arg)
{
    struct room_ctx *c = arg;
    rt_msg_t *m = rt_msg_new(RT_MSG_ROOM, 0);
    if (!m)
        return; /* the waiter's own send will be refused again */
    m->from = c->from;
    rt__send_sys(c->sys, waiter, m);
}

void rt__room_wake(rt_system_t *sys, rt_actor_t *a, rt_id_t id)
{
    uint64_t v = 0;
    uv_mutex_lock(&sys->room_lock);
    bool had = rt_map_del(&sys->room, id, &v);
    atomic_fetch_and_explicit(&a->ctl, ~CTL_ROOM, memory_order_relaxed);
    uv_mutex_unlock(&sys->room_lock);
    if (!had)
        return;
    rt_idvec_t *w = (rt_idvec_t *)(uintptr_t)v;
    struct room_ctx c = {sys, id};
    rt__idvec_each(w, send_room, &c);
    rt__idvec_free(w);
    free(w);
}

void rt__room_check(rt_system_t *sys, rt_actor_t *a)
{
    if (mb_depth(a) <= a->mb_limit / 2)
        rt__room_wake(sys, a, a->id);
}

int rt_await_room(rt_actor_t *self, rt_id_t to)
{
    rt_system_t *sys = rt_system(self);
    rt_actor_t *a = rt__acquire(sys, to);
    if (!a)
        return RT_ENOPROC;

    int rc = 0;
    uint64_t v = 0;
    uv_mutex_lock(&sys->room_lock);
    rt_idvec_t *w = NULL;
    if (rt_map_get(&sys->room, to, &v)) {
        w = (rt_idvec_t *)(uintptr_t)v;
    } else if ((w = calloc(1, sizeof(*w)))) {
        if (rt_map_put(&sys->room, to, (uint64_t)(uintptr_t)w) < 0) {
            free(w);
            w = NULL;
        }
    }
    if (!w || rt__idvec_add(w, rt_self(self)) < 0)
        rc = RT_ENOMEM;
    uint64_t was =
        rc ? 0
           : atomic_fetch_or_explicit(&a->ctl, CTL_ROOM, memory_order_acq_rel);
    uv_mutex_unlock(&sys->room_lock);

    if (rc == 0) {
        if (was & CTL_DEAD) {
            rt__room_wake(sys, a, to); /* it died before it could look */
        } else {
            rt_msg_t *m = rt_msg_new(SYS_WAKE, 0);
            if (m) {
                m->from = rt_self(self);
                rt__send_sys(sys, to, m);
            } else {
                rc = RT_ENOMEM;
            }
        }
    }
    rt__release(sys, a);
    return rc;
}

void rt__room_free(rt_system_t *sys)
{
    for (uint32_t i = 0; i < sys->room.cap; i++) {
        if (!sys->room.e[i].key)
            continue;
        rt_idvec_t *w = (rt_idvec_t *)(uintptr_t)sys->room.e[i].val;
        rt__idvec_free(w);
        free(w);
    }
    rt_map_free(&sys->room);
}
