/*
 * actors/shell_cmds.c - the shell's commands. See shell_help.c for what
 * each one shows, and shell.h for the protocol.
 *
 * No command blocks the scheduler: a scan of all actors runs on the
 * thread pool, an actor's detail comes back as a message, and every wait
 * has a deadline (a SHELL_TICK). Reads of the store are the short
 * read-only transactions that the accounts actor uses too.
 */
#include "shell_int.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "accounts.h"
#include "conn.h"
#include "group.h"
#include "log.h"
#include "mailbox.h"
#include "trace.h"

#define DETAIL_TIMEOUT_MS  1000
#define STORE_TIMEOUT_MS   5000
#define RESTART_WAIT_MS    3000
#define RESTART_POLL_MS    50
#define DRAIN_PROGRESS_MS  500
#define TRACE_DEFAULT_S    10
#define TRACE_MAX_S        3600
#define ACTORS_DEFAULT_TOP 20
#define FOLD_OVER          4  /* children of one kind shown one by one */
#define TREE_MAX_DETAILS   64 /* supervisors asked for their summary */

static const char *const no_hint = "";

/* ---- helpers ------------------------------------------------------------ */

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_id(shell_t *sh, const char *s, rt_id_t *id)
{
    uint64_t v;

    if (parse_u64(s, &v) && v > 0) {
        *id = v;
        return true;
    }
    shell_failf(sh, "usage", "actor ids are positive numbers: see `actors`",
                "\"%s\" is not an actor id", s);
    return false;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static json_t *id_array(const rt_id_t *ids, uint32_t n)
{
    json_t *a = json_array();

    for (uint32_t i = 0; i < n && i < 16; i++)
        json_array_append_new(a, json_integer((json_int_t)ids[i]));
    return a;
}

static const char *kind_of(shell_t *sh, rt_id_t id)
{
    rt_actor_info_t ai;

    return rt_actor_info(sh->sys, id, &ai) == 0 ? ai.kind : NULL;
}

static json_t *info_json(const rt_actor_info_t *ai)
{
    return json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:i}", "id", (json_int_t)ai->id,
                     "kind", ai->kind ? ai->kind : "?", "parent",
                     (json_int_t)ai->parent, "mailbox", (json_int_t)ai->mailbox,
                     "handled", (json_int_t)ai->handled, "restarts",
                     (json_int_t)ai->restarts, "scheduler", ai->scheduler);
}

/* ---- scans of all actors, on the thread pool --------------------------- */

/* Shared by the pool thread and the shell: whoever lets go last frees
 * it, so a shell that leaves mid-scan costs nothing. acq_rel on the count
 * makes the worker's writes visible to the one that frees or reads. */
typedef struct scan {
    _Atomic int refs;
    rt_system_t *sys;
    size_t n, cap;
    rt_actor_info_t *v;
    bool oom;
} scan_t;

static void scan_release(scan_t *s)
{
    if (s &&
        atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        free(s->v);
        free(s);
    }
}

static int scan_one(const rt_actor_info_t *ai, void *ctx)
{
    scan_t *s = ctx;

    if (ai->is_port)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        rt_actor_info_t *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return s->oom = true, 1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = *ai;
    return 0;
}

static int scan_work(void *arg)
{
    scan_t *s = arg;

    rt_actor_foreach(s->sys, scan_one, s);
    int rc = s->oom ? -ENOMEM : 0;
    scan_release(s);
    return rc;
}

/* Starts a scan for the running command; its result comes back as
 * RT_MSG_WORK_DONE with tag = the command's seq. *slot holds the shell's
 * reference until scan_take() or scan_drop(). */
static int scan_start(shell_t *sh, scan_t **slot)
{
    scan_t *s = calloc(1, sizeof(*s));

    if (!s)
        return RT_ENOMEM;
    atomic_init(&s->refs, 2);
    s->sys = sh->sys;
    int rc = rt_work(sh->self, scan_work, s, sh->run.seq);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *slot = s;
    return 0;
}

/* The scan of this WORK_DONE message when it belongs to the running
 * command, else NULL (and nothing is touched). */
static scan_t *scan_take(shell_t *sh, const rt_msg_t *msg, scan_t *pending)
{
    rt_work_done_t d;

    if (msg->type != RT_MSG_WORK_DONE || !pending)
        return NULL;
    memcpy(&d, msg->data, sizeof(d));
    if (d.tag != sh->run.seq || d.arg != pending)
        return NULL;
    return pending;
}

/* ---- status ------------------------------------------------------------- */

typedef struct status_run {
    scan_t *scan;
} status_run_t;

static json_t *kinds_json(const scan_t *s)
{
    json_t *o = json_object();

    for (size_t i = 0; i < s->n; i++) {
        const char *k = s->v[i].kind ? s->v[i].kind : "?";
        json_t *c = json_object_get(o, k);
        json_object_set_new(o, k,
                            json_integer(c ? json_integer_value(c) + 1 : 1));
    }
    return o;
}

static json_t *scheds_json(shell_t *sh)
{
    json_t *a = json_array();
    int n = rt_system_schedulers(sh->sys);

    for (int i = 0; i < n; i++) {
        rt_sched_info_t si;
        if (rt_sched_info(sh->sys, i, &si) < 0)
            continue;
        json_array_append_new(a, json_pack("{s:i,s:f,s:i,s:I,s:I}", "index",
                                           si.index, "busy", si.busy, "runq",
                                           (int)si.runq, "messages",
                                           (json_int_t)si.messages, "steals",
                                           (json_int_t)si.steals));
    }
    return a;
}

static void status_msg(shell_t *sh, rt_msg_t *msg)
{
    status_run_t *r = sh->run.data;
    scan_t *s = scan_take(sh, msg, r->scan);
    chat_shell_args_t *a = sh->args;
    rt_system_info_t si;
    uint64_t commits, writes;

    if (!s)
        return;
    rt_system_info(sh->sys, &si);
    chat_store_counters(&commits, &writes);
    uint64_t cps =
        atomic_load_explicit(&a->commits_per_s, memory_order_relaxed);
    uint64_t wps = atomic_load_explicit(&a->writes_per_s, memory_order_relaxed);
    json_t *st = json_pack(
        "{s:s,s:I,s:i,s:o,s:I,s:{s:I,s:I,s:I,s:I,s:o},s:I,s:I,"
        "s:{s:I,s:I,s:I,s:I,s:f}}",
        "version", CHAT_VERSION, "uptime_s",
        (json_int_t)((uv_hrtime() / 1000000 - a->started_ms) / 1000), "pid",
        (int)getpid(), "schedulers", scheds_json(sh), "connections",
        (json_int_t)atomic_load(&chat_conn_live), "actors", "live",
        (json_int_t)si.live_actors, "spawned", (json_int_t)si.spawned, "exited",
        (json_int_t)si.exited, "crashed", (json_int_t)si.crashed, "by_kind",
        kinds_json(s), "messages_per_s",
        (json_int_t)atomic_load_explicit(&a->msgs_per_s, memory_order_relaxed),
        "mailbox_full", (json_int_t)si.mailbox_full, "store", "commits_per_s",
        (json_int_t)cps, "writes_per_s", (json_int_t)wps, "commits",
        (json_int_t)commits, "writes", (json_int_t)writes, "writes_per_commit",
        cps ? (double)wps / (double)cps : 0.0);
    shell_emit(sh, json_pack("{s:o}", "status", st), false);
    shell_done(sh, NULL);
}

static void scan_end(shell_t *sh)
{
    scan_t **slot = sh->run.data; /* every scan command's data starts so */
    scan_release(*slot);
    *slot = NULL;
}

static void cmd_status(shell_t *sh, int argc, char **argv)
{
    status_run_t *r = calloc(1, sizeof(*r));

    if (!r)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = status_msg;
    sh->run.on_end = scan_end;
    if (scan_start(sh, &r->scan) < 0)
        shell_fail(sh, "internal", "cannot reach the thread pool",
                   "try again; see the server's log");
}

/* ---- actors [KIND] [N] ---------------------------------------------------
 */

typedef struct actors_run {
    scan_t *scan;
    char kind[32];
    size_t top;
} actors_run_t;

static int busier(const void *x, const void *y)
{
    const rt_actor_info_t *a = x, *b = y;

    if (a->mailbox != b->mailbox)
        return a->mailbox < b->mailbox ? 1 : -1;
    if (a->handled != b->handled)
        return a->handled < b->handled ? 1 : -1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void actors_msg(shell_t *sh, rt_msg_t *msg)
{
    actors_run_t *r = sh->run.data;
    scan_t *s = scan_take(sh, msg, r->scan);
    size_t n = 0, shown = 0;

    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        if (!r->kind[0] || (s->v[i].kind && !strcmp(s->v[i].kind, r->kind)))
            s->v[n++] = s->v[i];
    qsort(s->v, n, sizeof(*s->v), busier);
    for (size_t i = 0; i < n && shown < r->top; i++, shown++)
        shell_emit(sh, json_pack("{s:o}", "row", info_json(&s->v[i])), false);
    shell_done(sh, json_pack("{s:I,s:I}", "matched", (json_int_t)n, "shown",
                             (json_int_t)shown));
}

static void cmd_actors(shell_t *sh, int argc, char **argv)
{
    actors_run_t *r = calloc(1, sizeof(*r));
    uint64_t top = ACTORS_DEFAULT_TOP;

    if (!r)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = actors_msg;
    sh->run.on_end = scan_end;
    for (int i = 1; i < argc; i++) {
        if (parse_u64(argv[i], &top) && top > 0)
            continue;
        snprintf(r->kind, sizeof(r->kind), "%s", argv[i]);
    }
    r->top = (size_t)top;
    if (scan_start(sh, &r->scan) < 0)
        shell_fail(sh, "internal", "cannot reach the thread pool",
                   "try again; see the server's log");
}

/* ---- actor ID ------------------------------------------------------------ */

static json_t *detail_json(shell_t *sh, const rt_actor_detail_t *d)
{
    json_t *o = info_json(&d->info);
    const char *pk = d->info.parent ? kind_of(sh, d->info.parent) : NULL;

    json_object_set_new(o, "parent_kind", json_string(pk ? pk : ""));
    json_object_set_new(o, "summary", json_string(d->summary));
    json_object_set_new(o, "nlinks", json_integer(d->nlinks));
    json_object_set_new(o, "links", id_array(d->links, d->nlinks));
    json_object_set_new(o, "nmonitors", json_integer(d->nmonitors));
    json_object_set_new(o, "monitors", id_array(d->monitors, d->nmonitors));
    json_object_set_new(o, "nmonitored_by", json_integer(d->nmonitored_by));
    json_object_set_new(o, "nchildren", json_integer(d->nchildren));
    json_object_set_new(o, "children", id_array(d->children, d->nchildren));
    return o;
}

typedef struct actor_run {
    rt_actor_info_t info;
} actor_run_t;

static void actor_msg(shell_t *sh, rt_msg_t *msg)
{
    actor_run_t *r = sh->run.data;

    if (msg->type == RT_MSG_DETAIL && msg->ref == sh->run.seq &&
        msg->size >= sizeof(rt_actor_detail_t)) {
        rt_actor_detail_t d;
        memcpy(&d, msg->data, sizeof(d));
        shell_emit(sh, json_pack("{s:o}", "actor", detail_json(sh, &d)), false);
        return shell_done(sh, NULL);
    }
    if (msg->type != SHELL_TICK)
        return;
    /* no answer: show what can be read from outside, then say so */
    if (rt_actor_info(sh->sys, r->info.id, &r->info) < 0)
        return shell_failf(sh, "gone", "it may have been restarted: see `tree`",
                           "actor %llu exited before it answered",
                           (unsigned long long)r->info.id);
    shell_emit(sh, json_pack("{s:o}", "actor", info_json(&r->info)), false);
    shell_failf(sh, "timeout",
                "it is busy or stuck: watch its mailbox with `actors`, or "
                "`kill` it",
                "actor %llu did not answer within %d ms",
                (unsigned long long)r->info.id, DETAIL_TIMEOUT_MS);
}

static void cmd_actor(shell_t *sh, int argc, char **argv)
{
    actor_run_t *r;
    rt_id_t id;

    if (argc != 2)
        return shell_fail(sh, "usage", "usage: actor ID",
                          "find ids with `actors` or `tree`");
    if (!parse_id(sh, argv[1], &id))
        return;
    if (!(r = calloc(1, sizeof(*r))))
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = actor_msg;
    if (rt_actor_info(sh->sys, id, &r->info) < 0)
        return shell_failf(sh, "not_found", "list live actors with `actors`",
                           "no live actor has id %llu", (unsigned long long)id);
    if (rt_actor_detail(sh->sys, id, sh->id, sh->run.seq) < 0 ||
        shell_tick(sh, DETAIL_TIMEOUT_MS) < 0)
        shell_fail(sh, "internal", "cannot ask the actor", "try again");
}

/* ---- tree ---------------------------------------------------------------- */

typedef struct tree_run {
    scan_t *scan; /* kept after it arrives: the tree is drawn from it */
    scan_t *done;
    int asked, answered;
    struct {
        rt_id_t id;
        char summary[256];
    } sup[TREE_MAX_DETAILS];
} tree_run_t;

static int by_parent(const void *x, const void *y)
{
    const rt_actor_info_t *a = x, *b = y;

    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    int k = strcmp(a->kind ? a->kind : "", b->kind ? b->kind : "");
    if (k)
        return k;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The children of `parent` in the sorted scan: [*lo, *hi). */
static void children_of(const scan_t *s, rt_id_t parent, size_t *lo, size_t *hi)
{
    size_t l = 0, h = s->n;

    while (l < h) {
        size_t m = (l + h) / 2;
        if (s->v[m].parent < parent)
            l = m + 1;
        else
            h = m;
    }
    *lo = l;
    while (l < s->n && s->v[l].parent == parent)
        l++;
    *hi = l;
}

static const char *sup_summary(const tree_run_t *r, rt_id_t id)
{
    for (int i = 0; i < r->asked; i++)
        if (r->sup[i].id == id)
            return r->sup[i].summary;
    return "";
}

static void tree_node(shell_t *sh, const tree_run_t *r,
                      const rt_actor_info_t *ai, int depth);

/* Children of one parent, grouped by kind (the scan is sorted so): a
 * group over FOLD_OVER is one line. */
static void tree_children(shell_t *sh, const tree_run_t *r, rt_id_t parent,
                          int depth)
{
    const scan_t *s = r->done;
    size_t lo, hi;

    if (depth > 32)
        return;
    children_of(s, parent, &lo, &hi);
    for (size_t i = lo; i < hi;) {
        size_t j = i;
        uint64_t mailbox = 0;
        while (j < hi && !strcmp(s->v[j].kind ? s->v[j].kind : "",
                                 s->v[i].kind ? s->v[i].kind : "")) {
            mailbox += s->v[j].mailbox;
            j++;
        }
        if (parent == 0 && s->v[i].kind &&
            !strcmp(s->v[i].kind, "supervisor")) {
            /* roots, drawn already by tree_draw */
        } else if (j - i > FOLD_OVER) {
            shell_emit(sh,
                       json_pack("{s:{s:i,s:s,s:I,s:I,s:I,s:I}}", "node",
                                 "depth", depth, "kind", s->v[i].kind, "count",
                                 (json_int_t)(j - i), "mailbox",
                                 (json_int_t)mailbox, "first",
                                 (json_int_t)s->v[i].id, "last",
                                 (json_int_t)s->v[j - 1].id),
                       false);
        } else {
            for (size_t k = i; k < j; k++)
                tree_node(sh, r, &s->v[k], depth);
        }
        i = j;
    }
}

static void tree_node(shell_t *sh, const tree_run_t *r,
                      const rt_actor_info_t *ai, int depth)
{
    json_t *n = info_json(ai);

    json_object_set_new(n, "depth", json_integer(depth));
    json_object_set_new(n, "summary", json_string(sup_summary(r, ai->id)));
    shell_emit(sh, json_pack("{s:o}", "node", n), false);
    tree_children(sh, r, ai->id, depth + 1);
}

static bool alive_in(const scan_t *s, rt_id_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].id == id)
            return true;
    return false;
}

static void tree_draw(shell_t *sh)
{
    tree_run_t *r = sh->run.data;
    const scan_t *s = r->done;
    size_t roots = 0;

    /* roots: supervisors without a live parent; the rest of the
     * unparented actors are folded by kind under "(unsupervised)" */
    for (size_t i = 0; i < s->n; i++) {
        const rt_actor_info_t *ai = &s->v[i];
        if (ai->parent && alive_in(s, ai->parent))
            continue;
        if (ai->kind && strcmp(ai->kind, "supervisor") == 0) {
            tree_node(sh, r, ai, 0);
            roots++;
        }
    }
    tree_children(sh, r, 0, 0);
    shell_done(sh, json_pack("{s:I,s:I}", "actors", (json_int_t)s->n, "roots",
                             (json_int_t)roots));
}

static void tree_msg(shell_t *sh, rt_msg_t *msg)
{
    tree_run_t *r = sh->run.data;
    scan_t *s = scan_take(sh, msg, r->scan);

    if (s) {
        r->done = s;
        r->scan = NULL;
        qsort(s->v, s->n, sizeof(*s->v), by_parent);
        for (size_t i = 0; i < s->n && r->asked < TREE_MAX_DETAILS; i++) {
            if (!s->v[i].kind || strcmp(s->v[i].kind, "supervisor"))
                continue;
            r->sup[r->asked].id = s->v[i].id;
            if (rt_actor_detail(sh->sys, s->v[i].id, sh->id,
                                sh->run.seq << 8 | (uint64_t)r->asked) == 0)
                r->asked++;
        }
        if (r->asked == 0 || shell_tick(sh, DETAIL_TIMEOUT_MS) < 0)
            tree_draw(sh);
        return;
    }
    if (msg->type == RT_MSG_DETAIL && (msg->ref >> 8) == sh->run.seq &&
        msg->size >= sizeof(rt_actor_detail_t)) {
        int i = (int)(msg->ref & 0xff);
        const rt_actor_detail_t *d = (const rt_actor_detail_t *)msg->data;
        if (i < r->asked)
            memcpy(r->sup[i].summary, d->summary, sizeof(r->sup[i].summary));
        if (++r->answered == r->asked)
            tree_draw(sh);
        return;
    }
    if (msg->type == SHELL_TICK && r->done)
        tree_draw(sh);
}

static void tree_end(shell_t *sh)
{
    tree_run_t *r = sh->run.data;

    scan_release(r->scan);
    scan_release(r->done);
}

static void cmd_tree(shell_t *sh, int argc, char **argv)
{
    tree_run_t *r = calloc(1, sizeof(*r));

    if (!r)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = tree_msg;
    sh->run.on_end = tree_end;
    if (scan_start(sh, &r->scan) < 0)
        shell_fail(sh, "internal", "cannot reach the thread pool",
                   "try again; see the server's log");
}

/* ---- kill ID [REASON] ---------------------------------------------------- */

typedef struct kill_run {
    scan_t *scan;
    rt_actor_info_t victim;
    uint64_t mon;
    int reason;
    bool down, supervised;
    uint64_t waited_ms;
    int exit_reason;
} kill_run_t;

static void kill_finish(shell_t *sh, json_t *restarted, const char *note)
{
    kill_run_t *r = sh->run.data;

    shell_done(sh, json_pack("{s:I,s:s,s:s,s:I,s:o,s:s}", "killed",
                             (json_int_t)r->victim.id, "kind", r->victim.kind,
                             "exit", rt_strerror(r->exit_reason), "supervisor",
                             (json_int_t)r->victim.parent, "restarted",
                             restarted, "note", note));
}

/* The victim's successor: same supervisor and kind, another id and a
 * higher restart count. (Ids are unique but not ordered: a slot freed
 * earlier can give a new actor a smaller id.) */
static void kill_look(shell_t *sh, scan_t *s)
{
    kill_run_t *r = sh->run.data;

    for (size_t i = 0; i < s->n; i++) {
        const rt_actor_info_t *ai = &s->v[i];
        if (ai->parent == r->victim.parent && ai->id != r->victim.id &&
            ai->kind && !strcmp(ai->kind, r->victim.kind) &&
            ai->restarts > r->victim.restarts) {
            shell_progress(sh, "supervisor %llu restarted it as %llu",
                           (unsigned long long)ai->parent,
                           (unsigned long long)ai->id);
            return kill_finish(sh, json_integer((json_int_t)ai->id),
                               "restarted by its supervisor");
        }
    }
    r->waited_ms += RESTART_POLL_MS;
    if (r->waited_ms >= RESTART_WAIT_MS)
        return kill_finish(sh, json_null(),
                           "its supervisor did not restart it within 3 s: "
                           "a temporary or transient child, or restart "
                           "intensity exceeded (see the server's log)");
    shell_tick(sh, RESTART_POLL_MS);
}

static void kill_msg(shell_t *sh, rt_msg_t *msg)
{
    kill_run_t *r = sh->run.data;
    scan_t *s = scan_take(sh, msg, r->scan);

    if (s) {
        r->scan = NULL;
        kill_look(sh, s);
        scan_release(s);
        return;
    }
    if (msg->type == RT_MSG_DOWN && msg->ref == r->mon) {
        rt_exit_info_t x;
        memcpy(&x, msg->data, sizeof(x));
        r->down = true;
        r->exit_reason = x.reason;
        shell_progress(sh, "actor %llu exited: %s",
                       (unsigned long long)r->victim.id, rt_strerror(x.reason));
        if (!r->supervised)
            return kill_finish(sh, json_null(),
                               "not supervised: nothing restarts it (a "
                               "connection's client reconnects)");
        shell_tick(sh, RESTART_POLL_MS);
        return;
    }
    if (msg->type != SHELL_TICK)
        return;
    if (!r->down) {
        r->waited_ms += RESTART_WAIT_MS;
        return shell_failf(sh, "still_alive",
                           "it traps exits: use `kill ID kill`, which "
                           "cannot be trapped",
                           "actor %llu is still alive %d ms after the signal",
                           (unsigned long long)r->victim.id, RESTART_WAIT_MS);
    }
    if (scan_start(sh, &r->scan) < 0)
        kill_finish(sh, json_null(), "cannot scan for the restart");
}

static void kill_end(shell_t *sh)
{
    kill_run_t *r = sh->run.data;

    scan_release(r->scan);
    if (!r->down && r->mon)
        rt_demonitor(sh->self, r->mon);
}

static bool parse_reason(const char *s, int *reason)
{
    if (!s || !strcmp(s, "kill"))
        *reason = RT_EKILLED;
    else if (!strcmp(s, "crash"))
        *reason = RT_ECRASH;
    else if (!strcmp(s, "shutdown"))
        *reason = RT_SHUTDOWN;
    else
        return false;
    return true;
}

static void cmd_kill(shell_t *sh, int argc, char **argv)
{
    kill_run_t *r;
    rt_id_t id;
    int reason;

    if (argc < 2 || argc > 3)
        return shell_fail(sh, "usage", "usage: kill ID [kill|crash|shutdown]",
                          "find ids with `actors` or `tree`");
    if (!parse_id(sh, argv[1], &id))
        return;
    if (!parse_reason(argc > 2 ? argv[2] : NULL, &reason))
        return shell_failf(sh, "usage", "give kill, crash or shutdown",
                           "unknown reason \"%s\"", argv[2]);
    if (!(r = calloc(1, sizeof(*r))))
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = kill_msg;
    sh->run.on_end = kill_end;
    r->reason = reason;
    if (rt_actor_info(sh->sys, id, &r->victim) < 0)
        return shell_failf(sh, "not_found", "list live actors with `actors`",
                           "no live actor has id %llu", (unsigned long long)id);
    const char *pk = r->victim.parent ? kind_of(sh, r->victim.parent) : NULL;
    if (!r->victim.parent && r->victim.kind &&
        !strcmp(r->victim.kind, "supervisor"))
        return shell_fail(sh, "refused",
                          "this is the root supervisor: killing it stops "
                          "the whole server",
                          "use `shutdown` for an orderly stop");
    if (id == sh->id)
        return shell_fail(sh, "refused", "this is your own shell",
                          "close the shell instead");
    r->supervised = pk && !strcmp(pk, "supervisor");
    r->mon = rt_monitor(sh->self, id);
    rt_log(RT_LOG_WARN, "shell",
           "id=%llu event=kill target=%llu kind=%s "
           "reason=\"%s\"",
           (unsigned long long)sh->id, (unsigned long long)id, r->victim.kind,
           rt_strerror(reason));
    if (rt_kill(sh->sys, id, reason) < 0)
        return shell_failf(sh, "gone", "it may have been restarted: see `tree`",
                           "actor %llu exited before the signal",
                           (unsigned long long)id);
    shell_progress(sh, "sent %s to %s %llu", argc > 2 ? argv[2] : "kill",
                   r->victim.kind, (unsigned long long)id);
    shell_tick(sh, RESTART_WAIT_MS);
}

/* ---- accounts: user, disconnect, block, unblock, invite ------------------ */

/* A look at a user's devices, for `user`, `disconnect` and `block`.
 * Connections are not registered: each device's session (registered
 * under its device id) is asked for its summary, which counts its
 * connections and names the first, and a kick goes to the session, which
 * passes it on to each connection. */
enum { LOOK_SHOW, LOOK_DISCONNECT, LOOK_BLOCK };

#define LOOK_MAX_ASKED 0xffff /* the device index fits a detail's ref */

typedef struct look_dev {
    json_t *line;   /* its "device" line so far, for LOOK_SHOW */
    rt_id_t sess;   /* its live session, or 0 */
    rt_id_t conn;   /* the session's first connection, or 0 */
    uint32_t conns; /* connections the session holds */
} look_dev_t;

/* Must be the first member of the run's data: look_msg reads it there. */
typedef struct user_look {
    shell_t *sh;
    chat_user_rec_t rec;
    int mode;
    char name[PROTO_MAX_NAME + 1];
    look_dev_t *v;
    size_t n, cap, asked, answered;
} user_look_t;

static uint64_t look_ref(shell_t *sh, size_t i)
{
    return sh->run.seq << 16 | (uint64_t)i;
}

/* A device now: its session with the session's mailbox depth, and its
 * stored mailbox: entries appended and not yet acknowledged, and the time
 * of the oldest of them. The session's summary comes later. */
static int look_device(uint64_t devid, const chat_device_rec_t *d, void *ctx)
{
    user_look_t *u = ctx;
    shell_t *sh = u->sh;
    rt_actor_info_t si = {0};
    chat_mhead_t head = {0};
    uint64_t oldest_seq = 0, oldest_ts = 0;

    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 4;
        look_dev_t *v = realloc(u->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        u->v = v;
        u->cap = cap;
    }
    look_dev_t *ld = &u->v[u->n++];
    memset(ld, 0, sizeof(*ld));
    rt_id_t sess = rt_whereis_key(sh->sys, devid);
    if (sess && rt_actor_info(sh->sys, sess, &si) == 0)
        ld->sess = sess;
    if (ld->sess && u->n - 1 < LOOK_MAX_ASKED &&
        rt_actor_detail(sh->sys, sess, sh->id, look_ref(sh, u->n - 1)) == 0)
        u->asked++;
    if (u->mode != LOOK_SHOW)
        return 0;
    chat_db_mhead(sh->args->db, devid, &head);
    chat_db_mbox_oldest(sh->args->db, devid, &oldest_seq, &oldest_ts);
    ld->line = json_pack(
        "{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)devid, "name",
        d->name, "created", (json_int_t)d->created, "last_seen",
        (json_int_t)d->last_seen, "session_mailbox", (json_int_t)si.mailbox,
        "undelivered",
        (json_int_t)(head.last > head.acked ? head.last - head.acked : 0),
        "acked", (json_int_t)head.acked, "oldest_undelivered",
        (json_int_t)oldest_ts);
    return 0;
}

/* Every session answered, or the wait ended: emit, kick, finish. */
static void look_finish(shell_t *sh, user_look_t *u)
{
    int online = 0, kicked = 0;

    for (size_t i = 0; i < u->n; i++) {
        look_dev_t *ld = &u->v[i];
        online += ld->sess != 0;
        if (u->mode != LOOK_SHOW && ld->sess &&
            rt_send_copy(sh->sys, ld->sess, CHAT_CONN_KICK, NULL, 0) == 0)
            kicked += (int)ld->conns;
        if (!ld->line)
            continue;
        json_object_set_new(ld->line, "online", json_boolean(ld->sess));
        json_object_set_new(ld->line, "conn", json_integer(ld->conn));
        json_object_set_new(ld->line, "session", json_integer(ld->sess));
        shell_emit(sh, json_pack("{s:o}", "device", ld->line), false);
        ld->line = NULL;
    }
    if (u->mode == LOOK_SHOW)
        return shell_done(sh, json_pack("{s:i,s:i,s:s}", "devices", (int)u->n,
                                        "online", online, "presence",
                                        online ? "online" : "offline"));
    if (u->mode == LOOK_BLOCK)
        return shell_done(sh, json_pack("{s:s,s:i}", "blocked", u->name,
                                        "disconnected", kicked));
    rt_log(RT_LOG_INFO, "shell", "id=%llu event=disconnect user=%s closed=%d",
           (unsigned long long)sh->id, u->name, kicked);
    shell_done(sh,
               json_pack("{s:s,s:i}", "user", u->name, "disconnected", kicked));
}

static void look_msg(shell_t *sh, rt_msg_t *msg)
{
    user_look_t *u = sh->run.data;

    if (msg->type == RT_MSG_DETAIL && (msg->ref >> 16) == sh->run.seq &&
        msg->size >= sizeof(rt_actor_detail_t)) {
        const rt_actor_detail_t *d = (const rt_actor_detail_t *)msg->data;
        size_t i = (size_t)(msg->ref & 0xffff);
        const char *p = strstr(d->summary, " conns=");
        unsigned n;
        unsigned long long id;
        if (i < u->n && p && sscanf(p, " conns=%u conn=%llu", &n, &id) == 2) {
            u->v[i].conns = n;
            u->v[i].conn = (rt_id_t)id;
        }
        if (++u->answered == u->asked)
            look_finish(sh, u);
        return;
    }
    if (msg->type == SHELL_TICK)
        look_finish(sh, u);
}

static void look_end(shell_t *sh)
{
    user_look_t *u = sh->run.data;

    for (size_t i = 0; i < u->n; i++)
        json_decref(u->v[i].line);
    free(u->v);
}

/* Reads the user's devices and asks their sessions; look_finish ends the
 * command. u is the run's data. */
static void look_start(shell_t *sh, user_look_t *u, int mode)
{
    sh->run.on_msg = look_msg;
    sh->run.on_end = look_end;
    u->sh = sh;
    u->mode = mode;
    if (chat_db_devices_each(sh->args->db, u->rec.uid, look_device, u) < 0)
        return shell_fail(sh, "store", "the store could not be read",
                          "see the server's log for the LMDB error");
    if (u->asked == 0 || shell_tick(sh, DETAIL_TIMEOUT_MS) < 0)
        look_finish(sh, u);
}

/* Reads the account of argv[1] into *u. Returns 0, or fails the command
 * and returns -1. */
static int find_user(shell_t *sh, int argc, char **argv, user_look_t *u)
{
    memset(u, 0, sizeof(*u));
    u->sh = sh;
    if (argc != 2) {
        shell_failf(sh, "usage", "names are case-sensitive", "usage: %s NAME",
                    argv[0]);
        return -1;
    }
    int rc = chat_db_user_get(sh->args->db, argv[1], strlen(argv[1]), &u->rec);
    if (rc == -ENOENT) {
        shell_failf(sh, "not_found", "names are case-sensitive; check it",
                    "no account is named \"%s\"", argv[1]);
        return -1;
    }
    if (rc < 0) {
        shell_fail(sh, "store", "the store could not be read",
                   "see the server's log for the LMDB error");
        return -1;
    }
    return 0;
}

static void cmd_user(shell_t *sh, int argc, char **argv)
{
    user_look_t *u = calloc(1, sizeof(*u));
    uint64_t since = 0;

    if (!u)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = u;
    if (find_user(sh, argc, argv, u) < 0)
        return;
    int blocked = chat_db_user_blocked(sh->args->db, u->rec.uid, &since);
    shell_emit(sh,
               json_pack("{s:{s:s,s:I,s:I,s:b,s:I}}", "user", "name", argv[1],
                         "uid", (json_int_t)u->rec.uid, "created",
                         (json_int_t)u->rec.created, "blocked", blocked > 0,
                         "blocked_since", (json_int_t)since),
               false);
    look_start(sh, u, LOOK_SHOW);
}

static void cmd_disconnect(shell_t *sh, int argc, char **argv)
{
    user_look_t *u = calloc(1, sizeof(*u));

    if (!u)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = u;
    if (find_user(sh, argc, argv, u) < 0)
        return;
    snprintf(u->name, sizeof(u->name), "%s", argv[1]);
    look_start(sh, u, LOOK_DISCONNECT);
}

typedef struct store_run {
    user_look_t look; /* first: a block goes on to disconnect the user */
    int64_t ref;
    uint32_t kind;
    uint64_t uid;
    char name[PROTO_MAX_NAME + 1];
    char invite[48];
} store_run_t;

static void store_msg(shell_t *sh, rt_msg_t *msg)
{
    store_run_t *r = sh->run.data;
    chat_store_done_t d;

    if (msg->type == RT_MSG_TIMEOUT && msg->ref == (uint64_t)r->ref)
        return shell_fail(sh, "timeout", "the store did not answer in 5 s",
                          "it may be overloaded: see `status` and the log");
    if (msg->type != CHAT_STORE_DONE || msg->ref != (uint64_t)r->ref)
        return;
    memcpy(&d, msg->data, sizeof(d));
    if (r->kind == CHAT_STORE_UNBLOCK_USER && d.result == -ENOENT)
        return shell_failf(sh, "not_blocked", no_hint, "\"%s\" is not blocked",
                           r->name);
    if (d.result < 0)
        return shell_fail(sh, "store", "the store write failed",
                          "see the server's log for the LMDB error");
    if (r->kind == CHAT_STORE_ADD_INVITE)
        return shell_done(
            sh,
            json_pack("{s:s,s:s}", "invite", r->invite, "registration",
                      CHAT_CFG(sh->args->cfg, registration_open) ? "open"
                                                                 : "closed"));
    if (r->kind == CHAT_STORE_UNBLOCK_USER)
        return shell_done(sh, json_pack("{s:s}", "unblocked", r->name));
    r->look.rec.uid = r->uid;
    snprintf(r->look.name, sizeof(r->look.name), "%s", r->name);
    look_start(sh, &r->look, LOOK_BLOCK);
}

/* Sends op to the store actor; its answer ends the command. */
static void store_send(shell_t *sh, store_run_t *r, const chat_store_op_t *op)
{
    rt_id_t store = rt_whereis(sh->sys, CHAT_STORE_NAME);
    rt_msg_t *m = rt_msg_new(CHAT_STORE_WRITE, sizeof(*op));

    sh->run.data = r;
    sh->run.on_msg = store_msg;
    r->kind = op->kind;
    if (!m || !store) {
        rt_msg_free(m);
        return shell_fail(sh, "unavailable", "the store actor is not running",
                          "its supervisor restarts it: try again shortly");
    }
    memcpy(m->data, op, sizeof(*op));
    r->ref = rt_request(sh->self, store, m, STORE_TIMEOUT_MS);
    if (r->ref < 0)
        shell_fail(sh, "unavailable", "the store refused the write",
                   "try again shortly");
}

static void cmd_block(shell_t *sh, int argc, char **argv)
{
    bool block = !strcmp(argv[0], "block");
    user_look_t u;
    store_run_t *r;

    if (find_user(sh, argc, argv, &u) < 0)
        return;
    if (!(r = calloc(1, sizeof(*r))))
        return shell_fail(sh, "internal", "out of memory", no_hint);
    r->uid = u.rec.uid;
    snprintf(r->name, sizeof(r->name), "%s", argv[1]);
    rt_log(RT_LOG_WARN, "shell", "id=%llu event=%s user=%s",
           (unsigned long long)sh->id, argv[0], argv[1]);
    chat_store_op_t op = {.kind = block ? CHAT_STORE_BLOCK_USER
                                        : CHAT_STORE_UNBLOCK_USER,
                          .uid = u.rec.uid,
                          .now = wall_ms()};
    store_send(sh, r, &op);
}

static void cmd_invite(shell_t *sh, int argc, char **argv)
{
    uint8_t raw[18];
    store_run_t *r = calloc(1, sizeof(*r));
    chat_store_op_t op = {.kind = CHAT_STORE_ADD_INVITE, .now = wall_ms()};

    if (!r)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(r->invite, sizeof(r->invite), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_generichash(op.token_hash, sizeof(op.token_hash),
                       (const uint8_t *)r->invite, strlen(r->invite), NULL, 0);
    rt_log(RT_LOG_INFO, "shell", "id=%llu event=invite_made",
           (unsigned long long)sh->id);
    store_send(sh, r, &op);
}

typedef struct group_look {
    shell_t *sh;
    uint32_t n;
    uint64_t min_delivered, min_read;
} group_look_t;

static void look_member(void *ctx, uint64_t uid, const chat_gmember_t *m)
{
    group_look_t *g = ctx;

    if (g->n == 0 || m->delivered < g->min_delivered)
        g->min_delivered = m->delivered;
    if (g->n == 0 || m->read < g->min_read)
        g->min_read = m->read;
    g->n++;
    shell_emit(g->sh,
               json_pack("{s:{s:s,s:I,s:b,s:I,s:I,s:I}}", "member", "user",
                         m->name, "uid", (json_int_t)uid, "admin",
                         (m->flags & CHAT_GMEMBER_ADMIN) != 0, "joined",
                         (json_int_t)m->joined, "delivered",
                         (json_int_t)m->delivered, "read", (json_int_t)m->read),
               true);
}

/* group ID: the record, each member's role and positions in the stream,
 * and whether the group's actor is in memory now. */
static void cmd_group(shell_t *sh, int argc, char **argv)
{
    chat_group_rec_t rec;
    char *end;
    uint64_t gid = argc == 2 ? strtoull(argv[1], &end, 10) : 0;

    if (!gid || *end)
        return shell_fail(sh, "usage", "usage: group ID",
                          "ID is a group id, as group.create answered");
    int rc = chat_db_group_get(sh->args->db, gid, &rec);
    if (rc == -ENOENT)
        return shell_failf(sh, "not_found", "see group.create for ids",
                           "no group %llu", (unsigned long long)gid);
    if (rc < 0)
        return shell_fail(sh, "store", "the store could not be read",
                          "see the server's log for the LMDB error");
    rt_id_t actor = rt_whereis_key(sh->sys, CHAT_GROUP_KEY(gid));
    shell_emit(sh,
               json_pack("{s:{s:I,s:s,s:I,s:I,s:i,s:I}}", "group", "gid",
                         (json_int_t)gid, "name", rec.name, "created",
                         (json_int_t)rec.created, "head", (json_int_t)rec.head,
                         "members", (int)rec.nmembers, "actor",
                         (json_int_t)actor),
               false);
    group_look_t g = {.sh = sh};
    if (chat_db_group_members(sh->args->db, gid, look_member, &g) < 0)
        return shell_fail(sh, "store", "the store could not be read",
                          "see the server's log for the LMDB error");
    shell_done(sh, json_pack("{s:I,s:i,s:I,s:I,s:b}", "gid", (json_int_t)gid,
                             "members", (int)g.n, "delivered_to_all",
                             (json_int_t)g.min_delivered, "read_by_all",
                             (json_int_t)g.min_read, "in_memory", actor != 0));
}

/* ---- trace user NAME [S] | trace actor ID [S] ---------------------------- */

typedef struct trace_run {
    uint64_t events, dropped_before;
    bool subscribed;
} trace_run_t;

static void trace_msg(shell_t *sh, rt_msg_t *msg)
{
    trace_run_t *r = sh->run.data;

    if (msg->type == CHAT_TRACE_EVENT &&
        msg->size == sizeof(chat_trace_event_t)) {
        const chat_trace_event_t *e = (const chat_trace_event_t *)msg->data;
        r->events++;
        shell_emit(sh,
                   json_pack("{s:{s:I,s:I,s:s,s:s,s:s,s:s}}", "trace", "at",
                             (json_int_t)e->at_ms, "actor",
                             (json_int_t)e->actor, "kind", e->kind, "user",
                             e->user, "event", e->event, "text", e->text),
                   true);
        return;
    }
    if (msg->type == SHELL_TICK)
        shell_done(sh,
                   json_pack("{s:I,s:I}", "events", (json_int_t)r->events,
                             "dropped",
                             (json_int_t)(sh->dropped - r->dropped_before)));
}

static void trace_end(shell_t *sh)
{
    trace_run_t *r = sh->run.data;

    if (r->subscribed)
        chat_trace_unsubscribe(sh->id);
}

static void cmd_trace(shell_t *sh, int argc, char **argv)
{
    uint64_t secs = TRACE_DEFAULT_S;
    rt_id_t actor = 0;
    const char *user = NULL;
    trace_run_t *r;

    if (argc < 3 || argc > 4 ||
        (strcmp(argv[1], "user") && strcmp(argv[1], "actor")))
        return shell_fail(sh, "usage",
                          "usage: trace user NAME [SECONDS] | trace actor ID "
                          "[SECONDS]",
                          "SECONDS is 1 to 3600, 10 by default");
    if (argc == 4 &&
        (!parse_u64(argv[3], &secs) || secs < 1 || secs > TRACE_MAX_S))
        return shell_failf(sh, "usage", "give 1 to 3600 seconds",
                           "\"%s\" is not a duration in seconds", argv[3]);
    if (!strcmp(argv[1], "actor")) {
        rt_actor_info_t ai;
        if (!parse_id(sh, argv[2], &actor))
            return;
        if (rt_actor_info(sh->sys, actor, &ai) < 0)
            return shell_failf(sh, "not_found", "list actors with `actors`",
                               "no live actor has id %llu",
                               (unsigned long long)actor);
    } else {
        chat_user_rec_t rec;
        user = argv[2];
        if (chat_db_user_get(sh->args->db, user, strlen(user), &rec) < 0)
            return shell_failf(sh, "not_found",
                               "names are case-sensitive; check it",
                               "no account is named \"%s\"", user);
    }
    if (!(r = calloc(1, sizeof(*r))))
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = trace_msg;
    sh->run.on_end = trace_end;
    r->dropped_before = sh->dropped;
    int rc = chat_trace_subscribe(sh->id, actor, user);
    if (rc < 0)
        return shell_failf(sh, "busy", "wait for another trace to end",
                           "%d traces are running already", CHAT_TRACE_MAX);
    r->subscribed = true;
    shell_progress(sh, "tracing %s %s for %llu s", argv[1], argv[2],
                   (unsigned long long)secs);
    shell_tick(sh, secs * 1000);
}

/* ---- fault list | arm | disarm ------------------------------------------- */

static const char *const fault_actions[] = {"none", "fail", "delay", "crash",
                                            "drop"};

static void fault_row(const rt_fault_info_t *fi, void *ctx)
{
    json_t *rows = ctx;

    json_array_append_new(
        rows, json_pack("{s:s,s:s,s:f,s:I,s:I,s:i,s:I,s:I}", "name", fi->name,
                        "action", fault_actions[fi->arm.action], "probability",
                        fi->arm.probability, "count", (json_int_t)fi->arm.count,
                        "after", (json_int_t)fi->arm.after, "delay_ms",
                        (int)fi->arm.delay_ms, "hits", (json_int_t)fi->hits,
                        "fired", (json_int_t)fi->fired));
}

/* Parses p=, count=, after=, delay= into *arm. */
static bool fault_opts(shell_t *sh, int argc, char **argv, rt_fault_arm_t *arm)
{
    for (int i = 4; i < argc; i++) {
        char *eq = strchr(argv[i], '='), *end;
        uint64_t v = 0;
        if (!eq)
            goto bad;
        *eq++ = '\0';
        if (!strcmp(argv[i], "p")) {
            arm->probability = strtod(eq, &end);
            if (*end || end == eq || arm->probability < 0 ||
                arm->probability > 1)
                goto bad;
        } else if (!parse_u64(eq, &v)) {
            goto bad;
        } else if (!strcmp(argv[i], "count")) {
            arm->count = v;
        } else if (!strcmp(argv[i], "after")) {
            arm->after = v;
        } else if (!strcmp(argv[i], "delay") && v <= 60000) {
            arm->delay_ms = (uint32_t)v;
        } else {
            goto bad;
        }
    }
    if (!arm->count && arm->probability == 0)
        arm->probability = 1;
    return true;
bad:
    shell_failf(sh, "usage",
                "options are p=0..1, count=N, after=N, delay=MS (<= 60000)",
                "bad fault option \"%s\"", argv[4]);
    return false;
}

static void cmd_fault(shell_t *sh, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";

    if (!strcmp(sub, "list") && argc == 2) {
        json_t *rows = json_array();
        size_t i;
        json_t *row;
        rt_fault_foreach(fault_row, rows);
        json_array_foreach(rows, i, row)
        {
            shell_emit(sh, json_pack("{s:O}", "fault", row), false);
        }
        size_t n = json_array_size(rows);
        json_decref(rows);
        return shell_done(sh, json_pack("{s:I}", "faults", (json_int_t)n));
    }
    if (!strcmp(sub, "disarm") && argc == 3) {
        if (rt_fault_disarm(argv[2]) < 0)
            return shell_failf(sh, "not_found", "see `fault list`",
                               "no fault point is named \"%s\"", argv[2]);
        rt_log(RT_LOG_WARN, "shell", "event=fault_disarm point=%s", argv[2]);
        return shell_done(sh, json_pack("{s:s}", "disarmed", argv[2]));
    }
    if (!strcmp(sub, "arm") && argc >= 4) {
        rt_fault_arm_t arm = {0};
        for (int a = 1; a < 5; a++)
            if (!strcmp(argv[3], fault_actions[a]))
                arm.action = (rt_fault_action_t)a;
        if (arm.action == RT_FAULT_NONE)
            return shell_failf(sh, "usage", "give fail, delay, crash or drop",
                               "unknown fault action \"%s\"", argv[3]);
        if (!fault_opts(sh, argc, argv, &arm))
            return;
        if (arm.action == RT_FAULT_DELAY && !arm.delay_ms)
            arm.delay_ms = 100;
        int rc = rt_fault_arm(argv[2], &arm);
        if (rc < 0)
            return shell_failf(sh, "refused", "check the name and options",
                               "cannot arm \"%s\": %s", argv[2],
                               rt_strerror(rc));
        rt_log(RT_LOG_WARN, "shell", "event=fault_arm point=%s action=%s",
               argv[2], argv[3]);
        return shell_done(sh, json_pack("{s:s,s:s,s:f,s:I,s:I,s:i}", "armed",
                                        argv[2], "action", argv[3],
                                        "probability", arm.probability, "count",
                                        (json_int_t)arm.count, "after",
                                        (json_int_t)arm.after, "delay_ms",
                                        (int)arm.delay_ms));
    }
    shell_fail(sh, "usage",
               "usage: fault list | fault arm NAME ACTION [p=P|count=N] "
               "[after=N] [delay=MS] | fault disarm NAME",
               "`help fault` explains the options");
}

/* ---- config get | set, log level --------------------------------------- */

typedef struct config_rows {
    shell_t *sh;
    int n;
} config_rows_t;

static void config_row(const char *key, bool runtime, void *ctx)
{
    config_rows_t *c = ctx;
    char value[256];

    if (chat_config_get(c->sh->args->cfg, key, value, sizeof(value)) < 0)
        return;
    c->n++;
    shell_emit(c->sh,
               json_pack("{s:{s:s,s:s,s:b}}", "config", "key", key, "value",
                         value, "runtime", runtime),
               false);
}

static void config_set(shell_t *sh, const char *key, const char *value)
{
    char old[256], now[256];
    const char *why = "";

    if (chat_config_get(sh->args->cfg, key, old, sizeof(old)) < 0)
        return shell_failf(sh, "not_found", "`config get` lists every key",
                           "no setting is named \"%s\"", key);
    int rc = chat_config_set(sh->args->cfg, key, value, &why);
    if (rc == -EPERM)
        return shell_failf(sh, "read_only",
                           "edit parley.conf and restart parleyd",
                           "\"%s\" is read at start only", key);
    if (rc < 0)
        return shell_failf(sh, "bad_value", "see config/parley.conf",
                           "%s = \"%s\": %s", key, value, why);
    chat_config_get(sh->args->cfg, key, now, sizeof(now));
    rt_log(RT_LOG_WARN, "shell",
           "event=config_set key=%s old=\"%s\" new=\"%s\"", key, old, now);
    shell_done(
        sh, json_pack("{s:s,s:s,s:s}", "key", key, "old", old, "value", now));
}

static void cmd_config(shell_t *sh, int argc, char **argv)
{
    config_rows_t c = {.sh = sh};
    char value[256];

    if (argc == 2 && !strcmp(argv[1], "get")) {
        chat_config_each(config_row, &c);
        return shell_done(sh, json_pack("{s:i}", "settings", c.n));
    }
    if (argc == 3 && !strcmp(argv[1], "get")) {
        if (chat_config_get(sh->args->cfg, argv[2], value, sizeof(value)) < 0)
            return shell_failf(sh, "not_found", "`config get` lists every key",
                               "no setting is named \"%s\"", argv[2]);
        shell_emit(sh,
                   json_pack("{s:{s:s,s:s}}", "config", "key", argv[2], "value",
                             value),
                   false);
        return shell_done(sh, NULL);
    }
    if (argc == 4 && !strcmp(argv[1], "set"))
        return config_set(sh, argv[2], argv[3]);
    shell_fail(sh, "usage", "usage: config get [KEY] | config set KEY VALUE",
               "`config get` lists the keys; those marked runtime can be set");
}

static void cmd_log(shell_t *sh, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "level") || argc > 3)
        return shell_fail(sh, "usage", "usage: log level [LEVEL]",
                          "LEVEL is debug, info, warn, error or off");
    if (argc == 2)
        return shell_done(sh, json_pack("{s:s}", "level",
                                        rt_log_level_name(rt_log_get_level())));
    if (rt_log_parse_level(argv[2]) < 0)
        return shell_failf(sh, "usage", "give debug, info, warn, error or off",
                           "unknown log level \"%s\"", argv[2]);
    config_set(sh, "log_level", argv[2]);
}

/* ---- drain, shutdown ------------------------------------------------------
 */

typedef struct drain_run {
    int stopped;
    uint64_t waited_ms;
} drain_run_t;

static void drain_msg(shell_t *sh, rt_msg_t *msg)
{
    drain_run_t *r = sh->run.data;
    long left = atomic_load(&chat_conn_live);

    if (msg->type != SHELL_TICK)
        return;
    r->waited_ms += DRAIN_PROGRESS_MS;
    if (left <= 0 ||
        r->waited_ms >=
            CHAT_CFG(sh->args->cfg, shutdown_grace_ms) + DRAIN_PROGRESS_MS)
        return shell_done(sh, json_pack("{s:i,s:I}", "listeners_stopped",
                                        r->stopped, "connections_left",
                                        (json_int_t)(left > 0 ? left : 0)));
    shell_progress(sh, "%ld connections left", left);
    shell_tick(sh, DRAIN_PROGRESS_MS);
}

static void cmd_drain(shell_t *sh, int argc, char **argv)
{
    drain_run_t *r = calloc(1, sizeof(*r));
    int n = rt_system_schedulers(sh->sys);
    char name[32];

    if (!r)
        return shell_fail(sh, "internal", "out of memory", no_hint);
    sh->run.data = r;
    sh->run.on_msg = drain_msg;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "listener.%d", i);
        rt_id_t id = rt_whereis(sh->sys, name);
        if (id && rt_send_copy(sh->sys, id, CHAT_LISTENER_STOP, NULL, 0) == 0)
            r->stopped++;
    }
    rt_log(RT_LOG_WARN, "shell", "id=%llu event=drain listeners=%d",
           (unsigned long long)sh->id, r->stopped);
    shell_progress(sh, "stopped %d listeners; %ld connections to close",
                   r->stopped, atomic_load(&chat_conn_live));
    shell_tick(sh, DRAIN_PROGRESS_MS);
}

static void cmd_shutdown(shell_t *sh, int argc, char **argv)
{
    rt_log(RT_LOG_WARN, "shell", "id=%llu event=shutdown",
           (unsigned long long)sh->id);
    shell_done(sh, json_pack("{s:s}", "shutdown", "started"));
    /* main waits for SIGTERM in sigwait() and stops in order */
    kill(getpid(), SIGTERM);
}

/* ---- help, and the table ---------------------------------------------- */

static void help_line(shell_t *sh, const chat_shell_help_t *h, bool full)
{
    shell_emit(sh,
               json_pack("{s:{s:s,s:s,s:s,s:s}}", "help", "name", h->name,
                         "usage", h->usage, "summary", h->summary, "text",
                         full ? h->text : ""),
               false);
}

static void cmd_help(shell_t *sh, int argc, char **argv)
{
    if (argc > 1) {
        const chat_shell_help_t *h = chat_shell_help_find(argv[1]);
        if (!h)
            return shell_failf(sh, "not_found", "`help` lists the commands",
                               "no command is named \"%s\"", argv[1]);
        help_line(sh, h, true);
        return shell_done(sh, NULL);
    }
    for (const chat_shell_help_t *h = chat_shell_help; h->name; h++)
        help_line(sh, h, false);
    shell_done(sh, NULL);
}

static const struct {
    const char *name;
    void (*run)(shell_t *sh, int argc, char **argv);
} commands[] = {
    {"status", cmd_status},
    {"actors", cmd_actors},
    {"actor", cmd_actor},
    {"tree", cmd_tree},
    {"kill", cmd_kill},
    {"user", cmd_user},
    {"disconnect", cmd_disconnect},
    {"block", cmd_block},
    {"unblock", cmd_block},
    {"invite", cmd_invite},
    {"group", cmd_group},
    {"trace", cmd_trace},
    {"fault", cmd_fault},
    {"config", cmd_config},
    {"log", cmd_log},
    {"drain", cmd_drain},
    {"shutdown", cmd_shutdown},
    {"help", cmd_help},
};

void shell_command(shell_t *sh, int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, argv[0]))
            return commands[i].run(sh, argc, argv);
    shell_failf(sh, "unknown_command", "`help` lists the commands",
                "no command is named \"%s\"", argv[0]);
}
