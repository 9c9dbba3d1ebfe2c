/*
 * proto/codec.h - the parley.v1 MessagePack codec.
 *
 * Turns one WebSocket message payload into a validated request struct, and
 * writes every reply and event of proto/PROTOCOL.md into a msgpack_sbuffer.
 * No I/O, no global state: safe to use from any thread as long as each
 * proto_dec_t is used by one thread at a time.
 *
 * Results follow the project convention: 0 (or a positive count) on
 * success, a negative value on failure. Decoding fails with the negated
 * protocol error code (-PROTO_E_MALFORMED ...), so `-rc` is what goes into
 * the error reply. Encoders fail only with -ENOMEM (the sbuffer could not
 * grow) or -EINVAL (a caller bug, such as an over-long name); on failure
 * the sbuffer holds a partial map and must be reset by the caller.
 *
 * Memory: decoded strings, byte strings and name lists point into the
 * input buffer or into the decoder's zone. They stay valid until the next
 * proto_decode_* call on the same decoder, proto_dec_free, or until the
 * input buffer is released, whichever comes first. Nothing is copied.
 */
#ifndef PARLEY_PROTO_CODEC_H
#define PARLEY_PROTO_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define PROTO_VERSION "parley.v1"

/* Limits of section 2.2 of PROTOCOL.md. Checked by the decoder. */
#define PROTO_MAX_NAME            32    /* user name, bytes */
#define PROTO_MAX_TEXT            64    /* device, group name, invite, client */
#define PROTO_MAX_PASSWORD        256   /* bytes */
#define PROTO_MAX_TOKEN           64    /* bytes */
#define PROTO_MAX_BODY            65536 /* bytes of a message body */
#define PROTO_MAX_LIST            1024  /* names in one list */
#define PROTO_MAX_DEPTH           8     /* nesting of arrays and maps */
#define PROTO_HISTORY_MAX         100
#define PROTO_HISTORY_DEFAULT     50
#define PROTO_MAX_MESSAGE_DEFAULT (256 * 1024) /* server default */

/* Error codes of section 2.1. Positive on the wire, negated as results. */
enum proto_err {
    PROTO_E_MALFORMED = 100,
    PROTO_E_UNKNOWN_OP = 101,
    PROTO_E_MISSING_FIELD = 102,
    PROTO_E_WRONG_TYPE = 103,
    PROTO_E_BAD_UTF8 = 104,
    PROTO_E_TOO_LONG = 105,
    PROTO_E_BAD_VALUE = 106,
    PROTO_E_NOT_LOGGED_IN = 200,
    PROTO_E_BAD_CREDENTIALS = 201,
    PROTO_E_ALREADY_LOGGED_IN = 202,
    PROTO_E_BAD_INVITE = 203,
    PROTO_E_RATE_LIMITED = 204,
    PROTO_E_EXISTS = 300,
    PROTO_E_NOT_FOUND = 301,
    PROTO_E_BLOCKED = 302,
    PROTO_E_FORBIDDEN = 303,
    PROTO_E_GROUP_FULL = 304,
    PROTO_E_TOO_LARGE = 400,
    PROTO_E_BUSY = 401,
    PROTO_E_INTERNAL = 500,
};

/* The snake_case name of a protocol error code ("missing_field"), or
 * "unknown" for a code not in the table. Never NULL. */
const char *proto_err_name(int code);

typedef enum proto_op {
    PROTO_OP_NONE = 0,
    PROTO_OP_HELLO,
    PROTO_OP_REGISTER,
    PROTO_OP_LOGIN,
    PROTO_OP_RESUME,
    PROTO_OP_LOGOUT,
    PROTO_OP_DEVICE_LIST,
    PROTO_OP_DEVICE_REVOKE,
    PROTO_OP_SEND,
    PROTO_OP_ACK,
    PROTO_OP_READ,
    PROTO_OP_HISTORY,
    PROTO_OP_TYPING,
    PROTO_OP_PRESENCE_SUB,
    PROTO_OP_PRESENCE_UNSUB,
    PROTO_OP_PRIVACY_SET,
    PROTO_OP_CONTACT_ADD,
    PROTO_OP_CONTACT_REMOVE,
    PROTO_OP_CONTACT_LIST,
    PROTO_OP_BLOCK,
    PROTO_OP_UNBLOCK,
    PROTO_OP_BLOCK_LIST,
    PROTO_OP_GROUP_CREATE,
    PROTO_OP_GROUP_ADD,
    PROTO_OP_GROUP_REMOVE,
    PROTO_OP_GROUP_LEAVE,
    PROTO_OP_GROUP_PROMOTE,
    PROTO_OP_GROUP_RENAME,
    PROTO_OP_GROUP_INFO,
    PROTO_OP_GROUP_SEND,
    PROTO_OP_GROUP_READ,
    PROTO_OP_COUNT_
} proto_op_t;

/* The wire name of an operation ("group.send"), or NULL if out of range. */
const char *proto_op_name(proto_op_t op);

/* Whether the operation needs a logged-in session (section 3). */
bool proto_op_needs_session(proto_op_t op);

/* A string or byte string inside a buffer owned by someone else. Strings
 * are NOT NUL-terminated. ptr is NULL when an optional field was absent. */
typedef struct proto_str {
    const char *ptr;
    uint32_t len;
} proto_str_t;

typedef struct proto_bin {
    const uint8_t *ptr;
    uint32_t len;
} proto_bin_t;

typedef struct proto_names {
    const proto_str_t *items; /* in the decoder's zone */
    uint32_t count;
} proto_names_t;

typedef enum proto_privacy {
    PROTO_PRIVACY_EVERYONE = 1,
    PROTO_PRIVACY_CONTACTS,
    PROTO_PRIVACY_NOBODY,
} proto_privacy_t;

/* Field ids, one per distinct request key. Bit (1u << id) of
 * proto_req_t.has tells whether the field was present. */
enum proto_field {
    PROTO_F_CLIENT,
    PROTO_F_USER,
    PROTO_F_PASSWORD,
    PROTO_F_INVITE,
    PROTO_F_DEVICE,
    PROTO_F_TOKEN,
    PROTO_F_AFTER,
    PROTO_F_TO,
    PROTO_F_CID,
    PROTO_F_BODY,
    PROTO_F_UPTO,
    PROTO_F_PEER,
    PROTO_F_GID,
    PROTO_F_BEFORE,
    PROTO_F_LIMIT,
    PROTO_F_ON,
    PROTO_F_USERS,
    PROTO_F_PRESENCE,
    PROTO_F_NAME,
    PROTO_F_MEMBERS,
    PROTO_F_COUNT_
};

#define PROTO_HAS(req, f) (((req)->has >> (f)) & 1u)

/* A decoded request. `op` selects the member of `u` that is valid:
 *
 *   HELLO                    u.hello
 *   REGISTER                 u.reg
 *   LOGIN                    u.login
 *   RESUME                   u.resume
 *   LOGOUT, DEVICE_LIST, CONTACT_LIST, BLOCK_LIST   (no fields)
 *   DEVICE_REVOKE            u.device_revoke
 *   SEND                     u.send
 *   ACK                      u.ack
 *   READ                     u.read
 *   HISTORY                  u.history (limit defaulted when absent)
 *   TYPING                   u.typing
 *   PRESENCE_SUB/UNSUB       u.presence
 *   PRIVACY_SET              u.privacy
 *   CONTACT_ADD/REMOVE, BLOCK, UNBLOCK            u.user
 *   GROUP_CREATE             u.group_create
 *   GROUP_ADD                u.group_add
 *   GROUP_REMOVE/PROMOTE     u.group_member
 *   GROUP_LEAVE/INFO         u.group
 *   GROUP_RENAME             u.group_rename
 *   GROUP_SEND               u.group_send
 *   GROUP_READ               u.group_read
 */
typedef struct proto_req {
    proto_op_t op;
    uint64_t id;   /* 0 when the request had no valid id */
    uint32_t has;  /* PROTO_HAS bits of the fields present */
    int err_field; /* enum proto_field at fault, or -1 ("op"/"id": -2/-3) */
    union {
        struct {
            proto_str_t client;
        } hello;
        struct {
            proto_str_t user, password, invite;
        } reg;
        struct {
            proto_str_t user, password, device;
        } login;
        struct {
            proto_bin_t token;
            uint64_t after;
        } resume;
        struct {
            uint64_t device;
        } device_revoke;
        struct {
            proto_str_t to;
            uint64_t cid;
            proto_bin_t body;
        } send;
        struct {
            uint64_t upto;
            uint64_t gid; /* 0: the device's mailbox */
        } ack;
        struct {
            proto_str_t peer;
            uint64_t upto;
        } read;
        struct {
            proto_str_t peer;
            uint64_t gid, before, limit;
        } history;
        struct {
            proto_str_t to;
            uint64_t gid;
            bool on;
        } typing;
        struct {
            proto_names_t users;
        } presence;
        struct {
            proto_privacy_t presence;
        } privacy;
        struct {
            proto_str_t user;
        } user;
        struct {
            proto_str_t name;
            proto_names_t members;
        } group_create;
        struct {
            uint64_t gid;
            proto_names_t users;
        } group_add;
        struct {
            uint64_t gid;
            proto_str_t user;
        } group_member;
        struct {
            uint64_t gid;
        } group;
        struct {
            uint64_t gid;
            proto_str_t name;
        } group_rename;
        struct {
            uint64_t gid, cid;
            proto_bin_t body;
        } group_send;
        struct {
            uint64_t gid, upto;
        } group_read;
    } u;
} proto_req_t;

/* Decoder scratch: a msgpack zone reused across calls. Keep one per
 * thread or per actor turn, not one per connection. */
typedef struct proto_dec {
    msgpack_zone zone;
} proto_dec_t;

/* Initialise a decoder. Returns 0 or -ENOMEM. */
int proto_dec_init(proto_dec_t *dec);

/* Release everything the decoder holds. */
void proto_dec_free(proto_dec_t *dec);

/*
 * Decode one message payload as a request.
 *
 * Returns 0 and fills *req, or the negated protocol code:
 *   -PROTO_E_MALFORMED      not exactly one well-formed map, a known key
 *                           twice, nesting deeper than PROTO_MAX_DEPTH, or a
 *                           length that exceeds the remaining input
 *   -PROTO_E_MISSING_FIELD  "id", "op" or a required field is absent
 *   -PROTO_E_WRONG_TYPE     a known field has the wrong type
 *   -PROTO_E_UNKNOWN_OP     "op" names no operation
 *   -PROTO_E_BAD_UTF8, -PROTO_E_TOO_LONG, -PROTO_E_BAD_VALUE, as
 *                           section 2.2 of PROTOCOL.md describes
 *   -PROTO_E_TOO_LARGE      a body over PROTO_MAX_BODY
 *   -PROTO_E_INTERNAL       out of memory
 * On failure req->id holds the request id when it could be read (else 0)
 * and req->err_field names the field at fault, so that the caller can
 * answer with proto_enc_decode_error().
 */
int proto_decode_req(proto_dec_t *dec, const void *buf, size_t len,
                     proto_req_t *req);

/*
 * Decode any one payload (a reply or an event, on the client side) into a
 * msgpack object tree. Same well-formedness guard as proto_decode_req.
 * Returns 0 or -PROTO_E_MALFORMED / -PROTO_E_INTERNAL.
 */
int proto_decode_obj(proto_dec_t *dec, const void *buf, size_t len,
                     msgpack_object *out);

/* The value of string key `key` in a map object, or NULL when the object
 * is not a map or has no such key. */
const msgpack_object *proto_map_get(const msgpack_object *map, const char *key);

/* Whether buf[0..len) is valid UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
bool proto_utf8_valid(const void *buf, size_t len);

/* Whether s is a valid user name (section 2.2). */
bool proto_name_valid(const char *s, size_t len);

/* ---- encoding; every function appends one complete map to sb ---- */

/* Encode a request (client side). Fields are taken from the union member
 * that req->op selects; optional fields are written when their PROTO_HAS
 * bit is set. Returns 0, -EINVAL for an unknown op, or -ENOMEM. */
int proto_enc_req(msgpack_sbuffer *sb, const proto_req_t *req);

/* {"re": re, "ok": true} */
int proto_enc_ok(msgpack_sbuffer *sb, uint64_t re);

/* {"re": re, "err": {"code", "msg"}}; "retry" is added when retry_ms > 0.
 * msg may be NULL, then the code's name is used. */
int proto_enc_err(msgpack_sbuffer *sb, uint64_t re, int code, const char *msg,
                  uint64_t retry_ms);

/* The error reply for a failed proto_decode_req(); rc is its result. The
 * message names the field at fault, e.g. "missing field: to". */
int proto_enc_decode_error(msgpack_sbuffer *sb, const proto_req_t *req, int rc);

int proto_enc_hello_ok(msgpack_sbuffer *sb, uint64_t re, const char *server,
                       uint64_t max_message, uint64_t max_body);
int proto_enc_login_ok(msgpack_sbuffer *sb, uint64_t re, proto_bin_t token,
                       uint64_t device, uint64_t acked);
int proto_enc_resume_ok(msgpack_sbuffer *sb, uint64_t re, proto_str_t user,
                        uint64_t device, uint64_t acked);

typedef struct proto_device_info {
    uint64_t id;
    proto_str_t name;
    uint64_t created, last_seen;
    bool current;
} proto_device_info_t;

int proto_enc_devices_ok(msgpack_sbuffer *sb, uint64_t re,
                         const proto_device_info_t *devs, size_t n);

/* Reply to send and group.send. seq == 0 omits "seq"; dup adds "dup". */
int proto_enc_sent_ok(msgpack_sbuffer *sb, uint64_t re, uint64_t sid,
                      uint64_t ts, uint64_t seq, bool dup);

typedef struct proto_hist_msg {
    proto_str_t from;
    uint64_t sid, ts;
    proto_bin_t body;
} proto_hist_msg_t;

int proto_enc_history_ok(msgpack_sbuffer *sb, uint64_t re,
                         const proto_hist_msg_t *msgs, size_t n, bool more);

/* Reply with "users": contact.list and block.list. */
int proto_enc_users_ok(msgpack_sbuffer *sb, uint64_t re,
                       const proto_str_t *users, size_t n);

/* Reply to group.create. */
int proto_enc_gid_ok(msgpack_sbuffer *sb, uint64_t re, uint64_t gid);

typedef struct proto_member {
    proto_str_t user;
    bool admin;
} proto_member_t;

int proto_enc_group_info_ok(msgpack_sbuffer *sb, uint64_t re, uint64_t gid,
                            proto_str_t name, uint64_t created,
                            const proto_member_t *members, size_t n);

/* ---- events (section 4); gid == 0 and ptr == NULL mean "absent" ---- */

typedef struct proto_ev_msg {
    proto_str_t from;
    uint64_t sid, seq, ts;
    proto_bin_t body;
    uint64_t gid;   /* group message when non-zero */
    proto_str_t to; /* copy of one's own message when ptr != NULL */
} proto_ev_msg_t;

int proto_enc_ev_msg(msgpack_sbuffer *sb, const proto_ev_msg_t *ev);
int proto_enc_ev_delivered(msgpack_sbuffer *sb, proto_str_t by, uint64_t sid,
                           uint64_t seq, uint64_t ts, uint64_t gid);
int proto_enc_ev_read(msgpack_sbuffer *sb, proto_str_t by, uint64_t upto,
                      uint64_t seq, uint64_t ts, uint64_t gid);

typedef enum proto_group_kind {
    PROTO_GROUP_CREATED = 1,
    PROTO_GROUP_ADDED,
    PROTO_GROUP_REMOVED,
    PROTO_GROUP_LEFT,
    PROTO_GROUP_PROMOTED,
    PROTO_GROUP_RENAMED,
} proto_group_kind_t;

typedef struct proto_ev_group {
    uint64_t gid, seq, ts;
    proto_group_kind_t kind;
    proto_str_t by;
    proto_str_t user; /* optional */
    proto_str_t name; /* optional */
} proto_ev_group_t;

int proto_enc_ev_group(msgpack_sbuffer *sb, const proto_ev_group_t *ev);

/* {"ev": "delivered_all" or "read_all", gid, sid, gseq, seq, ts}: every
 * member has group message sid (at gseq); stored in the sender's mailbox
 * at seq. */
int proto_enc_ev_all(msgpack_sbuffer *sb, bool read, uint64_t gid, uint64_t sid,
                     uint64_t gseq, uint64_t seq, uint64_t ts);

/* {"ev": "receipts", gid, sid, gseq, delivered: [names], read: [names],
 * ndelivered, nread, members}: members who newly have or read group
 * message sid, with the counts so far out of `members`. Not stored. */
int proto_enc_ev_receipts(msgpack_sbuffer *sb, uint64_t gid, uint64_t sid,
                          uint64_t gseq, const proto_str_t *delivered,
                          size_t nd, const proto_str_t *read, size_t nr,
                          uint64_t ndelivered, uint64_t nread,
                          uint64_t members);

/* last_seen == 0 omits "last_seen". */
int proto_enc_ev_presence(msgpack_sbuffer *sb, proto_str_t user, bool online,
                          uint64_t last_seen);
int proto_enc_ev_typing(msgpack_sbuffer *sb, proto_str_t from, bool on,
                        uint64_t gid);
int proto_enc_ev_revoked(msgpack_sbuffer *sb);

/* Make a proto_str_t of a NUL-terminated string (NULL gives an absent
 * string). */
proto_str_t proto_cstr(const char *s);

#endif /* PARLEY_PROTO_CODEC_H */
