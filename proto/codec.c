/*
 * proto/codec.c - parley.v1 request decoding and reply/event encoding.
 *
 * Requests are decoded from a table: each operation lists its fields with a
 * kind (which fixes the wire type and the limits) and whether it is
 * required. The same table drives proto_enc_req, so the two directions
 * cannot drift apart.
 */
#include "codec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- names ---------------------------------------------------------- */

const char *proto_err_name(int code)
{
    switch (code) {
    case PROTO_E_MALFORMED:
        return "malformed";
    case PROTO_E_UNKNOWN_OP:
        return "unknown_op";
    case PROTO_E_MISSING_FIELD:
        return "missing_field";
    case PROTO_E_WRONG_TYPE:
        return "wrong_type";
    case PROTO_E_BAD_UTF8:
        return "bad_utf8";
    case PROTO_E_TOO_LONG:
        return "too_long";
    case PROTO_E_BAD_VALUE:
        return "bad_value";
    case PROTO_E_NOT_LOGGED_IN:
        return "not_logged_in";
    case PROTO_E_BAD_CREDENTIALS:
        return "bad_credentials";
    case PROTO_E_ALREADY_LOGGED_IN:
        return "already_logged_in";
    case PROTO_E_BAD_INVITE:
        return "bad_invite";
    case PROTO_E_RATE_LIMITED:
        return "rate_limited";
    case PROTO_E_EXISTS:
        return "exists";
    case PROTO_E_NOT_FOUND:
        return "not_found";
    case PROTO_E_BLOCKED:
        return "blocked";
    case PROTO_E_FORBIDDEN:
        return "forbidden";
    case PROTO_E_GROUP_FULL:
        return "group_full";
    case PROTO_E_TOO_LARGE:
        return "too_large";
    case PROTO_E_BUSY:
        return "busy";
    case PROTO_E_INTERNAL:
        return "internal";
    default:
        return "unknown";
    }
}

/* What a field holds on the wire and which rules apply to it. */
enum kind {
    K_NAME,     /* str, user name */
    K_TEXT,     /* str, UTF-8, 1..PROTO_MAX_TEXT */
    K_PASSWORD, /* str, UTF-8, 1..PROTO_MAX_PASSWORD */
    K_TOKEN,    /* bin, 1..PROTO_MAX_TOKEN */
    K_BODY,     /* bin, 1..PROTO_MAX_BODY */
    K_UINT,     /* uint */
    K_ID,       /* uint >= 1 */
    K_BOOL,
    K_NAMES,   /* array of names, 1..PROTO_MAX_LIST */
    K_PRIVACY, /* str enum */
};

static const char *const field_keys[PROTO_F_COUNT_] = {
    [PROTO_F_CLIENT] = "client",     [PROTO_F_USER] = "user",
    [PROTO_F_PASSWORD] = "password", [PROTO_F_INVITE] = "invite",
    [PROTO_F_DEVICE] = "device",     [PROTO_F_TOKEN] = "token",
    [PROTO_F_AFTER] = "after",       [PROTO_F_TO] = "to",
    [PROTO_F_CID] = "cid",           [PROTO_F_BODY] = "body",
    [PROTO_F_UPTO] = "upto",         [PROTO_F_PEER] = "peer",
    [PROTO_F_GID] = "gid",           [PROTO_F_BEFORE] = "before",
    [PROTO_F_LIMIT] = "limit",       [PROTO_F_ON] = "on",
    [PROTO_F_USERS] = "users",       [PROTO_F_PRESENCE] = "presence",
    [PROTO_F_NAME] = "name",         [PROTO_F_MEMBERS] = "members",
};

struct fspec {
    uint8_t field; /* enum proto_field */
    uint8_t kind;  /* enum kind */
    uint8_t required;
    uint16_t off; /* offset of the value in proto_req_t */
};

struct opspec {
    const char *name;
    bool session;
    uint8_t nf;
    const struct fspec *f;
};

#define FLD(fid, k, req, member)                                               \
    {                                                                          \
        PROTO_F_##fid, k, req, offsetof(proto_req_t, u.member)                 \
    }
#define OP(nm, sess, arr)                                                      \
    {                                                                          \
        nm, sess, sizeof(arr) / sizeof(arr[0]), arr                            \
    }
#define OP0(nm, sess)                                                          \
    {                                                                          \
        nm, sess, 0, NULL                                                      \
    }

static const struct fspec f_hello[] = {FLD(CLIENT, K_TEXT, 0, hello.client)};
static const struct fspec f_register[] = {
    FLD(USER, K_NAME, 1, reg.user), FLD(PASSWORD, K_PASSWORD, 1, reg.password),
    FLD(INVITE, K_TEXT, 0, reg.invite)};
static const struct fspec f_login[] = {
    FLD(USER, K_NAME, 1, login.user),
    FLD(PASSWORD, K_PASSWORD, 1, login.password),
    FLD(DEVICE, K_TEXT, 1, login.device)};
static const struct fspec f_resume[] = {FLD(TOKEN, K_TOKEN, 1, resume.token),
                                        FLD(AFTER, K_UINT, 0, resume.after)};
static const struct fspec f_revoke[] = {
    FLD(DEVICE, K_ID, 1, device_revoke.device)};
static const struct fspec f_send[] = {FLD(TO, K_NAME, 1, send.to),
                                      FLD(CID, K_ID, 1, send.cid),
                                      FLD(BODY, K_BODY, 1, send.body)};
static const struct fspec f_ack[] = {FLD(UPTO, K_UINT, 1, ack.upto),
                                     FLD(GID, K_ID, 0, ack.gid)};
static const struct fspec f_read[] = {FLD(PEER, K_NAME, 1, read.peer),
                                      FLD(UPTO, K_UINT, 1, read.upto)};
static const struct fspec f_history[] = {FLD(PEER, K_NAME, 0, history.peer),
                                         FLD(GID, K_ID, 0, history.gid),
                                         FLD(BEFORE, K_UINT, 0, history.before),
                                         FLD(LIMIT, K_UINT, 0, history.limit)};
static const struct fspec f_typing[] = {FLD(TO, K_NAME, 0, typing.to),
                                        FLD(GID, K_ID, 0, typing.gid),
                                        FLD(ON, K_BOOL, 1, typing.on)};
static const struct fspec f_presence[] = {
    FLD(USERS, K_NAMES, 1, presence.users)};
static const struct fspec f_privacy[] = {
    FLD(PRESENCE, K_PRIVACY, 1, privacy.presence)};
static const struct fspec f_user[] = {FLD(USER, K_NAME, 1, user.user)};
static const struct fspec f_gcreate[] = {
    FLD(NAME, K_TEXT, 1, group_create.name),
    FLD(MEMBERS, K_NAMES, 1, group_create.members)};
static const struct fspec f_gadd[] = {FLD(GID, K_ID, 1, group_add.gid),
                                      FLD(USERS, K_NAMES, 1, group_add.users)};
static const struct fspec f_gmember[] = {
    FLD(GID, K_ID, 1, group_member.gid),
    FLD(USER, K_NAME, 1, group_member.user)};
static const struct fspec f_group[] = {FLD(GID, K_ID, 1, group.gid)};
static const struct fspec f_grename[] = {
    FLD(GID, K_ID, 1, group_rename.gid),
    FLD(NAME, K_TEXT, 1, group_rename.name)};
static const struct fspec f_gsend[] = {FLD(GID, K_ID, 1, group_send.gid),
                                       FLD(CID, K_ID, 1, group_send.cid),
                                       FLD(BODY, K_BODY, 1, group_send.body)};
static const struct fspec f_gread[] = {FLD(GID, K_ID, 1, group_read.gid),
                                       FLD(UPTO, K_UINT, 1, group_read.upto)};

static const struct opspec ops[PROTO_OP_COUNT_] = {
    [PROTO_OP_HELLO] = OP("hello", false, f_hello),
    [PROTO_OP_REGISTER] = OP("register", false, f_register),
    [PROTO_OP_LOGIN] = OP("login", false, f_login),
    [PROTO_OP_RESUME] = OP("resume", false, f_resume),
    [PROTO_OP_LOGOUT] = OP0("logout", true),
    [PROTO_OP_DEVICE_LIST] = OP0("device.list", true),
    [PROTO_OP_DEVICE_REVOKE] = OP("device.revoke", true, f_revoke),
    [PROTO_OP_SEND] = OP("send", true, f_send),
    [PROTO_OP_ACK] = OP("ack", true, f_ack),
    [PROTO_OP_READ] = OP("read", true, f_read),
    [PROTO_OP_HISTORY] = OP("history", true, f_history),
    [PROTO_OP_TYPING] = OP("typing", true, f_typing),
    [PROTO_OP_PRESENCE_SUB] = OP("presence.sub", true, f_presence),
    [PROTO_OP_PRESENCE_UNSUB] = OP("presence.unsub", true, f_presence),
    [PROTO_OP_PRIVACY_SET] = OP("privacy.set", true, f_privacy),
    [PROTO_OP_CONTACT_ADD] = OP("contact.add", true, f_user),
    [PROTO_OP_CONTACT_REMOVE] = OP("contact.remove", true, f_user),
    [PROTO_OP_CONTACT_LIST] = OP0("contact.list", true),
    [PROTO_OP_BLOCK] = OP("block", true, f_user),
    [PROTO_OP_UNBLOCK] = OP("unblock", true, f_user),
    [PROTO_OP_BLOCK_LIST] = OP0("block.list", true),
    [PROTO_OP_GROUP_CREATE] = OP("group.create", true, f_gcreate),
    [PROTO_OP_GROUP_ADD] = OP("group.add", true, f_gadd),
    [PROTO_OP_GROUP_REMOVE] = OP("group.remove", true, f_gmember),
    [PROTO_OP_GROUP_LEAVE] = OP("group.leave", true, f_group),
    [PROTO_OP_GROUP_PROMOTE] = OP("group.promote", true, f_gmember),
    [PROTO_OP_GROUP_RENAME] = OP("group.rename", true, f_grename),
    [PROTO_OP_GROUP_INFO] = OP("group.info", true, f_group),
    [PROTO_OP_GROUP_SEND] = OP("group.send", true, f_gsend),
    [PROTO_OP_GROUP_READ] = OP("group.read", true, f_gread),
};

/* The bitmask of fields must fit proto_req_t.has. */
_Static_assert(PROTO_F_COUNT_ <= 32, "proto_req_t.has is 32 bits");

static const char *const privacy_names[] = {
    [PROTO_PRIVACY_EVERYONE] = "everyone",
    [PROTO_PRIVACY_CONTACTS] = "contacts",
    [PROTO_PRIVACY_NOBODY] = "nobody",
};

static const char *const group_kind_names[] = {
    [PROTO_GROUP_CREATED] = "created",   [PROTO_GROUP_ADDED] = "added",
    [PROTO_GROUP_REMOVED] = "removed",   [PROTO_GROUP_LEFT] = "left",
    [PROTO_GROUP_PROMOTED] = "promoted", [PROTO_GROUP_RENAMED] = "renamed",
};

const char *proto_op_name(proto_op_t op)
{
    if (op <= PROTO_OP_NONE || op >= PROTO_OP_COUNT_)
        return NULL;
    return ops[op].name;
}

bool proto_op_needs_session(proto_op_t op)
{
    if (op <= PROTO_OP_NONE || op >= PROTO_OP_COUNT_)
        return true;
    return ops[op].session;
}

proto_str_t proto_cstr(const char *s)
{
    proto_str_t r = {s, s ? (uint32_t)strlen(s) : 0};
    return r;
}

/* ---- validation helpers --------------------------------------------- */

bool proto_utf8_valid(const void *buf, size_t len)
{
    const uint8_t *p = buf, *end = p + len;

    while (p < end) {
        uint8_t c = *p;
        size_t n;
        uint32_t cp, min;

        if (c < 0x80) {
            p++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

bool proto_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

/*
 * Structure guard, run before msgpack_unpack().
 *
 * msgpack-c allocates the element array of an array or map as soon as it
 * reads the header, for the count the header claims. A 5-byte input could
 * thus ask for gigabytes. This walk proves that every count fits in the
 * bytes that remain (each element takes at least one byte), that nesting
 * stays within PROTO_MAX_DEPTH and that exactly one object fills the input,
 * so that the allocation is bounded by a small multiple of the input size.
 * It reads headers only; msgpack-c still does the decoding.
 */
static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static const uint8_t *skip(const uint8_t *p, const uint8_t *end, int depth)
{
    uint64_t n = 0, items = 0;
    int lenb = 0;
    uint8_t c;

    if (p >= end || depth > PROTO_MAX_DEPTH)
        return NULL;
    c = *p++;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return p;
    if (c >= 0x80 && c <= 0x8f) {
        items = 2 * (uint64_t)(c & 0x0f);
    } else if (c >= 0x90 && c <= 0x9f) {
        items = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
        n = c & 0x1f;
    } else {
        switch (c) {
        case 0xc4:
        case 0xd9:
            lenb = 1;
            break;
        case 0xc5:
        case 0xda:
            lenb = 2;
            break;
        case 0xc6:
        case 0xdb:
            lenb = 4;
            break;
        case 0xc7:
            lenb = 1, n = 1;
            break; /* ext: one type byte */
        case 0xc8:
            lenb = 2, n = 1;
            break;
        case 0xc9:
            lenb = 4, n = 1;
            break;
        case 0xca:
            n = 4;
            break;
        case 0xcb:
            n = 8;
            break;
        case 0xcc:
        case 0xd0:
            n = 1;
            break;
        case 0xcd:
        case 0xd1:
            n = 2;
            break;
        case 0xce:
        case 0xd2:
            n = 4;
            break;
        case 0xcf:
        case 0xd3:
            n = 8;
            break;
        case 0xd4:
            n = 2;
            break;
        case 0xd5:
            n = 3;
            break;
        case 0xd6:
            n = 5;
            break;
        case 0xd7:
            n = 9;
            break;
        case 0xd8:
            n = 17;
            break;
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf: {
            int b = (c == 0xdc || c == 0xde) ? 2 : 4;
            if (end - p < b)
                return NULL;
            items = be(p, b);
            if (c >= 0xde)
                items *= 2;
            p += b;
            if (items > (uint64_t)(end - p))
                return NULL;
            while (items-- > 0)
                if (!(p = skip(p, end, depth + 1)))
                    return NULL;
            return p;
        }
        default: /* 0xc1 is never used */
            return NULL;
        }
    }
    if (lenb) {
        if (end - p < lenb)
            return NULL;
        n += be(p, lenb);
        p += lenb;
    }
    if (items) {
        if (items > (uint64_t)(end - p))
            return NULL;
        while (items-- > 0)
            if (!(p = skip(p, end, depth + 1)))
                return NULL;
        return p;
    }
    if (n > (uint64_t)(end - p))
        return NULL;
    return p + n;
}

int proto_dec_init(proto_dec_t *dec)
{
    if (!msgpack_zone_init(&dec->zone, 2048))
        return -ENOMEM;
    return 0;
}

void proto_dec_free(proto_dec_t *dec)
{
    msgpack_zone_destroy(&dec->zone);
}

int proto_decode_obj(proto_dec_t *dec, const void *buf, size_t len,
                     msgpack_object *out)
{
    const uint8_t *p = buf;
    size_t off = 0;
    msgpack_unpack_return r;

    if (len == 0 || skip(p, p + len, 1) != p + len)
        return -PROTO_E_MALFORMED;
    msgpack_zone_clear(&dec->zone);
    r = msgpack_unpack(buf, len, &off, &dec->zone, out);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR)
        return -PROTO_E_INTERNAL;
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        return -PROTO_E_MALFORMED;
    return 0;
}

const msgpack_object *proto_map_get(const msgpack_object *map, const char *key)
{
    size_t klen = strlen(key);

    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* ---- request decoding ----------------------------------------------- */

static bool str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

/* The field id a key names, or -1. "op" and "id" are -2 and -3. */
static int key_id(const msgpack_object *k)
{
    if (str_is(k, "op"))
        return -2;
    if (str_is(k, "id"))
        return -3;
    for (int i = 0; i < PROTO_F_COUNT_; i++)
        if (str_is(k, field_keys[i]))
            return i;
    return -1;
}

static int check_str(const msgpack_object *o, size_t max)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return -PROTO_E_WRONG_TYPE;
    if (o->via.str.size > max)
        return -PROTO_E_TOO_LONG;
    if (o->via.str.size == 0)
        return -PROTO_E_BAD_VALUE;
    if (!proto_utf8_valid(o->via.str.ptr, o->via.str.size))
        return -PROTO_E_BAD_UTF8;
    return 0;
}

static int check_name(const msgpack_object *o)
{
    int rc = check_str(o, PROTO_MAX_NAME);
    if (rc < 0)
        return rc;
    if (!proto_name_valid(o->via.str.ptr, o->via.str.size))
        return -PROTO_E_BAD_VALUE;
    return 0;
}

static int decode_names(proto_dec_t *dec, const msgpack_object *o,
                        proto_names_t *out)
{
    proto_str_t *items;
    uint32_t n;

    if (o->type != MSGPACK_OBJECT_ARRAY)
        return -PROTO_E_WRONG_TYPE;
    n = o->via.array.size;
    if (n > PROTO_MAX_LIST)
        return -PROTO_E_TOO_LONG;
    if (n == 0)
        return -PROTO_E_BAD_VALUE;
    items = msgpack_zone_malloc(&dec->zone, n * sizeof(*items));
    if (!items)
        return -PROTO_E_INTERNAL;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        int rc = check_name(e);
        if (rc < 0)
            return rc;
        items[i].ptr = e->via.str.ptr;
        items[i].len = e->via.str.size;
    }
    out->items = items;
    out->count = n;
    return 0;
}

static int decode_field(proto_dec_t *dec, const struct fspec *fs,
                        const msgpack_object *o, proto_req_t *req)
{
    void *dst = (char *)req + fs->off;
    int rc = 0;

    switch (fs->kind) {
    case K_NAME:
    case K_TEXT:
    case K_PASSWORD:
        if (fs->kind == K_NAME)
            rc = check_name(o);
        else
            rc = check_str(o, fs->kind == K_TEXT ? PROTO_MAX_TEXT
                                                 : PROTO_MAX_PASSWORD);
        if (rc == 0) {
            proto_str_t *s = dst;
            s->ptr = o->via.str.ptr;
            s->len = o->via.str.size;
        }
        return rc;
    case K_TOKEN:
    case K_BODY: {
        proto_bin_t *b = dst;
        if (o->type != MSGPACK_OBJECT_BIN)
            return -PROTO_E_WRONG_TYPE;
        if (o->via.bin.size == 0)
            return -PROTO_E_BAD_VALUE;
        if (fs->kind == K_TOKEN && o->via.bin.size > PROTO_MAX_TOKEN)
            return -PROTO_E_TOO_LONG;
        if (fs->kind == K_BODY && o->via.bin.size > PROTO_MAX_BODY)
            return -PROTO_E_TOO_LARGE;
        b->ptr = (const uint8_t *)o->via.bin.ptr;
        b->len = o->via.bin.size;
        return 0;
    }
    case K_UINT:
    case K_ID:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return -PROTO_E_WRONG_TYPE;
        if (fs->kind == K_ID && o->via.u64 == 0)
            return -PROTO_E_BAD_VALUE;
        *(uint64_t *)dst = o->via.u64;
        return 0;
    case K_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return -PROTO_E_WRONG_TYPE;
        *(bool *)dst = o->via.boolean;
        return 0;
    case K_NAMES:
        return decode_names(dec, o, dst);
    case K_PRIVACY:
        if (o->type != MSGPACK_OBJECT_STR)
            return -PROTO_E_WRONG_TYPE;
        for (int i = PROTO_PRIVACY_EVERYONE; i <= PROTO_PRIVACY_NOBODY; i++)
            if (str_is(o, privacy_names[i])) {
                *(proto_privacy_t *)dst = (proto_privacy_t)i;
                return 0;
            }
        return -PROTO_E_BAD_VALUE;
    }
    return -PROTO_E_INTERNAL;
}

static const struct fspec *find_spec(const struct opspec *os, int field)
{
    for (int i = 0; i < os->nf; i++)
        if (os->f[i].field == field)
            return &os->f[i];
    return NULL;
}

/* Rules that involve two fields, and defaults. */
static int check_op(proto_req_t *req)
{
    uint32_t peer = PROTO_HAS(req, PROTO_F_PEER);
    uint32_t to = PROTO_HAS(req, PROTO_F_TO);
    uint32_t gid = PROTO_HAS(req, PROTO_F_GID);

    switch (req->op) {
    case PROTO_OP_HISTORY:
        if (!PROTO_HAS(req, PROTO_F_LIMIT))
            req->u.history.limit = PROTO_HISTORY_DEFAULT;
        else if (req->u.history.limit == 0 ||
                 req->u.history.limit > PROTO_HISTORY_MAX)
            return req->err_field = PROTO_F_LIMIT, -PROTO_E_BAD_VALUE;
        if (peer == gid) {
            req->err_field = PROTO_F_PEER;
            return peer ? -PROTO_E_BAD_VALUE : -PROTO_E_MISSING_FIELD;
        }
        return 0;
    case PROTO_OP_TYPING:
        if (to == gid) {
            req->err_field = PROTO_F_TO;
            return to ? -PROTO_E_BAD_VALUE : -PROTO_E_MISSING_FIELD;
        }
        return 0;
    default:
        return 0;
    }
}

/* First pass: id, op, key types and duplicates. */
static int scan_keys(const msgpack_object_map *m, proto_req_t *req,
                     const msgpack_object **opv)
{
    uint32_t seen = 0;
    bool seen_op = false, seen_id = false;

    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        int id;
        if (k->type != MSGPACK_OBJECT_STR)
            return -PROTO_E_MALFORMED;
        id = key_id(k);
        if (id == -2) {
            if (seen_op)
                return -PROTO_E_MALFORMED;
            seen_op = true;
            *opv = v;
        } else if (id == -3) {
            if (seen_id)
                return -PROTO_E_MALFORMED;
            seen_id = true;
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 1 &&
                v->via.u64 <= INT64_MAX)
                req->id = v->via.u64;
            else
                req->err_field = -3;
        } else if (id >= 0) {
            if (seen & (1u << id))
                return -PROTO_E_MALFORMED;
            seen |= 1u << id;
        }
    }
    if (!seen_id)
        return req->err_field = -3, -PROTO_E_MISSING_FIELD;
    if (req->err_field == -3)
        return -PROTO_E_WRONG_TYPE;
    if (!seen_op)
        return req->err_field = -2, -PROTO_E_MISSING_FIELD;
    return 0;
}

static int lookup_op(const msgpack_object *v, proto_req_t *req)
{
    if (v->type != MSGPACK_OBJECT_STR)
        return req->err_field = -2, -PROTO_E_WRONG_TYPE;
    for (int i = PROTO_OP_NONE + 1; i < PROTO_OP_COUNT_; i++)
        if (str_is(v, ops[i].name)) {
            req->op = (proto_op_t)i;
            return 0;
        }
    return req->err_field = -2, -PROTO_E_UNKNOWN_OP;
}

int proto_decode_req(proto_dec_t *dec, const void *buf, size_t len,
                     proto_req_t *req)
{
    msgpack_object obj;
    const msgpack_object *opv = NULL;
    const struct opspec *os;
    int rc;

    memset(req, 0, sizeof(*req));
    req->err_field = -1;
    if ((rc = proto_decode_obj(dec, buf, len, &obj)) < 0)
        return rc;
    if (obj.type != MSGPACK_OBJECT_MAP)
        return -PROTO_E_MALFORMED;
    if ((rc = scan_keys(&obj.via.map, req, &opv)) < 0)
        return rc;
    if ((rc = lookup_op(opv, req)) < 0)
        return rc;
    os = &ops[req->op];
    for (uint32_t i = 0; i < obj.via.map.size; i++) {
        const msgpack_object_kv *kv = &obj.via.map.ptr[i];
        int id = key_id(&kv->key);
        const struct fspec *fs = id >= 0 ? find_spec(os, id) : NULL;
        if (!fs)
            continue; /* unknown keys are ignored */
        if ((rc = decode_field(dec, fs, &kv->val, req)) < 0) {
            req->err_field = id;
            return rc;
        }
        req->has |= 1u << id;
    }
    for (int i = 0; i < os->nf; i++)
        if (os->f[i].required && !PROTO_HAS(req, os->f[i].field)) {
            req->err_field = os->f[i].field;
            return -PROTO_E_MISSING_FIELD;
        }
    return check_op(req);
}

/* ---- encoding ------------------------------------------------------- */

/*
 * The packer functions return 0 or -1 (buffer could not grow). Each encoder
 * ORs their results together and turns a non-zero total into -ENOMEM: the
 * buffer is then unusable anyway, so stopping early buys nothing.
 */
#define PK_INIT(sb)                                                            \
    msgpack_packer pk_, *pk = &pk_;                                            \
    int e_ = 0;                                                                \
    msgpack_packer_init(pk, (sb), msgpack_sbuffer_write)
#define PK_DONE() return e_ ? -ENOMEM : 0

static int key(msgpack_packer *pk, const char *k)
{
    return msgpack_pack_str_with_body(pk, k, strlen(k));
}

static int kv_str(msgpack_packer *pk, const char *k, proto_str_t v)
{
    return key(pk, k) | msgpack_pack_str_with_body(pk, v.ptr, v.len);
}

static int kv_bin(msgpack_packer *pk, const char *k, proto_bin_t v)
{
    return key(pk, k) | msgpack_pack_bin_with_body(pk, v.ptr, v.len);
}

static int kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    return key(pk, k) | msgpack_pack_uint64(pk, v);
}

static int kv_bool(msgpack_packer *pk, const char *k, bool v)
{
    return key(pk, k) | (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
}

static int names(msgpack_packer *pk, const proto_str_t *v, size_t n)
{
    int e = msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        e |= msgpack_pack_str_with_body(pk, v[i].ptr, v[i].len);
    return e;
}

/* {"re": re, "ok": true, + extra more pairs} */
static int ok_head(msgpack_packer *pk, uint64_t re, size_t extra)
{
    return msgpack_pack_map(pk, 2 + extra) | kv_u64(pk, "re", re) |
           kv_bool(pk, "ok", true);
}

static int enc_field(msgpack_packer *pk, const struct fspec *fs,
                     const proto_req_t *req)
{
    const void *src = (const char *)req + fs->off;
    const char *k = field_keys[fs->field];

    switch (fs->kind) {
    case K_NAME:
    case K_TEXT:
    case K_PASSWORD:
        return kv_str(pk, k, *(const proto_str_t *)src);
    case K_TOKEN:
    case K_BODY:
        return kv_bin(pk, k, *(const proto_bin_t *)src);
    case K_UINT:
    case K_ID:
        return kv_u64(pk, k, *(const uint64_t *)src);
    case K_BOOL:
        return kv_bool(pk, k, *(const bool *)src);
    case K_NAMES: {
        const proto_names_t *n = src;
        return key(pk, k) | names(pk, n->items, n->count);
    }
    case K_PRIVACY: {
        proto_privacy_t p = *(const proto_privacy_t *)src;
        if (p < PROTO_PRIVACY_EVERYONE || p > PROTO_PRIVACY_NOBODY)
            return -1;
        return kv_str(pk, k, proto_cstr(privacy_names[p]));
    }
    }
    return -1;
}

int proto_enc_req(msgpack_sbuffer *sb, const proto_req_t *req)
{
    const struct opspec *os;
    size_t n = 2;

    if (req->op <= PROTO_OP_NONE || req->op >= PROTO_OP_COUNT_)
        return -EINVAL;
    os = &ops[req->op];
    for (int i = 0; i < os->nf; i++)
        n += os->f[i].required || PROTO_HAS(req, os->f[i].field);
    PK_INIT(sb);
    e_ |= msgpack_pack_map(pk, n);
    e_ |= kv_str(pk, "op", proto_cstr(os->name));
    e_ |= kv_u64(pk, "id", req->id);
    for (int i = 0; i < os->nf; i++)
        if (os->f[i].required || PROTO_HAS(req, os->f[i].field))
            e_ |= enc_field(pk, &os->f[i], req);
    PK_DONE();
}

int proto_enc_ok(msgpack_sbuffer *sb, uint64_t re)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 0);
    PK_DONE();
}

int proto_enc_err(msgpack_sbuffer *sb, uint64_t re, int code, const char *msg,
                  uint64_t retry_ms)
{
    PK_INIT(sb);
    e_ |= msgpack_pack_map(pk, retry_ms ? 3 : 2);
    e_ |= kv_u64(pk, "re", re);
    e_ |= key(pk, "err") | msgpack_pack_map(pk, 2);
    e_ |= key(pk, "code") | msgpack_pack_int(pk, code);
    e_ |= kv_str(pk, "msg", proto_cstr(msg ? msg : proto_err_name(code)));
    if (retry_ms)
        e_ |= kv_u64(pk, "retry", retry_ms);
    PK_DONE();
}

int proto_enc_decode_error(msgpack_sbuffer *sb, const proto_req_t *req, int rc)
{
    char msg[64];
    const char *field = NULL;
    int code = rc < 0 ? -rc : PROTO_E_INTERNAL;

    if (req->err_field >= 0 && req->err_field < PROTO_F_COUNT_)
        field = field_keys[req->err_field];
    else if (req->err_field == -2)
        field = "op";
    else if (req->err_field == -3)
        field = "id";
    if (field)
        snprintf(msg, sizeof(msg), "%s: %s", proto_err_name(code), field);
    else
        snprintf(msg, sizeof(msg), "%s", proto_err_name(code));
    return proto_enc_err(sb, req->id, code, msg, 0);
}

int proto_enc_hello_ok(msgpack_sbuffer *sb, uint64_t re, const char *server,
                       uint64_t max_message, uint64_t max_body)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 4);
    e_ |= kv_str(pk, "version", proto_cstr(PROTO_VERSION));
    e_ |= kv_str(pk, "server", proto_cstr(server ? server : "parley"));
    e_ |= kv_u64(pk, "max_message", max_message);
    e_ |= kv_u64(pk, "max_body", max_body);
    PK_DONE();
}

int proto_enc_login_ok(msgpack_sbuffer *sb, uint64_t re, proto_bin_t token,
                       uint64_t device, uint64_t acked)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 3);
    e_ |= kv_bin(pk, "token", token);
    e_ |= kv_u64(pk, "device", device);
    e_ |= kv_u64(pk, "acked", acked);
    PK_DONE();
}

int proto_enc_resume_ok(msgpack_sbuffer *sb, uint64_t re, proto_str_t user,
                        uint64_t device, uint64_t acked)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 3);
    e_ |= kv_str(pk, "user", user);
    e_ |= kv_u64(pk, "device", device);
    e_ |= kv_u64(pk, "acked", acked);
    PK_DONE();
}

int proto_enc_devices_ok(msgpack_sbuffer *sb, uint64_t re,
                         const proto_device_info_t *devs, size_t n)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 1);
    e_ |= key(pk, "devices") | msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        e_ |= msgpack_pack_map(pk, 5);
        e_ |= kv_u64(pk, "id", devs[i].id);
        e_ |= kv_str(pk, "name", devs[i].name);
        e_ |= kv_u64(pk, "created", devs[i].created);
        e_ |= kv_u64(pk, "last_seen", devs[i].last_seen);
        e_ |= kv_bool(pk, "current", devs[i].current);
    }
    PK_DONE();
}

int proto_enc_sent_ok(msgpack_sbuffer *sb, uint64_t re, uint64_t sid,
                      uint64_t ts, uint64_t seq, bool dup)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 2 + (seq != 0) + dup);
    e_ |= kv_u64(pk, "sid", sid);
    e_ |= kv_u64(pk, "ts", ts);
    if (seq)
        e_ |= kv_u64(pk, "seq", seq);
    if (dup)
        e_ |= kv_bool(pk, "dup", true);
    PK_DONE();
}

int proto_enc_history_ok(msgpack_sbuffer *sb, uint64_t re,
                         const proto_hist_msg_t *msgs, size_t n, bool more)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 2);
    e_ |= key(pk, "msgs") | msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        e_ |= msgpack_pack_map(pk, 4);
        e_ |= kv_str(pk, "from", msgs[i].from);
        e_ |= kv_u64(pk, "sid", msgs[i].sid);
        e_ |= kv_u64(pk, "ts", msgs[i].ts);
        e_ |= kv_bin(pk, "body", msgs[i].body);
    }
    e_ |= kv_bool(pk, "more", more);
    PK_DONE();
}

int proto_enc_users_ok(msgpack_sbuffer *sb, uint64_t re,
                       const proto_str_t *users, size_t n)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 1);
    e_ |= key(pk, "users") | names(pk, users, n);
    PK_DONE();
}

int proto_enc_gid_ok(msgpack_sbuffer *sb, uint64_t re, uint64_t gid)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 1);
    e_ |= kv_u64(pk, "gid", gid);
    PK_DONE();
}

int proto_enc_group_info_ok(msgpack_sbuffer *sb, uint64_t re, uint64_t gid,
                            proto_str_t name, uint64_t created,
                            const proto_member_t *members, size_t n)
{
    PK_INIT(sb);
    e_ |= ok_head(pk, re, 4);
    e_ |= kv_u64(pk, "gid", gid);
    e_ |= kv_str(pk, "name", name);
    e_ |= kv_u64(pk, "created", created);
    e_ |= key(pk, "members") | msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        e_ |= msgpack_pack_map(pk, 2);
        e_ |= kv_str(pk, "user", members[i].user);
        e_ |= kv_bool(pk, "admin", members[i].admin);
    }
    PK_DONE();
}

/* {"ev": name, + extra more pairs} */
static int ev_head(msgpack_packer *pk, const char *name, size_t extra)
{
    return msgpack_pack_map(pk, 1 + extra) | kv_str(pk, "ev", proto_cstr(name));
}

int proto_enc_ev_msg(msgpack_sbuffer *sb, const proto_ev_msg_t *ev)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, "msg", 5 + (ev->gid != 0) + (ev->to.ptr != NULL));
    e_ |= kv_str(pk, "from", ev->from);
    e_ |= kv_u64(pk, "sid", ev->sid);
    e_ |= kv_u64(pk, "seq", ev->seq);
    e_ |= kv_u64(pk, "ts", ev->ts);
    e_ |= kv_bin(pk, "body", ev->body);
    if (ev->gid)
        e_ |= kv_u64(pk, "gid", ev->gid);
    if (ev->to.ptr)
        e_ |= kv_str(pk, "to", ev->to);
    PK_DONE();
}

static int receipt(msgpack_sbuffer *sb, const char *ev, proto_str_t by,
                   const char *idkey, uint64_t id, uint64_t seq, uint64_t ts,
                   uint64_t gid)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, ev, 4 + (gid != 0));
    e_ |= kv_str(pk, "by", by);
    e_ |= kv_u64(pk, idkey, id);
    e_ |= kv_u64(pk, "seq", seq);
    e_ |= kv_u64(pk, "ts", ts);
    if (gid)
        e_ |= kv_u64(pk, "gid", gid);
    PK_DONE();
}

int proto_enc_ev_delivered(msgpack_sbuffer *sb, proto_str_t by, uint64_t sid,
                           uint64_t seq, uint64_t ts, uint64_t gid)
{
    return receipt(sb, "delivered", by, "sid", sid, seq, ts, gid);
}

int proto_enc_ev_read(msgpack_sbuffer *sb, proto_str_t by, uint64_t upto,
                      uint64_t seq, uint64_t ts, uint64_t gid)
{
    return receipt(sb, "read", by, "upto", upto, seq, ts, gid);
}

int proto_enc_ev_group(msgpack_sbuffer *sb, const proto_ev_group_t *ev)
{
    if (ev->kind < PROTO_GROUP_CREATED || ev->kind > PROTO_GROUP_RENAMED)
        return -EINVAL;
    PK_INIT(sb);
    e_ |= ev_head(pk, "group",
                  5 + (ev->user.ptr != NULL) + (ev->name.ptr != NULL));
    e_ |= kv_u64(pk, "gid", ev->gid);
    e_ |= kv_u64(pk, "seq", ev->seq);
    e_ |= kv_u64(pk, "ts", ev->ts);
    e_ |= kv_str(pk, "kind", proto_cstr(group_kind_names[ev->kind]));
    e_ |= kv_str(pk, "by", ev->by);
    if (ev->user.ptr)
        e_ |= kv_str(pk, "user", ev->user);
    if (ev->name.ptr)
        e_ |= kv_str(pk, "name", ev->name);
    PK_DONE();
}

int proto_enc_ev_all(msgpack_sbuffer *sb, bool read, uint64_t gid, uint64_t sid,
                     uint64_t gseq, uint64_t seq, uint64_t ts)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, read ? "read_all" : "delivered_all", 5);
    e_ |= kv_u64(pk, "gid", gid);
    e_ |= kv_u64(pk, "sid", sid);
    e_ |= kv_u64(pk, "gseq", gseq);
    e_ |= kv_u64(pk, "seq", seq);
    e_ |= kv_u64(pk, "ts", ts);
    PK_DONE();
}

static int names_arr(msgpack_packer *pk, const char *k, const proto_str_t *v,
                     size_t n)
{
    int e = key(pk, k) | msgpack_pack_array(pk, n);

    for (size_t i = 0; i < n; i++)
        e |= msgpack_pack_str_with_body(pk, v[i].ptr, v[i].len);
    return e;
}

int proto_enc_ev_receipts(msgpack_sbuffer *sb, uint64_t gid, uint64_t sid,
                          uint64_t gseq, const proto_str_t *delivered,
                          size_t nd, const proto_str_t *read, size_t nr,
                          uint64_t ndelivered, uint64_t nread, uint64_t members)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, "receipts", 8);
    e_ |= kv_u64(pk, "gid", gid);
    e_ |= kv_u64(pk, "sid", sid);
    e_ |= kv_u64(pk, "gseq", gseq);
    e_ |= names_arr(pk, "delivered", delivered, nd);
    e_ |= names_arr(pk, "read", read, nr);
    e_ |= kv_u64(pk, "ndelivered", ndelivered);
    e_ |= kv_u64(pk, "nread", nread);
    e_ |= kv_u64(pk, "members", members);
    PK_DONE();
}

int proto_enc_ev_presence(msgpack_sbuffer *sb, proto_str_t user, bool online,
                          uint64_t last_seen)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, "presence", 2 + (last_seen != 0));
    e_ |= kv_str(pk, "user", user);
    e_ |= kv_bool(pk, "online", online);
    if (last_seen)
        e_ |= kv_u64(pk, "last_seen", last_seen);
    PK_DONE();
}

int proto_enc_ev_typing(msgpack_sbuffer *sb, proto_str_t from, bool on,
                        uint64_t gid)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, "typing", 2 + (gid != 0));
    e_ |= kv_str(pk, "from", from);
    e_ |= kv_bool(pk, "on", on);
    if (gid)
        e_ |= kv_u64(pk, "gid", gid);
    PK_DONE();
}

int proto_enc_ev_revoked(msgpack_sbuffer *sb)
{
    PK_INIT(sb);
    e_ |= ev_head(pk, "revoked", 0);
    PK_DONE();
}
