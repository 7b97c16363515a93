/*
 * alloc.c - every allocation weft makes for itself goes through here
 * (OpenSSL's own do not), so that the test suite can fail the N-th one
 * and prove each ENOMEM path leaves no leak, no crash and a loop that
 * goes on serving (tests/test_fault.c). Off, it costs one branch.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

long weft__alloc_fail_at;
long weft__alloc_failed;

static bool fail_now(void)
{
    if (weft__alloc_fail_at <= 0)
        return false;
    if (--weft__alloc_fail_at > 0)
        return false;
    weft__alloc_failed++;
    return true;
}

void *weft__malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

void *weft__calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

void *weft__realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

char *weft__strdup(const char *s)
{
    return fail_now() ? NULL : strdup(s);
}
