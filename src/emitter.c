/*
 * emitter.c - Node's EventEmitter listener list, one per object.
 *
 * Knows nothing of which events exist: server.c and stream.c own those
 * tables and call typed listeners through WEFT__EMIT (internal.h).
 * Removal during an emit only clears the slot, so indices stay stable
 * for the emit in progress; slots are compacted when no emit runs.
 */
#include "internal.h"

#include <stdlib.h>

static void compact(weft__emitter *em)
{
    uint16_t j = 0;
    for (uint16_t i = 0; i < em->n; i++)
        if (em->v[i].fn != NULL)
            em->v[j++] = em->v[i];
    em->n = j;
    em->dirty = 0;
}

int weft__emitter_add(weft__emitter *em, int event, weft__fn fn, void *ctx,
                      bool once)
{
    if (fn == NULL)
        return WEFT_EINVAL;
    if (em->dirty && em->depth == 0)
        compact(em);
    if (em->n == em->cap) {
        /* Most objects carry one to a few listeners, and an idle
         * connection should cost little (decision 4): grow from one. */
        uint32_t cap = em->cap ? (uint32_t)em->cap * 2 : 1;
        if (cap > UINT16_MAX)
            return WEFT_ENOMEM;
        weft__listener *v = weft__realloc(em->v, cap * sizeof(*v));
        if (v == NULL)
            return WEFT_ENOMEM;
        em->v = v;
        em->cap = (uint16_t)cap;
    }
    em->v[em->n++] = (weft__listener){
        .fn = fn, .ctx = ctx, .event = (uint8_t)event, .once = once};
    return 0;
}

int weft__emitter_remove(weft__emitter *em, int event, weft__fn fn, void *ctx)
{
    /* Node's removeListener takes the most recently added match. */
    for (uint16_t i = em->n; i-- > 0;) {
        weft__listener *l = &em->v[i];
        if (l->fn == fn && l->ctx == ctx && l->event == event) {
            l->fn = NULL;
            em->dirty = 1;
            if (em->depth == 0)
                compact(em);
            return 0;
        }
    }
    return WEFT_ENOENT;
}

bool weft__emitter_has(const weft__emitter *em, int event)
{
    for (uint16_t i = 0; i < em->n; i++)
        if (em->v[i].fn != NULL && em->v[i].event == event)
            return true;
    return false;
}

void weft__emitter_leave(weft__emitter *em)
{
    if (--em->depth == 0 && em->dirty)
        compact(em);
}

void weft__emitter_free(weft__emitter *em)
{
    free(em->v);
    em->v = NULL;
    em->n = em->cap = 0;
}
