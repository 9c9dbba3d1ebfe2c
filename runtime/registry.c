/*
 * registry.c - names (strings) and keys (64 bits) for actors.
 *
 * One lock guards three maps: name hash -> entry chain, key -> entry, and
 * actor id -> the chain of that actor's entries, so an actor's death
 * removes all its names in one visit. A dying actor only takes the lock if
 * CTL_REG says it ever registered, so the million actors of a benchmark
 * that never register pay nothing. Lookups check liveness as well, so a
 * name never resolves to a dead actor even in the instant before its
 * death is processed.
 */
#include "rt_internal.h"

#include <string.h>

typedef struct reg_entry {
    char *name; /* NULL for a key */
    uint64_t key;
    rt_id_t id;
    struct reg_entry *next_same_hash;
    struct reg_entry *next_of_actor;
} reg_entry_t;

struct rt_registry {
    uv_mutex_t lock;
    rt_map_t names;  /* hash(name) -> reg_entry_t * (chained) */
    rt_map_t keys;   /* key -> reg_entry_t * */
    rt_map_t owners; /* id -> reg_entry_t * (chained by actor) */
};

static uint64_t hash_name(const char *s)
{
    /* FNV-1a, then forced non-zero since 0 means "empty" in rt_map */
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    return h ? h : 1;
}

int rt__registry_init(rt_system_t *sys)
{
    sys->reg = calloc(1, sizeof(*sys->reg));
    if (!sys->reg)
        return RT_ENOMEM;
    uv_mutex_init(&sys->reg->lock);
    return 0;
}

static void free_entries(rt_map_t *m, bool names)
{
    for (uint32_t i = 0; i < m->cap; i++) {
        reg_entry_t *e = (reg_entry_t *)(uintptr_t)m->e[i].val;
        while (m->e[i].key && e) {
            reg_entry_t *n = names ? e->next_same_hash : NULL;
            free(e->name);
            free(e);
            e = n;
        }
    }
}

void rt__registry_free(rt_system_t *sys)
{
    struct rt_registry *r = sys->reg;
    if (!r)
        return;
    free_entries(&r->names, true);
    free_entries(&r->keys, false);
    rt_map_free(&r->names);
    rt_map_free(&r->keys);
    rt_map_free(&r->owners);
    uv_mutex_destroy(&r->lock);
    free(r);
    sys->reg = NULL;
}

/* Unlinks e from its owner's chain. Lock held. */
static void unlink_owner(struct rt_registry *r, reg_entry_t *e)
{
    uint64_t v;
    if (!rt_map_get(&r->owners, e->id, &v))
        return;
    reg_entry_t *head = (reg_entry_t *)(uintptr_t)v;
    if (head == e) {
        if (e->next_of_actor)
            rt_map_put(&r->owners, e->id,
                       (uint64_t)(uintptr_t)e->next_of_actor);
        else
            rt_map_del(&r->owners, e->id, NULL);
        return;
    }
    for (reg_entry_t *p = head; p->next_of_actor; p = p->next_of_actor) {
        if (p->next_of_actor == e) {
            p->next_of_actor = e->next_of_actor;
            return;
        }
    }
}

static reg_entry_t **find_name(struct rt_registry *r, const char *name,
                               uint64_t h, reg_entry_t **head)
{
    uint64_t v = 0;
    rt_map_get(&r->names, h, &v);
    *head = (reg_entry_t *)(uintptr_t)v;
    reg_entry_t **pp = head;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next_same_hash;
    return pp;
}

/* Takes *pp, found by find_name() with head pointer *headp, out of its hash
 * chain. Lock held. */
static void unchain_name(struct rt_registry *r, uint64_t h, reg_entry_t **headp,
                         reg_entry_t **pp)
{
    reg_entry_t *e = *pp;
    *pp = e->next_same_hash;
    if (pp != headp)
        return;
    if (*headp)
        rt_map_put(&r->names, h, (uint64_t)(uintptr_t)*headp);
    else
        rt_map_del(&r->names, h, NULL);
}

/* Removes a name entry found by find_name(). Lock held. */
static void drop_name(struct rt_registry *r, uint64_t h, reg_entry_t **headp,
                      reg_entry_t **pp)
{
    reg_entry_t *e = *pp;
    unchain_name(r, h, headp, pp);
    unlink_owner(r, e);
    free(e->name);
    free(e);
}

static bool alive(rt_system_t *sys, rt_id_t id)
{
    rt_actor_t *a = rt__acquire(sys, id);
    if (!a)
        return false;
    rt__release(sys, a);
    return true;
}

static int add(rt_system_t *sys, const char *name, uint64_t key, rt_id_t id)
{
    struct rt_registry *r = sys->reg;
    rt_actor_t *a = rt__acquire(sys, id);
    if (!a)
        return RT_ENOPROC;
    reg_entry_t *e = calloc(1, sizeof(*e));
    if (!e || (name && !(e->name = strdup(name)))) {
        free(e);
        rt__release(sys, a);
        return RT_ENOMEM;
    }
    e->key = key;
    e->id = id;

    int rc = 0;
    uv_mutex_lock(&r->lock);
    if (name) {
        uint64_t h = hash_name(name);
        reg_entry_t *head;
        reg_entry_t **pp = find_name(r, name, h, &head);
        if (*pp && alive(sys, (*pp)->id)) {
            rc = RT_EEXIST;
            goto out;
        }
        if (*pp)
            drop_name(r, h, &head, pp);
        find_name(r, name, h, &head);
        e->next_same_hash = head;
        rc = rt_map_put(&r->names, h, (uint64_t)(uintptr_t)e);
    } else {
        uint64_t v;
        if (rt_map_get(&r->keys, key, &v)) {
            reg_entry_t *old = (reg_entry_t *)(uintptr_t)v;
            if (alive(sys, old->id)) {
                rc = RT_EEXIST;
                goto out;
            }
            unlink_owner(r, old);
            free(old);
        }
        rc = rt_map_put(&r->keys, key, (uint64_t)(uintptr_t)e);
    }
    if (rc == 0) {
        uint64_t v = 0;
        rt_map_get(&r->owners, id, &v);
        e->next_of_actor = (reg_entry_t *)(uintptr_t)v;
        rc = rt_map_put(&r->owners, id, (uint64_t)(uintptr_t)e);
        /* the dying actor checks this bit before taking the lock */
        atomic_fetch_or_explicit(&a->ctl, CTL_REG, memory_order_relaxed);
    }
out:
    uv_mutex_unlock(&r->lock);
    if (rc < 0) {
        free(e->name);
        free(e);
    }
    rt__release(sys, a);
    return rc;
}

int rt_register(rt_system_t *sys, const char *name, rt_id_t id)
{
    if (!name || !*name)
        return RT_EINVAL;
    return add(sys, name, 0, id);
}

/* Keys are stored mixed with a constant, so that 0, which the maps reserve
 * for "empty", is a valid key; the one key that mixes to 0 is refused. */
#define KEY_SALT UINT64_C(0x5851f42d4c957f2d)

int rt_register_key(rt_system_t *sys, uint64_t key, rt_id_t id)
{
    if ((key ^ KEY_SALT) == 0)
        return RT_EINVAL;
    return add(sys, NULL, key ^ KEY_SALT, id);
}

int rt_unregister(rt_system_t *sys, const char *name)
{
    struct rt_registry *r = sys->reg;
    uint64_t h = hash_name(name);
    uv_mutex_lock(&r->lock);
    reg_entry_t *head;
    reg_entry_t **pp = find_name(r, name, h, &head);
    int rc = *pp ? 0 : RT_ENOENT;
    if (*pp)
        drop_name(r, h, &head, pp);
    uv_mutex_unlock(&r->lock);
    return rc;
}

int rt_unregister_key(rt_system_t *sys, uint64_t key)
{
    struct rt_registry *r = sys->reg;
    uint64_t v;
    key ^= KEY_SALT;
    uv_mutex_lock(&r->lock);
    bool found = rt_map_del(&r->keys, key, &v);
    if (found) {
        reg_entry_t *e = (reg_entry_t *)(uintptr_t)v;
        unlink_owner(r, e);
        free(e);
    }
    uv_mutex_unlock(&r->lock);
    return found ? 0 : RT_ENOENT;
}

rt_id_t rt_whereis(rt_system_t *sys, const char *name)
{
    struct rt_registry *r = sys->reg;
    uint64_t h = hash_name(name);
    uv_mutex_lock(&r->lock);
    reg_entry_t *head;
    reg_entry_t **pp = find_name(r, name, h, &head);
    rt_id_t id = *pp ? (*pp)->id : 0;
    uv_mutex_unlock(&r->lock);
    return id && alive(sys, id) ? id : 0;
}

rt_id_t rt_whereis_key(rt_system_t *sys, uint64_t key)
{
    struct rt_registry *r = sys->reg;
    uint64_t v;
    key ^= KEY_SALT;
    uv_mutex_lock(&r->lock);
    rt_id_t id =
        rt_map_get(&r->keys, key, &v) ? ((reg_entry_t *)(uintptr_t)v)->id : 0;
    uv_mutex_unlock(&r->lock);
    return id && alive(sys, id) ? id : 0;
}

void rt__unregister_all(rt_system_t *sys, rt_actor_t *a)
{
    if (!(atomic_load_explicit(&a->ctl, memory_order_relaxed) & CTL_REG))
        return;
    struct rt_registry *r = sys->reg;
    uv_mutex_lock(&r->lock);
    uint64_t v;
    if (rt_map_del(&r->owners, a->id, &v)) {
        reg_entry_t *e = (reg_entry_t *)(uintptr_t)v;
        while (e) {
            reg_entry_t *next = e->next_of_actor;
            e->next_of_actor = NULL;
            if (e->name) {
                uint64_t h = hash_name(e->name);
                reg_entry_t *head;
                reg_entry_t **pp = find_name(r, e->name, h, &head);
                if (*pp == e)
                    unchain_name(r, h, &head, pp);
                free(e->name);
            } else {
                rt_map_del(&r->keys, e->key, NULL);
            }
            free(e);
            e = next;
        }
    }
    uv_mutex_unlock(&r->lock);
}
