/*
 * actors/main.c - parleyd: read the settings, open the store, bind the
 * listening sockets, start the root supervisor, wait for SIGTERM.
 *
 * Exit status: 0 after an orderly stop, 1 when the server cannot start
 * (store, socket), 2 for a bad configuration.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "accounts.h"
#include "config.h"
#include "conn.h"
#include "group.h"
#include "log.h"
#include "presence.h"
#include "pruner.h"
#include "rt.h"
#include "session.h"
#include "shell.h"
#include "store.h"

#define MAX_LISTENERS 256
/* Descriptors kept from connections for the store, logs, the shell and
 * its clients, the thread pool and the listening sockets; each listener
 * also holds up to CHAT_LISTENER_LINGER refused sockets. */
#define FD_RESERVE 64
#define NCHAT                                                                  \
    5 /* sessions, presence, pruner, groups.sup, groups:                       \
       * after accounts */

/* Raises the soft limit of open files to the hard one: every connection
 * costs one. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Connections held at once: the open file limit less the reserve, or
 * cfg's max_connections when that is lower and not 0. */
static long conn_limit(const chat_config_t *cfg, int listeners)
{
    struct rlimit rl = {0};
    long reserve = FD_RESERVE + (long)listeners * CHAT_LISTENER_LINGER;
    long cap = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > (rlim_t)reserve)
        cap = rl.rlim_cur == RLIM_INFINITY ? LONG_MAX
                                           : (long)rl.rlim_cur - reserve;
    if (cfg->max_connections && cfg->max_connections < cap)
        cap = cfg->max_connections;
    rt_log(cap ? RT_LOG_INFO : RT_LOG_ERROR, "main",
           "event=limits nofile=%llu reserve=%ld max_connections=%ld",
           (unsigned long long)rl.rlim_cur, reserve, cap);
    return cap;
}

/* A listening socket on host:port with SO_REUSEPORT. Returns the fd or a
 * negative errno. */
static int listen_socket(const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, fd;

    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0)
        len = sizeof(struct sockaddr_in);
    else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0)
        len = sizeof(struct sockaddr_in6);
    else
        return -EINVAL;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* accepted sockets inherit TCP_NODELAY: no setsockopt per connection */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Binds n sockets to the same address; the first one fixes the port when
 * port 0 was asked for. Returns the port, or a negative errno. */
static int bind_all(const chat_config_t *cfg, int *fds, int n)
{
    uint16_t port = cfg->listen_port;

    for (int i = 0; i < n; i++) {
        fds[i] = listen_socket(cfg->listen_host, port);
        if (fds[i] < 0) {
            int err = fds[i];
            while (i-- > 0)
                close(fds[i]);
            return err;
        }
        if (i == 0)
            port = bound_port(fds[0]);
    }
    return port;
}

/* SIGTERM: listeners stop and their connections close with 1001; wait
 * for them within the grace, then stop the tree. */
static void stop_listeners(rt_system_t *sys, int n, uint32_t grace_ms)
{
    rt_port_t *port = rt_port_new(sys);
    char name[32];
    int waiting = 0;

    for (int i = 0; i < n && port; i++) {
        snprintf(name, sizeof(name), "listener.%d", i);
        rt_id_t id = rt_whereis(sys, name);
        if (!id)
            continue;
        rt_port_monitor(port, id);
        if (rt_send_copy(sys, id, CHAT_LISTENER_STOP, NULL, 0) == 0)
            waiting++;
    }
    while (port && waiting > 0) {
        rt_msg_t *m = rt_port_recv(port, (int)grace_ms);
        if (!m)
            break;
        if (m->type == RT_MSG_DOWN)
            waiting--;
        rt_msg_free(m);
    }
    if (port)
        rt_port_free(port);
    for (uint32_t t = 0; t < grace_ms; t += 10) {
        if (atomic_load(&chat_conn_live) <= 0)
            break;
        usleep(10000); /* main waits; no scheduler sleeps here */
    }
    rt_log(RT_LOG_INFO, "main", "event=drained connections_left=%ld",
           atomic_load(&chat_conn_live));
}

static int run(chat_config_t *cfg, chat_db_t *db)
{
    rt_config_t rc = {.schedulers = (int)cfg->schedulers,
                      .mailbox_limit = cfg->mailbox_limit};
    chat_accounts_args_t acc = {.cfg = cfg, .db = db};
    static chat_listener_args_t la[MAX_LISTENERS];
    static rt_child_spec_t kids[MAX_LISTENERS + 3 + NCHAT];
    static chat_shell_args_t shell;
    static char names[MAX_LISTENERS][24];
    int fds[MAX_LISTENERS], err = 0, sig;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
    signal(SIGPIPE, SIG_IGN);

    rt_system_t *sys = rt_system_start(&rc, &err);
    if (!sys) {
        fprintf(stderr, "parleyd: runtime: %s\n", rt_strerror(err));
        return 1;
    }
    int n = rt_system_schedulers(sys);
    if (n > MAX_LISTENERS)
        n = MAX_LISTENERS;
    int port = bind_all(cfg, fds, n);
    if (port < 0) {
        fprintf(stderr,
                "parleyd: cannot listen on %s:%u: %s: choose another "
                "address with --listen\n",
                cfg->listen_host, cfg->listen_port, strerror(-port));
        rt_system_stop(sys);
        return 1;
    }
    long max_conns = conn_limit(cfg, n);
    if ((err = chat_shell_open(&shell, cfg, db, n - 1)) < 0) {
        for (int i = 0; i < n; i++)
            close(fds[i]);
        rt_system_stop(sys);
        return err == -EINVAL ? 2 : 1;
    }

    kids[0] = (rt_child_spec_t){.name = "store",
                                .behaviour = &chat_store_behaviour,
                                .arg = db,
                                .restart = RT_PERMANENT};
    kids[1] = (rt_child_spec_t){.name = "accounts",
                                .behaviour = &chat_accounts_behaviour,
                                .arg = &acc,
                                .restart = RT_PERMANENT};
    chat_sessions_setup(cfg, db);
    kids[2] = (rt_child_spec_t){.name = CHAT_SESSIONS_NAME,
                                .behaviour = &chat_sessions_sup_behaviour,
                                .arg = &chat_sessions_spec,
                                .restart = RT_PERMANENT,
                                .is_supervisor = true};
    kids[3] = (rt_child_spec_t){.name = CHAT_PRESENCE_NAME,
                                .behaviour = &chat_presence_behaviour,
                                .arg = db,
                                .restart = RT_PERMANENT};
    kids[4] = (rt_child_spec_t){.name = CHAT_PRUNER_NAME,
                                .behaviour = &chat_pruner_behaviour,
                                .arg = (void *)cfg,
                                .restart = RT_PERMANENT};
    chat_groups_setup(cfg, db);
    kids[5] = (rt_child_spec_t){.name = CHAT_GROUPS_SUP_NAME,
                                .behaviour = &chat_groups_sup_behaviour,
                                .arg = &chat_groups_spec,
                                .restart = RT_PERMANENT,
                                .is_supervisor = true};
    kids[6] = (rt_child_spec_t){.name = CHAT_GROUPS_NAME,
                                .behaviour = &chat_group_router_behaviour,
                                .restart = RT_PERMANENT};
    for (int i = 0; i < n; i++) {
        chat_listener_args_init(&la[i], cfg, fds[i], i);
        la[i].max_conns = max_conns;
        snprintf(names[i], sizeof(names[i]), "listener.%d", i);
        kids[2 + NCHAT + i] =
            (rt_child_spec_t){.name = names[i],
                              .behaviour = &chat_listener_behaviour,
                              .arg = &la[i],
                              .restart = RT_TRANSIENT,
                              .pinned = true,
                              .pin = i};
    }
    kids[n + 2 + NCHAT] = (rt_child_spec_t){.name = "shell",
                                            .behaviour = &chat_shell_behaviour,
                                            .arg = &shell,
                                            .restart = RT_PERMANENT,
                                            .pinned = true,
                                            .pin = shell.pin};
    rt_sup_spec_t spec = {.name = "root",
                          .strategy = RT_ONE_FOR_ONE,
                          .intensity = 10,
                          .period_ms = 10000,
                          .children = kids,
                          .nchildren = (size_t)n + 3 + NCHAT};
    rt_id_t root = rt_sup_start(sys, &spec, &err);
    if (!root) {
        fprintf(stderr, "parleyd: cannot start: %s\n", rt_strerror(err));
        rt_system_stop(sys);
        chat_shell_close(&shell);
        return 1;
    }
    rt_log(RT_LOG_INFO, "main", "event=started listeners=%d port=%d data=%s", n,
           port, cfg->data_dir);
    printf("listening %s:%d\n", cfg->listen_host, port);
    fflush(stdout);

    while (sigwait(&set, &sig) != 0)
        ;
    rt_log(RT_LOG_INFO, "main", "event=stopping signal=%d", sig);
    stop_listeners(sys, n, CHAT_CFG(cfg, shutdown_grace_ms));
    for (int i = 0; i < n; i++)
        close(fds[i]);
    rt_sup_stop(sys, root, 10000);
    rt_system_stop(sys);
    chat_shell_close(&shell);
    rt_log(RT_LOG_INFO, "main", "event=stopped");
    return 0;
}

int main(int argc, char **argv)
{
    chat_config_t cfg;
    chat_db_t *db;
    sigset_t set;

    /* SIGTERM and SIGINT wait for run()'s sigwait from the first moment:
     * one that came while the store was opening used to kill the process
     * outright instead of stopping it cleanly. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    int rc = chat_config_load(&cfg, argc, argv);
    if (rc == CHAT_CONFIG_HELP)
        return 0;
    if (rc < 0)
        return 2;
    rt_log_set_level((rt_log_level_t)cfg.log_level);
    if (sodium_init() < 0) {
        fprintf(stderr, "parleyd: libsodium failed to initialise\n");
        return 1;
    }
    raise_nofile();
    if ((rc = chat_db_open(cfg.data_dir, cfg.map_size, &db)) < 0) {
        fprintf(stderr,
                "parleyd: cannot open the store in %s: %s: check --data "
                "and its permissions\n",
                cfg.data_dir, strerror(-rc));
        return 1;
    }
    if (strcmp(cfg.sync, "nosync") == 0 && chat_db_set_sync(db, false) < 0) {
        chat_db_close(db);
        return 1;
    }
    rc = run(&cfg, db);
    chat_db_close(db);
    return rc;
}
