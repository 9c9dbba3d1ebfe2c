/*
 * libFuzzer target: the HTTP side. The input is parsed whole by
 * ws_http_answer, then fed to a server connection in two pieces split at
 * a point taken from the first byte.
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
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ws_config_t cfg = {
        .max_message = 4096,
        .on_write = on_write,
        .on_message = on_message,
    };
    ws_http_answer_t ans;
    ws_conn_t c;
    size_t cut;
    int rc;

    rc = ws_http_answer((const char *)data, size, NULL, &ans);
    if (rc >= 0 && (ans.len == 0 || ans.len >= sizeof(ans.text)))
        abort();
    if (size == 0)
        return 0;
    cut = data[0] % size;
    ws_conn_init_server(&c, &cfg, NULL);
    rc = ws_feed(&c, data + 1, cut ? cut - 1 : 0);
    if (rc == 0)
        ws_feed(&c, data + cut, size - cut);
    ws_conn_free(&c);
    return 0;
}
