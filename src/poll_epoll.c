/*
 * poll_epoll.c - the epoll backend of src/poll.h.
 *
 * Owns the epoll fd and nothing else. Watchers are registered once with
 * their pointer as epoll data; interest changes are EPOLL_CTL_MOD. A
 * watcher whose interest drops to none is deleted: epoll reports EPOLLHUP
 * and EPOLLERR whether asked or not, and a level-triggered hang-up on a
 * paused stream would otherwise wake the loop forever.
 *
 * Hang-ups and errors: streams ask for READ/WRITE only and learn of both
 * by their next read or write, so they are reported as every side the
 * watcher wants. fd watchers (poll.c) also ask for WEFT__IO_HUP (made
 * EPOLLRDHUP) and WEFT__IO_ERR (nothing to register: EPOLLERR always
 * comes), and get those bits on top. Both wait behind one branch that
 * streams take only when a connection fails or hangs up.
 */
#include "poll.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Events fetched per epoll_wait; more wait for the next turn. */
#define MAX_EVENTS 256

int weft__poll_init(weft_loop *loop)
{
    loop->backend_fd = epoll_create1(EPOLL_CLOEXEC);
    return loop->backend_fd < 0 ? weft__err(errno) : 0;
}

void weft__poll_free(weft_loop *loop)
{
    if (loop->backend_fd >= 0)
        close(loop->backend_fd);
    loop->backend_fd = -1;
}

void weft__io_init(weft__io *io, int fd, weft__io_fn fn)
{
    io->fd = fd;
    io->want = 0;
    io->added = 0;
    io->fn = fn;
}

int weft__io_set(weft_loop *loop, weft__io *io, unsigned events)
{
    if (io->fd < 0)
        return WEFT_EBADF;
    if (io->added ? io->want == events : events == 0)
        return 0;
    if (events == 0) {
        epoll_ctl(loop->backend_fd, EPOLL_CTL_DEL, io->fd, NULL);
        io->added = 0;
        io->want = 0;
        return 0;
    }
    struct epoll_event ev = {0};
    if (events & WEFT__IO_READ)
        ev.events |= EPOLLIN;
    if (events & WEFT__IO_WRITE)
        ev.events |= EPOLLOUT;
    if (events & WEFT__IO_HUP)
        ev.events |= EPOLLRDHUP;
    ev.data.ptr = io;
    int op = io->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->backend_fd, op, io->fd, &ev) < 0)
        return weft__err(errno);
    io->added = 1;
    io->want = (uint8_t)events;
    return 0;
}

void weft__io_close(weft_loop *loop, weft__io *io)
{
    if (io->fd < 0)
        return;
    /* close() drops the registration only with the last reference to the
     * open file: a child forked without exec, or a dup of a listenFD fd,
     * keeps it alive, and its events would then reach freed memory. The
     * DEL costs one syscall per connection and rules that out (libuv
     * makes the same choice). */
    if (io->added)
        epoll_ctl(loop->backend_fd, EPOLL_CTL_DEL, io->fd, NULL);
    close(io->fd);
    io->fd = -1;
    io->want = 0;
    io->added = 0;
}

void weft__io_forget(weft_loop *loop, weft__io *io)
{
    if (io->fd < 0)
        return;
    /* The fd lives on in the program, so the registration would too:
     * delete it, or its events would reach a freed watcher. */
    if (io->added)
        epoll_ctl(loop->backend_fd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
    io->want = 0;
    io->added = 0;
}

/*
 * The bits a hang-up or an error makes ready, before the mask by `want`.
 * EPOLLERR / EPOLLHUP: every side (the next read or write finds out
 * which), plus WEFT__IO_ERR for EPOLLERR alone. EPOLLRDHUP alone (only
 * fd watchers ask for it): the peer's FIN, so reading ends (READ) and
 * writing may go on.
 */
static unsigned hangup_bits(uint32_t e, unsigned want)
{
    if (e & EPOLLERR)
        return want | WEFT__IO_ERR;
    if (e & EPOLLHUP)
        return want & ~(unsigned)WEFT__IO_ERR;
    return WEFT__IO_READ | WEFT__IO_HUP;
}

int weft__poll(weft_loop *loop, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(loop->backend_fd, events, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : weft__err(errno);
    weft__loop_update_time(loop);
    for (int i = 0; i < n; i++) {
        weft__io *io = events[i].data.ptr;
        if (io->fd < 0)
            continue;
        uint32_t e = events[i].events;
        unsigned ready = 0;
        if (e & EPOLLIN)
            ready |= WEFT__IO_READ;
        if (e & EPOLLOUT)
            ready |= WEFT__IO_WRITE;
        /* Report only what was asked for, but never lose an error: a
         * watcher with no read interest still learns of EPOLLERR through
         * its write side, and vice versa. */
        if (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            ready |= hangup_bits(e, io->want);
        ready &= io->want;
        if (ready)
            io->fn(io, ready);
    }
    return n;
}
