/*
 * libFuzzer target: the request decoder. Whatever decodes must encode
 * again and decode to the same operation and id; whatever fails must
 * still produce an error reply.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static proto_dec_t dec, dec2;
    static int ready;
    msgpack_sbuffer sb;
    proto_req_t req, again;
    msgpack_object obj;
    int rc;

    if (!ready) {
        if (proto_dec_init(&dec) < 0 || proto_dec_init(&dec2) < 0)
            abort();
        ready = 1;
    }
    msgpack_sbuffer_init(&sb);
    rc = proto_decode_req(&dec, data, size, &req);
    if (rc == 0) {
        if (proto_enc_req(&sb, &req) != 0)
            abort();
        if (proto_decode_req(&dec2, sb.data, sb.size, &again) != 0 ||
            again.op != req.op || again.id != req.id || again.has != req.has)
            abort();
    } else {
        if (rc >= 0 || proto_enc_decode_error(&sb, &req, rc) != 0)
            abort();
    }
    proto_decode_obj(&dec, data, size, &obj);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
