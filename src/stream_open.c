/*
 * stream_open.c - weft_stream_open(): Node's new net.Socket({fd}), a
 * stream over a connected socket the program already has (a socketpair
 * end, an inherited connection).
 *
 * Owns only the checks and the fd's flags; stream.c makes the stream
 * (weft__stream_adopt). Kept apart so stream.c stays about streams it
 * connects or accepts itself.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

/* Is `fd` a connected stream socket? 0 with *is_unix set, or why not. */
static int check_fd(int fd, bool *is_unix)
{
    int type = 0;
    socklen_t len = sizeof(type);
    /* EBADF for no fd, ENOTSOCK for a pipe or a file. */
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return weft__err(errno);
    if (type != SOCK_STREAM)
        return WEFT_EINVAL; /* UDP, SOCK_SEQPACKET: not a byte stream */
    weft__sockaddr a;
    a.len = sizeof(a.u.ss);
    /* ENOTCONN for a listener, a socket never connected or still
     * connecting: weft would wait for a 'connect' it never emits. */
    if (getpeername(fd, &a.u.sa, &a.len) < 0)
        return weft__err(errno);
    *is_unix = a.u.sa.sa_family == AF_UNIX;
    return 0;
}

int weft_stream_open(weft_loop *loop, int fd, weft_stream **out)
{
    if (out == NULL)
        return WEFT_EINVAL;
    *out = NULL;
    if (fd < 0)
        return WEFT_EBADF;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    bool is_unix = false;
    int err = check_fd(fd, &is_unix);
    if (err < 0)
        return err;
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0)
        return weft__err(errno);
    /* Non-blocking: the read path stops at EAGAIN. Close-on-exec: the
     * fd is weft's now, as every socket weft makes. */
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) {
        err = weft__err(errno);
        goto out_restore;
    }
    *out = weft__stream_adopt(loop, fd, is_unix);
    if (*out != NULL)
        return 0;
    err = WEFT_ENOMEM;
out_restore:
    /* A failed open leaves the fd as the program gave it. */
    fcntl(fd, F_SETFL, fl);
    fcntl(fd, F_SETFD, fdfl);
    return err;
}
