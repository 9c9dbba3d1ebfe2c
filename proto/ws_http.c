/*
 * proto/ws_http.c - the HTTP/1.1 side of a Parley port: the WebSocket
 * upgrade on "/" and GET /healthz. The request head is parsed by
 * http-parser in one call, after the caller has collected it whole.
 */
#include "ws.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <sodium.h>

#include "sha1.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct hs {
    const char *url;
    size_t url_len;
    const char *field, *value;
    size_t field_len, value_len;
    int last; /* 0 none, 1 in a field name, 2 in a value */
    const char *subprotocol;
    const char *key;
    size_t key_len;
    bool upgrade, connection, has_version, version13, proto;
    bool complete;
};

void ws_accept_key(const char *key, size_t key_len, char out[29])
{
    uint8_t buf[64 + sizeof(WS_GUID)], digest[PROTO_SHA1_LEN];
    size_t n = key_len < 64 ? key_len : 64;

    memcpy(buf, key, n);
    memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
    proto_sha1(buf, n + sizeof(WS_GUID) - 1, digest);
    sodium_bin2base64(out, 29, digest, sizeof(digest),
                      sodium_base64_VARIANT_ORIGINAL);
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* Whether a comma-separated header value lists `tok`. */
static bool has_token(const char *v, size_t len, const char *tok, bool ci)
{
    size_t i = 0;

    while (i < len) {
        size_t s, e;
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < len && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && e - s == strlen(tok) &&
            (ci ? strncasecmp(v + s, tok, e - s) == 0
                : memcmp(v + s, tok, e - s) == 0))
            return true;
    }
    return false;
}

static void end_header(struct hs *h)
{
    const char *v = h->value;
    size_t n = h->value_len;

    if (h->last != 2)
        return;
    if (ieq(h->field, h->field_len, "upgrade")) {
        h->upgrade |= has_token(v, n, "websocket", true);
    } else if (ieq(h->field, h->field_len, "connection")) {
        h->connection |= has_token(v, n, "upgrade", true);
    } else if (ieq(h->field, h->field_len, "sec-websocket-version")) {
        h->has_version = true;
        h->version13 = has_token(v, n, "13", false);
    } else if (ieq(h->field, h->field_len, "sec-websocket-key")) {
        h->key = v;
        h->key_len = n;
    } else if (ieq(h->field, h->field_len, "sec-websocket-protocol")) {
        h->proto |= has_token(v, n, h->subprotocol, false);
    }
    h->last = 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct hs *h = p->data;
    if (!h->url)
        h->url = at;
    h->url_len = (size_t)(at + len - h->url);
    return 0;
}

/* The head is one contiguous buffer, so the pieces of a split name or
 * value are adjacent: extend the span instead of copying. */
static int on_field(http_parser *p, const char *at, size_t len)
{
    struct hs *h = p->data;
    if (h->last != 1) {
        end_header(h);
        h->field = at;
        h->last = 1;
    }
    h->field_len = (size_t)(at + len - h->field);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct hs *h = p->data;
    if (h->last != 2) {
        h->value = at;
        h->last = 2;
    }
    h->value_len = (size_t)(at + len - h->value);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct hs *h = p->data;
    end_header(h);
    h->complete = true;
    return 0;
}

static bool key_valid(const struct hs *h)
{
    unsigned char bin[32];
    size_t n = 0;

    if (!h->key || h->key_len != 24)
        return false;
    if (sodium_base642bin(bin, sizeof(bin), h->key, h->key_len, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    return n == 16;
}

static int plain(ws_http_answer_t *out, int status, const char *reason,
                 const char *extra, const char *body)
{
    int n = snprintf(out->text, sizeof(out->text),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s\r\n%s",
                     status, reason, strlen(body), extra, body);
    if (n < 0 || (size_t)n >= sizeof(out->text))
        return -ENOMEM;
    out->status = status;
    out->len = (uint32_t)n;
    return status;
}

static int upgrade(ws_http_answer_t *out, const struct hs *h)
{
    char accept[29];
    int n;

    ws_accept_key(h->key, h->key_len, accept);
    n = snprintf(out->text, sizeof(out->text),
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n"
                 "Sec-WebSocket-Protocol: %s\r\n\r\n",
                 accept, h->subprotocol);
    if (n < 0 || (size_t)n >= sizeof(out->text))
        return -ENOMEM;
    out->status = 101;
    out->len = (uint32_t)n;
    return 101;
}

int ws_http_answer(const char *head, size_t len, const char *subprotocol,
                   ws_http_answer_t *out)
{
    static const http_parser_settings settings = {
        .on_url = on_url,
        .on_header_field = on_field,
        .on_header_value = on_value,
        .on_headers_complete = on_headers_complete,
    };
    char body[128];
    struct hs h = {.subprotocol = subprotocol ? subprotocol : "parley.v1"};
    http_parser p;
    size_t path_len;

    http_parser_init(&p, HTTP_REQUEST);
    p.data = &h;
    http_parser_execute(&p, &settings, head, len);
    if (!h.complete || (HTTP_PARSER_ERRNO(&p) != HPE_OK && !p.upgrade) ||
        !h.url)
        return plain(out, 400, "Bad Request", "", "malformed request\n");
    if (p.method != HTTP_GET)
        return plain(out, 405, "Method Not Allowed", "Allow: GET\r\n",
                     "only GET is served\n");
    path_len = 0;
    while (path_len < h.url_len && h.url[path_len] != '?' &&
           h.url[path_len] != '#')
        path_len++;
    if (path_len == 8 && memcmp(h.url, "/healthz", 8) == 0)
        return plain(out, 200, "OK", "", "ok\n");
    if (path_len != 1 || h.url[0] != '/')
        return plain(out, 404, "Not Found", "", "not found\n");
    if (!h.upgrade || !h.connection)
        return plain(out, 400, "Bad Request", "",
                     "expected a WebSocket upgrade\n");
    if (!h.has_version || !h.version13)
        return plain(out, 426, "Upgrade Required",
                     "Sec-WebSocket-Version: 13\r\n",
                     "WebSocket version 13 required\n");
    if (!key_valid(&h))
        return plain(out, 400, "Bad Request", "", "bad Sec-WebSocket-Key\n");
    if (!h.proto) {
        snprintf(body, sizeof(body), "unsupported subprotocol; supported: %s\n",
                 h.subprotocol);
        return plain(out, 400, "Bad Request", "", body);
    }
    return upgrade(out, &h);
}

int ws_http_unavailable(ws_http_answer_t *out, uint32_t retry_after_s,
                        const char *why)
{
    char extra[40];

    snprintf(extra, sizeof(extra), "Retry-After: %u\r\n",
             (unsigned)retry_after_s);
    return plain(out, 503, "Service Unavailable", extra, why);
}
