/*
 * actors/store_db.h - the inside of chat_db_t, shared by store.c (the
 * environment, accounts, the writer) and mailbox.c (the chat records).
 * Nothing outside those two files includes it.
 */
#ifndef PARLEY_ACTORS_STORE_DB_H
#define PARLEY_ACTORS_STORE_DB_H

#include <stdint.h>

#include <lmdb.h>

struct chat_db {
    MDB_env *env;
    MDB_dbi users, devices, tokens, meta;
    /* chat records, see mailbox.h for their layout */
    MDB_dbi mbox, mhead, msgs, conv, cids, rmark, contacts, blocks, prefs;
    /* groups, see group.h */
    MDB_dbi groups, gmembers, glog, ugroups, gcur;
};

static inline void chat_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t chat_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Logs an LMDB error and maps it to a result code: -ENOENT, -EEXIST,
 * -ENOSPC (map full) or -EIO. */
int chat_db_err(const char *what, int rc);

/* Opens the chat tables inside the first write transaction. Returns 0 or
 * an LMDB error. */
int chat_mbox_open_dbis(chat_db_t *db, MDB_txn *txn);

/* Calls fn(ctx, second, val) for each record of dbi whose key is the 16
 * bytes (first, second), big-endian, with from <= second <= to, in key
 * order. fn returns 0 to go on, 1 to stop; anything else stops the scan
 * and is returned. Returns 0 at the end of the range or when fn stopped
 * it, else an LMDB error or fn's. */
int chat_db_scan(MDB_txn *txn, MDB_dbi dbi, uint64_t first, uint64_t from,
                 uint64_t to,
                 int (*fn)(void *ctx, uint64_t second, const MDB_val *val),
                 void *ctx);

/* The next value of counter `name` in the meta table (first 1). */
int chat_next_id(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out);

#endif /* PARLEY_ACTORS_STORE_DB_H */
