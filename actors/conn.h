/*
 * actors/conn.h - listeners and connection actors.
 *
 * One listener per scheduler, pinned to it, each polling its own socket
 * bound with SO_REUSEPORT to the same address, so the kernel spreads new
 * connections over the schedulers. Every accepted socket becomes a
 * connection actor pinned to the listener's loop (not linked to it): HTTP
 * upgrade and WebSocket through proto/ws.h, requests through proto/codec.h,
 * account operations through the accounts actor.
 *
 * Memory of an idle connection: its state, the actor, one uv_tcp_t; no
 * read buffer (reads land in one buffer per scheduler thread and ws.h
 * keeps only an unfinished frame), no wslay context, no write buffer once
 * the socket has taken its bytes, and no timer (one per loop serves all).
 * Output is coalesced: the frames of one loop iteration leave in one
 * write.
 *
 * The limit: at most a->max_conns connections at once, a bound main sets
 * below the open file limit so that the store, logs, the shell and the
 * thread pool keep descriptors. A socket accepted beyond it is answered
 * "503 Service Unavailable" with Retry-After and a body naming the cause,
 * shut down, and closed once the client has closed or within a second;
 * the listener logs a warning at most once every 10 s while it refuses.
 *
 * Shutdown: a listener that gets CHAT_LISTENER_STOP stops accepting, sends
 * CHAT_CONN_SHUTDOWN to every connection of its loop and exits with
 * RT_SHUTDOWN; the connections close with 1001, let their queued writes
 * finish and end. Any other exit of the listener (a crash) leaves them
 * serving.
 */
#ifndef PARLEY_ACTORS_CONN_H
#define PARLEY_ACTORS_CONN_H

#include <stdatomic.h>

#include "config.h"
#include "rt.h"
#include "ws.h"

/* Sockets each listener holds at once while refusing them (see the
 * limit above); main counts them in its reserve of descriptors. */
#define CHAT_LISTENER_LINGER 16

typedef struct chat_listener_args {
    const chat_config_t *cfg;
    ws_config_t ws; /* shared by all connections of the process */
    int fd;         /* listening socket, owned by main */
    int index;      /* the scheduler it is pinned to */
    long max_conns; /* connections held at once; beyond, 503 */
} chat_listener_args_t;

enum {
    CHAT_LISTENER_STOP = 0x5900, /* no payload */
    CHAT_CONN_STOP,              /* a connection to itself: end now */
    /* the operator, through the device's session, which passes it on to
     * each connection: close with 1008. No payload. */
    CHAT_CONN_KICK,
    CHAT_CONN_SHUTDOWN, /* the server stops: close with 1001, no payload */
};

extern const rt_behaviour_t chat_listener_behaviour;
extern const rt_behaviour_t chat_conn_behaviour;

/* Connections held now (connection actors alive or being spawned), for
 * the limit, shutdown and the operator. */
extern _Atomic long chat_conn_live;

/* Fills a->ws with the connection callbacks and cfg's limits; max_conns
 * is left for the caller to set. */
void chat_listener_args_init(chat_listener_args_t *a, const chat_config_t *cfg,
                             int fd, int index);

/* Sends CHAT_CONN_SHUTDOWN to every connection pinned to scheduler
 * `index`. Returns how many were sent. That scheduler's thread only (the
 * listener pinned to it). */
int chat_conn_shutdown_all(rt_system_t *sys, int index);

/* Takes a connection slot: counts one more connection in chat_conn_live
 * if that keeps it within a->max_conns. Returns 0, or RT_ELIMIT when the
 * limit is reached (nothing is counted then). Any thread. */
int chat_conn_reserve(const chat_listener_args_t *a);

/* Spawns a connection actor for accepted socket `fd`, pinned to
 * a->index with `listener` as its parent, holding a slot taken with
 * chat_conn_reserve(). Takes the fd and the slot: both are given back on
 * failure. Returns 0 or a negative RT_E* code. Any thread. */
int chat_conn_spawn(rt_system_t *sys, const chat_listener_args_t *a,
                    rt_id_t listener, int fd);

#endif /* PARLEY_ACTORS_CONN_H */
