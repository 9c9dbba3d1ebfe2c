/*
 * actors/session.h - one session actor per logged-in device.
 *
 * A session is found through the registry under its device id
 * (rt_register_key) and started under the session supervisor
 * (simple_one_for_one, registered as CHAT_SESSIONS_NAME); every
 * connection of one device attaches to the same session. The session
 * owns the device's side of chat: it turns requests into store writes,
 * answers after the commit, and pushes the device's mailbox (an
 * append-only log in LMDB, see mailbox.h) to each attached connection in
 * seq order, at most `push_window` entries beyond the device's last ack.
 *
 * Nothing lives only in a session: the mailbox, acks and idempotency
 * keys are in LMDB. A session that crashes is restarted by its
 * supervisor; its connections see it go (they monitor it), find or start
 * it again and attach with the last seq they forwarded, so the client
 * misses nothing and its next request is served. A session ends normally
 * when its last connection has gone.
 */
#ifndef PARLEY_ACTORS_SESSION_H
#define PARLEY_ACTORS_SESSION_H

#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "rt.h"
#include "store.h"

#define CHAT_SESSIONS_NAME  "sessions"
#define CHAT_SESS_MAX_USERS 64 /* names of one presence.sub handled */

/* Fills chat_sessions_sup_behaviour and the supervisor spec; call once
 * before the root supervisor starts. The spec must outlive the system. */
void chat_sessions_setup(const chat_config_t *cfg, chat_db_t *db);
/* The session supervisor: rt_supervisor that also registers its name.
 * Its spawn arg is &chat_sessions_spec. */
extern rt_behaviour_t chat_sessions_sup_behaviour;
extern rt_sup_spec_t chat_sessions_spec;

extern const rt_behaviour_t chat_session_behaviour;

/* The spawn arg of a session: malloc'd by whoever starts it, owned by the
 * session from then on (kept for restarts, freed when it ends for good). */
typedef struct chat_session_arg {
    uint64_t uid, devid;
    char user[PROTO_MAX_NAME + 1];
} chat_session_arg_t;

enum {
    /* conn -> session: chat_sess_attach_t */
    CHAT_SESS_ATTACH = 0x5a00,
    /* session -> conn: chat_sess_attached_t, before any push */
    CHAT_SESS_ATTACHED,
    /* conn -> session (logout): rt_id_t of the connection */
    CHAT_SESS_DETACH,
    /* conn -> session: chat_sess_req_t and its data */
    CHAT_SESS_REQ,
    /* session -> conn: chat_wire_t, replies and events to write */
    CHAT_CONN_WIRE,
    /* session -> itself: push more of the mailbox */
    CHAT_SESS_PUMP,
    /* presence -> session: one encoded event (a map) to every
     * connection, not stored */
    CHAT_SESS_EVENT,
    /* session -> itself: send the replies gathered so far */
    CHAT_SESS_FLUSH,
};

typedef struct chat_sess_attach {
    rt_id_t conn;
    uint64_t after; /* push entries with seq > max(acked, after) */
} chat_sess_attach_t;

typedef struct chat_sess_attached {
    uint64_t acked;
} chat_sess_attached_t;

/* One request, flattened from proto_req_t. data holds the body
 * (body_len bytes), then nusers names of CHAT_NAME_CAP bytes each. */
typedef struct chat_sess_req {
    rt_id_t conn;
    uint64_t reqid;
    uint32_t op; /* proto_op_t */
    uint32_t has;
    uint64_t cid, upto, before, limit, gid;
    uint32_t on, privacy;
    uint32_t body_len, nusers;
    char peer[PROTO_MAX_NAME + 1]; /* to, peer or user */
    uint8_t data[];
} chat_sess_req_t;

/* Frames: each a 4-byte host-order length, then that many bytes of one
 * encoded map. */
typedef struct chat_wire {
    uint32_t replies; /* how many of the frames answer requests */
    uint32_t len;     /* bytes of frames */
    uint64_t max_seq; /* highest mailbox seq among them, or 0 */
    uint8_t frames[];
} chat_wire_t;

/* Sends one encoded map to a connection as a chat_wire_t. Any thread. */
int chat_wire_send(rt_system_t *sys, rt_id_t conn, const void *map, size_t len,
                   uint32_t replies);

#endif /* PARLEY_ACTORS_SESSION_H */
