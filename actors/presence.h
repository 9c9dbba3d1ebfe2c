/*
 * actors/presence.h - who is online, who watches whom, typing relays.
 *
 * One presence actor (registered as CHAT_PRESENCE_NAME) keeps, per user,
 * the sessions of its connected devices and the sessions subscribed to
 * it. A user is online while it has at least one session; when its last
 * one goes, last_seen is written to LMDB (prefs) and every watcher
 * allowed to see it gets a presence event. What a watcher may see
 * follows the target's privacy (everyone, contacts, nobody) and blocks:
 * hidden looks like offline without last_seen. Typing events are relayed
 * through it to the sessions of the target user and never stored.
 *
 * Sessions tell it of themselves (ONLINE, OFFLINE, GONE in terminate,
 * which runs after a crash too), so it holds no monitors.
 */
#ifndef PARLEY_ACTORS_PRESENCE_H
#define PARLEY_ACTORS_PRESENCE_H

#include <stdint.h>

#include "codec.h"
#include "rt.h"
#include "store.h"

#define CHAT_PRESENCE_NAME "presence"

/* Its spawn arg is the chat_db_t *. */
extern const rt_behaviour_t chat_presence_behaviour;

enum {
    CHAT_PRES_ONLINE = 0x5b00, /* a session's first connection */
    CHAT_PRES_OFFLINE,         /* its last connection went: now */
    CHAT_PRES_SUB,             /* session watches names[] */
    CHAT_PRES_UNSUB,           /* session stops watching names[] */
    CHAT_PRES_GONE,            /* session ended: drop its subscriptions */
    CHAT_PRES_TYPING,          /* relay typing from uid/user to peer */
};

typedef struct chat_pres_msg {
    uint64_t uid; /* the session's user */
    rt_id_t session;
    uint64_t peer; /* typing: the target user */
    uint64_t now;  /* offline: last seen, ms */
    uint32_t on;   /* typing */
    uint32_t n;    /* names that follow (sub, unsub) */
    char user[PROTO_MAX_NAME + 1];
    char names[][PROTO_MAX_NAME + 1];
} chat_pres_msg_t;

#endif /* PARLEY_ACTORS_PRESENCE_H */
