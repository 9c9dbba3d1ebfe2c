/*
 * proto/ws.h - one WebSocket connection (RFC 6455), independent of any
 * event loop.
 *
 * The owner reads bytes from its socket and hands them to ws_feed(). The
 * connection answers the HTTP upgrade (or GET /healthz), checks and
 * unmasks frames, answers pings, runs the close handshake and calls
 * cfg->on_message once per complete binary message. Every byte that must
 * go to the socket is handed out through cfg->on_write, synchronously,
 * from inside ws_feed(), ws_send(), ws_ping() or ws_close().
 *
 * Framing is done by wslay. What this file adds on top:
 *
 *  - Policy at the frame header, before any payload is read: text frames
 *    close with 1003, a message over cfg->max_message closes with 1009,
 *    and every malformed header closes with 1002. wslay's own frame layer
 *    reports some of those (a fragmented or long control frame, a
 *    non-minimal length) as a bare error and closes without a status code,
 *    so they are caught here first.
 *
 *  - Memory. A wslay event context with its queues costs about 8.5 KiB
 *    on the heap (8,656 B measured on wslay 1.1.1, x86-64: the frame
 *    context alone embeds a 4 KiB input buffer, the event context a 4 KiB
 *    output buffer), and the server must hold at most 2 KiB
 *    per idle connection. So a connection keeps a wslay context only while
 *    something is in progress: a frame whose header has been read and
 *    whose payload has not, a fragmented message, output that wslay has
 *    not handed out yet, or a close handshake. A frame header still being
 *    collected sits in 14 bytes of ws_conn_t. When the connection is idle
 *    again the context is freed, so an idle open connection is just
 *    sizeof(ws_conn_t) = 104 bytes on x86-64 and nothing on the heap
 *    (asserted in tests/unit/test_proto_ws.c, test_idle_footprint).
 *
 * Typical use in a server connection actor:
 *
 *     static const ws_config_t cfg = {.on_write = queue_bytes,
 *                                     .on_message = handle_request};
 *     ws_conn_init_server(&conn->ws, &cfg, conn);      (on accept)
 *     rc = ws_feed(&conn->ws, buf, nread);             (on each read)
 *     if (rc != 0) flush what was queued, then close the socket;
 *     ws_send(&conn->ws, sb.data, sb.size);           (reply or event)
 *     ws_conn_free(&conn->ws);                         (on socket close)
 *
 * Not thread-safe: one thread at a time per connection. Callbacks may
 * call ws_send(), ws_ping() and ws_close() on the same connection, but
 * never ws_conn_free().
 */
#ifndef PARLEY_PROTO_WS_H
#define PARLEY_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Close status codes used by Parley (RFC 6455, section 7.4.1). */
enum ws_status {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_ABNORMAL = 1006,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

/* Result of ws_feed() and friends besides 0 and negative errors: the
 * connection is finished; write out what on_write was given, then close
 * the socket. */
#define WS_DONE 1

#define WS_MAX_HEAD_DEFAULT 8192 /* bytes of an HTTP request head */

typedef enum ws_phase {
    WS_PHASE_HTTP,    /* reading the HTTP request head (server) */
    WS_PHASE_OPEN,    /* WebSocket open */
    WS_PHASE_CLOSING, /* close frame sent, waiting for the peer's */
    WS_PHASE_DONE,    /* finished: close the socket */
} ws_phase_t;

typedef struct ws_config {
    /* Largest message accepted, in bytes; 0 means 256 KiB. */
    uint64_t max_message;
    /* Largest HTTP request head; 0 means WS_MAX_HEAD_DEFAULT. */
    uint32_t max_head;
    /* Subprotocol to require and echo; NULL means "parley.v1". */
    const char *subprotocol;
    /* When false (the default), the wslay context is freed as soon as the
     * connection is idle after every call. When true, it is kept until
     * ws_trim(): a busy server can then trim from an idle timer and save
     * one malloc/free pair per message. */
    bool lazy_trim;

    /* Bytes to send. Must take all of them (copy or queue) and return 0,
     * or return a negative value to fail the connection. `more` is true
     * when more bytes of the same frame follow at once. Required. */
    int (*on_write)(void *user, const uint8_t *data, size_t len, bool more);
    /* A complete binary message. msg is valid only during the call. */
    void (*on_message)(void *user, const uint8_t *msg, size_t len);
    /* Optional: the upgrade succeeded (server) and the 101 was written. */
    void (*on_open)(void *user);
} ws_config_t;

struct wslay_event_context;

/*
 * A connection. Embed it in the owner's connection state; its fields are
 * private. cfg must outlive the connection (share one per listener).
 */
typedef struct ws_conn {
    const ws_config_t *cfg;
    void *user;
    struct wslay_event_context *ctx; /* NULL while idle */
    uint8_t *head;                   /* HTTP phase only */
    const uint8_t *in;               /* input being fed to wslay */
    size_t in_len;
    uint64_t frame_left; /* payload bytes of the current frame not seen */
    uint64_t msg_len;    /* bytes of the current message so far */
    int err;             /* first on_write failure */
    uint32_t head_len, head_cap;
    uint16_t close_code;
    uint8_t phase;  /* ws_phase_t */
    uint8_t server; /* 1 server role, 0 client role */
    uint8_t busy;   /* inside wslay_event_recv: defer flush and trim */
    uint8_t in_frame, in_msg, frame_fin, frame_data, hdr_len;
    uint8_t hdr[14]; /* frame header being collected */
} ws_conn_t;

/* Start a server-side connection in WS_PHASE_HTTP. Allocates nothing.
 * Returns 0, or -EINVAL when cfg has no on_write. */
int ws_conn_init_server(ws_conn_t *c, const ws_config_t *cfg, void *user);

/* Start a client-side connection in WS_PHASE_OPEN, for use after the
 * caller has completed the upgrade handshake itself. Frames it sends are
 * masked with keys from libsodium's randombytes. Returns 0 or -EINVAL. */
int ws_conn_init_client(ws_conn_t *c, const ws_config_t *cfg, void *user);

/* Fills out with len bytes from the kernel's random generator (libsodium),
 * drawn 256 bytes at a time and handed out once each: a client masks every
 * frame with 4 fresh bytes, and a syscall for each was a sixth of a load
 * generator's system calls. A forked child draws afresh. Per thread, so no
 * lock. */
void ws_random(void *out, size_t len);

/* Release everything the connection holds. Writes nothing. */
void ws_conn_free(ws_conn_t *c);

/*
 * Feed bytes read from the socket. May call on_open, on_message and
 * on_write any number of times.
 * Returns 0 to go on reading, WS_DONE when the connection is finished
 * (after an HTTP answer that is not an upgrade, a completed close
 * handshake, or a protocol error whose close frame was written), or
 * -ENOMEM or the negative result of on_write (then nothing more should
 * be written: drop the socket). Bytes fed after WS_DONE are ignored.
 */
int ws_feed(ws_conn_t *c, const uint8_t *data, size_t len);

/* Send one binary message. Returns 0, -EPIPE when the connection is not
 * open (handshake not done, or closing), -ENOMEM, or on_write's error. */
int ws_send(ws_conn_t *c, const void *msg, size_t len);

/* Send a ping with an optional payload of at most 125 bytes. Returns as
 * ws_send(), or -EINVAL for a longer payload. */
int ws_ping(ws_conn_t *c, const void *data, size_t len);

/*
 * Start the close handshake with `code` and an optional reason (at most
 * 123 bytes, UTF-8). Returns 0 when the close frame was written and the
 * peer's answer is awaited (the caller should drop the socket if it does
 * not come within a few seconds), WS_DONE when the connection is finished
 * already (closed before the upgrade: nothing is written), -EINVAL for a
 * long reason, -ENOMEM or on_write's error.
 */
int ws_close(ws_conn_t *c, uint16_t code, const char *reason);

/* Free the wslay context if the connection is idle. Returns 1 if it was
 * freed, 0 if there was none or it is still needed. */
int ws_trim(ws_conn_t *c);

ws_phase_t ws_phase(const ws_conn_t *c);

/* The close code sent or received, 0 while none. */
uint16_t ws_close_code(const ws_conn_t *c);

/* Whether the connection holds a wslay context now (for tests and the
 * operator shell). */
bool ws_has_context(const ws_conn_t *c);

/* ---- the HTTP side, exposed for tests and the fuzzer ---- */

typedef struct ws_http_answer {
    int status; /* 101, 200, 400, 404, 405, 426 or 503 */
    uint32_t len;
    char text[320]; /* the whole response: status line, headers, body */
} ws_http_answer_t;

/*
 * Parse one complete HTTP/1.1 request head (through the blank line) and
 * build the answer: 101 for a valid upgrade on "/" that offers
 * `subprotocol`, 200 for GET /healthz, 400 for a malformed request or a
 * missing subprotocol (the body names the supported one), 404 for any
 * other path, 405 for another method, 426 for a WebSocket version other
 * than 13. Returns the status, or -ENOMEM.
 */
int ws_http_answer(const char *head, size_t len, const char *subprotocol,
                   ws_http_answer_t *out);

/*
 * The answer of a server that takes no more connections: 503 Service
 * Unavailable with "Retry-After: retry_after_s" and `why` (one line, under
 * 200 bytes, ending in a newline) as its plain-text body, for a server to
 * write before it reads the request and closes. Returns 503, or -ENOMEM
 * when `why` does not fit.
 */
int ws_http_unavailable(ws_http_answer_t *out, uint32_t retry_after_s,
                        const char *why);

/* The Sec-WebSocket-Accept value for a key: base64(SHA-1(key + GUID)).
 * out must hold 29 bytes (28 characters and a NUL). */
void ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif /* PARLEY_PROTO_WS_H */
