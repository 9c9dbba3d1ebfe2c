/*
 * config/config.h - parleyd's settings: defaults, then the INI file, then
 * the environment, then the command line, each overriding the one before.
 *
 * Every setting has one row in a table (config.c): its INI section and
 * key, its environment variable (PARLEY_ and the key in capitals) and its
 * flag (--key, with '_' written '-'). `parleyd --help` prints that table,
 * and config/parley.conf documents each key with its default.
 */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Result of chat_config_load() besides 0: --help was asked for and
 * printed; the caller exits 0. */
#define CHAT_CONFIG_HELP 1

typedef struct chat_config {
    /* [server] */
    char listen_host[64];
    uint16_t listen_port; /* 0: the kernel picks one */
    char data_dir[256];
    uint32_t schedulers;    /* 0: one per core */
    uint32_t mailbox_limit; /* messages one actor may have waiting */
    int log_level;          /* rt_log_level_t */
    uint32_t shutdown_grace_ms;
    uint32_t max_connections; /* 0: the open file limit less a reserve */

    /* [connection] */
    uint32_t handshake_timeout_ms;
    uint32_t ping_interval_ms;
    uint32_t idle_timeout_ms;
    uint32_t max_message;    /* bytes of one WebSocket message */
    uint32_t send_queue_max; /* bytes queued for a client before it is cut */
    uint32_t request_rate;   /* requests a second, sustained */
    uint32_t request_burst;  /* requests at once */
    uint32_t max_bad_frames; /* malformed messages in a row before 1008 */

    /* [chat] */
    uint32_t push_window;           /* mailbox entries pushed beyond ack */
    uint64_t retain_delivered_ms;   /* kept this long after delivery */
    uint64_t retain_undelivered_ms; /* kept this long if never delivered */
    uint32_t prune_interval_ms;
    uint32_t group_max_members; /* members of one group */
    uint32_t group_idle_ms;     /* a group actor idle this long ends */
    char sync[16]; /* [store] "batch": fsync each commit; "nosync" */

    /* [accounts] */
    bool registration_open;
    uint64_t pwhash_ops;
    size_t pwhash_mem;
    uint32_t min_password; /* bytes */
    uint32_t login_fail_user;
    uint32_t login_fail_addr;
    uint32_t login_fail_window_ms;

    /* [store] */
    uint64_t map_size;

    /* [shell] */
    char shell_socket[256]; /* "" = DATA/parley.sock; "off" = none */
    char shell_tcp[64];     /* loopback HOST:PORT, or "" for none */
    char shell_token[128];  /* required with shell_tcp */
} chat_config_t;

/* Reads a setting that `config set` may change while parleyd runs (see
 * runtime_keys in config.c): a relaxed atomic load, paired with the
 * relaxed store there, so a reader sees the old value or the new one. */
#define CHAT_CFG(cfg, field) __atomic_load_n(&(cfg)->field, __ATOMIC_RELAXED)

/*
 * Fills *cfg from the defaults, the file named by --config (or
 * PARLEY_CONFIG; no file is read when neither is given), the environment
 * and argv, in that order.
 *
 * Returns 0, CHAT_CONFIG_HELP after printing the help to stdout, or -EINVAL
 * after printing to stderr one line that names the bad key, where it came
 * from, what was wrong and what to do. The caller exits 2 then.
 */
int chat_config_load(chat_config_t *cfg, int argc, char **argv);

/*
 * Settings the operator may read and change while the server runs (the
 * remote shell's `config get` and `config set`). `key` is the INI key
 * without its section ("idle_timeout_ms"), or "section.key".
 *
 * chat_config_get writes the value as text, as in the INI file. Returns
 * the length, or -ENOENT for an unknown key.
 *
 * chat_config_set parses and applies `value` at once. Returns 0;
 * -ENOENT for an unknown key; -EPERM for a key read only at start (its
 * new value would not be used: edit the file and restart); -EINVAL with
 * *why set for a bad value. The log level is applied to the logger too.
 * Call from one thread at a time; readers on other threads see the old
 * or the new value of each field, never a mix.
 */
int chat_config_get(const chat_config_t *cfg, const char *key, char *buf,
                    size_t len);
int chat_config_set(chat_config_t *cfg, const char *key, const char *value,
                    const char **why);

/* Calls fn for every setting: its "section.key" and whether it can be
 * changed at run time. */
void chat_config_each(void (*fn)(const char *key, bool runtime, void *ctx),
                      void *ctx);

#endif /* PARLEY_CONFIG_H */
