/*
 * loop.c - the event loop: phases, handle lifetimes, ref counting.
 *
 * One turn of weft_loop_run():
 *
 *   1. timers    due deadlines, in deadline order
 *   2. pending   deferred work: results and events that must not be
 *                emitted from inside the API call that caused them
 *                (Node's nextTick); repeated until the queue is empty
 *   3. poll      epoll_wait, dispatching I/O callbacks; the wait is 0 when
 *                pending work or closing handles are waiting
 *   4. pending   again, so work deferred by I/O callbacks runs this turn,
 *                after the work put off until this poll (weft__later)
 *   5. check     setImmediate callbacks set before this phase began
 *   6. close     handles whose 'close' was delivered are freed
 *
 * Nothing is freed outside phase 6, so any callback may end or destroy
 * any handle, its own included, and the memory stays valid until every
 * callback of the turn has returned.
 *
 * The loop is alive while a handle is ACTIVE and REF (a listening server,
 * an open or opening stream, an armed timer), or pending or closing work
 * remains. Knows nothing of sockets beyond the spare fd for EMFILE.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Read by other threads (weft_loop_call(NULL, ...)), hence atomic. */
static _Atomic(weft_loop *) default_loop;

void weft__loop_update_time(weft_loop *loop)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    loop->now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

weft_loop *weft_loop_new(void)
{
    weft_loop *loop = weft__calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    weft__q_init(&loop->handles);
    weft__q_init(&loop->pending);
    weft__q_init(&loop->later);
    weft__q_init(&loop->immediates);
    weft__q_init(&loop->polls);
    weft__q_init(&loop->dns_reqs);
    weft__q_init(&loop->dns_done);
    weft__q_init(&loop->work_done);
    weft__q_init(&loop->sig_node);
    weft__io_init(&loop->wake_io, -1, NULL);
    atomic_init(&loop->stop, false);
    for (int i = 0; i < 65; i++)
        atomic_init(&loop->sig_count[i], 0);
    loop->rbuf = weft__malloc(WEFT__READ_BUF + 1);
    if (loop->rbuf == NULL)
        goto out_free;
    int err = weft__poll_init(loop);
    if (err < 0) {
        errno = -err;
        goto out_free_buf;
    }
    err = weft__async_init(loop);
    if (err < 0) {
        weft__poll_free(loop);
        errno = -err;
        goto out_free_buf;
    }
    /* Held in reserve: when accept() fails with EMFILE, closing this frees
     * one slot to accept and drop the connection, so the listener does
     * not spin on a backlog it can never drain (server.c). */
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    weft__loop_update_time(loop);
    return loop;

out_free_buf:
    free(loop->rbuf);
out_free:
    free(loop);
    return NULL;
}

weft_loop *weft_default_loop(void)
{
    weft_loop *loop = atomic_load(&default_loop);
    if (loop == NULL) {
        loop = weft_loop_new();
        atomic_store(&default_loop, loop);
    }
    return loop;
}

weft_loop *weft__default_loop_peek(void)
{
    return atomic_load(&default_loop);
}

weft_loop *weft__loop(weft_loop *loop)
{
    return loop != NULL ? loop : weft_default_loop();
}

uint64_t weft_loop_now(weft_loop *loop)
{
    loop = weft__loop(loop);
    return loop ? loop->now : 0;
}

/* ---- handles --------------------------------------------------------- */

void weft__handle_init(weft_loop *loop, weft__handle *h, int type)
{
    h->loop = loop;
    h->type = (uint8_t)type;
    h->flags = WEFT__H_REF;
    h->bits = 0;
    h->next_closing = NULL;
    weft__q_init(&h->pending);
    weft__q_push(&loop->handles, &h->all);
}

static bool counted(const weft__handle *h)
{
    return (h->flags & (WEFT__H_REF | WEFT__H_ACTIVE)) ==
           (WEFT__H_REF | WEFT__H_ACTIVE);
}

static void set_flag(weft__handle *h, uint8_t flag, bool on)
{
    bool was = counted(h);
    if (on)
        h->flags |= flag;
    else
        h->flags &= (uint8_t)~flag;
    bool is = counted(h);
    if (was && !is)
        h->loop->active_refs--;
    else if (!was && is)
        h->loop->active_refs++;
}

void weft__handle_start(weft__handle *h)
{
    set_flag(h, WEFT__H_ACTIVE, true);
}

void weft__handle_stop(weft__handle *h)
{
    set_flag(h, WEFT__H_ACTIVE, false);
}

void weft__handle_ref(weft__handle *h)
{
    set_flag(h, WEFT__H_REF, true);
}

void weft__handle_unref(weft__handle *h)
{
    set_flag(h, WEFT__H_REF, false);
}

void weft__handle_defer(weft__handle *h, unsigned bits)
{
    if (h->flags & WEFT__H_CLOSING)
        return;
    h->bits |= (uint16_t)bits;
    if (!weft__q_linked(&h->pending))
        weft__q_push(&h->loop->pending, &h->pending);
}

void weft__handle_close(weft__handle *h)
{
    if (h->flags & WEFT__H_CLOSING)
        return;
    weft__handle_stop(h);
    h->flags |= WEFT__H_CLOSING;
    if (weft__q_linked(&h->pending))
        weft__q_remove(&h->pending);
    h->bits = 0;
    h->next_closing = h->loop->closing;
    h->loop->closing = h;
}

static void handle_free(weft__handle *h)
{
    weft__q_remove(&h->all);
    if (weft__q_linked(&h->pending))
        weft__q_remove(&h->pending);
    switch (h->type) {
    case WEFT__SERVER:
        weft__server_free(h);
        break;
    case WEFT__STREAM:
        weft__stream_free(h);
        break;
    case WEFT__TIMER:
        weft__timer_free(h);
        break;
    case WEFT__POLL:
        weft__watcher_free(h);
        break;
    case WEFT__IMMEDIATE:
        weft__immediate_free(h);
        break;
    case WEFT__DGRAM:
        weft__dgram_free(h);
        break;
    }
}

void weft__later_add(weft__later *l, weft__handle *h, unsigned bits)
{
    l->h = h;
    l->bits |= bits;
    if (!weft__q_linked(&l->node))
        weft__q_push(&h->loop->later, &l->node);
}

void weft__later_cancel(weft__later *l)
{
    if (weft__q_linked(&l->node))
        weft__q_remove(&l->node);
    l->bits = 0;
}

/* Hands the work put off before this poll to the pending phase that
 * follows it; work put off from that phase waits for the next poll. */
static void run_later(weft_loop *loop)
{
    while (!weft__q_empty(&loop->later)) {
        weft__qnode *n = loop->later.next;
        weft__q_remove(n);
        weft__later *l = WEFT__CONTAINER_OF(n, weft__later, node);
        unsigned bits = l->bits;
        l->bits = 0;
        weft__handle_defer(l->h, bits);
    }
}

/* ---- phases ---------------------------------------------------------- */

static void run_pending(weft_loop *loop)
{
    /* Work deferred while this runs joins the queue's tail and runs in the
     * same phase, as nextTick callbacks do; each handle's bits are taken
     * before its hook runs, so a hook may defer more work for itself. */
    while (!weft__q_empty(&loop->pending)) {
        weft__qnode *n = loop->pending.next;
        weft__q_remove(n);
        weft__handle *h = WEFT__CONTAINER_OF(n, weft__handle, pending);
        unsigned bits = h->bits;
        h->bits = 0;
        switch (h->type) {
        case WEFT__SERVER:
            weft__server_pending(h, bits);
            break;
        case WEFT__STREAM:
            weft__stream_pending(h, bits);
            break;
        case WEFT__TIMER:
            weft__timer_pending(h, bits);
            break;
        case WEFT__DGRAM:
            weft__dgram_pending(h, bits);
            break;
        default: /* poll and immediate handles defer nothing */
            break;
        }
    }
}

static void run_closing(weft_loop *loop)
{
    while (loop->closing != NULL) {
        weft__handle *h = loop->closing;
        loop->closing = h->next_closing;
        handle_free(h);
    }
}

bool weft_loop_alive(weft_loop *loop)
{
    loop = weft__loop(loop);
    return loop != NULL &&
           (loop->active_refs > 0 || !weft__q_empty(&loop->pending) ||
            !weft__q_empty(&loop->later) || loop->closing != NULL);
}


/* Work that must run before the loop may sleep. */
static bool must_not_wait(weft_loop *loop)
{
    return !weft__q_empty(&loop->pending) || loop->closing != NULL ||
           !weft__q_empty(&loop->later) || !weft__q_empty(&loop->immediates) ||
           atomic_load_explicit(&loop->stop, memory_order_relaxed) ||
           loop->active_refs == 0;
}

int weft_loop_run_mode(weft_loop *loop, weft_run_mode mode)
{
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    if (loop->running)
        return WEFT_EBUSY;
    loop->running = true;
    weft__loop_update_time(loop);
    bool alive = weft_loop_alive(loop);
    while (alive && !atomic_load_explicit(&loop->stop, memory_order_relaxed)) {
        loop->turns++;
        weft__timers_run(loop);
        run_pending(loop);
        int timeout = weft__timers_timeout(loop);
        if (mode == WEFT_RUN_NOWAIT || must_not_wait(loop))
            timeout = 0;
        weft__poll(loop, timeout);
        weft__loop_update_time(loop);
        run_later(loop);
        run_pending(loop);
        weft__immediates_run(loop);
        run_closing(loop);
        alive = weft_loop_alive(loop);
        if (mode != WEFT_RUN_DEFAULT)
            break;
    }
    /* A stop ends this run only; the next run starts afresh. */
    atomic_store(&loop->stop, false);
    loop->running = false;
    return alive ? 1 : 0;
}

int weft_loop_run(weft_loop *loop)
{
    int rc = weft_loop_run_mode(loop, WEFT_RUN_DEFAULT);
    return rc < 0 ? rc : 0;
}

int weft_run(void)
{
    return weft_loop_run(NULL);
}

int weft_loop_backend_fd(weft_loop *loop)
{
    loop = weft__loop(loop);
    return loop != NULL ? loop->backend_fd : WEFT_ENOMEM;
}

int weft_loop_backend_timeout(weft_loop *loop)
{
    loop = weft__loop(loop);
    if (loop == NULL || !weft_loop_alive(loop))
        return 0;
    weft__loop_update_time(loop);
    if (must_not_wait(loop))
        return 0;
    return weft__timers_timeout(loop);
}

void weft_loop_ref(weft_loop *loop)
{
    loop = weft__loop(loop);
    if (loop != NULL)
        loop->active_refs++;
}

void weft_loop_unref(weft_loop *loop)
{
    loop = weft__loop(loop);
    if (loop != NULL && loop->active_refs > 0)
        loop->active_refs--;
}

int weft_loop_close(weft_loop *loop)
{
    if (loop == NULL)
        loop = weft__default_loop_peek();
    if (loop == NULL)
        return 0; /* no default loop was ever made: nothing to close */
    if (loop->running)
        return WEFT_EBUSY;
    run_closing(loop);
    /* Free what is left without emitting: these handles were abandoned
     * with the loop. Each free may release others (a server's streams),
     * so always restart from the head. */
    while (!weft__q_empty(&loop->handles)) {
        weft__handle *h =
            WEFT__CONTAINER_OF(loop->handles.next, weft__handle, all);
        handle_free(h);
    }
    if (loop->default_client_creds != NULL)
        weft_credentials_unref(loop->default_client_creds);
    /* Signal delivery and other threads first lose the loop (each under
     * its own lock), then its memory goes. */
    weft__signal_loop_free(loop);
    weft__dns_loop_free(loop);
    weft__work_loop_free(loop);
    weft__async_free(loop);
    weft__timers_free(loop);
    weft__dgram_loop_free(loop);
    weft__poll_free(loop);
    if (loop->spare_fd >= 0)
        close(loop->spare_fd);
    free(loop->rbuf);
    free(loop->dbuf);
    weft_loop *expected = loop;
    atomic_compare_exchange_strong(&default_loop, &expected, NULL);
    free(loop);
    return 0;
}
