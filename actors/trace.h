/*
 * actors/trace.h - tracing at the chat layer, for the operator's shell.
 *
 * A shell actor subscribes to an actor id or to a user name for a while;
 * the chat actors (connections, sessions) call CHAT_TRACE() where an
 * event is worth seeing, and every matching subscriber gets a
 * CHAT_TRACE_EVENT message. The runtime knows nothing of it.
 *
 * Cost: with no subscription, CHAT_TRACE() is one relaxed load and a
 * branch. With one, each call takes a mutex to match its actor and user,
 * and formats only when something matches.
 */
#ifndef PARLEY_ACTORS_TRACE_H
#define PARLEY_ACTORS_TRACE_H

#include <stdatomic.h>
#include <stdint.h>

#include "codec.h"
#include "rt.h"

#define CHAT_TRACE_MAX 16 /* subscriptions at once, over all shells */

enum {
    CHAT_TRACE_EVENT = 0x6100, /* to a subscriber: chat_trace_event_t */
};

typedef struct chat_trace_event {
    uint64_t at_ms; /* wall clock, ms since the epoch */
    rt_id_t actor;  /* who saw it */
    char kind[16];  /* the actor's kind: "conn", "session", ... */
    char event[16]; /* "in", "out", "login", "end", ... */
    char user[PROTO_MAX_NAME + 1];
    char text[192]; /* key=value details */
} chat_trace_event_t;

/* Subscriptions alive now. Relaxed: a tracer that starts a moment late
 * misses nothing it was promised. */
extern _Atomic int chat_trace_count;

/* Subscribes `subscriber` to the events of actor `actor` (when not 0) or
 * of user `user` (when not NULL or empty). Returns 0, RT_EINVAL when
 * neither is given, or RT_ELIMIT when CHAT_TRACE_MAX are taken. Any
 * thread. */
int chat_trace_subscribe(rt_id_t subscriber, rt_id_t actor, const char *user);

/* Ends every subscription of `subscriber`. Any thread. */
void chat_trace_unsubscribe(rt_id_t subscriber);

/* Sends the event to every subscriber of `actor` or of `user` (which may
 * be NULL or empty before a login). Use CHAT_TRACE(). Any thread. */
void chat_trace_emit(rt_system_t *sys, rt_id_t actor, const char *kind,
                     const char *user, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#define CHAT_TRACE(sys, actor, kind, user, event, ...)                         \
    do {                                                                       \
        if (atomic_load_explicit(&chat_trace_count, memory_order_relaxed) > 0) \
            chat_trace_emit((sys), (actor), (kind), (user), (event),           \
                            __VA_ARGS__);                                      \
    } while (0)

#endif /* PARLEY_ACTORS_TRACE_H */
