/*
 * link.c - links and monitors: the requests that set them up. Exit
 * signals and DOWN messages themselves are sent as actors die (actor.c).
 */
#include "rt_internal.h"

#include <string.h>

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
        rt__send_exit(sys, self->id, other, RT_ENOPROC, true);
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

void rt__send_down(rt_system_t *sys, rt_id_t watcher, uint64_t ref, rt_id_t who,
                   int reason)
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
        rt__send_down(sys, watcher->id, ref, other, RT_ENOPROC);
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
