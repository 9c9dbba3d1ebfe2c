/*
 * actors/shell.h - the operator's remote shell, server side.
 *
 * parleyd listens for `parley-shell` on a Unix socket in the data
 * directory (DATA/parley.sock, mode 0600), and optionally on a loopback
 * TCP port guarded by a token ([shell] in parley.conf). A Unix peer whose
 * uid (SO_PEERCRED) is not the server's is refused; so is a TCP client
 * whose first line is not `auth TOKEN` with the right token. Each refusal
 * is logged at warn.
 *
 * The shell listener actor is pinned to one scheduler and polls both
 * sockets; each accepted shell gets its own actor on the same scheduler
 * (shell_conn.c). Once a second the listener samples the runtime's and the
 * store's counters, so `status` can tell rates without waiting.
 *
 * The protocol: the client sends one command per line (UTF-8, at most
 * CHAT_SHELL_MAX_LINE bytes). The server answers with JSON lines, one
 * object each, whose single key says what the line is ("status",
 * "actor", "row", "node", "trace", "progress", ...), and ends every
 * command with {"done": ...} or {"error": {"code", "msg", "hint"}}.
 * Commands run one at a time per connection; lines sent meanwhile wait.
 * See shell_cmds.c for the commands, their usage and their help.
 */
#ifndef PARLEY_ACTORS_SHELL_H
#define PARLEY_ACTORS_SHELL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "rt.h"
#include "store.h"

#define CHAT_SHELL_MAX_LINE 4096
#define CHAT_SHELL_SOCKET   "parley.sock" /* in the data directory */
#define CHAT_SHELL_NAME     "shell"       /* the listener's registered name */

/* What the shell actors share; owned by main, outliving the actors. */
typedef struct chat_shell_args {
    chat_config_t *cfg; /* `config set` writes to it */
    chat_db_t *db;
    int unix_fd, tcp_fd; /* listening sockets, -1 when off */
    char path[256];      /* the Unix socket's path, to unlink at exit */
    int pin;             /* scheduler of the shell actors */
    uint64_t started_ms; /* uv_hrtime() / 1e6 at start, for uptime */
    /* Rates over the last second, written by the listener's sampler and
     * read by shell connections. Relaxed: each is a number on its own. */
    _Atomic uint64_t msgs_per_s;
    _Atomic uint64_t commits_per_s;
    _Atomic uint64_t writes_per_s;
} chat_shell_args_t;

/*
 * Binds the shell's sockets as cfg says: the Unix socket (replacing a
 * stale file, refusing when a live server answers on it) and the TCP one,
 * which must be a loopback address and needs a token. Fills *a. Returns 0
 * or a negative errno-style code after printing to stderr one line that
 * names the cause and what to do (-EINVAL for a bad setting, -EADDRINUSE
 * when another server owns the socket, or the errno of the call).
 */
int chat_shell_open(chat_shell_args_t *a, chat_config_t *cfg, chat_db_t *db,
                    int pin);

/* Closes the sockets and removes the socket file. */
void chat_shell_close(chat_shell_args_t *a);

/* The listener; its spawn arg is the chat_shell_args_t *. Pin it to
 * a->pin. */
extern const rt_behaviour_t chat_shell_behaviour;

/* The version parleyd reports. */
#define CHAT_VERSION "0.1.0"

#endif /* PARLEY_ACTORS_SHELL_H */
