/*
 * actors/store.h - the LMDB store of accounts: users, devices, tokens.
 *
 * One chat_db_t is opened by main before the actors start, and lives until
 * they have stopped. Reads are plain functions that any thread may call:
 * each runs in its own short read-only transaction (the environment is
 * opened with MDB_NOTLS, so a scheduler thread may hold several). Writes
 * go through the store actor, LMDB's single writer: it groups the writes
 * that arrive while a commit is running into the next transaction, and
 * runs each commit (and its fsync) on the thread pool, so durability costs
 * one fsync per batch rather than one per write.
 *
 * The chat records (mailboxes, messages, contacts...) and their writes
 * are described in mailbox.h.
 *
 * Records are fixed C structs in host byte order (a store is not moved
 * between machines); keys that are scanned by range are big-endian.
 */
#ifndef PARLEY_ACTORS_STORE_H
#define PARLEY_ACTORS_STORE_H

#include <stdbool.h>
#include <stdbool.h>
#include <stdint.h>

#include <sodium.h>

#include "codec.h"
#include "rt.h"

#define CHAT_TOKEN_HASH 32 /* bytes of crypto_generichash of a token */

typedef struct chat_db chat_db_t;

typedef struct chat_user_rec {
    uint64_t uid;
    uint64_t created; /* ms since the epoch */
    char pwhash[crypto_pwhash_STRBYTES];
} chat_user_rec_t;

typedef struct chat_device_rec {
    uint64_t created, last_seen; /* ms since the epoch */
    uint8_t token_hash[CHAT_TOKEN_HASH];
    char name[PROTO_MAX_TEXT + 1];
    char user[PROTO_MAX_NAME + 1];
} chat_device_rec_t;

/* Opens (creating if needed) the store under directory `dir`, which is
 * created too. Returns 0 and *out, or a negative errno-style code (-EIO
 * and friends for LMDB errors, whose text is logged). */
int chat_db_open(const char *dir, uint64_t map_size, chat_db_t **out);
void chat_db_close(chat_db_t *db);

/* Durability: with each_commit (the default) every batch is fsynced before
 * its writers are answered; without it LMDB does not fsync (MDB_NOSYNC), so
 * a crash of the process loses nothing but a crash of the machine may lose
 * the batches the kernel had not written back. Returns 0 or -EIO. */
int chat_db_set_sync(chat_db_t *db, bool each_commit);

/* Reads; each returns 0, -ENOENT when absent, or -EIO. Any thread. */
int chat_db_user_get(chat_db_t *db, const char *name, size_t len,
                     chat_user_rec_t *out);
int chat_db_token_get(chat_db_t *db, const uint8_t hash[CHAT_TOKEN_HASH],
                      uint64_t *uid, uint64_t *devid);
int chat_db_device_get(chat_db_t *db, uint64_t uid, uint64_t devid,
                       chat_device_rec_t *out);

/* Calls fn for every device of `uid` in id order; stops early when fn
 * returns non-zero. Returns the number of devices visited or -EIO. */
int chat_db_devices_each(chat_db_t *db, uint64_t uid,
                         int (*fn)(uint64_t devid, const chat_device_rec_t *d,
                                   void *ctx),
                         void *ctx);

/* Whether the operator blocked account `uid`: 1 (and *since, ms since the
 * epoch, when since is not NULL), 0 when not, or -EIO. Any thread. */
int chat_db_user_blocked(chat_db_t *db, uint64_t uid, uint64_t *since);

/* Whether an unused invite with this token hash exists: 0 (and *created),
 * -ENOENT, or -EIO. Any thread. */
int chat_db_invite_get(chat_db_t *db, const uint8_t hash[CHAT_TOKEN_HASH],
                       uint64_t *created);

/* Totals since the process started, for the operator: transactions
 * committed and writes they carried. Any thread. */
void chat_store_counters(uint64_t *commits, uint64_t *writes);

/* ---- the store actor ---- */

/* Registered under this name while alive. */
#define CHAT_STORE_NAME "store"

/* Its spawn arg is the chat_db_t *. */
extern const rt_behaviour_t chat_store_behaviour;

enum {
    /* request: chat_store_op_t; reply CHAT_STORE_DONE after the commit.
     * A write sent with rt_send() (ref 0) gets no reply. */
    CHAT_STORE_WRITE = 0x5700,
    CHAT_STORE_DONE, /* chat_store_done_t */
};

typedef enum chat_store_kind {
    CHAT_STORE_CREATE_USER = 1, /* user, pwhash, now -> uid; -EEXIST */
    CHAT_STORE_ADD_DEVICE,      /* uid, user, device, token_hash, now ->
                                 * devid */
    CHAT_STORE_REVOKE_DEVICE,   /* uid, devid: drops it and its token;
                                 * -ENOENT */
    CHAT_STORE_TOUCH_DEVICE,    /* uid, devid, now: sets last_seen */
    CHAT_STORE_BLOCK_USER,      /* uid, now: the operator blocks it */
    CHAT_STORE_UNBLOCK_USER,    /* uid: -ENOENT when it was not blocked */
    CHAT_STORE_ADD_INVITE,      /* token_hash, now: a registration invite */
} chat_store_kind_t;

typedef struct chat_store_op {
    uint32_t kind;
    uint64_t uid, devid, now;
    char user[PROTO_MAX_NAME + 1];
    char device[PROTO_MAX_TEXT + 1];
    char pwhash[crypto_pwhash_STRBYTES];
    uint8_t token_hash[CHAT_TOKEN_HASH];
    /* CREATE_USER: token_hash is an invite, used up in the same
     * transaction; -EACCES when it is unknown or already used */
    bool invite;
} chat_store_op_t;

typedef struct chat_store_done {
    int result; /* 0, -EEXIST, -ENOENT, -EACCES, -EIO */
    uint64_t uid, devid;
} chat_store_done_t;

#endif /* PARLEY_ACTORS_STORE_H */
