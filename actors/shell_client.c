/*
 * actors/shell_client.c - parley-shell, the operator's remote shell.
 *
 *   parley-shell [--data DIR | --socket PATH | --tcp HOST:PORT --token T]
 *                [--json] [-c COMMAND]
 *
 * Attaches to a running parleyd (see actors/shell.h for the protocol),
 * sends one command per line and shows the JSON lines of the answer:
 * formatted for people by default, as they are with --json. Without -c
 * it reads commands with libedit: history in ~/.parley_shell_history and
 * completion of command names with Tab.
 *
 * Exit status: 0 when every command ended with "done", 1 when one ended
 * with "error", 2 for bad arguments or when the server cannot be reached.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>
#include <jansson.h>

#include "shell_help.h"

#define LINE_MAX_BYTES (1 << 20) /* one answer line */
#define HISTORY_FILE   ".parley_shell_history"
#define HISTORY_LINES  1000

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2 };

typedef struct opts {
    const char *socket_path;
    const char *tcp;
    const char *token;
    const char *command;
    bool json;
    char path_buf[300];
} opts_t;

typedef struct session {
    const opts_t *o;
    int fd;
    char *buf; /* bytes read and not yet used */
    size_t len, cap;
    bool table_open; /* a table header was printed for this command */
    char table[16];
} session_t;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

/* ---- connecting ---------------------------------------------------------- */

static int connect_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "parley-shell: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int err = errno;
        fprintf(stderr, "parley-shell: cannot attach to %s: %s\n", path,
                strerror(err));
        fprintf(stderr, "  hint: %s\n",
                err == ENOENT || err == ECONNREFUSED
                    ? "is parleyd running with this data directory? give "
                      "--data DIR or --socket PATH"
                : err == EACCES ? "run parley-shell as the server's user"
                                : "check the path");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int connect_tcp(const char *spec)
{
    char host[128];
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int fd = -1, rc;

    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host)) {
        fprintf(stderr, "parley-shell: --tcp wants HOST:PORT, not %s\n", spec);
        return -1;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
        fprintf(stderr, "parley-shell: %s: %s\n", spec, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        fprintf(stderr,
                "parley-shell: cannot connect to %s: %s\n  hint: is [shell] "
                "tcp set to this address in parley.conf?\n",
                spec, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

/* ---- lines ------------------------------------------------------------- */

static int send_line(session_t *s, const char *line)
{
    size_t n = strlen(line), off = 0;
    char *buf = malloc(n + 1);

    if (!buf)
        return -1;
    memcpy(buf, line, n);
    buf[n++] = '\n';
    while (off < n) {
        ssize_t w = send(s->fd, buf + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR && !interrupted)
            continue;
        if (w <= 0) {
            free(buf);
            return -1;
        }
        off += (size_t)w;
    }
    free(buf);
    return 0;
}

/* The next line of the answer, NUL-ended in *out (valid until the next
 * call). Returns 1, 0 at the end of the stream, -1 on error or Ctrl-C. */
static int read_line(session_t *s, char **out)
{
    static char *line;

    for (;;) {
        char *nl = s->len ? memchr(s->buf, '\n', s->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - s->buf);
            free(line);
            line = malloc(n + 1);
            if (!line)
                return -1;
            memcpy(line, s->buf, n);
            line[n] = '\0';
            memmove(s->buf, nl + 1, s->len - n - 1);
            s->len -= n + 1;
            *out = line;
            return 1;
        }
        if (s->len == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8192;
            char *b;
            if (cap > LINE_MAX_BYTES || !(b = realloc(s->buf, cap)))
                return -1;
            s->buf = b;
            s->cap = cap;
        }
        ssize_t r = read(s->fd, s->buf + s->len, s->cap - s->len);
        if (r < 0 && errno == EINTR && !interrupted)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        s->len += (size_t)r;
    }
}

/* ---- formatting for people ------------------------------------------------
 */

static const char *str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static long long num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_real(v) ? (long long)json_real_value(v)
                           : (long long)json_integer_value(v);
}

static void print_time(long long ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];

    if (ms <= 0) {
        printf("-");
        return;
    }
    localtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s", buf);
}

/* Any value on one line: objects as key=value pairs. */
static void print_value(json_t *v)
{
    const char *key;
    json_t *item;
    size_t i;
    bool first = true;

    if (json_is_string(v)) {
        printf("%s", json_string_value(v));
    } else if (json_is_object(v)) {
        json_object_foreach(v, key, item)
        {
            printf("%s%s=", first ? "" : "  ", key);
            print_value(item);
            first = false;
        }
    } else if (json_is_array(v)) {
        printf("[");
        json_array_foreach(v, i, item)
        {
            printf("%s", i ? " " : "");
            print_value(item);
        }
        printf("]");
    } else if (json_is_real(v)) {
        printf("%.3g", json_real_value(v));
    } else {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        printf("%s", t ? t : "?");
        free(t);
    }
}

static void print_status(json_t *st)
{
    json_t *scheds = json_object_get(st, "schedulers"), *s, *kinds, *v;
    json_t *store = json_object_get(st, "store"),
           *a = json_object_get(st, "actors");
    long long up = num(st, "uptime_s");
    const char *k;
    size_t i;

    printf("parleyd %s  pid %lld  up %lldd %02lld:%02lld:%02lld\n",
           str(st, "version"), num(st, "pid"), up / 86400, up / 3600 % 24,
           up / 60 % 60, up % 60);
    printf("schedulers  ");
    json_array_foreach(scheds, i, s)
    {
        printf(
            "%s#%lld %3.0f%% busy, runq %lld", i ? " | " : "", num(s, "index"),
            100 * json_real_value(json_object_get(s, "busy")), num(s, "runq"));
    }
    printf("\nconnections %lld\n", num(st, "connections"));
    printf("actors      %lld live (spawned %lld, crashed %lld):",
           num(a, "live"), num(a, "spawned"), num(a, "crashed"));
    kinds = json_object_get(a, "by_kind");
    json_object_foreach(kinds, k, v)
    {
        printf(" %s %lld", k, (long long)json_integer_value(v));
    }
    printf("\nmessages    %lld/s (mailbox refusals %lld)\n",
           num(st, "messages_per_s"), num(st, "mailbox_full"));
    printf("store       %lld commits/s, %lld writes/s, %.1f writes/commit "
           "(%lld commits, %lld writes in all)\n",
           num(store, "commits_per_s"), num(store, "writes_per_s"),
           json_real_value(json_object_get(store, "writes_per_commit")),
           num(store, "commits"), num(store, "writes"));
}

static void print_actor(json_t *a)
{
    const char *key;
    json_t *v;

    printf("actor %lld (%s)\n", num(a, "id"), str(a, "kind"));
    json_object_foreach(a, key, v)
    {
        if (!strcmp(key, "id") || !strcmp(key, "kind"))
            continue;
        printf("  %-14s ", key);
        print_value(v);
        printf("\n");
    }
}

static void print_node(json_t *n)
{
    int depth = (int)num(n, "depth");

    printf("%*s", depth * 2, "");
    if (json_object_get(n, "count")) {
        printf("%s x%lld (ids %lld..%lld) mailbox %lld\n", str(n, "kind"),
               num(n, "count"), num(n, "first"), num(n, "last"),
               num(n, "mailbox"));
        return;
    }
    printf("%s %lld", str(n, "kind"), num(n, "id"));
    if (*str(n, "summary"))
        printf(" [%s]", str(n, "summary"));
    printf(" mailbox %lld restarts %lld\n", num(n, "mailbox"),
           num(n, "restarts"));
}

/* Prints a table's header once per command. */
static void table(session_t *s, const char *name, const char *header)
{
    if (s->table_open && !strcmp(s->table, name))
        return;
    s->table_open = true;
    snprintf(s->table, sizeof(s->table), "%s", name);
    printf("%s\n", header);
}

static void print_trace(json_t *t)
{
    long long at = num(t, "at");
    time_t sec = (time_t)(at / 1000);
    struct tm tm;
    char buf[16];

    localtime_r(&sec, &tm);
    strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
    printf("%s.%03lld %s %lld %s %-5s %s\n", buf, at % 1000, str(t, "kind"),
           num(t, "actor"), *str(t, "user") ? str(t, "user") : "-",
           str(t, "event"), str(t, "text"));
}

static void print_help_entry(const char *usage, const char *summary,
                             const char *text)
{
    if (text && *text)
        printf("%s\n  %s\n\n%s\n", usage, summary, text);
    else
        printf("  %-34s %s\n", usage, summary);
}

/* One answer line for people. Returns 1 for done, -1 for error, 0 for a
 * line that does not end the command. */
static int show(session_t *s, json_t *o)
{
    const char *key = NULL;
    json_t *v = NULL;

    json_object_foreach(o, key, v)
    {
        break;
    }
    if (!key)
        return 0;
    if (!strcmp(key, "done")) {
        if (json_is_string(v) || json_is_object(v)) {
            print_value(v);
            printf("\n");
        }
        return 1;
    }
    if (!strcmp(key, "error")) {
        fflush(stdout);
        fprintf(stderr, "error: %s (%s)\n", str(v, "msg"), str(v, "code"));
        if (*str(v, "hint"))
            fprintf(stderr, "  hint: %s\n", str(v, "hint"));
        return -1;
    }
    if (!strcmp(key, "progress")) {
        printf("... %s\n", json_string_value(v));
    } else if (!strcmp(key, "status")) {
        print_status(v);
    } else if (!strcmp(key, "actor")) {
        print_actor(v);
    } else if (!strcmp(key, "node")) {
        print_node(v);
    } else if (!strcmp(key, "trace")) {
        print_trace(v);
    } else if (!strcmp(key, "row")) {
        table(s, "row",
              "      ID KIND            MAILBOX    HANDLED RESTARTS "
              " PARENT SCHED");
        printf("%8lld %-15s %7lld %10lld %8lld %7lld %5lld\n", num(v, "id"),
               str(v, "kind"), num(v, "mailbox"), num(v, "handled"),
               num(v, "restarts"), num(v, "parent"), num(v, "scheduler"));
    } else if (!strcmp(key, "fault")) {
        table(s, "fault",
              "POINT                ACTION  P      COUNT  AFTER "
              "DELAY     HITS  FIRED");
        printf("%-20s %-7s %-6.3g %5lld %6lld %5lld %8lld %6lld\n",
               str(v, "name"), str(v, "action"),
               json_real_value(json_object_get(v, "probability")),
               num(v, "count"), num(v, "after"), num(v, "delay_ms"),
               num(v, "hits"), num(v, "fired"));
    } else if (!strcmp(key, "user")) {
        printf("user %s (uid %lld), created ", str(v, "name"), num(v, "uid"));
        print_time(num(v, "created"));
        if (json_is_true(json_object_get(v, "blocked"))) {
            printf(", BLOCKED since ");
            print_time(num(v, "blocked_since"));
        }
        printf("\n");
    } else if (!strcmp(key, "device")) {
        table(s, "device",
              "  DEVICE NAME           ONLINE     CONN  SESSION "
              "UNDELIVERED LAST SEEN           OLDEST UNDELIVERED");
        printf("%8lld %-14s %-6s %8lld %8lld %11lld ", num(v, "id"),
               str(v, "name"),
               json_is_true(json_object_get(v, "online")) ? "yes" : "no",
               num(v, "conn"), num(v, "session"), num(v, "undelivered"));
        print_time(num(v, "last_seen"));
        printf(" ");
        print_time(num(v, "oldest_undelivered"));
        printf("\n");
    } else if (!strcmp(key, "config")) {
        json_t *rt = json_object_get(v, "runtime");
        printf("%-34s = %s%s\n", str(v, "key"), str(v, "value"),
               json_is_true(rt) ? "  (runtime)" : "");
    } else if (!strcmp(key, "help")) {
        print_help_entry(str(v, "usage"), str(v, "summary"), str(v, "text"));
    } else {
        printf("%s: ", key);
        print_value(v);
        printf("\n");
    }
    return 0;
}

/* ---- one command ------------------------------------------------------- */

static int attach(session_t *s)
{
    const opts_t *o = s->o;
    char *line;

    s->len = 0;
    s->fd = o->tcp ? connect_tcp(o->tcp) : connect_unix(o->socket_path);
    if (s->fd < 0)
        return -1;
    if (!o->tcp)
        return 0;
    char auth[300];
    snprintf(auth, sizeof(auth), "auth %s", o->token ? o->token : "");
    if (send_line(s, auth) < 0 || read_line(s, &line) <= 0) {
        fprintf(stderr, "parley-shell: the server closed the connection\n");
        goto fail;
    }
    json_t *j = json_loads(line, 0, NULL);
    if (j && json_object_get(j, "done")) {
        json_decref(j);
        return 0; /* authenticated */
    }
    if (j && !o->json)
        show(s, j);
    else if (j)
        puts(line);
    json_decref(j);
fail:
    close(s->fd);
    s->fd = -1;
    return -1;
}

static void detach(session_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Shows the lines of one answer. Returns EXIT_OK or EXIT_ERROR after its
 * last line, or -1 when the stream ended (or Ctrl-C came) before it. */
static int read_answer(session_t *s)
{
    char *line;

    while (read_line(s, &line) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j || !json_is_object(j)) {
            fprintf(stderr, "parley-shell: not a JSON object: %s\n", line);
            json_decref(j);
            continue;
        }
        int end = s->o->json ? 0 : show(s, j);
        if (s->o->json) {
            puts(line);
            if (json_object_get(j, "done"))
                end = 1;
            else if (json_object_get(j, "error"))
                end = -1;
        }
        json_decref(j);
        fflush(stdout);
        if (end)
            return end > 0 ? EXIT_OK : EXIT_ERROR;
    }
    return -1;
}

/* Sends one command and shows its answer. Returns EXIT_OK, EXIT_ERROR, or
 * EXIT_USAGE when the server cannot be reached or went away. */
static int run_command(session_t *s, const char *cmd)
{
    int rc;

    if (s->fd < 0 && attach(s) < 0)
        return EXIT_USAGE;
    s->table_open = false;
    interrupted = 0;
    if (send_line(s, cmd) < 0) {
        /* the server may have said why it closed: a refusal */
        if ((rc = read_answer(s)) >= 0)
            return rc;
        detach(s);
        if (attach(s) < 0 || send_line(s, cmd) < 0)
            return EXIT_USAGE;
    }
    if ((rc = read_answer(s)) >= 0)
        return rc;
    detach(s); /* a half-read answer cannot be resumed */
    if (interrupted) {
        fprintf(stderr, "interrupted\n");
        return EXIT_ERROR;
    }
    fprintf(stderr, "parley-shell: the server closed the connection\n");
    return EXIT_USAGE;
}

/* ---- help, completion, the interactive loop ------------------------------
 */

static void local_help(const char *name)
{
    if (name) {
        const chat_shell_help_t *h = chat_shell_help_find(name);
        if (!h) {
            fprintf(stderr, "error: no command is named \"%s\"\n", name);
            return;
        }
        print_help_entry(h->usage, h->summary, h->text);
        return;
    }
    printf("Commands (help COMMAND for more; quit or Ctrl-D to leave):\n");
    for (const chat_shell_help_t *h = chat_shell_help; h->name; h++)
        print_help_entry(h->usage, h->summary, NULL);
}

/* Words that may follow a command's name. */
static const char *const *subwords(const char *cmd)
{
    static const char *const fault[] = {"list", "arm", "disarm", NULL};
    static const char *const config[] = {"get", "set", NULL};
    static const char *const trace[] = {"user", "actor", NULL};
    static const char *const log[] = {"level", NULL};
    static const char *const kill[] = {"kill", "crash", "shutdown", NULL};
    static const char *const none[] = {NULL};

    if (!strcmp(cmd, "fault"))
        return fault;
    if (!strcmp(cmd, "config"))
        return config;
    if (!strcmp(cmd, "trace"))
        return trace;
    if (!strcmp(cmd, "log"))
        return log;
    if (!strcmp(cmd, "kill"))
        return kill;
    return none;
}

static const char *const *complete_words;
static bool complete_commands;

static char *complete_next(const char *text, int state)
{
    static size_t i;
    size_t n = strlen(text);

    if (state == 0)
        i = 0;
    if (complete_commands) {
        while (chat_shell_help[i].name) {
            const char *w = chat_shell_help[i++].name;
            if (!strncmp(w, text, n))
                return strdup(w);
        }
        return NULL;
    }
    while (complete_words[i]) {
        const char *w = complete_words[i++];
        if (!strncmp(w, text, n))
            return strdup(w);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    char first[32];
    int i = 0, j;

    while (i < start && rl_line_buffer[i] == ' ')
        i++;
    rl_attempted_completion_over = 1; /* no file names */
    if (i >= start) {
        complete_commands = true;
        return rl_completion_matches(text, complete_next);
    }
    for (j = 0; i < start && rl_line_buffer[i] != ' ' && j < 31; i++, j++)
        first[j] = rl_line_buffer[i];
    first[j] = '\0';
    complete_commands = false;
    complete_words = !strcmp(first, "help") ? NULL : subwords(first);
    if (!complete_words) {
        complete_commands = true;
        return rl_completion_matches(text, complete_next);
    }
    return rl_completion_matches(text, complete_next);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static int interactive(session_t *s)
{
    char hist[512];
    const char *home = getenv("HOME");
    int last = EXIT_OK;

    snprintf(hist, sizeof(hist), "%s/%s", home ? home : ".", HISTORY_FILE);
    rl_readline_name = "parley-shell";
    rl_attempted_completion_function = complete;
    stifle_history(HISTORY_LINES);
    read_history(hist);
    if (attach(s) < 0)
        return EXIT_USAGE;
    printf("parley-shell: attached to %s. `help` lists the commands.\n",
           s->o->tcp ? s->o->tcp : s->o->socket_path);
    for (;;) {
        char *raw = readline("parley> ");
        if (!raw)
            break;
        char *cmd = trim(raw);
        if (*cmd)
            add_history(cmd);
        if (!*cmd) {
        } else if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit")) {
            free(raw);
            break;
        } else if (!strncmp(cmd, "help", 4) && (!cmd[4] || cmd[4] == ' ') &&
                   !s->o->json) {
            local_help(cmd[4] ? trim(cmd + 4) : NULL);
        } else {
            last = run_command(s, cmd);
        }
        free(raw);
    }
    write_history(hist);
    detach(s);
    return last == EXIT_USAGE ? EXIT_USAGE : EXIT_OK;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: parley-shell [--data DIR | --socket PATH | --tcp "
               "HOST:PORT --token T]\n"
               "                    [--json] [-c COMMAND]\n\n"
               "Attaches to a running parleyd. By default the socket is\n"
               "./data/parley.sock (the server's default data directory).\n\n"
               "  --data DIR       the server's data directory\n"
               "  --socket PATH    the server's shell socket\n"
               "  --tcp HOST:PORT  the loopback port of [shell] tcp\n"
               "  --token T        its [shell] token (or PARLEY_SHELL_TOKEN)\n"
               "  --json           print the server's JSON lines as they are\n"
               "  -c COMMAND       run one command and exit: 0 done, 1 error,\n"
               "                   2 cannot attach\n"
               "  -h, --help       this text; `parley-shell -c help` lists "
               "the commands\n");
}

static int parse_args(opts_t *o, int argc, char **argv)
{
    const char *data = "./data";

    o->token = getenv("PARLEY_SHELL_TOKEN");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(EXIT_OK);
        } else if (!strcmp(a, "--json")) {
            o->json = true;
            takes = false;
        } else if (!v && (!strcmp(a, "--data") || !strcmp(a, "--socket") ||
                          !strcmp(a, "--tcp") || !strcmp(a, "--token") ||
                          !strcmp(a, "-c"))) {
            fprintf(stderr, "parley-shell: %s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--data")) {
            data = v;
        } else if (!strcmp(a, "--socket")) {
            o->socket_path = v;
        } else if (!strcmp(a, "--tcp")) {
            o->tcp = v;
        } else if (!strcmp(a, "--token")) {
            o->token = v;
        } else if (!strcmp(a, "-c")) {
            o->command = v;
        } else {
            fprintf(stderr,
                    "parley-shell: unknown argument \"%s\": see "
                    "parley-shell --help\n",
                    a);
            return -1;
        }
        i += takes;
    }
    if (o->tcp && (!o->token || !*o->token)) {
        fprintf(stderr, "parley-shell: --tcp needs --token (or "
                        "PARLEY_SHELL_TOKEN): the [shell] token of "
                        "parley.conf\n");
        return -1;
    }
    if (!o->socket_path) {
        snprintf(o->path_buf, sizeof(o->path_buf), "%s/parley.sock", data);
        o->socket_path = o->path_buf;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o = {0};
    session_t s = {.o = &o, .fd = -1};
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART */
    int rc;

    if (parse_args(&o, argc, argv) < 0)
        return EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGINT, &sa, NULL);
    if (o.command) {
        char *cmd = strdup(o.command);
        if (!cmd)
            return EXIT_USAGE;
        char *t = trim(cmd);
        if (!o.json && (!strcmp(t, "help") || !strncmp(t, "help ", 5))) {
            local_help(t[4] ? trim(t + 4) : NULL);
            rc = EXIT_OK;
        } else {
            rc = run_command(&s, t);
        }
        free(cmd);
        detach(&s);
        free(s.buf);
        return rc;
    }
    rc = interactive(&s);
    free(s.buf);
    return rc;
}
