/*
 * actors/listener.c - accepts on one SO_REUSEPORT socket. See conn.h.
 *
 * The socket is polled with uv_poll_t and accepted with accept4() here,
 * rather than with uv_listen(), so that each accepted descriptor can be
 * handed to a new actor that owns its own uv_tcp_t.
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

#define ACCEPT_BATCH     64    /* accepts per poll callback */
#define ACCEPT_RETRY_MS  100   /* pause after EMFILE and friends */
#define ACCEPT_LOG_EVERY 10000 /* ms between two log lines of it */

typedef struct listener {
    rt_system_t *sys;
    rt_id_t id;
    const chat_listener_args_t *la;
    uv_poll_t *poll;
    uv_timer_t *retry;
    uint64_t refused;  /* connections not accepted since the last log */
    uint64_t last_log; /* uv_now() of it */
    uint64_t accepted;
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
    if (!l->poll || !l->retry)
        return RT_ENOMEM;
    if (uv_poll_init_socket(rt_loop(self), l->poll, l->la->fd) < 0)
        return RT_EINVAL;
    uv_timer_init(rt_loop(self), l->retry);
    l->poll->data = l->retry->data = l;
    uv_poll_start(l->poll, UV_READABLE, on_readable);
    /* connection exits arrive as messages and are ignored */
    rt_trap_exit(self, true);
    snprintf(name, sizeof(name), "listener.%d", l->la->index);
    return rt_register(l->sys, name, l->id);
}

static int listener_handle(rt_actor_t *self, rt_msg_t *msg)
{
    listener_t *l = rt_state(self);

    if (msg->type == CHAT_LISTENER_STOP) {
        uv_poll_stop(l->poll);
        uv_timer_stop(l->retry);
        rt_log(RT_LOG_INFO, "listener", "index=%d event=stop accepted=%llu",
               l->la->index, (unsigned long long)l->accepted);
        rt_exit(self, RT_SHUTDOWN);
        return RT_CONTINUE;
    }
    if (msg->type == RT_MSG_EXIT) {
        rt_exit_info_t x;
        rt_actor_info_t me;
        memcpy(&x, msg->data, sizeof(x));
        /* a connection's end is nothing to us; the supervisor's is */
        if (rt_actor_info(l->sys, l->id, &me) == 0 && x.who == me.parent)
            rt_exit(self, x.reason);
    }
    return RT_CONTINUE;
}

static void listener_describe(rt_actor_t *self, char *buf, size_t len)
{
    listener_t *l = rt_state(self);

    snprintf(buf, len, "index=%d accepted=%llu", l->la->index,
             (unsigned long long)l->accepted);
}

const rt_behaviour_t chat_listener_behaviour = {
    .kind = "listener",
    .state_size = sizeof(listener_t),
    .init = listener_init,
    .handle = listener_handle,
    .describe = listener_describe,
};
