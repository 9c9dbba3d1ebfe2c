/*
 * config/config.c - the settings table and the three layers that fill it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <sodium.h>

#include "log.h"

typedef enum kind {
    K_STR,
    K_OPTSTR, /* may be empty */
    K_U32,
    K_U64,
    K_LISTEN,
    K_LEVEL,
    K_REGISTRATION,
    K_PWOPS,
    K_PWMEM,
} kind_t;

typedef struct setting {
    const char *section;
    const char *key;
    kind_t kind;
    size_t off;
    size_t size;  /* K_STR: buffer size */
    uint64_t min; /* K_U32, K_U64 */
    uint64_t max;
    const char *def; /* the default, as text */
    const char *help;
} setting_t;

#define OFF(f) offsetof(chat_config_t, f)
#define STR(f) OFF(f), sizeof(((chat_config_t *)0)->f)

static const setting_t settings[] = {
    {"server", "listen", K_LISTEN, OFF(listen_port), 0, 0, 0, "127.0.0.1:7070",
     "address to accept clients on, HOST:PORT (port 0: any)"},
    {"server", "data", K_STR, STR(data_dir), 0, 0, "./data",
     "directory of the LMDB store (created if missing)"},
    {"server", "schedulers", K_U32, OFF(schedulers), 0, 0, 1024, "0",
     "scheduler threads, one listener each; 0 = one per core"},
    {"server", "mailbox_limit", K_U32, OFF(mailbox_limit), 0, 1024, 100000000,
     "1000000", "messages waiting for one actor; a send beyond it is refused"},
    {"server", "log_level", K_LEVEL, OFF(log_level), 0, 0, 0, "info",
     "debug, info, warn, error or off"},
    {"server", "shutdown_grace_ms", K_U32, OFF(shutdown_grace_ms), 0, 0, 600000,
     "5000", "on SIGTERM, how long connections get to close"},
    {"server", "max_connections", K_U32, OFF(max_connections), 0, 0, 100000000,
     "0",
     "clients held at once, else 503; 0 = the open file limit less a "
     "reserve"},
    {"connection", "handshake_timeout_ms", K_U32, OFF(handshake_timeout_ms), 0,
     100, 600000, "10000", "time to complete the HTTP upgrade"},
    {"connection", "ping_interval_ms", K_U32, OFF(ping_interval_ms), 0, 100,
     3600000, "30000", "silence after which the server pings"},
    {"connection", "idle_timeout_ms", K_U32, OFF(idle_timeout_ms), 0, 100,
     86400000, "90000", "silence after which the connection is closed"},
    {"connection", "max_message", K_U32, OFF(max_message), 0, 1024, 64u << 20,
     "262144", "largest WebSocket message in bytes (else 1009)"},
    {"connection", "send_queue_max", K_U32, OFF(send_queue_max), 0, 4096,
     1u << 30, "1048576", "bytes queued to a client before it is cut off"},
    {"connection", "request_rate", K_U32, OFF(request_rate), 0, 1, 1000000,
     "100", "requests a second a connection may sustain (else 204)"},
    {"connection", "request_burst", K_U32, OFF(request_burst), 0, 1, 1000000,
     "200", "requests a connection may send at once"},
    {"connection", "max_bad_frames", K_U32, OFF(max_bad_frames), 0, 1, 1000,
     "16", "malformed messages in a row before a close with 1008"},
    {"chat", "push_window", K_U32, OFF(push_window), 0, 1, 1000000, "1000",
     "mailbox entries pushed to a device beyond its last ack"},
    {"chat", "retain_delivered_ms", K_U64, OFF(retain_delivered_ms), 0, 1000,
     (uint64_t)1 << 40, "604800000", "messages kept this long after delivery"},
    {"chat", "retain_undelivered_ms", K_U64, OFF(retain_undelivered_ms), 0,
     1000, (uint64_t)1 << 40, "2592000000",
     "messages never delivered kept this long"},
    {"chat", "prune_interval_ms", K_U32, OFF(prune_interval_ms), 0, 100,
     86400000, "60000", "pause between two passes of the pruner"},
    {"chat", "group_max_members", K_U32, OFF(group_max_members), 0, 2, 100000,
     "1024", "members of one group (else 304)"},
    {"chat", "group_idle_ms", K_U32, OFF(group_idle_ms), 0, 100, 86400000,
     "60000", "a group actor with no activity this long is stopped"},
    {"store", "sync", K_STR, STR(sync), 0, 0, "batch",
     "batch: fsync every commit; nosync: leave it to the kernel"},
    {"accounts", "registration", K_REGISTRATION, OFF(registration_open), 0, 0,
     0, "open", "open: anyone may register; closed: nobody"},
    {"accounts", "pwhash_ops", K_PWOPS, OFF(pwhash_ops), 0, 0, 0, "interactive",
     "argon2id passes: min, interactive, moderate, or N"},
    {"accounts", "pwhash_mem", K_PWMEM, OFF(pwhash_mem), 0, 0, 0, "interactive",
     "argon2id memory: min, interactive, moderate, or bytes"},
    {"accounts", "min_password", K_U32, OFF(min_password), 0, 1, 256, "8",
     "shortest password accepted at registration, bytes"},
    {"accounts", "login_fail_user", K_U32, OFF(login_fail_user), 0, 1, 1000000,
     "5", "failed logins per account in a window (then 204)"},
    {"accounts", "login_fail_addr", K_U32, OFF(login_fail_addr), 0, 1, 1000000,
     "20", "failed logins per client address in a window"},
    {"accounts", "login_fail_window_ms", K_U32, OFF(login_fail_window_ms), 0,
     1000, 86400000, "60000", "the window of the two limits above"},
    {"store", "map_size", K_U64, OFF(map_size), 0, 1u << 20, (uint64_t)1 << 44,
     "1073741824", "LMDB map size: the store's maximum"},
    {"shell", "socket", K_OPTSTR, STR(shell_socket), 0, 0, "",
     "operator shell Unix socket; empty: DATA/parley.sock, off: none"},
    {"shell", "tcp", K_OPTSTR, STR(shell_tcp), 0, 0, "",
     "operator shell on loopback HOST:PORT too (needs token)"},
    {"shell", "token", K_OPTSTR, STR(shell_token), 0, 0, "",
     "token a TCP shell client must give (16 characters or more)"},
};

/* Settings applied while the server runs: each is read where it is used,
 * not copied at start. The others need a restart. */
static const char *const runtime_keys[] = {
    "log_level",        "shutdown_grace_ms",    "handshake_timeout_ms",
    "ping_interval_ms", "idle_timeout_ms",      "send_queue_max",
    "request_rate",     "request_burst",        "max_bad_frames",
    "registration",     "min_password",         "login_fail_user",
    "login_fail_addr",  "login_fail_window_ms",
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

/* ---- parsing one value ------------------------------------------------ */

static int parse_u64(const char *v, uint64_t *out)
{
    char *end;

    if (!isdigit((unsigned char)*v))
        return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *out = n;
    return 0;
}

static int parse_listen(chat_config_t *cfg, const char *v, const char **why)
{
    const char *colon = strrchr(v, ':');
    uint64_t port;

    if (!colon || colon == v || (size_t)(colon - v) >= sizeof(cfg->listen_host))
        return *why = "expected HOST:PORT, e.g. 127.0.0.1:7070", -EINVAL;
    if (parse_u64(colon + 1, &port) < 0 || port > 65535)
        return *why = "the port must be a number from 0 to 65535", -EINVAL;
    memcpy(cfg->listen_host, v, (size_t)(colon - v));
    cfg->listen_host[colon - v] = '\0';
    cfg->listen_port = (uint16_t)port;
    return 0;
}

static int parse_pw(const setting_t *s, const char *v, uint64_t *out,
                    const char **why)
{
    bool ops = s->kind == K_PWOPS;

    if (strcmp(v, "min") == 0)
        *out = ops ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_MEMLIMIT_MIN;
    else if (strcmp(v, "interactive") == 0)
        *out = ops ? crypto_pwhash_OPSLIMIT_INTERACTIVE
                   : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    else if (strcmp(v, "moderate") == 0)
        *out = ops ? crypto_pwhash_OPSLIMIT_MODERATE
                   : crypto_pwhash_MEMLIMIT_MODERATE;
    else if (parse_u64(v, out) < 0)
        return *why = "expected min, interactive, moderate or a number",
               -EINVAL;
    uint64_t lo = ops ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_MEMLIMIT_MIN;
    uint64_t hi = ops ? crypto_pwhash_OPSLIMIT_MAX : crypto_pwhash_MEMLIMIT_MAX;
    if (*out < lo || *out > hi)
        return *why = "out of the range libsodium accepts for argon2id",
               -EINVAL;
    return 0;
}

static int set_value(chat_config_t *cfg, const setting_t *s, const char *v,
                     const char **why)
{
    char *field = (char *)cfg + s->off;
    uint64_t n;
    int lvl;

    switch (s->kind) {
    case K_STR:
    case K_OPTSTR:
        if (!*v && s->kind == K_STR)
            return *why = "must not be empty", -EINVAL;
        if (strlen(v) >= s->size)
            return *why = "too long", -EINVAL;
        strcpy(field, v);
        return 0;
    case K_U32:
    case K_U64:
        if (parse_u64(v, &n) < 0)
            return *why = "expected a whole number", -EINVAL;
        if (n < s->min || n > s->max)
            return *why = "out of range (see parley.conf)", -EINVAL;
        if (s->kind == K_U32)
            *(uint32_t *)field = (uint32_t)n;
        else
            *(uint64_t *)field = n;
        return 0;
    case K_LISTEN:
        return parse_listen(cfg, v, why);
    case K_LEVEL:
        if ((lvl = rt_log_parse_level(v)) < 0)
            return *why = "expected debug, info, warn, error or off", -EINVAL;
        *(int *)field = lvl;
        return 0;
    case K_REGISTRATION:
        if (strcmp(v, "open") && strcmp(v, "closed"))
            return *why = "expected open or closed", -EINVAL;
        *(bool *)field = strcmp(v, "open") == 0;
        return 0;
    case K_PWOPS:
        if (parse_pw(s, v, &n, why) < 0)
            return -EINVAL;
        *(uint64_t *)field = n;
        return 0;
    case K_PWMEM:
        if (parse_pw(s, v, &n, why) < 0)
            return -EINVAL;
        *(size_t *)field = (size_t)n;
        return 0;
    }
    return -EINVAL;
}

static const setting_t *find(const char *section, const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if ((!section || strcmp(settings[i].section, section) == 0) &&
            strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

/* ---- the layers ---------------------------------------------------------- */

typedef struct file_ctx {
    chat_config_t *cfg;
    const char *path;
    int failed;
} file_ctx_t;

static int on_ini(void *user, const char *section, const char *key,
                  const char *value)
{
    file_ctx_t *fc = user;
    const setting_t *s = find(section, key);
    const char *why = "";

    if (fc->failed)
        return 1;
    if (!s) {
        fprintf(stderr,
                "parleyd: %s: unknown key [%s] %s: remove it or check its "
                "section against config/parley.conf\n",
                fc->path, section, key);
        fc->failed = 1;
        return 1;
    }
    if (set_value(fc->cfg, s, value, &why) < 0) {
        fprintf(stderr, "parleyd: %s: [%s] %s = \"%s\": %s\n", fc->path,
                section, key, value, why);
        fc->failed = 1;
    }
    return 1;
}

static int load_file(chat_config_t *cfg, const char *path)
{
    file_ctx_t fc = {.cfg = cfg, .path = path};
    int rc = ini_parse(path, on_ini, &fc);

    if (rc == -1) {
        fprintf(stderr,
                "parleyd: config: cannot open %s: give an existing file to "
                "--config or PARLEY_CONFIG\n",
                path);
        return -EINVAL;
    }
    if (rc > 0) {
        fprintf(stderr,
                "parleyd: %s: line %d is not INI (key = value or "
                "[section]): fix or remove it\n",
                path, rc);
        return -EINVAL;
    }
    return fc.failed ? -EINVAL : 0;
}

static void env_name(const setting_t *s, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "PARLEY_%s", s->key);
    for (size_t i = 0; i < n && i < len; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

static int load_env(chat_config_t *cfg)
{
    char name[64];
    const char *why = "";

    for (size_t i = 0; i < NSETTINGS; i++) {
        env_name(&settings[i], name, sizeof(name));
        const char *v = getenv(name);
        if (v && set_value(cfg, &settings[i], v, &why) < 0) {
            fprintf(stderr, "parleyd: environment %s=\"%s\": %s\n", name, v,
                    why);
            return -EINVAL;
        }
    }
    return 0;
}

/* Matches "--key" with '-' for '_'. */
static const setting_t *find_flag(const char *arg)
{
    char key[64];
    size_t n = strlen(arg);

    if (n < 3 || n - 2 >= sizeof(key) || arg[0] != '-' || arg[1] != '-')
        return NULL;
    for (size_t i = 0; i + 2 <= n; i++)
        key[i] = arg[i + 2] == '-' ? '_' : arg[i + 2];
    return find(NULL, key);
}

static void print_help(void)
{
    char env[64], flag[64];

    printf("usage: parleyd [--config FILE] [--KEY VALUE ...]\n\n"
           "Settings come from their defaults, then FILE (INI), then the\n"
           "environment, then the flags below, each overriding the one\n"
           "before. config/parley.conf documents every key.\n\n"
           "  --config FILE            INI file (env PARLEY_CONFIG)\n"
           "  --help                   print this and exit\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &settings[i];
        size_t j;
        snprintf(flag, sizeof(flag), "--%s", s->key);
        for (j = 2; flag[j]; j++)
            if (flag[j] == '_')
                flag[j] = '-';
        env_name(s, env, sizeof(env));
        printf("  %-24s %s\n  %-24s [%s] %s, env %s, default %s\n", flag,
               s->help, "", s->section, s->key, env, s->def);
    }
}

static int set_defaults(chat_config_t *cfg)
{
    const char *why = "";

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++)
        if (set_value(cfg, &settings[i], settings[i].def, &why) < 0)
            return -EINVAL; /* a bad row in the table */
    return 0;
}

int chat_config_load(chat_config_t *cfg, int argc, char **argv)
{
    const char *path = getenv("PARLEY_CONFIG");
    int i;

    if (set_defaults(cfg) < 0)
        return -EINVAL;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return CHAT_CONFIG_HELP;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
    }
    if (path && load_file(cfg, path) < 0)
        return -EINVAL;
    if (load_env(cfg) < 0)
        return -EINVAL;
    for (i = 1; i < argc; i++) {
        const char *why = "";
        if (strcmp(argv[i], "--config") == 0) {
            i++;
            continue;
        }
        const setting_t *s = find_flag(argv[i]);
        if (!s) {
            fprintf(stderr,
                    "parleyd: unknown argument \"%s\": see parleyd --help\n",
                    argv[i]);
            return -EINVAL;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "parleyd: %s needs a value: see parleyd --help\n",
                    argv[i]);
            return -EINVAL;
        }
        if (set_value(cfg, s, argv[i + 1], &why) < 0) {
            fprintf(stderr, "parleyd: %s \"%s\": %s\n", argv[i], argv[i + 1],
                    why);
            return -EINVAL;
        }
        i++;
    }
    if (strcmp(cfg->sync, "batch") != 0 && strcmp(cfg->sync, "nosync") != 0) {
        fprintf(stderr, "parleyd: sync = \"%s\": expected batch or nosync\n",
                cfg->sync);
        return -EINVAL;
    }
    if (cfg->ping_interval_ms >= cfg->idle_timeout_ms) {
        fprintf(stderr,
                "parleyd: ping_interval_ms (%u) must be less than "
                "idle_timeout_ms (%u): lower it or raise the other\n",
                cfg->ping_interval_ms, cfg->idle_timeout_ms);
        return -EINVAL;
    }
    return 0;
}

/* ---- at run time --------------------------------------------------------
 */

static const setting_t *find_dotted(const char *key)
{
    const char *dot = strchr(key, '.');
    char section[32];

    if (!dot)
        return find(NULL, key);
    if ((size_t)(dot - key) >= sizeof(section))
        return NULL;
    memcpy(section, key, (size_t)(dot - key));
    section[dot - key] = '\0';
    return find(section, dot + 1);
}

static bool is_runtime(const setting_t *s)
{
    for (size_t i = 0; i < sizeof(runtime_keys) / sizeof(*runtime_keys); i++)
        if (strcmp(runtime_keys[i], s->key) == 0)
            return true;
    return false;
}

int chat_config_get(const chat_config_t *cfg, const char *key, char *buf,
                    size_t len)
{
    const setting_t *s = find_dotted(key);
    const char *field;

    if (!s)
        return -ENOENT;
    field = (const char *)cfg + s->off;
    switch (s->kind) {
    case K_STR:
    case K_OPTSTR:
        if (strcmp(s->key, "token") == 0 && *field)
            return snprintf(buf, len, "(set, %zu characters)", strlen(field));
        return snprintf(buf, len, "%s", field);
    case K_U32:
        return snprintf(buf, len, "%u", *(const uint32_t *)field);
    case K_U64:
    case K_PWOPS:
        return snprintf(buf, len, "%llu",
                        (unsigned long long)*(const uint64_t *)field);
    case K_PWMEM:
        return snprintf(buf, len, "%zu", *(const size_t *)field);
    case K_LISTEN:
        return snprintf(buf, len, "%s:%u", cfg->listen_host, cfg->listen_port);
    case K_LEVEL:
        return snprintf(buf, len, "%s",
                        rt_log_level_name((rt_log_level_t)cfg->log_level));
    case K_REGISTRATION:
        return snprintf(buf, len, "%s",
                        cfg->registration_open ? "open" : "closed");
    }
    return -ENOENT;
}

int chat_config_set(chat_config_t *cfg, const char *key, const char *value,
                    const char **why)
{
    const setting_t *s = find_dotted(key);
    chat_config_t next;

    if (!s)
        return -ENOENT;
    if (!is_runtime(s))
        return -EPERM;
    /* Parsed into a copy, so a bad value changes nothing. */
    next = *cfg;
    if (set_value(&next, s, value, why) < 0)
        return -EINVAL;
    if (next.ping_interval_ms >= next.idle_timeout_ms) {
        *why = "ping_interval_ms must stay below idle_timeout_ms";
        return -EINVAL;
    }
    /* One aligned field is stored whole with a relaxed atomic store, so a
     * reader on another thread (CHAT_CFG, config.h) sees the old or the
     * new value. */
    char *dst = (char *)cfg + s->off, *src = (char *)&next + s->off;
    switch (s->kind) {
    case K_U32:
        __atomic_store_n((uint32_t *)dst, *(uint32_t *)src, __ATOMIC_RELAXED);
        break;
    case K_LEVEL:
        __atomic_store_n((int *)dst, *(int *)src, __ATOMIC_RELAXED);
        rt_log_set_level((rt_log_level_t)next.log_level);
        break;
    case K_REGISTRATION:
        __atomic_store_n((bool *)dst, *(bool *)src, __ATOMIC_RELAXED);
        break;
    default:
        return -EPERM;
    }
    return 0;
}

void chat_config_each(void (*fn)(const char *key, bool runtime, void *ctx),
                      void *ctx)
{
    char key[96];

    for (size_t i = 0; i < NSETTINGS; i++) {
        snprintf(key, sizeof(key), "%s.%s", settings[i].section,
                 settings[i].key);
        fn(key, is_runtime(&settings[i]), ctx);
    }
}
