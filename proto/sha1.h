/*
 * proto/sha1.h - SHA-1, used only for the Sec-WebSocket-Accept header.
 *
 * Why a local SHA-1: RFC 6455 fixes the accept key as base64(SHA-1(key +
 * GUID)), so the handshake needs SHA-1 and nothing else does. Of the
 * libraries Parley depends on, libsodium offers SHA-256/512 and BLAKE2b
 * but no SHA-1 (on purpose: it is broken for signatures), wslay keeps its
 * SHA-1 out of the library (its examples link nettle), and libuv,
 * http-parser, msgpack-c, LMDB, hiredis and inih have none. Adding nettle
 * or OpenSSL for one hash of 60 bytes per connection is not worth a new
 * dependency. SHA-1 is not used here for anything that needs collision
 * resistance; the accept key only proves that the server read the key.
 */
#ifndef PARLEY_PROTO_SHA1_H
#define PARLEY_PROTO_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_SHA1_LEN 20

/* out = SHA-1(data[0..len)). Never fails. */
void proto_sha1(const void *data, size_t len, uint8_t out[PROTO_SHA1_LEN]);

#endif /* PARLEY_PROTO_SHA1_H */
