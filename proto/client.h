/*
 * proto/client.h - a parley.v1 client on libuv, plus a blocking layer.
 *
 * The asynchronous client runs on a loop the caller owns; any number of
 * clients may share one loop (the load generator opens thousands per
 * process), and all of a client's callbacks run on that loop's thread.
 * The client does the HTTP upgrade with subprotocol parley.v1, masks its
 * frames, matches replies to requests by id and hands server events to
 * a callback.
 *
 * The blocking layer (proto_sync_*) wraps one client in a private loop
 * that it runs until a reply arrives or a deadline passes: for tests and
 * the terminal client. It must not be used from inside a running loop.
 *
 * Lifetime: a client frees itself after its on_close callback returns,
 * which happens exactly once, whatever ends the connection (a failed
 * connect, the server closing, proto_client_close()).
 */
#ifndef PARLEY_PROTO_CLIENT_H
#define PARLEY_PROTO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <uv.h>

#include "codec.h"

typedef struct proto_client proto_client_t;

/*
 * A reply. status is 0 for {"ok": true}, the server's error code (> 0) for
 * {"err": ...}, or a negative local error with reply == NULL: -ECONNRESET
 * when the connection ended first, -ECANCELED after proto_client_close().
 * reply and raw are valid only during the call.
 */
typedef void (*proto_reply_cb)(proto_client_t *cl, void *arg, int status,
                               const msgpack_object *reply, const uint8_t *raw,
                               size_t len);

typedef struct proto_client_config {
    /* The upgrade finished (status 0) or failed: -EPROTO when the server
     * refused it, or a libuv error (UV_ECONNREFUSED ...). After a failure
     * on_close follows. Optional. */
    void (*on_connect)(proto_client_t *cl, void *user, int status);
    /* A server event ({"ev": ...}), or a reply with "re": 0 (the server
     * could not read a request's id). Valid during the call only. */
    void (*on_event)(proto_client_t *cl, void *user, const msgpack_object *ev,
                     const uint8_t *raw, size_t len);
    /* The connection is over: the close code received or sent, or 1006
     * when TCP ended without one. The client is freed after this. */
    void (*on_close)(proto_client_t *cl, void *user, int code);
    /* Largest message accepted from the server; 0 means 256 KiB. */
    uint64_t max_message;
    /* Local address to connect from, an IPv4 or IPv6 literal of the
     * server's family (e.g. "127.0.0.2"), or NULL for the kernel's choice.
     * The port is still chosen by the kernel, at connect time where the
     * system allows (IP_BIND_ADDRESS_NO_PORT), so that many clients can
     * spread over several source addresses without each connect()
     * searching one crowded range of ports. A bad literal or a failed
     * bind fails the connection (on_connect with the error). Optional. */
    const char *source;
} proto_client_config_t;

/*
 * Create a client on `loop` and start connecting to host:port (a name or
 * an IPv4/IPv6 literal; names are resolved on the libuv thread pool).
 * cfg must outlive the client. Returns 0 and sets *out, or -ENOMEM, or
 * -EINVAL. Requests may be queued at once: they are sent after the
 * upgrade.
 */
int proto_client_connect(uv_loop_t *loop, const char *host, int port,
                         const proto_client_config_t *cfg, void *user,
                         proto_client_t **out);

/*
 * Send a request. When req->id is 0 the client assigns the next id and
 * stores it in req->id. cb (optional) gets the reply. Returns the id
 * (> 0), or -EINVAL (bad op), -ENOMEM, -EPIPE (closing or closed).
 */
int64_t proto_client_request(proto_client_t *cl, proto_req_t *req,
                             proto_reply_cb cb, void *arg);

/* Send an arbitrary binary message (tests of server validation). Returns
 * 0, -ENOMEM or -EPIPE. */
int proto_client_send_raw(proto_client_t *cl, const void *msg, size_t len);

/* Start closing with WebSocket status 1000. on_close follows; pending
 * requests are failed with -ECANCELED. Safe to call more than once. */
void proto_client_close(proto_client_t *cl);

/* The user pointer given at connect. */
void *proto_client_user(const proto_client_t *cl);

/* ---- blocking layer ---- */

typedef struct proto_sync proto_sync_t;

/* Connect and finish the upgrade within timeout_ms. Returns 0 and sets
 * *out, -ETIMEDOUT, -EPROTO (upgrade refused), a libuv error or -ENOMEM. */
int proto_sync_connect(const char *host, int port, int timeout_ms,
                       proto_sync_t **out);

/*
 * Send req and wait for its reply. Returns 0 (ok) or the server's error
 * code (> 0), with *reply (if reply != NULL) pointing to the decoded
 * reply map, valid until the next call on s; or a negative error:
 * -ETIMEDOUT, -ECONNRESET, -ENOMEM, -EINVAL. Events that arrive meanwhile
 * are queued for proto_sync_event().
 */
int proto_sync_call(proto_sync_t *s, proto_req_t *req, int timeout_ms,
                    const msgpack_object **reply);

/* Like proto_sync_call, for a raw payload whose reply carries `id`. */
int proto_sync_call_raw(proto_sync_t *s, const void *msg, size_t len,
                        uint64_t id, int timeout_ms,
                        const msgpack_object **reply);

/* Wait for the next queued or arriving event. Returns 0 with *ev valid
 * until the next call on s, -ETIMEDOUT, or -ECONNRESET once closed and
 * no event is left. */
int proto_sync_event(proto_sync_t *s, int timeout_ms,
                     const msgpack_object **ev);

/* The close code once the connection ended, else 0. */
int proto_sync_close_code(const proto_sync_t *s);

/* Close the connection (waiting at most 1 s for the handshake) and free
 * everything. */
void proto_sync_close(proto_sync_t *s);

#endif /* PARLEY_PROTO_CLIENT_H */
