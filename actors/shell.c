/*
 * actors/shell.c - the shell's sockets and its listener actor. See
 * shell.h.
 *
 * Like the chat listeners, the shell listener polls its sockets with
 * uv_poll_t and accepts with accept4(), so that each accepted descriptor
 * goes to a new actor that owns its own libuv stream.
 */
#include "shell_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define SAMPLE_MS       1000
#define MIN_TOKEN       16
#define SHELL_BACKLOG   16
#define ACCEPT_PAUSE_MS 200

/* ---- opening the sockets ----------------------------------------------- */

/* Whether a server answers on `path` now. */
static bool socket_alive(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive;

    if (fd < 0)
        return false;
    alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    return alive;
}

static int open_unix(chat_shell_args_t *a, const chat_config_t *cfg)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd, n;

    if (cfg->shell_socket[0])
        n = snprintf(a->path, sizeof(a->path), "%s", cfg->shell_socket);
    else
        n = snprintf(a->path, sizeof(a->path), "%s/%s", cfg->data_dir,
                     CHAT_SHELL_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        fprintf(stderr,
                "parleyd: shell socket path %s is longer than %zu bytes: "
                "set a shorter [shell] socket\n",
                a->path, sizeof(sun.sun_path) - 1);
        return -EINVAL;
    }
    memcpy(sun.sun_path, a->path, (size_t)n + 1);
    if (socket_alive(&sun)) {
        fprintf(stderr,
                "parleyd: another server answers on %s: stop it, or give "
                "this one another --data or [shell] socket\n",
                a->path);
        a->path[0] = '\0';
        return -EADDRINUSE;
    }
    unlink(a->path); /* a stale socket of a server that died */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        chmod(a->path, 0600) < 0 || listen(fd, SHELL_BACKLOG) < 0) {
        int err = -errno;
        fprintf(stderr,
                "parleyd: cannot listen on the shell socket %s: %s: check "
                "the directory's permissions or set [shell] socket\n",
                a->path, strerror(-err));
        close(fd);
        a->path[0] = '\0';
        return err;
    }
    a->unix_fd = fd;
    return 0;
}

/* Splits HOST:PORT or [V6]:PORT and fills ss when HOST is a loopback
 * address. Returns the address length, or -EINVAL with *why set. */
static int loopback_addr(const char *spec, struct sockaddr_storage *ss,
                         const char **why)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    char *end;
    size_t hl;

    if (!colon || colon == spec)
        return *why = "expected HOST:PORT, e.g. 127.0.0.1:7071", -EINVAL;
    hl = (size_t)(colon - spec);
    if (spec[0] == '[' && colon[-1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return *why = "the host is too long", -EINVAL;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return *why = "the port must be a number from 1 to 65535", -EINVAL;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (uv_ip4_addr(host, (int)port, in4) == 0) {
        if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
            return *why = "only a loopback address (127.x.x.x or ::1) may "
                          "be used: the shell must not be reachable from "
                          "the network",
                   -EINVAL;
        return sizeof(*in4);
    }
    if (uv_ip6_addr(host, (int)port, in6) == 0) {
        if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return *why = "only a loopback address (127.x.x.x or ::1) may "
                          "be used: the shell must not be reachable from "
                          "the network",
                   -EINVAL;
        return sizeof(*in6);
    }
    return *why = "the host must be a numeric loopback address", -EINVAL;
}

static int open_tcp(chat_shell_args_t *a, const chat_config_t *cfg)
{
    struct sockaddr_storage ss;
    const char *why = "";
    int one = 1, fd;
    int len = loopback_addr(cfg->shell_tcp, &ss, &why);

    if (len < 0) {
        fprintf(stderr, "parleyd: [shell] tcp = \"%s\": %s\n", cfg->shell_tcp,
                why);
        return len;
    }
    if (strlen(cfg->shell_token) < MIN_TOKEN) {
        fprintf(stderr,
                "parleyd: [shell] tcp needs a [shell] token of at least %d "
                "characters: set one, or leave tcp empty\n",
                MIN_TOKEN);
        return -EINVAL;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 ||
        listen(fd, SHELL_BACKLOG) < 0) {
        int err = -errno;
        fprintf(stderr,
                "parleyd: cannot listen for the shell on %s: %s: choose "
                "another [shell] tcp port\n",
                cfg->shell_tcp, strerror(-err));
        close(fd);
        return err;
    }
    a->tcp_fd = fd;
    return 0;
}

int chat_shell_open(chat_shell_args_t *a, chat_config_t *cfg, chat_db_t *db,
                    int pin)
{
    int rc = 0;

    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    a->db = db;
    a->pin = pin;
    a->unix_fd = a->tcp_fd = -1;
    a->started_ms = uv_hrtime() / 1000000;
    if (strcmp(cfg->shell_socket, "off") != 0)
        rc = open_unix(a, cfg);
    if (rc == 0 && cfg->shell_tcp[0])
        rc = open_tcp(a, cfg);
    if (rc < 0)
        chat_shell_close(a);
    return rc;
}

void chat_shell_close(chat_shell_args_t *a)
{
    if (a->unix_fd >= 0)
        close(a->unix_fd);
    if (a->tcp_fd >= 0)
        close(a->tcp_fd);
    if (a->path[0])
        unlink(a->path);
    a->unix_fd = a->tcp_fd = -1;
    a->path[0] = '\0';
}

/* ---- the listener actor ------------------------------------------------ */

typedef struct shell_listener {
    rt_system_t *sys;
    rt_id_t id;
    chat_shell_args_t *a;
    uv_poll_t *unix_poll, *tcp_poll;
    uv_timer_t *sampler, *pause;
    uint64_t last_msgs, last_commits, last_writes;
    uint64_t accepted, refused;
} shell_listener_t;

/* A Unix peer must run as the server's own user. Returns true when it
 * does; logs and answers the refusal otherwise. */
static bool peer_allowed(shell_listener_t *l, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    char line[256];

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        rt_log(RT_LOG_WARN, "shell", "event=refused transport=unix err=\"%s\"",
               strerror(errno));
        return false;
    }
    if (cred.uid == geteuid())
        return true;
    l->refused++;
    rt_log(RT_LOG_WARN, "shell",
           "event=refused transport=unix peer_uid=%u peer_pid=%d "
           "server_uid=%u",
           (unsigned)cred.uid, (int)cred.pid, (unsigned)geteuid());
    int n = snprintf(line, sizeof(line),
                     "{\"error\":{\"code\":\"forbidden\",\"msg\":\"uid %u "
                     "may not use this server's shell\",\"hint\":\"run "
                     "parley-shell as uid %u (the server's user)\"}}\n",
                     (unsigned)cred.uid, (unsigned)geteuid());
    /* best effort: the socket is new, so its buffer has room */
    if (send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        rt_log(RT_LOG_DEBUG, "shell", "event=refusal_unsent");
    return false;
}

static void on_pause_end(uv_timer_t *t);

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    shell_listener_t *l = p->data;
    bool tcp = p == l->tcp_poll;
    int lfd = tcp ? l->a->tcp_fd : l->a->unix_fd;

    for (int i = 0; i < SHELL_BACKLOG; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rt_log(RT_LOG_WARN, "shell", "event=accept_failed err=\"%s\"",
                       strerror(errno));
                uv_poll_stop(p);
                uv_timer_start(l->pause, on_pause_end, ACCEPT_PAUSE_MS, 0);
            }
            return;
        }
        if (!tcp && !peer_allowed(l, fd)) {
            close(fd);
            continue;
        }
        l->accepted++;
        int rc = shell_conn_spawn(l->sys, l->a, l->id, fd, tcp);
        if (rc < 0)
            rt_log(RT_LOG_WARN, "shell", "event=spawn_failed err=\"%s\"",
                   rt_strerror(rc));
    }
}

static void on_pause_end(uv_timer_t *t)
{
    shell_listener_t *l = t->data;

    if (l->unix_poll)
        uv_poll_start(l->unix_poll, UV_READABLE, on_acceptable);
    if (l->tcp_poll)
        uv_poll_start(l->tcp_poll, UV_READABLE, on_acceptable);
}

/* Once a second: the rates `status` shows. */
static void on_sample(uv_timer_t *t)
{
    shell_listener_t *l = t->data;
    rt_system_info_t si;
    uint64_t commits, writes;

    rt_system_info(l->sys, &si);
    chat_store_counters(&commits, &writes);
    if (l->last_msgs) {
        atomic_store_explicit(&l->a->msgs_per_s, si.messages - l->last_msgs,
                              memory_order_relaxed);
        atomic_store_explicit(&l->a->commits_per_s, commits - l->last_commits,
                              memory_order_relaxed);
        atomic_store_explicit(&l->a->writes_per_s, writes - l->last_writes,
                              memory_order_relaxed);
    }
    l->last_msgs = si.messages ? si.messages : 1;
    l->last_commits = commits;
    l->last_writes = writes;
}

static int poll_fd(rt_actor_t *self, shell_listener_t *l, int fd,
                   uv_poll_t **out)
{
    if (fd < 0)
        return 0;
    *out = rt_handle_new(self, sizeof(uv_poll_t));
    if (!*out)
        return RT_ENOMEM;
    if (uv_poll_init_socket(rt_loop(self), *out, fd) < 0)
        return RT_EINVAL;
    (*out)->data = l;
    return uv_poll_start(*out, UV_READABLE, on_acceptable) < 0 ? RT_EINVAL : 0;
}

static int listener_init(rt_actor_t *self, void *arg)
{
    shell_listener_t *l = rt_state(self);
    int rc;

    l->sys = rt_system(self);
    l->id = rt_self(self);
    l->a = arg;
    l->sampler = rt_handle_new(self, sizeof(uv_timer_t));
    l->pause = rt_handle_new(self, sizeof(uv_timer_t));
    if (!l->sampler || !l->pause)
        return RT_ENOMEM;
    uv_timer_init(rt_loop(self), l->sampler);
    uv_timer_init(rt_loop(self), l->pause);
    l->sampler->data = l->pause->data = l;
    uv_timer_start(l->sampler, on_sample, 0, SAMPLE_MS);
    if ((rc = poll_fd(self, l, l->a->unix_fd, &l->unix_poll)) < 0 ||
        (rc = poll_fd(self, l, l->a->tcp_fd, &l->tcp_poll)) < 0)
        return rc;
    /* shells trap our exit and keep serving if we crash */
    rt_trap_exit(self, true);
    return rt_register(l->sys, CHAT_SHELL_NAME, l->id);
}

static int listener_handle(rt_actor_t *self, rt_msg_t *msg)
{
    if (msg->type == RT_MSG_EXIT) {
        rt_exit_info_t x;
        memcpy(&x, msg->data, sizeof(x));
        /* a shell's end is nothing to us; our supervisor's is */
        if (x.who == rt_parent(self))
            rt_exit(self, x.reason);
    }
    return RT_CONTINUE;
}

static void listener_describe(rt_actor_t *self, char *buf, size_t len)
{
    shell_listener_t *l = rt_state(self);

    snprintf(buf, len, "socket=%s tcp=%s accepted=%llu refused=%llu",
             l->a->path[0] ? l->a->path : "-",
             l->a->cfg->shell_tcp[0] ? l->a->cfg->shell_tcp : "-",
             (unsigned long long)l->accepted, (unsigned long long)l->refused);
}

const rt_behaviour_t chat_shell_behaviour = {
    .kind = "shell_listener",
    .state_size = sizeof(shell_listener_t),
    .init = listener_init,
    .handle = listener_handle,
    .describe = listener_describe,
};
