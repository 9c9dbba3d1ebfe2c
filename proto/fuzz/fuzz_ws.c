/*
 * libFuzzer target: frame input of an open server connection. The first
 * byte sets the chunk size the rest is fed in, so that headers and
 * payloads get split at every possible point. Checks the invariants the
 * memory design rests on: after a call that leaves the connection open
 * and idle, no wslay context is held (ws_trim finds nothing to free).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

static int on_write(void *user, const uint8_t *d, size_t n, bool more)
{
    return 0;
}

static void on_message(void *user, const uint8_t *m, size_t n)
{
    ws_conn_t *c = user;
    if (n > 4096)
        abort();
    if (n && m[0] == 0xff)
        ws_send(c, m, n); /* reply from inside the callback */
}

static const char upgrade[] = "GET / HTTP/1.1\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "Sec-WebSocket-Protocol: parley.v1\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ws_config_t cfg = {
        .max_message = 4096,
        .on_write = on_write,
        .on_message = on_message,
    };
    ws_conn_t c;
    size_t chunk, off = 1;
    int rc = 0;

    if (size < 1)
        return 0;
    chunk = data[0] ? data[0] : size;
    ws_conn_init_server(&c, &cfg, &c);
    if (ws_feed(&c, (const uint8_t *)upgrade, sizeof(upgrade) - 1) != 0)
        abort();
    while (off < size && rc == 0) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = ws_feed(&c, data + off, n);
        off += n;
        /* Without lazy_trim every call ends by freeing the context of an
         * idle connection, so one that is still there must be needed. */
        if (rc == 0 && ws_trim(&c) != 0)
            abort();
    }
    if (rc == 0 && ws_phase(&c) == WS_PHASE_OPEN)
        ws_send(&c, "x", 1);
    ws_conn_free(&c);
    return 0;
}
