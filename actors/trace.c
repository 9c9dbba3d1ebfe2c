/*
 * actors/trace.c - the table of trace subscriptions. See trace.h.
 */
#include "trace.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct sub {
    rt_id_t subscriber; /* 0: the slot is free */
    rt_id_t actor;
    char user[PROTO_MAX_NAME + 1];
} sub_t;

_Atomic int chat_trace_count;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sub_t subs[CHAT_TRACE_MAX];

int chat_trace_subscribe(rt_id_t subscriber, rt_id_t actor, const char *user)
{
    int rc = RT_ELIMIT;

    if (!subscriber || (!actor && (!user || !*user)))
        return RT_EINVAL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < CHAT_TRACE_MAX; i++) {
        if (subs[i].subscriber)
            continue;
        subs[i].subscriber = subscriber;
        subs[i].actor = actor;
        snprintf(subs[i].user, sizeof(subs[i].user), "%s", user ? user : "");
        atomic_fetch_add_explicit(&chat_trace_count, 1, memory_order_relaxed);
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void chat_trace_unsubscribe(rt_id_t subscriber)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < CHAT_TRACE_MAX; i++) {
        if (subs[i].subscriber != subscriber)
            continue;
        memset(&subs[i], 0, sizeof(subs[i]));
        atomic_fetch_sub_explicit(&chat_trace_count, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&lock);
}

static bool matches(const sub_t *s, rt_id_t actor, const char *user)
{
    if (s->actor)
        return s->actor == actor;
    return user && *user && strcmp(s->user, user) == 0;
}

void chat_trace_emit(rt_system_t *sys, rt_id_t actor, const char *kind,
                     const char *user, const char *event, const char *fmt, ...)
{
    rt_id_t to[CHAT_TRACE_MAX];
    int n = 0;

    pthread_mutex_lock(&lock);
    for (int i = 0; i < CHAT_TRACE_MAX; i++)
        if (subs[i].subscriber && matches(&subs[i], actor, user))
            to[n++] = subs[i].subscriber;
    pthread_mutex_unlock(&lock);
    if (n == 0)
        return;

    chat_trace_event_t ev;
    struct timespec ts;
    va_list ap;

    memset(&ev, 0, sizeof(ev));
    clock_gettime(CLOCK_REALTIME, &ts);
    ev.at_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    ev.actor = actor;
    snprintf(ev.kind, sizeof(ev.kind), "%s", kind);
    snprintf(ev.event, sizeof(ev.event), "%s", event);
    snprintf(ev.user, sizeof(ev.user), "%s", user ? user : "");
    va_start(ap, fmt);
    vsnprintf(ev.text, sizeof(ev.text), fmt, ap);
    va_end(ap);
    /* A subscriber whose mailbox is full loses the event: tracing must
     * never slow the traced actor down. */
    for (int i = 0; i < n; i++)
        rt_send_copy(sys, to[i], CHAT_TRACE_EVENT, &ev, sizeof(ev));
}
