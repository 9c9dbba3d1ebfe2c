/*
 * actors/group.h - groups: one actor per group, its records in LMDB, and
 * the part of a session that follows the streams of its user's groups.
 *
 * A group is a stream: an append-only log numbered by `gseq` 1, 2, 3...
 * that holds its messages (stored once, whatever the group's size) and
 * its system events (created, added, removed...). Each member device has
 * one cursor per group, the last gseq it acknowledged; a member has a
 * delivered and a read position. A device is shown the entries of the
 * range its user was a member for: from the event that added it to the
 * event that removed it, both included.
 *
 * Tables (keys big-endian):
 *
 *   groups   gid              -> chat_group_rec_t   name, creation, head
 *   gmembers gid, uid         -> chat_gmember_t     role, positions
 *   glog     gid, gseq        -> chat_glog_rec_t + body   the stream
 *   ugroups  uid, gid         -> chat_ugroup_t      a user's ranges
 *   gcur     devid, gid       -> uint64_t           a device's cursor
 *
 * So a group message costs one glog record (the body once); the per-member
 * state is overwritten in place, never appended to.
 *
 * A device's ack writes its gcur cursor alone, before it is answered.
 * The member's `delivered` in gmembers (the highest cursor of its
 * devices) is the group actor's to write, for many members in one op at
 * most every CHAT_GROUP_POS_MS, so that an ack dirties one page, not
 * two; what a crash loses of it, the actor's load reads back from the
 * cursors. Until then, readers of gmembers (the shell) may see it late.
 *
 * Actors. The group actor of `gid` is registered under CHAT_GROUP_KEY(gid)
 * and runs under the group supervisor (simple_one_for_one, transient
 * children). The router (registered as CHAT_GROUPS_NAME) starts group
 * actors on demand: whoever finds no actor under the key sends to the
 * router, which starts one and forwards. A group actor with no activity
 * for `group_idle_ms` unregisters its key, forwards what still reaches it
 * to the router for a moment, and ends; a crashed one is restarted by its
 * supervisor and reloads everything from LMDB.
 */
#ifndef PARLEY_ACTORS_GROUP_H
#define PARLEY_ACTORS_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include <lmdb.h>
#include <msgpack.h>

#include "codec.h"
#include "config.h"
#include "mailbox.h"
#include "rt.h"
#include "session.h"
#include "store.h"

#define CHAT_GROUPS_NAME     "groups"
#define CHAT_GROUPS_SUP_NAME "groups.sup"

/* Registry keys of group actors; device ids (the keys of sessions) stay
 * far below this bit. */
#define CHAT_GROUP_KEY(gid) ((gid) | ((uint64_t)1 << 62))

/* ---- records ---- */

typedef struct chat_group_rec {
    uint64_t gid, created, head; /* head: the last gseq appended */
    uint64_t creator;
    uint32_t nmembers, reserved;
    char name[PROTO_MAX_TEXT + 1];
} chat_group_rec_t;

enum { CHAT_GMEMBER_ADMIN = 1 };

typedef struct chat_gmember {
    uint64_t joined;    /* gseq of the event that added it */
    uint64_t joined_ts; /* ms */
    uint64_t delivered; /* highest gseq one of its devices acked */
    uint64_t read;      /* highest gseq it read */
    uint32_t flags;
    uint32_t reserved;
    char name[CHAT_NAME_CAP];
} chat_gmember_t;

typedef struct chat_ugroup {
    uint64_t joined; /* first gseq shown */
    uint64_t end;    /* last gseq shown; 0 while a member */
} chat_ugroup_t;

enum { CHAT_GLOG_MSG = 0 }; /* otherwise a proto_group_kind_t */

typedef struct chat_glog_rec {
    uint32_t kind;
    uint32_t body_len; /* a message's body, or "user\0name\0" */
    uint64_t sid, ts, from_uid;
    char by[CHAT_NAME_CAP];
} chat_glog_rec_t;

/* ---- writes: a chat_op_t of kind CHAT_OP_GROUP whose body is a
 * chat_gop_t, then names, then the message body ---- */

typedef enum chat_gop_kind {
    CHAT_GOP_CREATE = 1, /* name, names; limit -> gid */
    CHAT_GOP_ADD,        /* gid, names; limit -> gseq */
    CHAT_GOP_REMOVE,     /* gid, user (left when it is op->user) */
    CHAT_GOP_PROMOTE,    /* gid, user */
    CHAT_GOP_RENAME,     /* gid, name */
    CHAT_GOP_SEND,       /* gid, cid, body -> sid, ts, gseq, dup */
    CHAT_GOP_ACK,        /* gid, upto: the device's cursor, delivered */
    CHAT_GOP_READ,       /* gid, upto */
    CHAT_GOP_ALL,        /* gid, upto = gseq, cid = sid, limit = 1 for
                          * delivered or 2 for read; to uid = target */
    CHAT_GOP_DELIVERED,  /* gid; nnames chat_gpos_t after the struct */
} chat_gop_kind_t;

/* A member's delivered position, as CHAT_GOP_DELIVERED carries it. */
typedef struct chat_gpos {
    uint64_t uid, delivered;
} chat_gpos_t;

#define CHAT_GROUP_POS_MS 100 /* members' delivered positions written */

typedef struct chat_gop {
    uint32_t kind;
    uint32_t nnames; /* names of CHAT_NAME_CAP bytes after the struct */
    uint64_t gid, cid, upto, target, sid;
    uint32_t limit, reserved;
    char user[CHAT_NAME_CAP];
    char name[PROTO_MAX_TEXT + 1];
} chat_gop_t;

/*
 * Applies a group op inside the store's transaction. The op's own failure
 * goes to res->result: -ENOENT (no such group, user or member), -E2BIG
 * (over the member limit), -EEXIST (create: no member left to add is not
 * an error; unused). res->gid and res->gseq tell what was written.
 * Returns 0 or an LMDB error, which fails the batch.
 */
int chat_group_op_apply(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                        chat_op_res_t *res, chat_wake_fn wake, void *ctx);

/* Opens the group tables in the first write transaction. */
int chat_group_open_dbis(chat_db_t *db, MDB_txn *txn);

/* ---- reads; any thread; 0, -ENOENT or -EIO ---- */

int chat_db_group_get(chat_db_t *db, uint64_t gid, chat_group_rec_t *out);

/* Calls fn for each member of gid in uid order. Returns how many, -EIO. */
int chat_db_group_members(chat_db_t *db, uint64_t gid,
                          void (*fn)(void *ctx, uint64_t uid,
                                     const chat_gmember_t *m),
                          void *ctx);

/* Calls fn for each group uid was ever in, with its range and the device's
 * cursor (0 when none). Returns how many, or -EIO. */
int chat_db_user_groups(chat_db_t *db, uint64_t uid, uint64_t devid,
                        void (*fn)(void *ctx, uint64_t gid,
                                   const chat_ugroup_t *r, uint64_t cursor),
                        void *ctx);

/* The cursor of devid in gid into *out (0 when it never acked): 0 or
 * -EIO. */
int chat_db_group_cursor(chat_db_t *db, uint64_t devid, uint64_t gid,
                         uint64_t *out);

/* One range of uid in gid: 0, -ENOENT, -EIO. */
int chat_db_user_group(chat_db_t *db, uint64_t uid, uint64_t gid,
                       chat_ugroup_t *out);

/* Encodes, framed as chat_db_mbox_encode does, the stream entries of gid
 * with gseq in [from, to], at most max. *last is the highest gseq looked
 * at. Returns the number written, -EIO or -ENOMEM. */
int chat_db_glog_encode(chat_db_t *db, uint64_t gid, uint64_t from, uint64_t to,
                        uint32_t max, msgpack_sbuffer *sb, uint64_t *last);

/* Calls fn for each message entry of gid with gseq in [from, to]. */
int chat_db_glog_msgs(chat_db_t *db, uint64_t gid, uint64_t from, uint64_t to,
                      void (*fn)(void *ctx, uint64_t gseq,
                                 const chat_glog_rec_t *r),
                      void *ctx);

/* Encodes one stream entry as its event (msg with gid, or group). */
int chat_glog_encode_one(msgpack_sbuffer *sb, uint64_t gid, uint64_t gseq,
                         const chat_glog_rec_t *r, const uint8_t *body);

/* ---- messages between sessions, the router and group actors ---- */

enum {
    /* session -> group or router: chat_group_req_t (+ data), made with
     * rt_request; answered with CHAT_GROUP_REPLY, one encoded map */
    CHAT_GROUP_REQ = 0x5b00,
    CHAT_GROUP_REPLY,
    /* session -> group or router: chat_group_rcpt_t, a member's delivered
     * or read position moved (already committed) */
    CHAT_GROUP_RCPT,
    /* group -> session: chat_group_push_t, one entry of the stream with
     * its framed map */
    CHAT_GROUP_PUSH,
    /* group -> session: uint64_t gid; read the stream again */
    CHAT_GROUP_WAKE,
    /* session -> group: chat_group_rcpt_t with upto 0: this device is
     * online (learn it for pushes) */
    CHAT_GROUP_HELLO,
    /* group -> itself */
    CHAT_GROUP_TICK,
    CHAT_GROUP_FLUSH,
};

typedef struct chat_group_req {
    rt_id_t session;
    uint64_t uid, devid;
    char user[CHAT_NAME_CAP];
    chat_sess_req_t q; /* with its data */
} chat_group_req_t;

typedef struct chat_group_rcpt {
    uint64_t gid, uid, devid, upto;
    uint32_t read; /* 0: delivered; 1: read */
    uint32_t reserved;
    char user[CHAT_NAME_CAP];
} chat_group_rcpt_t;

typedef struct chat_group_push {
    uint64_t gid, gseq;
    uint32_t len, reserved;
    uint8_t frame[]; /* one encoded map after its length (4 bytes, host
                      * order), as chat_wire_t carries frames: the same
                      * bytes for every member, copied on as they are */
} chat_group_push_t;

/* Sends m to the group actor of gid, or to the router when none runs.
 * Takes m. Any thread. */
int chat_group_send(rt_system_t *sys, uint64_t gid, rt_msg_t *m);

/* ---- the actors ---- */

/* Call once before the root supervisor starts; the specs outlive it. */
void chat_groups_setup(const chat_config_t *cfg, chat_db_t *db);
extern rt_behaviour_t chat_groups_sup_behaviour;
extern rt_sup_spec_t chat_groups_spec;
extern const rt_behaviour_t chat_group_router_behaviour;
extern const rt_behaviour_t chat_group_behaviour;

/* ---- a session's side (session_group.c) ---- */

typedef struct chat_sg chat_sg_t;

/* What of the session the group side uses. */
typedef struct chat_sg_ctx {
    rt_system_t *sys;
    uint64_t uid, devid;
    const char *user;
    const rt_id_t *conns;
    uint32_t nconns;
    uint32_t window; /* entries pushed beyond the ack, per group */
} chat_sg_ctx_t;

/* Handles a group request or an ack with gid. Returns 1 when it did. */
int chat_sg_request(rt_actor_t *self, chat_sg_t **sg, const chat_sg_ctx_t *c,
                    const chat_sess_req_t *q);
/* Handles a message meant for the group side (replies, pushes, wakes,
 * store results and time-outs of its own). Returns 1 when it did. */
int chat_sg_handle(rt_actor_t *self, chat_sg_t **sg, const chat_sg_ctx_t *c,
                   const rt_msg_t *msg);
/* A connection attached: (re)load the groups and push from the acks. */
void chat_sg_attach(rt_actor_t *self, chat_sg_t **sg, const chat_sg_ctx_t *c);
void chat_sg_free(chat_sg_t *sg, const chat_sg_ctx_t *c);
/* Called by chat_groups_setup. */
void chat_sg_setup(chat_db_t *db);

#endif /* PARLEY_ACTORS_GROUP_H */
