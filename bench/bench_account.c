#include "bench_account.h"

#include <errno.h>
#include <string.h>

#include "client.h"

int bench_account(const char *host, int port, const char *name, int timeout_ms,
                  uint8_t token[32])
{
    proto_sync_t *s;
    const msgpack_object *r;
    proto_req_t q;
    int rc;

    if ((rc = proto_sync_connect(host, port, timeout_ms, &s)) < 0)
        return rc;
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_REGISTER;
    q.u.reg.user = proto_cstr(name);
    q.u.reg.password = proto_cstr(BENCH_PASSWORD);
    if ((rc = proto_sync_call(s, &q, timeout_ms, &r)) != 0)
        goto out;
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_LOGIN;
    q.u.login.user = proto_cstr(name);
    q.u.login.password = proto_cstr(BENCH_PASSWORD);
    q.u.login.device = proto_cstr("bench");
    if ((rc = proto_sync_call(s, &q, timeout_ms, &r)) != 0)
        goto out;
    const msgpack_object *t = proto_map_get(r, "token");
    if (!t || t->type != MSGPACK_OBJECT_BIN || t->via.bin.size != 32) {
        rc = -EPROTO;
        goto out;
    }
    memcpy(token, t->via.bin.ptr, 32);
out:
    proto_sync_close(s);
    return rc;
}
