/*
 * signal.c - signals as loop events (decision 16). Being written; until
 * then no loop has listeners and there is nothing to deliver.
 */
#include "internal.h"

void weft__signal_drain(weft_loop *loop)
{
    WEFT__UNUSED(loop);
}

void weft__signal_loop_free(weft_loop *loop)
{
    weft__emitter_free(&loop->sig_em);
}
