/*
 * actors/mailbox.h - the chat records in LMDB: device mailboxes, messages,
 * the conversation index, idempotency keys, receipts, contacts, blocks
 * and per-user preferences.
 *
 * Writes are chat_op_t records that the store actor applies inside its
 * batched transaction (CHAT_STORE_CHAT); reads are plain functions, each
 * in its own read-only transaction, callable from any thread.
 *
 * Tables (keys big-endian so that ranges scan in order):
 *
 *   mbox     devid, seq        -> chat_entry_t    a device's mailbox
 *   mhead    devid             -> chat_mhead_t    its last and acked seq
 *   msgs     sid               -> chat_msg_rec_t + body, stored once
 *   conv     lo uid, hi uid, sid -> ""            per conversation index
 *   cids     devid, cid        -> sid, ts         idempotent resend
 *   rmark    reader, peer      -> sid             read receipts sent
 *   contacts uid, uid          -> name
 *   blocks   blocker, blocked  -> name
 *   prefs    uid               -> chat_prefs_t    privacy, last seen
 *
 * Mailbox entries reference a message by sid: the body is stored once
 * however many devices receive it. Acked entries are deleted at once.
 */
#ifndef PARLEY_ACTORS_MAILBOX_H
#define PARLEY_ACTORS_MAILBOX_H

#include <stdbool.h>
#include <stdint.h>

#include <lmdb.h>
#include <msgpack.h>

#include "codec.h"
#include "store.h"

#define CHAT_NAME_CAP (PROTO_MAX_NAME + 1)

typedef enum chat_entry_kind {
    CHAT_ENTRY_MSG = 1,        /* a message to this device's user */
    CHAT_ENTRY_COPY,           /* the user's own message, from another device */
    CHAT_ENTRY_DELIVERED,      /* `by` has message `sid` */
    CHAT_ENTRY_READ,           /* `by` read every message up to `sid` */
    CHAT_ENTRY_GDELIVERED_ALL, /* group message `sid` reached every member;
                                * a chat_gentry_t */
    CHAT_ENTRY_GREAD_ALL,      /* every member read it; a chat_gentry_t */
} chat_entry_kind_t;

typedef struct chat_entry {
    uint32_t kind;
    uint32_t reserved;
    uint64_t sid; /* the message, or the read receipt's upto */
    uint64_t ts;  /* receipts: when; messages: as the message */
    char by[CHAT_NAME_CAP];
} chat_entry_t;

/* The entries of group receipts carry the group and the stream position. */
typedef struct chat_gentry {
    chat_entry_t e;
    uint64_t gid, gseq;
} chat_gentry_t;

typedef struct chat_mhead {
    uint64_t last;  /* highest seq appended; 0 for an empty mailbox */
    uint64_t acked; /* highest seq the device acknowledged */
} chat_mhead_t;

typedef struct chat_msg_rec {
    uint64_t sid, ts;
    uint64_t from_uid, to_uid, from_dev, cid;
    uint64_t delivered_at, read_at; /* 0 until then */
    char from[CHAT_NAME_CAP], to[CHAT_NAME_CAP];
    uint32_t body_len; /* the body follows the record */
} chat_msg_rec_t;

typedef enum chat_privacy {
    CHAT_PRIVACY_EVERYONE = PROTO_PRIVACY_EVERYONE,
    CHAT_PRIVACY_CONTACTS = PROTO_PRIVACY_CONTACTS,
    CHAT_PRIVACY_NOBODY = PROTO_PRIVACY_NOBODY,
} chat_privacy_t;

typedef struct chat_prefs {
    uint32_t privacy; /* chat_privacy_t; 0 reads as everyone */
    uint32_t reserved;
    uint64_t last_seen; /* ms; 0 never */
} chat_prefs_t;

/* ---- writes, applied by the store actor ---- */

enum {
    /* request: chat_op_t + body; reply CHAT_STORE_CHAT_DONE carrying
     * chat_op_res_t after the commit. */
    CHAT_STORE_CHAT = 0x5710,
    CHAT_STORE_CHAT_DONE,
    /* from the store to a session (found by its device key) after a
     * commit appended to that device's mailbox: chat_mbox_wake_t, or no
     * payload */
    CHAT_MBOX_WAKE,
};

/* The payload of CHAT_MBOX_WAKE: the events of the entries first..last
 * that one commit appended, in seq order, each framed as in
 * CHAT_CONN_WIRE (a 4-byte host-order length, then the map), so that a
 * session that has pushed everything before `first` sends them on
 * without reading LMDB. A wake without payload only says that the
 * mailbox grew. */
typedef struct chat_mbox_wake {
    uint64_t first, last;
    uint32_t len; /* bytes of frames */
    uint32_t reserved;
    uint8_t frames[];
} chat_mbox_wake_t;

typedef enum chat_op_kind {
    CHAT_OP_SEND = 1,       /* uid devid user peer cid now body */
    CHAT_OP_ACK,            /* uid devid user upto now */
    CHAT_OP_READ,           /* uid user peer upto now */
    CHAT_OP_CONTACT_ADD,    /* uid peer */
    CHAT_OP_CONTACT_REMOVE, /* uid peer */
    CHAT_OP_BLOCK,          /* uid peer */
    CHAT_OP_UNBLOCK,        /* uid peer */
    CHAT_OP_PRIVACY,        /* uid upto = chat_privacy_t */
    CHAT_OP_LAST_SEEN,      /* uid now */
    CHAT_OP_PRUNE,          /* now upto = first sid, cid = max to scan,
                             * keep_delivered, keep_undelivered */
    CHAT_OP_GROUP,          /* body: a chat_gop_t, see group.h */
} chat_op_kind_t;

typedef struct chat_op {
    uint32_t kind;
    uint32_t body_len;
    uint64_t uid, devid, now;
    uint64_t cid, upto;
    uint64_t keep_delivered, keep_undelivered; /* prune, ms */
    char user[CHAT_NAME_CAP];
    char peer[CHAT_NAME_CAP];
    uint8_t body[]; /* body_len bytes */
} chat_op_t;

/*
 * result: 0, or the op's own failure, which does not fail its batch:
 *   -ENOENT  peer unknown (send, read, contact.*, block, unblock), no such
 *            message from peer (read), not a contact / not blocked
 *   -EPERM   send: one of the two blocked the other
 *   -EEXIST  contact.add: already a contact
 *   -ERANGE  ack: upto is beyond the last seq appended to the mailbox
 *   -EIO, -ENOSPC  the batch failed
 */
typedef struct chat_op_res {
    int32_t result;
    uint32_t dup;       /* send: the cid was seen; sid and ts are the first */
    uint64_t sid, ts;   /* send */
    uint64_t scanned;   /* prune: messages looked at */
    uint64_t deleted;   /* prune: messages removed */
    uint64_t next_sid;  /* prune: where the next pass starts (0: wrap) */
    uint64_t gid, gseq; /* group ops: the group, the last gseq written */
} chat_op_res_t;

/* Called for every entry an op appended to a device's mailbox, inside the
 * store's transaction: `entry` (size bytes, a chat_entry_t or a larger
 * record that begins with one) got `seq`. For CHAT_ENTRY_MSG and
 * CHAT_ENTRY_COPY, `msg` is the message as stored (its body follows it);
 * otherwise NULL. Within one transaction the seqs of one device are
 * consecutive. Nothing is visible to readers before the commit, and an
 * aborted batch makes all of them void. */
typedef void (*chat_wake_fn)(void *ctx, uint64_t devid, uint64_t seq,
                             const void *entry, size_t size,
                             const chat_msg_rec_t *msg);

/* Applies op inside the store's write transaction. Returns 0 (the op's
 * own answer is in *res) or an LMDB error, which fails the batch. */
int chat_op_apply(chat_db_t *db, MDB_txn *txn, const chat_op_t *op,
                  chat_op_res_t *res, chat_wake_fn wake, void *ctx);

/*
 * The writer's transaction cache: mailbox heads, meta counters and device
 * lists read once and written once per transaction instead of once per
 * op. The store's writer opens it with _begin() right after
 * mdb_txn_begin(), calls _flush() (0 or an LMDB error, which fails the
 * batch) right before mdb_txn_commit(), and _end() after the commit or
 * the abort. While open, every chat op applied on that thread to a
 * transaction of the same environment goes through it. Ops applied in a
 * nested transaction must not append to mailboxes: an abort of theirs
 * would not undo the cached heads. _new() returns NULL when out of
 * memory.
 */
typedef struct chat_txn_cache chat_txn_cache_t;
chat_txn_cache_t *chat_txn_cache_new(chat_db_t *db);
void chat_txn_cache_free(chat_txn_cache_t *c);
void chat_txn_cache_begin(chat_txn_cache_t *c);
int chat_txn_cache_flush(chat_txn_cache_t *c, MDB_txn *txn);
void chat_txn_cache_end(chat_txn_cache_t *c);
/* A device of uid was added or revoked in txn: forget its cached list. */
void chat_txn_devices_changed(MDB_txn *txn, uint64_t uid);
/* chat_next_id(), through the cache when one is open for txn. */
int chat_txn_next_id(MDB_txn *txn, MDB_dbi meta, const char *name,
                     uint64_t *out);

/* Appends e (size bytes, a chat_entry_t or a larger record that begins
 * with one) to every device of uid but `skip`. Store transaction. */
int chat_mbox_append_user(chat_db_t *db, MDB_txn *txn, uint64_t uid,
                          uint64_t skip, const void *e, size_t size,
                          chat_wake_fn wake, void *ctx);

/*
 * Encodes the event of one mailbox entry into sb as a frame: a 4-byte
 * host-order length, then the map (the framing of CHAT_CONN_WIRE). `msg`
 * (with its body after it) is required for CHAT_ENTRY_MSG and
 * CHAT_ENTRY_COPY. Returns 0, 1 when the entry shows nothing (an unknown
 * kind, a short record; sb is left as it was), or -ENOMEM. Any thread.
 */
int chat_entry_encode(msgpack_sbuffer *sb, uint64_t seq, const void *entry,
                      size_t size, const chat_msg_rec_t *msg);

/* ---- reads; any thread ---- */

/* The user id of `name`, or -ENOENT / -EIO. */
int chat_db_uid(chat_db_t *db, const char *name, uint64_t *uid);

int chat_db_mhead(chat_db_t *db, uint64_t devid, chat_mhead_t *out);
/* The oldest entry of a device's mailbox not yet acknowledged: its seq and
 * time (ms since the epoch). -ENOENT when there is none. */
int chat_db_mbox_oldest(chat_db_t *db, uint64_t devid, uint64_t *seq,
                        uint64_t *ts);
int chat_db_prefs(chat_db_t *db, uint64_t uid, chat_prefs_t *out);
/* Whether `a` has `b` as a contact / has blocked `b`: 1, 0, or -EIO. */
int chat_db_is_contact(chat_db_t *db, uint64_t a, uint64_t b);
int chat_db_is_blocked(chat_db_t *db, uint64_t blocker, uint64_t blocked);

/*
 * Encodes, into sb, one event for each mailbox entry of `devid` with seq
 * in [from, to], at most `max` of them. For each one it first appends a
 * 4-byte host-order length, then the encoded map (the framing of
 * CHAT_CONN_WIRE). Entries whose message was pruned are skipped. Returns
 * the number of events written and sets *last to the highest seq looked
 * at, or -EIO / -ENOMEM.
 */
int chat_db_mbox_encode(chat_db_t *db, uint64_t devid, uint64_t from,
                        uint64_t to, uint32_t max, msgpack_sbuffer *sb,
                        uint64_t *last);

/* Encodes the history reply of request `re`: up to `limit` messages
 * between uid and peer with sid < before (0: no bound), newest first.
 * Returns 0 or -EIO / -ENOMEM. */
int chat_db_history_encode(chat_db_t *db, msgpack_sbuffer *sb, uint64_t re,
                           uint64_t uid, uint64_t peer, uint64_t before,
                           uint32_t limit);

/* Encodes {"re", "ok", "users": [...]} from the contacts (blocks false) or
 * blocks (true) table of uid. Returns 0 or -EIO / -ENOMEM. */
int chat_db_users_encode(chat_db_t *db, msgpack_sbuffer *sb, uint64_t re,
                         uint64_t uid, bool blocks);

/* Calls fn for each device id of uid; returns how many or -EIO. */
int chat_db_each_device(chat_db_t *db, uint64_t uid,
                        void (*fn)(void *ctx, uint64_t devid), void *ctx);

#endif /* PARLEY_ACTORS_MAILBOX_H */
