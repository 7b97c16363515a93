/*
 * error.c - names and messages of WEFT_E* codes, from the one table in
 * weft.h. Knows nothing of handles or I/O.
 */
#include "internal.h"

#include <stdio.h>

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
