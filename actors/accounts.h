/*
 * actors/accounts.h - registration, login, tokens and devices.
 *
 * The accounts actor answers requests from connection actors. Password
 * hashing (argon2id) runs on the thread pool through rt_work(); writes go
 * to the store actor; reads go straight to the chat_db_t. Each answer
 * carries the complete wire reply, so a connection only forwards it and
 * updates its session from the result fields.
 *
 * Tokens: 32 random bytes given to the client once; the store keeps only
 * their BLAKE2b hash (crypto_generichash), so a copy of the store does not
 * let anyone resume a session.
 *
 * Failed logins and resumes are counted per account and per client
 * address in a window (settings login_fail_*); beyond the limit a request
 * is answered 204 with the time left in the window, before any password is
 * checked.
 *
 * The operator (the remote shell) can block an account: its logins and
 * resumes are refused with 303 once the password or token is known good,
 * so a block does not tell strangers which names exist. When registration
 * is closed, register needs an invite the operator made; it is used up in
 * the transaction that creates the account.
 */
#ifndef PARLEY_ACTORS_ACCOUNTS_H
#define PARLEY_ACTORS_ACCOUNTS_H

#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "rt.h"
#include "store.h"

#define CHAT_ACCOUNTS_NAME "accounts"

typedef struct chat_accounts_args {
    const chat_config_t *cfg;
    chat_db_t *db;
} chat_accounts_args_t;

/* Its spawn arg is a chat_accounts_args_t * that outlives it. */
extern const rt_behaviour_t chat_accounts_behaviour;

enum {
    /* chat_acc_req_t, sent with rt_send(): a connection sends from libuv
     * callbacks, where rt_request() is not available. */
    CHAT_ACC_REQ = 0x5800,
    CHAT_ACC_REPLY, /* to req.reply_to: chat_acc_reply_t */
    /* to a device's session, which passes it on to each of its
     * connections: the device was revoked. No payload. */
    CHAT_ACC_REVOKED,
};

/* op is one of PROTO_OP_REGISTER, LOGIN, RESUME, LOGOUT, DEVICE_LIST,
 * DEVICE_REVOKE. Strings are NUL-terminated copies. */
typedef struct chat_acc_req {
    uint32_t op;
    rt_id_t reply_to;    /* the connection: gets CHAT_ACC_REPLY */
    uint64_t reqid;      /* the client's request id */
    uint64_t uid, devid; /* the connection's session, 0 when none */
    uint64_t target;     /* device.revoke: the device */
    char user[PROTO_MAX_NAME + 1];
    char password[PROTO_MAX_PASSWORD + 1];
    char device[PROTO_MAX_TEXT + 1];
    char invite[PROTO_MAX_TEXT + 1]; /* register: may be empty */
    uint8_t token[PROTO_MAX_TOKEN];
    uint32_t token_len;
    char addr[48]; /* client address, for rate limits */
} chat_acc_req_t;

typedef struct chat_acc_reply {
    uint64_t reqid;
    uint32_t op;
    int32_t code;        /* 0, or the protocol error code of the reply */
    uint64_t uid, devid; /* login, resume: the session now open */
    char user[PROTO_MAX_NAME + 1];
    uint32_t wire_len;
    uint8_t wire[]; /* the encoded reply, to send as it is */
} chat_acc_reply_t;

#endif /* PARLEY_ACTORS_ACCOUNTS_H */
