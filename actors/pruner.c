/*
 * actors/pruner.c - the retention actor. See pruner.h.
 */
#include "pruner.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mailbox.h"

#define PRUNE_BATCH      10000 /* messages looked at per write */
#define STORE_TIMEOUT_MS 30000

enum { PRUNE_TICK = 0x5c00 };

/* Relaxed: independent counters read by the operator, no ordering. */
static _Atomic uint64_t n_passes, n_writes, n_scanned, n_deleted, n_errors;

typedef struct pruner {
    const chat_config_t *cfg;
    uint64_t next_sid; /* where the next write starts */
    int64_t ref;       /* the write in flight, 0 when none */
} pruner_t;

void chat_pruner_stats(chat_pruner_stats_t *out)
{
    out->passes = atomic_load_explicit(&n_passes, memory_order_relaxed);
    out->writes = atomic_load_explicit(&n_writes, memory_order_relaxed);
    out->scanned = atomic_load_explicit(&n_scanned, memory_order_relaxed);
    out->deleted = atomic_load_explicit(&n_deleted, memory_order_relaxed);
    out->errors = atomic_load_explicit(&n_errors, memory_order_relaxed);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void schedule(rt_actor_t *self, uint64_t ms)
{
    rt_msg_t *m = rt_msg_new(PRUNE_TICK, 0);

    if (m)
        rt_send_after(rt_system(self), rt_self(self), m, ms);
}

static void start_write(rt_actor_t *self, pruner_t *p)
{
    chat_op_t op = {.kind = CHAT_OP_PRUNE,
                    .now = now_ms(),
                    .upto = p->next_sid,
                    .cid = PRUNE_BATCH,
                    .keep_delivered = p->cfg->retain_delivered_ms,
                    .keep_undelivered = p->cfg->retain_undelivered_ms};
    rt_id_t store = rt_whereis(rt_system(self), CHAT_STORE_NAME);
    rt_msg_t *m = rt_msg_new(CHAT_STORE_CHAT, sizeof(op));

    if (!m || !store) {
        rt_msg_free(m);
        schedule(self, p->cfg->prune_interval_ms);
        return;
    }
    memcpy(m->data, &op, sizeof(op));
    p->ref = rt_request(self, store, m, STORE_TIMEOUT_MS);
    if (p->ref < 0) {
        p->ref = 0;
        schedule(self, p->cfg->prune_interval_ms);
    }
}

static void on_done(rt_actor_t *self, pruner_t *p, const rt_msg_t *msg)
{
    chat_op_res_t r;

    p->ref = 0;
    if (msg->type == RT_MSG_TIMEOUT || msg->size != sizeof(r)) {
        atomic_fetch_add_explicit(&n_errors, 1, memory_order_relaxed);
        schedule(self, p->cfg->prune_interval_ms);
        return;
    }
    memcpy(&r, msg->data, sizeof(r));
    if (r.result < 0) {
        atomic_fetch_add_explicit(&n_errors, 1, memory_order_relaxed);
        rt_log(RT_LOG_WARN, "pruner", "event=prune_failed result=%d", r.result);
        schedule(self, p->cfg->prune_interval_ms);
        return;
    }
    atomic_fetch_add_explicit(&n_writes, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_scanned, r.scanned, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_deleted, r.deleted, memory_order_relaxed);
    p->next_sid = r.next_sid;
    if (r.next_sid) {
        start_write(self, p); /* more of this pass */
        return;
    }
    atomic_fetch_add_explicit(&n_passes, 1, memory_order_relaxed);
    if (r.deleted)
        rt_log(RT_LOG_DEBUG, "pruner", "event=pass deleted=%llu",
               (unsigned long long)r.deleted);
    schedule(self, p->cfg->prune_interval_ms);
}

static int pruner_init(rt_actor_t *self, void *arg)
{
    pruner_t *p = rt_state(self);

    p->cfg = arg;
    schedule(self, p->cfg->prune_interval_ms);
    return rt_register(rt_system(self), CHAT_PRUNER_NAME, rt_self(self));
}

static int pruner_handle(rt_actor_t *self, rt_msg_t *msg)
{
    pruner_t *p = rt_state(self);

    if (msg->type == PRUNE_TICK && !p->ref)
        start_write(self, p);
    else if (p->ref && (uint64_t)p->ref == msg->ref &&
             (msg->type == CHAT_STORE_CHAT_DONE || msg->type == RT_MSG_TIMEOUT))
        on_done(self, p, msg);
    return RT_CONTINUE;
}

static void pruner_describe(rt_actor_t *self, char *buf, size_t len)
{
    pruner_t *p = rt_state(self);
    chat_pruner_stats_t s;

    chat_pruner_stats(&s);
    snprintf(buf, len,
             "passes=%llu scanned=%llu deleted=%llu errors=%llu next=%llu",
             (unsigned long long)s.passes, (unsigned long long)s.scanned,
             (unsigned long long)s.deleted, (unsigned long long)s.errors,
             (unsigned long long)p->next_sid);
}

const rt_behaviour_t chat_pruner_behaviour = {
    .kind = "pruner",
    .state_size = sizeof(pruner_t),
    .init = pruner_init,
    .handle = pruner_handle,
    .describe = pruner_describe,
};
