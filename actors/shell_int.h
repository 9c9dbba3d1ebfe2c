/*
 * actors/shell_int.h - what the files of the shell share: shell.c (the
 * listener), shell_conn.c (one actor per attached shell: framing, queue,
 * output) and shell_cmds.c (the commands). Nothing else includes it.
 */
#ifndef PARLEY_ACTORS_SHELL_INT_H
#define PARLEY_ACTORS_SHELL_INT_H

#include <jansson.h>

#include "shell.h"
#include "shell_help.h"

/* Message types of a shell connection actor. */
enum {
    SHELL_LINE = 0x6110, /* from its read callback: one NUL-ended line */
    SHELL_EOF,           /* from its callbacks: the peer is gone */
    SHELL_TICK,          /* a command's timer; payload uint64_t seq */
};

#define SHELL_MAX_ARGS 8

typedef struct shell shell_t;

/* A running command. `on_msg` gets every message that is not framing;
 * `on_end` releases what the command holds, whether it finished or its
 * shell went away. Both may be NULL. `data` is the command's own, freed
 * with free() after on_end. */
typedef struct shell_run {
    uint64_t seq; /* tags its timers, work and requests */
    void *data;
    void (*on_msg)(shell_t *sh, rt_msg_t *msg);
    void (*on_end)(shell_t *sh);
} shell_run_t;

struct shell {
    rt_actor_t *self;
    rt_system_t *sys;
    rt_id_t id;
    chat_shell_args_t *args;
    uv_stream_t *stream;
    uv_shutdown_t *shut;
    bool tcp, authed, ending;
    bool busy;
    char line[CHAT_SHELL_MAX_LINE + 1];
    size_t len;
    bool overlong;
    char *queue[16]; /* lines waiting for the running command */
    int qhead, qn;
    uint64_t seq;
    uint64_t dropped; /* output lines dropped for a slow reader */
    shell_run_t run;
};

/* Writes one JSON line and releases `obj`. With `droppable`, the line is
 * dropped (and counted) while more than a megabyte waits to be written:
 * trace events give way to a slow reader, answers never do. */
void shell_emit(shell_t *sh, json_t *obj, bool droppable);

/* {"progress": text} */
void shell_progress(shell_t *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Ends the running command with {"done": value} (value may be NULL:
 * true) or with {"error": {code, msg, hint}}, then starts the next
 * queued line. */
void shell_done(shell_t *sh, json_t *value);
void shell_fail(shell_t *sh, const char *code, const char *msg,
                const char *hint);
void shell_failf(shell_t *sh, const char *code, const char *hint,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Sends the shell a SHELL_TICK for the running command after ms. */
int shell_tick(shell_t *sh, uint64_t ms);

/* Runs one command line (shell_cmds.c). It either finishes at once
 * (shell_done or shell_fail) or fills sh->run and finishes later. */
void shell_command(shell_t *sh, int argc, char **argv);

/* Spawns the actor of an accepted shell socket, pinned to a->pin. Takes
 * fd (closed on failure). Returns 0 or a negative RT_E* code. */
int shell_conn_spawn(rt_system_t *sys, chat_shell_args_t *a, rt_id_t listener,
                     int fd, bool tcp);

#endif /* PARLEY_ACTORS_SHELL_INT_H */
