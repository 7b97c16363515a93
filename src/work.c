/*
 * work.c - the work pool. Being written; until then no job exists.
 */
#include "internal.h"

void weft__work_drain(weft_loop *loop)
{
    WEFT__UNUSED(loop);
}

void weft__work_loop_free(weft_loop *loop)
{
    WEFT__UNUSED(loop);
}
