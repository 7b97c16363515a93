/*
 * poll.c - watchers of fds the program owns. Being written.
 */
#include "internal.h"

#include <stdlib.h>

void weft__watcher_free(weft__handle *h)
{
    free(h);
}
