/*
 * actors/shell_conn.c - one actor per attached shell: reading command
 * lines, the queue of lines that wait, writing JSON lines, and the end of
 * each command. See shell.h for the protocol.
 *
 * Read callbacks run between the actor's turns, outside its handler: they
 * only cut lines and send them to the actor itself (SHELL_LINE), so every
 * command runs inside the handler where the whole runtime API is usable.
 * A peer that goes away sends SHELL_EOF the same way; the actor then ends,
 * and the running command's on_end releases what it holds.
 */
#include "shell_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"

#define OUT_SOFT_MAX (1u << 20) /* bytes queued before trace lines drop */
#define READ_CHUNK   4096

typedef struct shell_write {
    uv_write_t req;
    size_t len;
    char data[];
} shell_write_t;

static _Thread_local char read_buf[READ_CHUNK];

static void start_next(shell_t *sh);

/* ---- output ------------------------------------------------------------ */

static void on_written(uv_write_t *req, int status)
{
    free(req->data);
}

static void write_bytes(shell_t *sh, const char *data, size_t len)
{
    uv_stream_t *s = sh->stream;
    size_t off = 0;

    if (sh->ending)
        return;
    if (s->write_queue_size == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write(s, &b, 1);
        if (n >= 0)
            off = (size_t)n;
        else if (n != UV_EAGAIN)
            return; /* the read side will see the peer gone */
    }
    if (off == len)
        return;
    shell_write_t *w = malloc(sizeof(*w) + len - off);
    if (!w)
        return;
    w->len = len - off;
    memcpy(w->data, data + off, w->len);
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, s, &b, 1, on_written) < 0)
        free(w);
}

void shell_emit(shell_t *sh, json_t *obj, bool droppable)
{
    if (!obj)
        return;
    if (droppable && sh->stream->write_queue_size > OUT_SOFT_MAX) {
        sh->dropped++;
        json_decref(obj);
        return;
    }
    char *text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(obj);
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\0';
    write_bytes(sh, text, n);
    write_bytes(sh, "\n", 1);
    free(text);
}

void shell_progress(shell_t *sh, const char *fmt, ...)
{
    char text[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    shell_emit(sh, json_pack("{s:s}", "progress", text), false);
}

static void end_run(shell_t *sh)
{
    if (sh->run.on_end)
        sh->run.on_end(sh);
    free(sh->run.data);
    memset(&sh->run, 0, sizeof(sh->run));
    sh->busy = false;
}

void shell_done(shell_t *sh, json_t *value)
{
    shell_emit(sh, json_pack("{s:o}", "done", value ? value : json_true()),
               false);
    end_run(sh);
    start_next(sh);
}

void shell_fail(shell_t *sh, const char *code, const char *msg,
                const char *hint)
{
    shell_emit(sh,
               json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "msg", msg,
                         "hint", hint ? hint : ""),
               false);
    end_run(sh);
    start_next(sh);
}

void shell_failf(shell_t *sh, const char *code, const char *hint,
                 const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    shell_fail(sh, code, msg, hint);
}

int shell_tick(shell_t *sh, uint64_t ms)
{
    rt_msg_t *m = rt_msg_new(SHELL_TICK, sizeof(uint64_t));

    if (!m)
        return RT_ENOMEM;
    memcpy(m->data, &sh->run.seq, sizeof(uint64_t));
    int64_t ref = rt_send_after(sh->sys, sh->id, m, ms);
    return ref < 0 ? (int)ref : 0;
}

/* ---- ending -------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    shell_t *sh = req->data;

    free(req);
    if (sh) {
        sh->shut = NULL;
        rt_send_copy(sh->sys, sh->id, SHELL_EOF, NULL, 0);
    }
}

/* Lets the queued output go, then ends. */
static void shell_hangup(shell_t *sh)
{
    if (sh->ending || sh->shut)
        return;
    uv_read_stop(sh->stream);
    sh->shut = malloc(sizeof(*sh->shut));
    if (!sh->shut || uv_shutdown(sh->shut, sh->stream, on_shutdown) < 0) {
        free(sh->shut);
        sh->shut = NULL;
        rt_send_copy(sh->sys, sh->id, SHELL_EOF, NULL, 0);
        return;
    }
    sh->shut->data = sh;
}

/* ---- input ---------------------------------------------------------------
 */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void cut_lines(shell_t *sh, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (sh->len < CHAT_SHELL_MAX_LINE)
                sh->line[sh->len++] = p[i];
            else
                sh->overlong = true;
            continue;
        }
        if (sh->len && sh->line[sh->len - 1] == '\r')
            sh->len--;
        sh->line[sh->len] = '\0';
        if (sh->overlong)
            sh->line[0] = '\0'; /* reported as an empty command */
        rt_send_copy(sh->sys, sh->id, SHELL_LINE, sh->line,
                     (uint32_t)(sh->overlong ? 1 : sh->len + 1));
        sh->len = 0;
        sh->overlong = false;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    shell_t *sh = s->data;

    if (nread > 0) {
        cut_lines(sh, buf->base, (size_t)nread);
    } else if (nread < 0) {
        uv_read_stop(s);
        rt_send_copy(sh->sys, sh->id, SHELL_EOF, NULL, 0);
    }
}

/* ---- commands -------------------------------------------------------------
 */

static int split(char *line, char **argv)
{
    int argc = 0;
    char *save = NULL;

    for (char *t = strtok_r(line, " \t", &save); t && argc < SHELL_MAX_ARGS;
         t = strtok_r(NULL, " \t", &save))
        argv[argc++] = t;
    return argc;
}

static void run_line(shell_t *sh, char *line)
{
    char *argv[SHELL_MAX_ARGS];
    int argc = split(line, argv);

    sh->busy = true;
    sh->run.seq = ++sh->seq;
    if (argc == 0) {
        shell_fail(sh, "usage", "empty or over-long command line",
                   "send one command of at most 4096 bytes; `help` lists "
                   "them");
        return;
    }
    shell_command(sh, argc, argv);
}

static void start_next(shell_t *sh)
{
    while (!sh->busy && sh->qn > 0 && !sh->ending) {
        char *line = sh->queue[sh->qhead];
        sh->qhead =
            (sh->qhead + 1) % (int)(sizeof(sh->queue) / sizeof(sh->queue[0]));
        sh->qn--;
        run_line(sh, line);
        free(line);
    }
}

/* TCP: the first line must be `auth TOKEN`, compared in constant time. */
static void authenticate(shell_t *sh, const char *line)
{
    const char *want = sh->args->cfg->shell_token;
    size_t n = strlen(want);
    bool ok = strncmp(line, "auth ", 5) == 0 && strlen(line + 5) == n &&
              sodium_memcmp(line + 5, want, n) == 0;

    if (ok) {
        sh->authed = true;
        shell_emit(sh, json_pack("{s:s}", "done", "authenticated"), false);
        return;
    }
    rt_log(RT_LOG_WARN, "shell",
           "id=%llu event=refused transport=tcp "
           "reason=%s",
           (unsigned long long)sh->id,
           strncmp(line, "auth ", 5) ? "no_auth" : "bad_token");
    shell_emit(sh,
               json_pack("{s:{s:s,s:s,s:s}}", "error", "code", "forbidden",
                         "msg", "wrong or missing shell token", "hint",
                         "give the [shell] token of parley.conf with --token "
                         "or PARLEY_SHELL_TOKEN"),
               false);
    shell_hangup(sh);
}

static void on_line(shell_t *sh, const rt_msg_t *msg)
{
    const size_t cap = sizeof(sh->queue) / sizeof(sh->queue[0]);
    const char *line = (const char *)msg->data;

    if (sh->ending || sh->shut)
        return;
    if (msg->size == 0 || line[msg->size - 1] != '\0')
        return;
    if (sh->tcp && !sh->authed)
        return authenticate(sh, line);
    if (sh->qn == (int)cap) {
        shell_emit(sh,
                   json_pack("{s:{s:s,s:s,s:s}}", "error", "code", "busy",
                             "msg", "too many command lines waiting", "hint",
                             "send the next line after the last one's done"),
                   false);
        shell_hangup(sh);
        return;
    }
    char *copy = strdup(line);
    if (!copy)
        return;
    sh->queue[(sh->qhead + sh->qn) % (int)cap] = copy;
    sh->qn++;
    start_next(sh);
}

/* ---- the actor --------------------------------------------------------- */

typedef struct shell_arg {
    chat_shell_args_t *a;
    int fd;
    bool tcp;
} shell_arg_t;

static int shell_init(rt_actor_t *self, void *arg)
{
    shell_t *sh = rt_state(self);
    shell_arg_t a = *(shell_arg_t *)arg;
    uv_loop_t *loop = rt_loop(self);
    int rc;

    free(arg);
    sh->self = self;
    sh->sys = rt_system(self);
    sh->id = rt_self(self);
    sh->args = a.a;
    sh->tcp = a.tcp;
    sh->stream =
        rt_handle_new(self, a.tcp ? sizeof(uv_tcp_t) : sizeof(uv_pipe_t));
    if (!sh->stream) {
        close(a.fd);
        return RT_ENOMEM;
    }
    if (a.tcp)
        rc = uv_tcp_init(loop, (uv_tcp_t *)sh->stream) ||
             uv_tcp_open((uv_tcp_t *)sh->stream, a.fd);
    else
        rc = uv_pipe_init(loop, (uv_pipe_t *)sh->stream, 0) ||
             uv_pipe_open((uv_pipe_t *)sh->stream, a.fd);
    if (rc) {
        close(a.fd);
        return RT_EINVAL;
    }
    sh->stream->data = sh;
    if (uv_read_start(sh->stream, on_alloc, on_read) < 0)
        return RT_EINVAL;
    rt_log(RT_LOG_INFO, "shell", "id=%llu event=attached transport=%s",
           (unsigned long long)sh->id, a.tcp ? "tcp" : "unix");
    return 0;
}

static int shell_handle(rt_actor_t *self, rt_msg_t *msg)
{
    shell_t *sh = rt_state(self);

    switch (msg->type) {
    case SHELL_LINE:
        on_line(sh, msg);
        return RT_CONTINUE;
    case SHELL_EOF:
        return RT_STOP;
    case RT_MSG_EXIT:
        return RT_CONTINUE; /* the listener's end is not ours */
    case SHELL_TICK: {
        uint64_t seq;
        memcpy(&seq, msg->data, sizeof(seq));
        if (!sh->busy || seq != sh->run.seq)
            return RT_CONTINUE; /* a timer of a command that has ended */
        break;
    }
    }
    if (sh->busy && sh->run.on_msg)
        sh->run.on_msg(sh, msg);
    return RT_CONTINUE;
}

static void shell_terminate(rt_actor_t *self, int reason)
{
    shell_t *sh = rt_state(self);

    if (!sh->stream)
        return;
    sh->ending = true;
    if (sh->busy)
        end_run(sh);
    if (sh->shut)
        sh->shut->data = NULL; /* its callback may run after we are gone */
    while (sh->qn > 0) {
        free(sh->queue[sh->qhead]);
        sh->qhead =
            (sh->qhead + 1) % (int)(sizeof(sh->queue) / sizeof(sh->queue[0]));
        sh->qn--;
    }
    rt_log(RT_LOG_INFO, "shell", "id=%llu event=detached dropped=%llu",
           (unsigned long long)sh->id, (unsigned long long)sh->dropped);
}

static void shell_describe(rt_actor_t *self, char *buf, size_t len)
{
    shell_t *sh = rt_state(self);

    snprintf(buf, len, "transport=%s busy=%d queued=%d dropped=%llu",
             sh->tcp ? "tcp" : "unix", sh->busy, sh->qn,
             (unsigned long long)sh->dropped);
}

static const rt_behaviour_t shell_conn_behaviour = {
    .kind = "shell",
    .state_size = sizeof(shell_t),
    .init = shell_init,
    .handle = shell_handle,
    .terminate = shell_terminate,
    .describe = shell_describe,
};

int shell_conn_spawn(rt_system_t *sys, chat_shell_args_t *a, rt_id_t listener,
                     int fd, bool tcp)
{
    shell_arg_t *arg = malloc(sizeof(*arg));
    rt_spawn_opts_t o = {.pinned = true,
                         .pin = a->pin,
                         .link = listener,
                         .trap_exit = true,
                         .parent = listener};
    int err = 0;

    if (!arg) {
        close(fd);
        return RT_ENOMEM;
    }
    *arg = (shell_arg_t){.a = a, .fd = fd, .tcp = tcp};
    if (!rt_spawn(sys, &shell_conn_behaviour, arg, &o, &err)) {
        free(arg);
        close(fd);
        return err;
    }
    return 0;
}
