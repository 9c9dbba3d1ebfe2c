/*
 * actors/listener.c - accepts on one SO_REUSEPORT socket. See conn.h.
 *
 * The socket is polled with uv_poll_t and accepted with accept4() here,
 * rather than with uv_listen(), so that each accepted descriptor can be
 * handed to a new actor that owns its own uv_tcp_t.
 *
 * Beyond the connection limit a socket is refused here, without an
 * actor: the 503 goes out with one send(), the socket is shut down for
 * writing, and it lingers in a small table, drained every LINGER_TICK_MS,
 * until the client closes or LINGER_MS pass. Closing at once would answer
 * the client's request bytes with a reset, which may destroy the 503
 * before the client reads it. A full table closes at once.
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define ACCEPT_BATCH     64    /* accepts per poll callback */
#define ACCEPT_RETRY_MS  100   /* pause after EMFILE and friends */
#define ACCEPT_LOG_EVERY 10000 /* ms between two log lines of it */
#define LINGER_MAX       CHAT_LISTENER_LINGER /* refused sockets held */
#define LINGER_MS        1000 /* longest a refused socket is held */
#define LINGER_TICK_MS   50
#define RETRY_AFTER_S    10 /* Retry-After of the 503 */

typedef struct held_sock {
    int fd;
    uint64_t until; /* uv_now() */
} held_sock_t;

typedef struct listener {
    rt_system_t *sys;
    rt_id_t id;
    const chat_listener_args_t *la;
    uv_poll_t *poll;
    uv_timer_t *retry;
    uint64_t refused;  /* connections not accepted since the last log */
    uint64_t last_log; /* uv_now() of it */
    uint64_t accepted;
    uv_timer_t *linger_timer;
    held_sock_t linger[LINGER_MAX];
    int nlinger;
    uint64_t full;     /* sockets refused at the limit since the log */
    uint64_t full_log; /* uv_now() of that log line */
} listener_t;

static void on_readable(uv_poll_t *p, int status, int events);

static void on_retry(uv_timer_t *t)
{
    listener_t *l = t->data;

    uv_poll_start(l->poll, UV_READABLE, on_readable);
}

/* Out of descriptors or memory: the pending connection stays in the
 * backlog. Pause instead of spinning on a socket that stays readable. */
static void accept_failed(listener_t *l, int err)
{
    uint64_t now = uv_now(l->poll->loop);

    l->refused++;
    if (!l->last_log || now - l->last_log >= ACCEPT_LOG_EVERY) {
        rt_log(RT_LOG_WARN, "listener",
               "index=%d event=accept_failed err=%s paused_ms=%d "
               "times=%llu hint=\"raise the open file limit (ulimit -n) or "
               "shed load\"",
               l->la->index, strerror(err), ACCEPT_RETRY_MS,
               (unsigned long long)l->refused);
        l->last_log = now;
        l->refused = 0;
    }
    uv_poll_stop(l->poll);
    uv_timer_start(l->retry, on_retry, ACCEPT_RETRY_MS, 0);
}

/* Reads and drops what a refused client sent. Returns false once the
 * client has closed or the socket failed. */
static bool drain(int fd)
{
    char buf[512];

    for (int i = 0; i < 8; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n < 0 &&
               (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
    return true;
}

static void on_linger(uv_timer_t *t)
{
    listener_t *l = t->data;
    uint64_t now = uv_now(t->loop);
    int kept = 0;

    for (int i = 0; i < l->nlinger; i++) {
        held_sock_t g = l->linger[i];
        if (now < g.until && drain(g.fd))
            l->linger[kept++] = g;
        else
            close(g.fd);
    }
    l->nlinger = kept;
    if (!kept)
        uv_timer_stop(t);
}

/* Once per ACCEPT_LOG_EVERY for the whole process, not per listener: the
 * operator needs to hear that the limit is reached, not how often. */
static void log_full(listener_t *l)
{
    static _Atomic uint64_t last; /* uv_now() of the last line, 0: none */
    uint64_t now = uv_now(l->poll->loop), prev = atomic_load(&last);

    if (prev && now - prev < ACCEPT_LOG_EVERY)
        return;
    if (!atomic_compare_exchange_strong(&last, &prev, now))
        return;
    rt_log(RT_LOG_WARN, "listener",
           "index=%d event=connection_limit max_connections=%ld "
           "refused=%llu answer=503 hint=\"raise the open file limit "
           "(ulimit -n) or max_connections, or add a node\"",
           l->la->index, l->la->max_conns, (unsigned long long)l->full);
    l->full = 0;
}

/* At the connection limit: answer 503 and let the socket linger. */
static void refuse(listener_t *l, int fd)
{
    ws_http_answer_t ans;
    char why[160];

    l->full++;
    log_full(l);
    drain(fd);
    snprintf(why, sizeof(why),
             "server full: it holds its limit of %ld connections; retry "
             "later or connect to another node\n",
             l->la->max_conns);
    if (ws_http_unavailable(&ans, RETRY_AFTER_S, why) > 0)
        (void)!send(fd, ans.text, ans.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    if (l->nlinger == LINGER_MAX) {
        close(fd);
        return;
    }
    if (!l->nlinger)
        uv_timer_start(l->linger_timer, on_linger, LINGER_TICK_MS,
                       LINGER_TICK_MS);
    l->linger[l->nlinger++] =
        (held_sock_t){fd, uv_now(l->poll->loop) + LINGER_MS};
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    listener_t *l = p->data;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->la->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                accept_failed(l, errno);
            return;
        }
        if (chat_conn_reserve(l->la) < 0) {
            refuse(l, fd);
            continue;
        }
        l->accepted++;
        int rc = chat_conn_spawn(l->sys, l->la, l->id, fd);
        if (rc < 0)
            rt_log(RT_LOG_WARN, "listener", "event=spawn_failed err=\"%s\"",
                   rt_strerror(rc));
    }
}

static int listener_init(rt_actor_t *self, void *arg)
{
    listener_t *l = rt_state(self);
    char name[32];

    l->sys = rt_system(self);
    l->id = rt_self(self);
    l->la = arg;
    l->poll = rt_handle_new(self, sizeof(uv_poll_t));
    l->retry = rt_handle_new(self, sizeof(uv_timer_t));
    l->linger_timer = rt_handle_new(self, sizeof(uv_timer_t));
    if (!l->poll || !l->retry || !l->linger_timer)
        return RT_ENOMEM;
    if (uv_poll_init_socket(rt_loop(self), l->poll, l->la->fd) < 0)
        return RT_EINVAL;
    uv_timer_init(rt_loop(self), l->retry);
    uv_timer_init(rt_loop(self), l->linger_timer);
    l->poll->data = l->retry->data = l->linger_timer->data = l;
    uv_poll_start(l->poll, UV_READABLE, on_readable);
    /* connection exits arrive as messages and are ignored */
    rt_trap_exit(self, true);
    snprintf(name, sizeof(name), "listener.%d", l->la->index);
    return rt_register(l->sys, name, l->id);
}

static void listener_terminate(rt_actor_t *self, int reason)
{
    listener_t *l = rt_state(self);

    for (int i = 0; i < l->nlinger; i++)
        close(l->linger[i].fd);
    l->nlinger = 0;
}

static int listener_handle(rt_actor_t *self, rt_msg_t *msg)
{
    listener_t *l = rt_state(self);

    if (msg->type == CHAT_LISTENER_STOP) {
        uv_poll_stop(l->poll);
        uv_timer_stop(l->retry);
        int n = chat_conn_shutdown_all(l->sys, l->la->index);
        rt_log(RT_LOG_INFO, "listener",
               "index=%d event=stop accepted=%llu closing=%d", l->la->index,
               (unsigned long long)l->accepted, n);
        rt_exit(self, RT_SHUTDOWN);
        return RT_CONTINUE;
    }
    if (msg->type == RT_MSG_EXIT) {
        rt_exit_info_t x;
        memcpy(&x, msg->data, sizeof(x));
        /* a connection's end is nothing to us; the supervisor's is */
        if (x.who == rt_parent(self))
            rt_exit(self, x.reason);
    }
    return RT_CONTINUE;
}

static void listener_describe(rt_actor_t *self, char *buf, size_t len)
{
    listener_t *l = rt_state(self);

    snprintf(buf, len, "index=%d accepted=%llu refusing=%d", l->la->index,
             (unsigned long long)l->accepted, l->nlinger);
}

const rt_behaviour_t chat_listener_behaviour = {
    .kind = "listener",
    .state_size = sizeof(listener_t),
    .init = listener_init,
    .handle = listener_handle,
    .terminate = listener_terminate,
    .describe = listener_describe,
};
