/*
 * actors/presence.c - the presence actor. See presence.h.
 */
#include "presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mailbox.h"
#include "rt_map.h"
#include "session.h"

typedef struct watcher {
    rt_id_t session;
    uint64_t uid;
} watcher_t;

/* One user that is online or watched. Freed when neither. */
typedef struct puser {
    uint64_t uid;
    char name[PROTO_MAX_NAME + 1];
    rt_id_t *sessions; /* its connected devices: `one`, or on the heap */
    uint32_t nsess, capsess;
    rt_id_t one; /* most users are online on one device */
    watcher_t *watchers;
    uint32_t nwatch, capwatch;
} puser_t;

/* The users one session watches: the reverse of puser_t.watchers, so that
 * the end of a session costs what it watched rather than a walk over
 * every user. */
typedef struct pwatch {
    uint64_t *uids;
    uint32_t n, cap;
} pwatch_t;

typedef struct pres_state {
    chat_db_t *db;
    rt_system_t *sys;
    rt_map_t users;    /* uid -> puser_t * */
    rt_map_t watching; /* session id -> pwatch_t * */
    uint64_t changes, events;
} pres_state_t;

static puser_t *get_user(pres_state_t *st, uint64_t uid, const char *name,
                         bool create)
{
    uint64_t v;

    if (rt_map_get(&st->users, uid, &v))
        return (puser_t *)(uintptr_t)v;
    if (!create)
        return NULL;
    puser_t *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->uid = uid;
    u->sessions = &u->one;
    u->capsess = 1;
    snprintf(u->name, sizeof(u->name), "%s", name);
    if (rt_map_put(&st->users, uid, (uint64_t)(uintptr_t)u) < 0) {
        free(u);
        return NULL;
    }
    return u;
}

static void maybe_free(pres_state_t *st, puser_t *u)
{
    uint64_t v;

    if (u->nsess || u->nwatch)
        return;
    rt_map_del(&st->users, u->uid, &v);
    if (u->sessions != &u->one)
        free(u->sessions);
    free(u->watchers);
    free(u);
}

static int grow(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 4;
    void *na = realloc(*arr, ncap * size);
    if (!na)
        return -1;
    *arr = na;
    *cap = ncap;
    return 0;
}

/* Whether `watcher` may see the presence of `target`. */
static bool visible(pres_state_t *st, uint64_t target, uint64_t watcher)
{
    chat_prefs_t p;

    if (target == watcher)
        return true;
    if (chat_db_is_blocked(st->db, target, watcher) != 0)
        return false;
    if (chat_db_prefs(st->db, target, &p) < 0)
        return false;
    if (p.privacy == CHAT_PRIVACY_NOBODY)
        return false;
    if (p.privacy == CHAT_PRIVACY_CONTACTS)
        return chat_db_is_contact(st->db, target, watcher) == 1;
    return true;
}

/* Sends one presence event about `name` to a watcher session. */
static void tell(pres_state_t *st, const watcher_t *w, uint64_t target,
                 const char *name, bool online, uint64_t last_seen)
{
    msgpack_sbuffer sb;

    if (!visible(st, target, w->uid)) {
        online = false;
        last_seen = 0;
    }
    msgpack_sbuffer_init(&sb);
    if (proto_enc_ev_presence(&sb, proto_cstr(name), online, last_seen) == 0)
        rt_send_copy(st->sys, w->session, CHAT_SESS_EVENT, sb.data,
                     (uint32_t)sb.size);
    msgpack_sbuffer_destroy(&sb);
    st->events++;
}

static void broadcast(pres_state_t *st, puser_t *u, bool online,
                      uint64_t last_seen)
{
    st->changes++;
    for (uint32_t i = 0; i < u->nwatch; i++)
        tell(st, &u->watchers[i], u->uid, u->name, online, last_seen);
}

static void on_online(pres_state_t *st, const chat_pres_msg_t *m)
{
    puser_t *u = get_user(st, m->uid, m->user, true);

    if (!u)
        return;
    for (uint32_t i = 0; i < u->nsess; i++)
        if (u->sessions[i] == m->session)
            return;
    if (u->nsess == 1 && u->capsess == 1) { /* off the inline slot */
        rt_id_t *v = malloc(4 * sizeof(*v));
        if (!v)
            return;
        v[0] = u->one;
        u->sessions = v;
        u->capsess = 4;
    }
    if (grow((void **)&u->sessions, &u->capsess, u->nsess,
             sizeof(*u->sessions)) < 0)
        return;
    u->sessions[u->nsess++] = m->session;
    if (u->nsess == 1)
        broadcast(st, u, true, 0);
}

static void on_offline(pres_state_t *st, const chat_pres_msg_t *m)
{
    puser_t *u = get_user(st, m->uid, m->user, false);
    bool found = false;

    if (!u)
        return;
    for (uint32_t i = 0; i < u->nsess && !found; i++) {
        if (u->sessions[i] == m->session) {
            u->sessions[i] = u->sessions[--u->nsess];
            found = true;
        }
    }
    if (found && u->nsess == 0) {
        chat_op_t op = {
            .kind = CHAT_OP_LAST_SEEN, .uid = m->uid, .now = m->now};
        rt_id_t store = rt_whereis(st->sys, CHAT_STORE_NAME);
        if (store) /* best effort: nobody waits for it */
            rt_send_copy(st->sys, store, CHAT_STORE_CHAT, &op, sizeof(op));
        broadcast(st, u, false, m->now);
    }
    maybe_free(st, u);
}

static pwatch_t *get_watch(pres_state_t *st, rt_id_t session, bool create)
{
    uint64_t v;
    pwatch_t *pw;

    if (rt_map_get(&st->watching, session, &v))
        return (pwatch_t *)(uintptr_t)v;
    if (!create || !(pw = calloc(1, sizeof(*pw))))
        return NULL;
    if (rt_map_put(&st->watching, session, (uint64_t)(uintptr_t)pw) < 0) {
        free(pw);
        return NULL;
    }
    return pw;
}

static void free_watch(pres_state_t *st, rt_id_t session, pwatch_t *pw)
{
    uint64_t v;

    rt_map_del(&st->watching, session, &v);
    free(pw->uids);
    free(pw);
}

/* Records that `session` watches `uid`. Returns 0 or -1 (no memory). */
static int note_watch(pres_state_t *st, rt_id_t session, uint64_t uid)
{
    pwatch_t *pw = get_watch(st, session, true);

    if (!pw || grow((void **)&pw->uids, &pw->cap, pw->n, sizeof(uid)) < 0) {
        if (pw && !pw->n)
            free_watch(st, session, pw);
        return -1;
    }
    pw->uids[pw->n++] = uid;
    return 0;
}

static void forget_watch(pres_state_t *st, rt_id_t session, uint64_t uid)
{
    pwatch_t *pw = get_watch(st, session, false);

    for (uint32_t i = 0; pw && i < pw->n; i++) {
        if (pw->uids[i] == uid) {
            pw->uids[i] = pw->uids[--pw->n];
            break;
        }
    }
    if (pw && !pw->n)
        free_watch(st, session, pw);
}

static void unwatch(pres_state_t *st, puser_t *u, rt_id_t session)
{
    for (uint32_t i = 0; i < u->nwatch; i++) {
        if (u->watchers[i].session == session) {
            u->watchers[i] = u->watchers[--u->nwatch];
            forget_watch(st, session, u->uid);
            break;
        }
    }
    maybe_free(st, u);
}

static void on_sub(pres_state_t *st, const chat_pres_msg_t *m, bool sub)
{
    watcher_t w = {.session = m->session, .uid = m->uid};

    for (uint32_t i = 0; i < m->n; i++) {
        const char *name = m->names[i];
        uint64_t uid;
        if (chat_db_uid(st->db, name, &uid) < 0) {
            if (sub) /* unknown looks like hidden */
                tell(st, &w, 0, name, false, 0);
            continue;
        }
        puser_t *u = get_user(st, uid, name, sub);
        if (!u)
            continue;
        if (!sub) {
            unwatch(st, u, m->session);
            continue;
        }
        bool have = false;
        for (uint32_t j = 0; j < u->nwatch && !have; j++)
            have = u->watchers[j].session == m->session;
        if (!have &&
            grow((void **)&u->watchers, &u->capwatch, u->nwatch, sizeof(w)) ==
                0 &&
            note_watch(st, m->session, uid) == 0)
            u->watchers[u->nwatch++] = w;
        chat_prefs_t p;
        if (chat_db_prefs(st->db, uid, &p) < 0)
            p.last_seen = 0;
        tell(st, &w, uid, u->name, u->nsess > 0,
             u->nsess > 0 ? 0 : p.last_seen);
    }
}

static void on_gone(pres_state_t *st, const chat_pres_msg_t *m)
{
    pwatch_t *pw = get_watch(st, m->session, false);
    uint64_t v;

    if (!pw)
        return; /* watched nobody: the common case costs one lookup */
    /* out of the index first, so that unwatch() leaves it alone */
    rt_map_del(&st->watching, m->session, &v);
    for (uint32_t i = 0; i < pw->n; i++) {
        puser_t *u = get_user(st, pw->uids[i], "", false);
        if (u)
            unwatch(st, u, m->session);
    }
    free(pw->uids);
    free(pw);
}

static void on_typing(pres_state_t *st, const chat_pres_msg_t *m)
{
    puser_t *u = get_user(st, m->peer, "", false);
    msgpack_sbuffer sb;

    if (!u || !u->nsess)
        return; /* not stored: an offline user never sees it */
    msgpack_sbuffer_init(&sb);
    if (proto_enc_ev_typing(&sb, proto_cstr(m->user), m->on, 0) == 0)
        for (uint32_t i = 0; i < u->nsess; i++)
            rt_send_copy(st->sys, u->sessions[i], CHAT_SESS_EVENT, sb.data,
                         (uint32_t)sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static int pres_init(rt_actor_t *self, void *arg)
{
    pres_state_t *st = rt_state(self);

    st->db = arg;
    st->sys = rt_system(self);
    return rt_register(st->sys, CHAT_PRESENCE_NAME, rt_self(self));
}

static int pres_handle(rt_actor_t *self, rt_msg_t *msg)
{
    pres_state_t *st = rt_state(self);
    const chat_pres_msg_t *m = (const chat_pres_msg_t *)msg->data;

    if (msg->size < sizeof(*m) ||
        msg->size != sizeof(*m) + m->n * sizeof(m->names[0]))
        return RT_CONTINUE;
    switch (msg->type) {
    case CHAT_PRES_ONLINE:
        on_online(st, m);
        break;
    case CHAT_PRES_OFFLINE:
        on_offline(st, m);
        break;
    case CHAT_PRES_SUB:
        on_sub(st, m, true);
        break;
    case CHAT_PRES_UNSUB:
        on_sub(st, m, false);
        break;
    case CHAT_PRES_GONE:
        on_gone(st, m);
        break;
    case CHAT_PRES_TYPING:
        on_typing(st, m);
        break;
    }
    return RT_CONTINUE;
}

static void pres_terminate(rt_actor_t *self, int reason)
{
    pres_state_t *st = rt_state(self);
    rt_map_t *mp = &st->users;

    for (uint32_t i = 0; i < mp->cap; i++) {
        if (!mp->e[i].key)
            continue;
        puser_t *u = (puser_t *)(uintptr_t)mp->e[i].val;
        if (u->sessions != &u->one)
            free(u->sessions);
        free(u->watchers);
        free(u);
    }
    rt_map_free(mp);
    mp = &st->watching;
    for (uint32_t i = 0; i < mp->cap; i++) {
        if (!mp->e[i].key)
            continue;
        pwatch_t *pw = (pwatch_t *)(uintptr_t)mp->e[i].val;
        free(pw->uids);
        free(pw);
    }
    rt_map_free(mp);
}

static void pres_describe(rt_actor_t *self, char *buf, size_t len)
{
    pres_state_t *st = rt_state(self);

    snprintf(buf, len, "users=%u changes=%llu events=%llu", st->users.len,
             (unsigned long long)st->changes, (unsigned long long)st->events);
}

const rt_behaviour_t chat_presence_behaviour = {
    .kind = "presence",
    .state_size = sizeof(pres_state_t),
    .init = pres_init,
    .handle = pres_handle,
    .terminate = pres_terminate,
    .describe = pres_describe,
};
