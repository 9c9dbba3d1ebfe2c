/*
 * Unit tests of proto/codec: request round trips for every operation, each
 * decoding error code, and the shape of replies and events.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"

static proto_dec_t dec;
static msgpack_sbuffer sb;
static msgpack_packer pk;

static int setup(void **state)
{
    assert_int_equal(proto_dec_init(&dec), 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    return 0;
}

static int teardown(void **state)
{
    proto_dec_free(&dec);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static void pstr(const char *s)
{
    msgpack_pack_str_with_body(&pk, s, strlen(s));
}

/* Start a request map of n pairs with op and id, leaving n-2 to fill. */
static void head(size_t n, const char *op, uint64_t id)
{
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, n);
    pstr("op");
    pstr(op);
    pstr("id");
    msgpack_pack_uint64(&pk, id);
}

static int decode_sb(proto_req_t *req)
{
    return proto_decode_req(&dec, sb.data, sb.size, req);
}

static bool str_eq(proto_str_t s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* ---- round trips ---- */

static void roundtrip(proto_req_t *in, proto_req_t *out)
{
    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_req(&sb, in), 0);
    assert_int_equal(decode_sb(out), 0);
    assert_int_equal(out->op, in->op);
    assert_int_equal(out->id, in->id);
}

static void test_roundtrip_all_ops(void **state)
{
    static const uint8_t body[] = {0, 1, 2, 0xff};
    static const proto_str_t users[] = {{"bob", 3}, {"carol", 5}};
    proto_req_t in, out;

    for (int op = PROTO_OP_NONE + 1; op < PROTO_OP_COUNT_; op++) {
        memset(&in, 0, sizeof(in));
        in.op = (proto_op_t)op;
        in.id = 1000 + op;
        switch (in.op) {
        case PROTO_OP_REGISTER:
        case PROTO_OP_LOGIN:
            in.u.login.user = proto_cstr("ann");
            in.u.login.password = proto_cstr("pässword");
            in.u.login.device = proto_cstr("phone");
            in.has = 1u << PROTO_F_INVITE;
            break;
        case PROTO_OP_RESUME:
            in.u.resume.token = (proto_bin_t){body, sizeof(body)};
            in.u.resume.after = 42;
            in.has = 1u << PROTO_F_AFTER;
            break;
        case PROTO_OP_DEVICE_REVOKE:
            in.u.device_revoke.device = 7;
            break;
        case PROTO_OP_SEND:
            in.u.send.to = proto_cstr("bob");
            in.u.send.cid = 99;
            in.u.send.body = (proto_bin_t){body, sizeof(body)};
            break;
        case PROTO_OP_ACK:
            in.u.ack.upto = 5;
            break;
        case PROTO_OP_READ:
            in.u.read.peer = proto_cstr("bob");
            in.u.read.upto = 77;
            break;
        case PROTO_OP_HISTORY:
            in.u.history.gid = 3;
            in.u.history.limit = 20;
            in.has = 1u << PROTO_F_GID | 1u << PROTO_F_LIMIT;
            break;
        case PROTO_OP_TYPING:
            in.u.typing.to = proto_cstr("bob");
            in.u.typing.on = true;
            in.has = 1u << PROTO_F_TO;
            break;
        case PROTO_OP_PRESENCE_SUB:
        case PROTO_OP_PRESENCE_UNSUB:
            in.u.presence.users = (proto_names_t){users, 2};
            break;
        case PROTO_OP_PRIVACY_SET:
            in.u.privacy.presence = PROTO_PRIVACY_CONTACTS;
            break;
        case PROTO_OP_CONTACT_ADD:
        case PROTO_OP_CONTACT_REMOVE:
        case PROTO_OP_BLOCK:
        case PROTO_OP_UNBLOCK:
            in.u.user.user = proto_cstr("dave");
            break;
        case PROTO_OP_GROUP_CREATE:
            in.u.group_create.name = proto_cstr("Friends ✓");
            in.u.group_create.members = (proto_names_t){users, 2};
            break;
        case PROTO_OP_GROUP_ADD:
            in.u.group_add.gid = 9;
            in.u.group_add.users = (proto_names_t){users, 2};
            break;
        case PROTO_OP_GROUP_REMOVE:
        case PROTO_OP_GROUP_PROMOTE:
            in.u.group_member.gid = 9;
            in.u.group_member.user = proto_cstr("bob");
            break;
        case PROTO_OP_GROUP_LEAVE:
        case PROTO_OP_GROUP_INFO:
            in.u.group.gid = 9;
            break;
        case PROTO_OP_GROUP_RENAME:
            in.u.group_rename.gid = 9;
            in.u.group_rename.name = proto_cstr("x");
            break;
        case PROTO_OP_GROUP_SEND:
            in.u.group_send.gid = 9;
            in.u.group_send.cid = 1;
            in.u.group_send.body = (proto_bin_t){body, sizeof(body)};
            break;
        case PROTO_OP_GROUP_READ:
            in.u.group_read.gid = 9;
            in.u.group_read.upto = 10;
            break;
        default:
            break;
        }
        /* register has an invite; login ignores the bit (not its field) */
        if (in.op == PROTO_OP_REGISTER)
            in.u.reg.invite = proto_cstr("inv");
        roundtrip(&in, &out);
        assert_string_equal(proto_op_name(out.op), proto_op_name(in.op));
    }
}

static void test_roundtrip_values(void **state)
{
    static const uint8_t body[] = {9, 8, 7};
    proto_req_t in = {0}, out;

    in.op = PROTO_OP_SEND;
    in.id = INT64_MAX;
    in.u.send.to = proto_cstr("bob.b-_1");
    in.u.send.cid = UINT64_MAX;
    in.u.send.body = (proto_bin_t){body, 3};
    roundtrip(&in, &out);
    assert_true(str_eq(out.u.send.to, "bob.b-_1"));
    assert_true(out.u.send.cid == UINT64_MAX);
    assert_int_equal(out.u.send.body.len, 3);
    assert_memory_equal(out.u.send.body.ptr, body, 3);
    /* zero-copy: the body points into the encoded buffer */
    assert_true((const char *)out.u.send.body.ptr >= sb.data &&
                (const char *)out.u.send.body.ptr < sb.data + sb.size);

    memset(&in, 0, sizeof(in));
    in.op = PROTO_OP_HISTORY;
    in.id = 1;
    in.u.history.peer = proto_cstr("bob");
    in.has = 1u << PROTO_F_PEER;
    roundtrip(&in, &out);
    assert_int_equal(out.u.history.limit, PROTO_HISTORY_DEFAULT);
    assert_true(PROTO_HAS(&out, PROTO_F_PEER));
    assert_false(PROTO_HAS(&out, PROTO_F_BEFORE));
}

static void test_unknown_keys_ignored(void **state)
{
    proto_req_t req;

    head(4, "ack", 3);
    pstr("upto");
    msgpack_pack_uint64(&pk, 8);
    pstr("future");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_map(&pk, 0);
    assert_int_equal(decode_sb(&req), 0);
    assert_int_equal(req.u.ack.upto, 8);
}

/* ---- errors ---- */

static void expect(int code, int field)
{
    proto_req_t req;
    assert_int_equal(decode_sb(&req), -code);
    assert_int_equal(req.err_field, field);
}

static void test_malformed(void **state)
{
    static const uint8_t trunc[] = {0x82, 0xa2, 'o'};
    static const uint8_t bigarr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00};
    static const uint8_t reserved[] = {0xc1};
    proto_req_t req;

    assert_int_equal(proto_decode_req(&dec, "", 0, &req), -PROTO_E_MALFORMED);
    assert_int_equal(proto_decode_req(&dec, trunc, sizeof(trunc), &req),
                     -PROTO_E_MALFORMED);
    assert_int_equal(proto_decode_req(&dec, bigarr, sizeof(bigarr), &req),
                     -PROTO_E_MALFORMED);
    assert_int_equal(proto_decode_req(&dec, reserved, 1, &req),
                     -PROTO_E_MALFORMED);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 0); /* not a map */
    expect(PROTO_E_MALFORMED, -1);

    head(2, "logout", 1);
    msgpack_pack_nil(&pk); /* trailing bytes */
    expect(PROTO_E_MALFORMED, -1);

    head(4, "ack", 1); /* duplicate known key */
    pstr("upto");
    msgpack_pack_uint64(&pk, 1);
    pstr("upto");
    msgpack_pack_uint64(&pk, 2);
    expect(PROTO_E_MALFORMED, -1);

    head(3, "logout", 1); /* non-string key */
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 1);
    expect(PROTO_E_MALFORMED, -1);

    head(3, "logout", 1); /* nesting deeper than PROTO_MAX_DEPTH */
    pstr("deep");
    for (int i = 0; i < PROTO_MAX_DEPTH + 1; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    expect(PROTO_E_MALFORMED, -1);
}

static void test_envelope_errors(void **state)
{
    proto_req_t req;

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    pstr("op");
    pstr("logout");
    expect(PROTO_E_MISSING_FIELD, -3);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    pstr("op");
    pstr("logout");
    pstr("id");
    pstr("1");
    expect(PROTO_E_WRONG_TYPE, -3);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    pstr("op");
    pstr("logout");
    pstr("id");
    msgpack_pack_uint64(&pk, 0);
    expect(PROTO_E_WRONG_TYPE, -3);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    pstr("id");
    msgpack_pack_uint64(&pk, 5);
    assert_int_equal(decode_sb(&req), -PROTO_E_MISSING_FIELD);
    assert_int_equal(req.id, 5);
    assert_int_equal(req.err_field, -2);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    pstr("op");
    msgpack_pack_uint64(&pk, 1);
    pstr("id");
    msgpack_pack_uint64(&pk, 5);
    expect(PROTO_E_WRONG_TYPE, -2);

    head(2, "nope", 6);
    assert_int_equal(decode_sb(&req), -PROTO_E_UNKNOWN_OP);
    assert_int_equal(req.id, 6);
}

static void test_field_errors(void **state)
{
    static const char bad_utf8[] = {'a', (char)0xc0, (char)0x80};
    char longname[PROTO_MAX_NAME + 2];
    static uint8_t big[PROTO_MAX_BODY + 1];

    head(3, "send", 1);
    pstr("to");
    pstr("bob");
    expect(PROTO_E_MISSING_FIELD, PROTO_F_CID);

    head(5, "send", 1);
    pstr("to");
    msgpack_pack_uint64(&pk, 1);
    pstr("cid");
    msgpack_pack_uint64(&pk, 1);
    pstr("body");
    msgpack_pack_bin_with_body(&pk, "x", 1);
    expect(PROTO_E_WRONG_TYPE, PROTO_F_TO);

    head(5, "send", 1);
    pstr("to");
    pstr("Bob"); /* upper case is not a name */
    pstr("cid");
    msgpack_pack_uint64(&pk, 1);
    pstr("body");
    msgpack_pack_bin_with_body(&pk, "x", 1);
    expect(PROTO_E_BAD_VALUE, PROTO_F_TO);

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    head(3, "block", 1);
    pstr("user");
    pstr(longname);
    expect(PROTO_E_TOO_LONG, PROTO_F_USER);

    head(5, "send", 1);
    pstr("to");
    pstr("bob");
    pstr("cid");
    msgpack_pack_uint64(&pk, 0);
    pstr("body");
    msgpack_pack_bin_with_body(&pk, "x", 1);
    expect(PROTO_E_BAD_VALUE, PROTO_F_CID);

    head(5, "send", 1);
    pstr("to");
    pstr("bob");
    pstr("cid");
    msgpack_pack_uint64(&pk, 1);
    pstr("body");
    msgpack_pack_bin_with_body(&pk, big, sizeof(big));
    expect(PROTO_E_TOO_LARGE, PROTO_F_BODY);

    head(5, "send", 1);
    pstr("to");
    pstr("bob");
    pstr("cid");
    msgpack_pack_int64(&pk, -1);
    pstr("body");
    msgpack_pack_bin_with_body(&pk, "x", 1);
    expect(PROTO_E_WRONG_TYPE, PROTO_F_CID);

    head(5, "login", 1);
    pstr("user");
    pstr("ann");
    pstr("password");
    pstr("pw");
    pstr("device");
    msgpack_pack_str_with_body(&pk, bad_utf8, sizeof(bad_utf8));
    expect(PROTO_E_BAD_UTF8, PROTO_F_DEVICE);

    head(3, "privacy.set", 1);
    pstr("presence");
    pstr("friends");
    expect(PROTO_E_BAD_VALUE, PROTO_F_PRESENCE);

    head(3, "typing", 1);
    pstr("on");
    msgpack_pack_uint64(&pk, 1);
    expect(PROTO_E_WRONG_TYPE, PROTO_F_ON);

    head(3, "typing", 1);
    pstr("on");
    msgpack_pack_true(&pk);
    expect(PROTO_E_MISSING_FIELD, PROTO_F_TO);

    head(4, "history", 1);
    pstr("peer");
    pstr("bob");
    pstr("gid");
    msgpack_pack_uint64(&pk, 1);
    expect(PROTO_E_BAD_VALUE, PROTO_F_PEER);

    head(4, "history", 1);
    pstr("peer");
    pstr("bob");
    pstr("limit");
    msgpack_pack_uint64(&pk, PROTO_HISTORY_MAX + 1);
    expect(PROTO_E_BAD_VALUE, PROTO_F_LIMIT);

    head(3, "presence.sub", 1);
    pstr("users");
    msgpack_pack_array(&pk, 0);
    expect(PROTO_E_BAD_VALUE, PROTO_F_USERS);

    head(3, "presence.sub", 1);
    pstr("users");
    msgpack_pack_array(&pk, PROTO_MAX_LIST + 1);
    for (int i = 0; i < PROTO_MAX_LIST + 1; i++)
        pstr("a");
    expect(PROTO_E_TOO_LONG, PROTO_F_USERS);

    head(3, "presence.sub", 1);
    pstr("users");
    msgpack_pack_array(&pk, 2);
    pstr("a");
    msgpack_pack_nil(&pk);
    expect(PROTO_E_WRONG_TYPE, PROTO_F_USERS);
}

static void test_utf8(void **state)
{
    assert_true(proto_utf8_valid("", 0));
    assert_true(proto_utf8_valid("h\xc3\xa9llo", 6));
    assert_true(proto_utf8_valid("\xf0\x9f\x98\x80", 4));      /* U+1F600 */
    assert_false(proto_utf8_valid("\xc0\xaf", 2));             /* overlong */
    assert_false(proto_utf8_valid("\xe0\x80\xaf", 3));         /* overlong */
    assert_false(proto_utf8_valid("\xed\xa0\x80", 3));         /* surrogate */
    assert_false(proto_utf8_valid("\xf4\x90\x80\x80", 4));     /* > 10FFFF */
    assert_false(proto_utf8_valid("\xe2\x82", 2));             /* truncated */
    assert_false(proto_utf8_valid("\x80", 1));                 /* stray */
    assert_false(proto_utf8_valid("\xf8\x88\x80\x80\x80", 5)); /* 5 bytes */
}

/* ---- encoders ---- */

static msgpack_object enc_obj(void)
{
    msgpack_object o;
    assert_int_equal(proto_decode_obj(&dec, sb.data, sb.size, &o), 0);
    assert_int_equal(o.type, MSGPACK_OBJECT_MAP);
    return o;
}

static uint64_t get_u(const msgpack_object *m, const char *k)
{
    const msgpack_object *v = proto_map_get(m, k);
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return v->via.u64;
}

static void assert_str(const msgpack_object *m, const char *k, const char *s)
{
    const msgpack_object *v = proto_map_get(m, k);
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_STR);
    assert_int_equal(v->via.str.size, strlen(s));
    assert_memory_equal(v->via.str.ptr, s, strlen(s));
}

static void test_encode_replies(void **state)
{
    static const uint8_t tok[32] = {1};
    proto_device_info_t dev = {7, {"phone", 5}, 1, 2, true};
    proto_member_t mem[2] = {{{"ann", 3}, true}, {{"bob", 3}, false}};
    msgpack_object o;
    const msgpack_object *v;
    proto_req_t req;

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_ok(&sb, 4), 0);
    o = enc_obj();
    assert_int_equal(get_u(&o, "re"), 4);
    assert_true(proto_map_get(&o, "ok")->via.boolean);

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_err(&sb, 5, PROTO_E_RATE_LIMITED, NULL, 250), 0);
    o = enc_obj();
    v = proto_map_get(&o, "err");
    assert_int_equal(get_u(v, "code"), 204);
    assert_str(v, "msg", "rate_limited");
    assert_int_equal(get_u(&o, "retry"), 250);

    head(3, "send", 77);
    pstr("to");
    pstr("bob");
    assert_int_equal(decode_sb(&req), -PROTO_E_MISSING_FIELD);
    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_decode_error(&sb, &req, -102), 0);
    o = enc_obj();
    assert_int_equal(get_u(&o, "re"), 77);
    assert_str(proto_map_get(&o, "err"), "msg", "missing_field: cid");

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_hello_ok(&sb, 1, "parleyd", 262144, 65536), 0);
    o = enc_obj();
    assert_str(&o, "version", "parley.v1");
    assert_int_equal(get_u(&o, "max_body"), 65536);

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_login_ok(&sb, 2, (proto_bin_t){tok, 32}, 7, 0),
                     0);
    o = enc_obj();
    assert_int_equal(proto_map_get(&o, "token")->via.bin.size, 32);
    assert_int_equal(get_u(&o, "device"), 7);

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_devices_ok(&sb, 3, &dev, 1), 0);
    o = enc_obj();
    v = proto_map_get(&o, "devices");
    assert_int_equal(v->via.array.size, 1);
    assert_str(&v->via.array.ptr[0], "name", "phone");

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_sent_ok(&sb, 3, 900, 1700, 0, true), 0);
    o = enc_obj();
    assert_int_equal(get_u(&o, "sid"), 900);
    assert_null(proto_map_get(&o, "seq"));
    assert_true(proto_map_get(&o, "dup")->via.boolean);

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(
        proto_enc_group_info_ok(&sb, 3, 9, proto_cstr("g"), 5, mem, 2), 0);
    o = enc_obj();
    v = proto_map_get(&o, "members");
    assert_int_equal(v->via.array.size, 2);
    assert_str(&v->via.array.ptr[1], "user", "bob");
}

static void test_encode_events(void **state)
{
    proto_ev_msg_t m = {{"ann", 3},          900, 12,       1700,
                        {(uint8_t *)"x", 1}, 4,   {NULL, 0}};
    proto_ev_group_t g = {9,          13,        1800,      PROTO_GROUP_RENAMED,
                          {"ann", 3}, {NULL, 0}, {"new", 3}};
    msgpack_object o;

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_ev_msg(&sb, &m), 0);
    o = enc_obj();
    assert_str(&o, "ev", "msg");
    assert_int_equal(get_u(&o, "seq"), 12);
    assert_int_equal(get_u(&o, "gid"), 4);
    assert_null(proto_map_get(&o, "to"));

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_ev_read(&sb, proto_cstr("bob"), 900, 14, 1, 0),
                     0);
    o = enc_obj();
    assert_str(&o, "ev", "read");
    assert_int_equal(get_u(&o, "upto"), 900);
    assert_null(proto_map_get(&o, "gid"));

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_ev_group(&sb, &g), 0);
    o = enc_obj();
    assert_str(&o, "kind", "renamed");
    assert_str(&o, "name", "new");

    msgpack_sbuffer_clear(&sb);
    assert_int_equal(proto_enc_ev_presence(&sb, proto_cstr("bob"), false, 5),
                     0);
    o = enc_obj();
    assert_int_equal(get_u(&o, "last_seen"), 5);

    msgpack_sbuffer_clear(&sb);
    g.kind = 0;
    assert_int_equal(proto_enc_ev_group(&sb, &g), -EINVAL);
}

static void test_names(void **state)
{
    assert_string_equal(proto_err_name(PROTO_E_BUSY), "busy");
    assert_string_equal(proto_err_name(12345), "unknown");
    assert_string_equal(proto_op_name(PROTO_OP_GROUP_SEND), "group.send");
    assert_null(proto_op_name(PROTO_OP_COUNT_));
    assert_false(proto_op_needs_session(PROTO_OP_LOGIN));
    assert_true(proto_op_needs_session(PROTO_OP_SEND));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_ops),
        cmocka_unit_test(test_roundtrip_values),
        cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_envelope_errors),
        cmocka_unit_test(test_field_errors),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_encode_replies),
        cmocka_unit_test(test_encode_events),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
