/*
 * work.c - blocking work on the libuv thread pool, and libuv handles owned
 * by actors.
 */
#include "rt_internal.h"

#include <string.h>

typedef struct rt_work_rec {
    uv_work_t req;
    rt_system_t *sys;
    rt_id_t actor;
    int (*fn)(void *);
    void *arg;
    uint64_t tag;
    int result;
} rt_work_rec_t;

static void work_run(uv_work_t *req)
{
    rt_work_rec_t *w = req->data;
    w->result = w->fn(w->arg);
}

static void work_done(uv_work_t *req, int status)
{
    rt_work_rec_t *w = req->data;
    rt_msg_t *m = rt_msg_new(RT_MSG_WORK_DONE, sizeof(rt_work_done_t));
    if (m) {
        rt_work_done_t d = {w->tag, status < 0 ? status : w->result, w->arg};
        memcpy(m->data, &d, sizeof(d));
        /* if the actor died meanwhile, arg is lost with the message:
         * callers put nothing in arg that outlives them */
        rt__send_sys(w->sys, w->actor, m);
    }
    free(w);
}

int rt_work(rt_actor_t *self, int (*fn)(void *arg), void *arg, uint64_t tag)
{
    rt_sched_t *s = rt__this_sched();
    if (!s || !fn)
        return RT_EINVAL;
    rt_work_rec_t *w = calloc(1, sizeof(*w));
    if (!w)
        return RT_ENOMEM;
    w->req.data = w;
    w->sys = s->sys;
    w->actor = self->id;
    w->fn = fn;
    w->arg = arg;
    w->tag = tag;
    int rc = uv_queue_work(&s->loop, &w->req, work_run, work_done);
    if (rc < 0)
        free(w);
    return rc;
}

uv_loop_t *rt_loop(rt_actor_t *self)
{
    rt_sched_t *s = rt__this_sched();
    (void)self;
    return s ? &s->loop : NULL;
}

/* ---- handles ---- */

struct rt_handle_rec {
    struct rt_handle_rec *next, *prev;
    _Alignas(16) unsigned char handle[];
};

static struct rt_handle_rec *rec_of(void *handle)
{
    return (struct rt_handle_rec *)((unsigned char *)handle -
                                    offsetof(struct rt_handle_rec, handle));
}

void *rt_handle_new(rt_actor_t *self, size_t size)
{
    rt_actor_ext_t *x = rt__ext(self);
    if (!x)
        return NULL;
    struct rt_handle_rec *r = calloc(1, sizeof(*r) + size);
    if (!r)
        return NULL;
    r->next = x->handles;
    if (r->next)
        r->next->prev = r;
    x->handles = r;
    return r->handle;
}

static void free_after_close(uv_handle_t *h)
{
    free(rec_of(h));
}

static void detach(rt_actor_ext_t *x, struct rt_handle_rec *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        x->handles = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

void rt_handle_close(rt_actor_t *self, void *handle)
{
    struct rt_handle_rec *r = rec_of(handle);
    if (self->ext)
        detach(self->ext, r);
    uv_handle_t *h = handle;
    if (h->loop && !uv_is_closing(h))
        uv_close(h, free_after_close);
    else if (!h->loop)
        free(r); /* never initialised */
}

void rt__handles_close(rt_actor_t *a)
{
    while (a->ext && a->ext->handles)
        rt_handle_close(a, a->ext->handles->handle);
}
