/*
 * vec.c - the small id and reference sets actors keep for links,
 * monitors and pending requests.
 */
#include "rt_internal.h"

#include <string.h>

/* ---- small vectors ----------------------------------------------------- */

int rt__grow(void **v, uint32_t *cap, size_t elem)
{
    /* from one: most actors link or monitor one or two others */
    uint32_t ncap = *cap ? *cap * 2 : 1;
    void *nv = realloc(*v, (size_t)ncap * elem);
    if (!nv)
        return RT_ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

static int idvec_grow_big(rt_idvec_t *v)
{
    rt_map_t *m = calloc(1, sizeof(*m));
    if (!m)
        return RT_ENOMEM;
    for (uint32_t i = 0; i < v->n; i++) {
        if (rt_map_put(m, v->v[i], 1) < 0) {
            rt_map_free(m);
            free(m);
            return RT_ENOMEM;
        }
    }
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
    v->big = m;
    return 0;
}

int rt__idvec_add(rt_idvec_t *v, rt_id_t id)
{
    if (v->big)
        return rt_map_put(v->big, id, 1);
    for (uint32_t i = 0; i < v->n; i++)
        if (v->v[i] == id)
            return 0;
    if (v->n == RT_IDVEC_SMALL) {
        if (idvec_grow_big(v) < 0)
            return RT_ENOMEM;
        return rt_map_put(v->big, id, 1);
    }
    if (v->n == v->cap && rt__grow((void **)&v->v, &v->cap, sizeof(*v->v)))
        return RT_ENOMEM;
    v->v[v->n++] = id;
    return 0;
}

bool rt__idvec_del(rt_idvec_t *v, rt_id_t id)
{
    if (v->big)
        return rt_map_del(v->big, id, NULL);
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->v[i] == id) {
            v->v[i] = v->v[--v->n];
            return true;
        }
    }
    return false;
}

uint32_t rt__idvec_len(const rt_idvec_t *v)
{
    return v->big ? v->big->len : v->n;
}

void rt__idvec_each(const rt_idvec_t *v, void (*fn)(rt_id_t, void *), void *ctx)
{
    if (!v->big) {
        for (uint32_t i = 0; i < v->n; i++)
            fn(v->v[i], ctx);
        return;
    }
    for (uint32_t i = 0; i < v->big->cap; i++)
        if (v->big->e[i].key)
            fn(v->big->e[i].key, ctx);
}

void rt__idvec_free(rt_idvec_t *v)
{
    free(v->v);
    if (v->big) {
        rt_map_free(v->big);
        free(v->big);
    }
    memset(v, 0, sizeof(*v));
}

int rt__refvec_add(rt_refvec_t *v, uint64_t ref, rt_id_t id)
{
    if (v->n == v->cap && rt__grow((void **)&v->v, &v->cap, sizeof(*v->v)))
        return RT_ENOMEM;
    v->v[v->n].ref = ref;
    v->v[v->n].id = id;
    v->n++;
    return 0;
}

bool rt__refvec_del(rt_refvec_t *v, uint64_t ref, rt_id_t *id_out)
{
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->v[i].ref == ref) {
            if (id_out)
                *id_out = v->v[i].id;
            v->v[i] = v->v[--v->n];
            return true;
        }
    }
    return false;
}
