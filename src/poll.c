/*
 * poll.c - watchers of fds the program owns (uv_poll): weft_poll_*.
 *
 * Owns the weft_poll handle: an interest the program may change at any
 * time, a weft__io registered with the poller while that interest is not
 * empty, and the per-loop list that makes a second watcher of one fd an
 * error. Never reads, writes or closes the fd: closing the watcher only
 * forgets it (weft__io_forget). Knows nothing of epoll.
 *
 *   start(interest) ──► WATCHING ◄──change(x)──► STOPPED ──┐
 *   start(0) ─────────────────────────────────► (interest 0)│
 *        WATCHING: ACTIVE, registered       STOPPED: neither│
 *                    └──────────close()──────────┬──────────┘
 *                                                ▼
 *                      CLOSED: forgotten, callback never again,
 *                      freed in the loop's close phase
 */
#include "internal.h"

#include <stdlib.h>

/* The public bits are the poller's bits, so events pass through as they
 * are. */
_Static_assert((int)WEFT_POLL_READABLE == (int)WEFT__IO_READ &&
                   (int)WEFT_POLL_WRITABLE == (int)WEFT__IO_WRITE &&
                   (int)WEFT_POLL_HANGUP == (int)WEFT__IO_HUP &&
                   (int)WEFT_POLL_ERROR == (int)WEFT__IO_ERR,
               "weft_poll_events must match the WEFT__IO_* bits");

#define ASKABLE (WEFT_POLL_READABLE | WEFT_POLL_WRITABLE | WEFT_POLL_HANGUP)

struct weft_poll {
    weft__handle h;
    weft__io io;      /* fd -1 once closed: stale events are dropped */
    weft__qnode node; /* in loop->polls until closed */
    weft_poll_cb cb;
    void *ctx;
    int fd; /* the program's fd, kept while io.fd may be -1 */
    bool closed;
};

static void on_io(weft__io *io, unsigned events)
{
    weft_poll *p = WEFT__CONTAINER_OF(io, weft_poll, io);
    /* `events` is already masked by the interest (plus ERR, which every
     * watcher with an interest asks for), so it is what the caller sees. */
    p->cb(p, events, p->ctx);
}

/* What the poller is asked for: the interest, and errors along with it.
 * None at all for 0, so that a stopped watcher on a hung-up fd does not
 * wake the loop (the backend deletes it). */
static unsigned io_want(unsigned interest)
{
    return interest ? (interest | WEFT__IO_ERR) : 0;
}

static weft_poll *find(weft_loop *loop, int fd)
{
    for (weft__qnode *n = loop->polls.next; n != &loop->polls; n = n->next) {
        weft_poll *p = WEFT__CONTAINER_OF(n, weft_poll, node);
        if (p->fd == fd)
            return p;
    }
    return NULL;
}

int weft_poll_start(weft_loop *loop, int fd, unsigned events, weft_poll_cb cb,
                    void *ctx, weft_poll **out)
{
    if (out != NULL)
        *out = NULL;
    if (cb == NULL || (events & ~(unsigned)(ASKABLE | WEFT_POLL_ERROR)))
        return WEFT_EINVAL;
    if (fd < 0)
        return WEFT_EBADF;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    events &= ASKABLE;
    /* A stopped watcher is not registered with the poller, which would
     * therefore not see it: the list does. The list is only fd watchers,
     * a handful next to the streams. */
    if (find(loop, fd) != NULL)
        return WEFT_EEXIST;
    weft_poll *p = weft__calloc(1, sizeof(*p));
    if (p == NULL)
        return WEFT_ENOMEM;
    weft__io_init(&p->io, fd, on_io);
    /*
     * Registering now, even for interest 0, makes every refusal come from
     * this call and from the kernel's own rule: EBADF, EPERM for a file
     * that cannot be polled (a regular file or a directory: always
     * ready), EEXIST for an fd a stream, server or watcher of this loop
     * already has. With interest 0 the registration has no events and is
     * deleted again before the loop can wait.
     */
    int err =
        weft__io_set(loop, &p->io, events ? io_want(events) : WEFT__IO_ERR);
    if (err == 0 && events == 0)
        err = weft__io_set(loop, &p->io, 0);
    if (err < 0) {
        free(p);
        return err;
    }
    weft__handle_init(loop, &p->h, WEFT__POLL);
    p->cb = cb;
    p->ctx = ctx;
    p->fd = fd;
    weft__q_push(&loop->polls, &p->node);
    if (events)
        weft__handle_start(&p->h);
    if (out != NULL)
        *out = p;
    return 0;
}

int weft_poll_change(weft_poll *p, unsigned events)
{
    if (p == NULL || (events & ~(unsigned)(ASKABLE | WEFT_POLL_ERROR)))
        return WEFT_EINVAL;
    if (p->closed)
        return WEFT_ESTATE;
    events &= ASKABLE;
    /* On failure (the program closed the fd under us) nothing changes. */
    int err = weft__io_set(p->h.loop, &p->io, io_want(events));
    if (err < 0)
        return err;
    if (events)
        weft__handle_start(&p->h);
    else
        weft__handle_stop(&p->h);
    return 0;
}

/* Forgets the fd and leaves the list; the memory waits for free. */
static void detach(weft_poll *p)
{
    if (p->closed)
        return;
    p->closed = true;
    weft__io_forget(p->h.loop, &p->io);
    weft__q_remove(&p->node);
}

void weft_poll_close(weft_poll *p)
{
    if (p == NULL || p->closed)
        return;
    detach(p);
    weft__handle_close(&p->h);
}

int weft_poll_fd(const weft_poll *p)
{
    if (p == NULL)
        return WEFT_EINVAL;
    return p->closed ? WEFT_EBADF : p->fd;
}

void weft_poll_ref(weft_poll *p)
{
    if (p != NULL)
        weft__handle_ref(&p->h);
}

void weft_poll_unref(weft_poll *p)
{
    if (p != NULL)
        weft__handle_unref(&p->h);
}

void weft__watcher_free(weft__handle *h)
{
    weft_poll *p = WEFT__CONTAINER_OF(h, weft_poll, h);
    /* Still watching only when the loop itself is being closed. */
    detach(p);
    free(p);
}
