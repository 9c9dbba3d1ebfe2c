/*
 * fault.c - named fault points.
 *
 * A point is a place in the code, named like "store.commit", that a test,
 * the configuration or an operator can arm to fail, delay, crash the
 * calling actor, or drop what it handles. Disarmed, a hit is one relaxed
 * load. Armed, the decision is taken under the point's lock from its own
 * generator, seeded from the global seed and the point's name: the same
 * seed and the same order of hits at a point give the same faults, so a
 * failing run can be replayed.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rt_fault_point {
    struct rt_fault_point *next;
    char *name;
    _Atomic int armed;
    uv_mutex_t lock;
    rt_fault_arm_t arm;
    uint64_t rng;
    _Atomic uint64_t hits, fired;
};

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t points_lock;
static rt_fault_point_t *points;
static uint64_t seed;

static void init_once(void)
{
    uv_mutex_init(&points_lock);
    seed = (uint64_t)time(NULL);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t seed_for(const char *name)
{
    uint64_t h = seed;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * UINT64_C(0x100000001b3);
    return h;
}

rt_fault_point_t *rt_fault_point(const char *name)
{
    uv_once(&once, init_once);
    uv_mutex_lock(&points_lock);
    rt_fault_point_t *p;
    for (p = points; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            break;
    if (!p && (p = calloc(1, sizeof(*p)))) {
        p->name = strdup(name);
        if (!p->name) {
            free(p);
            p = NULL;
        } else {
            uv_mutex_init(&p->lock);
            p->rng = seed_for(name);
            p->next = points;
            points = p;
        }
    }
    uv_mutex_unlock(&points_lock);
    return p;
}

rt_fault_action_t rt_fault_hit(rt_fault_point_t *fp)
{
    if (!fp)
        return RT_FAULT_NONE;
    atomic_fetch_add_explicit(&fp->hits, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&fp->armed, memory_order_relaxed))
        return RT_FAULT_NONE;

    rt_fault_action_t act = RT_FAULT_NONE;
    uint32_t delay = 0;
    uv_mutex_lock(&fp->lock);
    rt_fault_arm_t *a = &fp->arm;
    if (a->action == RT_FAULT_NONE) {
        /* disarmed while we came in */
    } else if (a->after) {
        a->after--;
    } else if (a->count) {
        act = a->action;
        if (--a->count == 0) {
            a->action = RT_FAULT_NONE;
            atomic_store_explicit(&fp->armed, 0, memory_order_relaxed);
        }
    } else {
        /* 53 random bits give a uniform double in [0, 1) */
        double u = (double)(splitmix(&fp->rng) >> 11) * 0x1.0p-53;
        if (u < a->probability)
            act = a->action;
    }
    delay = a->delay_ms;
    uv_mutex_unlock(&fp->lock);

    if (act != RT_FAULT_NONE)
        atomic_fetch_add_explicit(&fp->fired, 1, memory_order_relaxed);
    if (act == RT_FAULT_DELAY && delay) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    return act;
}

int rt_fault_arm(const char *name, const rt_fault_arm_t *arm)
{
    if (!name || !arm || arm->action == RT_FAULT_NONE || arm->probability < 0 ||
        arm->probability > 1 || (!arm->count && arm->probability == 0))
        return RT_EINVAL;
    rt_fault_point_t *p = rt_fault_point(name);
    if (!p)
        return RT_ENOMEM;
    uv_mutex_lock(&p->lock);
    p->arm = *arm;
    p->rng = seed_for(p->name);
    atomic_store_explicit(&p->armed, 1, memory_order_relaxed);
    uv_mutex_unlock(&p->lock);
    return 0;
}

int rt_fault_disarm(const char *name)
{
    uv_once(&once, init_once);
    uv_mutex_lock(&points_lock);
    rt_fault_point_t *p;
    for (p = points; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            break;
    uv_mutex_unlock(&points_lock);
    if (!p)
        return RT_ENOENT;
    uv_mutex_lock(&p->lock);
    memset(&p->arm, 0, sizeof(p->arm));
    atomic_store_explicit(&p->armed, 0, memory_order_relaxed);
    uv_mutex_unlock(&p->lock);
    return 0;
}

void rt_fault_seed(uint64_t s)
{
    uv_once(&once, init_once);
    uv_mutex_lock(&points_lock);
    seed = s;
    for (rt_fault_point_t *p = points; p; p = p->next) {
        uv_mutex_lock(&p->lock);
        p->rng = seed_for(p->name);
        uv_mutex_unlock(&p->lock);
    }
    uv_mutex_unlock(&points_lock);
}

void rt_fault_foreach(void (*fn)(const rt_fault_info_t *fi, void *ctx),
                      void *ctx)
{
    uv_once(&once, init_once);
    uv_mutex_lock(&points_lock);
    for (rt_fault_point_t *p = points; p; p = p->next) {
        rt_fault_info_t fi = {.name = p->name};
        uv_mutex_lock(&p->lock);
        fi.arm = p->arm;
        uv_mutex_unlock(&p->lock);
        fi.hits = atomic_load_explicit(&p->hits, memory_order_relaxed);
        fi.fired = atomic_load_explicit(&p->fired, memory_order_relaxed);
        fn(&fi, ctx);
    }
    uv_mutex_unlock(&points_lock);
}

static int parse_action(const char *s, rt_fault_action_t *out)
{
    static const struct {
        const char *name;
        rt_fault_action_t action;
    } actions[] = {{"fail", RT_FAULT_FAIL},
                   {"delay", RT_FAULT_DELAY},
                   {"crash", RT_FAULT_CRASH},
                   {"drop", RT_FAULT_DROP}};
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        if (strcmp(s, actions[i].name) == 0) {
            *out = actions[i].action;
            return 0;
        }
    }
    return RT_EINVAL;
}

/* One entry, NAME=ACTION[:k=v...], modified in place. */
static int parse_entry(char *e, char *err, size_t errlen)
{
    char *eq = strchr(e, '=');
    if (!eq || eq == e) {
        snprintf(err, errlen, "fault entry '%s': expected NAME=ACTION", e);
        return RT_EINVAL;
    }
    *eq = '\0';
    char *rest = eq + 1;
    char *opt = strchr(rest, ':');
    if (opt)
        *opt++ = '\0';
    rt_fault_arm_t arm = {0};
    if (parse_action(rest, &arm.action) < 0) {
        snprintf(err, errlen,
                 "fault '%s': unknown action '%s' (fail, delay, crash, drop)",
                 e, rest);
        return RT_EINVAL;
    }
    while (opt && *opt) {
        char *next = strchr(opt, ':');
        if (next)
            *next++ = '\0';
        char *end = NULL;
        if (strncmp(opt, "p=", 2) == 0)
            arm.probability = strtod(opt + 2, &end);
        else if (strncmp(opt, "count=", 6) == 0)
            arm.count = strtoull(opt + 6, &end, 10);
        else if (strncmp(opt, "after=", 6) == 0)
            arm.after = strtoull(opt + 6, &end, 10);
        else if (strncmp(opt, "delay=", 6) == 0)
            arm.delay_ms = (uint32_t)strtoul(opt + 6, &end, 10);
        if (!end || *end) {
            snprintf(err, errlen,
                     "fault '%s': bad option '%s' (p=, count=, after=, "
                     "delay=)",
                     e, opt);
            return RT_EINVAL;
        }
        opt = next;
    }
    if (!arm.count && arm.probability == 0)
        arm.probability = 1.0;
    if (rt_fault_arm(e, &arm) < 0) {
        snprintf(err, errlen, "fault '%s': p must be within 0..1", e);
        return RT_EINVAL;
    }
    return 0;
}

int rt_fault_arm_spec(const char *spec, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    char *copy = strdup(spec ? spec : "");
    if (!copy)
        return RT_ENOMEM;
    int armed = 0, rc = 0;
    char *save = NULL;
    for (char *e = strtok_r(copy, ",; ", &save); e;
         e = strtok_r(NULL, ",; ", &save)) {
        if ((rc = parse_entry(e, err, errlen)) < 0)
            break;
        armed++;
    }
    free(copy);
    return rc < 0 ? rc : armed;
}
