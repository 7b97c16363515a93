/*
 * error.c - names and messages of WEFT_E* codes, from the one table in
 * weft.h. Knows nothing of handles or I/O.
 */
#include "internal.h"

#include <stdio.h>

static weft_unhandled_error_cb unhandled_cb;
static void *unhandled_ctx;

void weft_set_unhandled_error_handler(weft_unhandled_error_cb cb, void *ctx)
{
    unhandled_cb = cb;
    unhandled_ctx = ctx;
}

void weft__unhandled_error(const char *object, void *handle, int err,
                           const char *message)
{
    if (unhandled_cb != NULL) {
        unhandled_cb(object, handle, err, message, unhandled_ctx);
        return;
    }
    /* One write, so lines from several threads do not interleave. */
    fprintf(stderr, "weft: unhandled 'error' on %s: %s\n", object, message);
}

const char *weft_strerror(int err)
{
    switch (err) {
#define WEFT_ERR_MSG_(name, value, msg)                                        \
    case WEFT_##name:                                                          \
        return msg;
        WEFT_ERRNO_MAP(WEFT_ERR_MSG_)
#undef WEFT_ERR_MSG_
    }
    return "unknown error";
}

const char *weft_err_name(int err)
{
    switch (err) {
#define WEFT_ERR_NAME_(name, value, msg)                                       \
    case WEFT_##name:                                                          \
        return #name;
        WEFT_ERRNO_MAP(WEFT_ERR_NAME_)
#undef WEFT_ERR_NAME_
    }
    return "UNKNOWN";
}

/*
 * The kernel can return errno values the table lacks; rather than hand
 * users a code weft_err_name() cannot name, fold those into EIO. The
 * EWOULDBLOCK alias is the same value as EAGAIN on Linux.
 */
int weft__err(int errno_value)
{
    int err = -errno_value;
    switch (err) {
#define WEFT_ERR_KNOWN_(name, value, msg) case WEFT_##name:
        WEFT_ERRNO_MAP(WEFT_ERR_KNOWN_)
#undef WEFT_ERR_KNOWN_
        return err;
    }
    return WEFT_EIO;
}
