/*
 * async.c - the doors into a loop from other threads (decision 15): the
 * wake-up eventfd, weft_loop_call(), weft_loop_stop() from anywhere, and
 * weft's own threads, which block every signal.
 *
 * Wake-up: one eventfd per loop. Whoever turns `wake_pending` from 0 to
 * 1 writes it; the loop reads the counter, then clears the flag, then
 * drains, so a producer that queues after the drain began sees 0 and
 * writes again, and a burst of N calls costs one write and one wake. The loop drains everything
 * that arrives this way (lookups, work, signals, calls) in one callback.
 *
 * Which loops are alive: each live loop sits in one of STRIPES lists,
 * chosen by its address, and that list's mutex also guards the loop's
 * call queue. weft_loop_call() takes the one mutex, finds its loop in
 * the list (or returns WEFT_ESTATE: a closed loop is never touched), and
 * queues under the same lock: one lock per call, as libuv's locked queue
 * plus uv_async_send() costs, with the closed-loop check for free. Knows
 * nothing of sockets, timers or signals.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Loops spread over this many lists; loops of one process rarely share
 * one, so producers for different loops do not contend. Every stripe's
 * lock is held across fork(), with the pools' (pool.c): ThreadSanitizer
 * tracks at most 64 locks held by one thread and aborts past that, so
 * 64 stripes made any program run under TSan abort at its first fork
 * once it had used a pool. */
#define STRIPES 32

typedef struct stripe {
    pthread_mutex_t lock;
    weft__qnode loops;
} stripe;

static stripe stripes[STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

/* fork(): a stripe held by another thread at that moment would stay
 * locked in the child for good; holding them all across the fork keeps
 * every lock free on both sides. */
static void stripes_fork_prepare(void)
{
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_lock(&stripes[i].lock);
}

static void stripes_fork_release(void)
{
    for (int i = STRIPES - 1; i >= 0; i--)
        pthread_mutex_unlock(&stripes[i].lock);
}

static void stripes_init(void)
{
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&stripes[i].lock, NULL);
        weft__q_init(&stripes[i].loops);
    }
    (void)pthread_atfork(stripes_fork_prepare, stripes_fork_release,
                         stripes_fork_release);
}

static stripe *stripe_of(const weft_loop *loop)
{
    uintptr_t p = (uintptr_t)loop;
    return &stripes[((p >> 6) ^ (p >> 16)) % STRIPES];
}

/* First size of a loop's call queue; it doubles as bursts need. */
#define CALLS_MIN 64

static void on_wake(weft__io *io, unsigned events);

int weft__async_init(weft_loop *loop)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return weft__err(errno);
    weft__io_init(&loop->wake_io, fd, on_wake);
    int err = weft__io_set(loop, &loop->wake_io, WEFT__IO_READ);
    if (err < 0) {
        weft__io_close(loop, &loop->wake_io);
        return err;
    }
    atomic_init(&loop->wake_pending, 0);
    pthread_once(&stripes_once, stripes_init);
    stripe *st = stripe_of(loop);
    pthread_mutex_lock(&st->lock);
    weft__q_push(&st->loops, &loop->registry);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

void weft__async_free(weft_loop *loop)
{
    /* Once out of the list no other thread can reach the loop: a caller
     * holding the stripe's lock has finished with it before we get it. */
    stripe *st = stripe_of(loop);
    pthread_mutex_lock(&st->lock);
    weft__q_remove(&loop->registry);
    pthread_mutex_unlock(&st->lock);
    weft__io_close(loop, &loop->wake_io);
    free(loop->calls);
    free(loop->calls_spare);
    loop->calls = loop->calls_spare = NULL;
    loop->calls_n = loop->calls_cap = loop->calls_spare_cap = 0;
}

void weft__loop_wake(weft_loop *loop)
{
    /* Read before the exchange: while the loop has a wake-up coming,
     * producers only share the cache line, they do not fight over it. */
    if (atomic_load_explicit(&loop->wake_pending, memory_order_relaxed) != 0 ||
        atomic_exchange(&loop->wake_pending, 1) != 0)
        return;
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(loop->wake_io.fd, &one, sizeof(one));
    while (w < 0 && errno == EINTR);
    /* EAGAIN means the counter is full: the loop is already woken. */
}

/* Runs the calls queued so far. The batch is swapped out under the lock
 * and run without it, so producers never wait for a call to finish; calls
 * queued meanwhile form the next batch (and have woken the loop again). */
static void run_calls(weft_loop *loop)
{
    stripe *st = stripe_of(loop);
    pthread_mutex_lock(&st->lock);
    weft__call *batch = loop->calls;
    size_t n = loop->calls_n, cap = loop->calls_cap;
    loop->calls = loop->calls_spare;
    loop->calls_cap = loop->calls_spare_cap;
    loop->calls_n = 0;
    loop->calls_spare = NULL;
    loop->calls_spare_cap = 0;
    pthread_mutex_unlock(&st->lock);
    for (size_t i = 0; i < n; i++)
        batch[i].fn(loop, batch[i].ctx);
    /* Keep the batch's array as the next spare. A call above may have
     * closed the loop only if it was not running: impossible, since a
     * running loop refuses weft_loop_close(). */
    pthread_mutex_lock(&st->lock);
    if (loop->calls_spare == NULL) {
        loop->calls_spare = batch;
        loop->calls_spare_cap = cap;
        batch = NULL;
    }
    pthread_mutex_unlock(&st->lock);
    free(batch);
}

static void on_wake(weft__io *io, unsigned events)
{
    WEFT__UNUSED(events);
    weft_loop *loop = WEFT__CONTAINER_OF(io, weft_loop, wake_io);
    /* Consume the counter, then clear the flag, then drain. In this order
     * a producer that sets the flag after the clear writes again, and one
     * that set it before has its work seen by the drain. Clearing first
     * would lose a wake-up: a producer's write landing between the clear
     * and the read is consumed, while a later producer sees the flag that
     * write's owner set and stays silent. */
    uint64_t count;
    ssize_t r = read(io->fd, &count, sizeof(count));
    WEFT__UNUSED(r);
    atomic_store(&loop->wake_pending, 0);
    weft__signal_drain(loop);
    weft__dns_drain(loop);
    weft__work_drain(loop);
    run_calls(loop);
}

/* The loop a cross-thread caller named, with its stripe locked, or NULL
 * (nothing locked) if it is not a live loop. */
static weft_loop *lock_live(weft_loop *loop, stripe **out)
{
    if (loop == NULL)
        loop = weft__default_loop_peek();
    if (loop == NULL)
        return NULL;
    pthread_once(&stripes_once, stripes_init);
    stripe *st = stripe_of(loop);
    pthread_mutex_lock(&st->lock);
    for (weft__qnode *n = st->loops.next; n != &st->loops; n = n->next) {
        if (n == &loop->registry) {
            *out = st;
            return loop;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

int weft_loop_call(weft_loop *loop, weft_call_fn fn, void *ctx)
{
    if (fn == NULL)
        return WEFT_EINVAL;
    stripe *st;
    loop = lock_live(loop, &st);
    if (loop == NULL)
        return WEFT_ESTATE;
    if (loop->calls_n == loop->calls_cap) {
        size_t cap = loop->calls_cap ? loop->calls_cap * 2 : CALLS_MIN;
        weft__call *v = weft__realloc(loop->calls, cap * sizeof(*v));
        if (v == NULL) {
            pthread_mutex_unlock(&st->lock);
            return WEFT_ENOMEM;
        }
        loop->calls = v;
        loop->calls_cap = cap;
    }
    loop->calls[loop->calls_n++] = (weft__call){fn, ctx};
    weft__loop_wake(loop);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

void weft_loop_stop(weft_loop *loop)
{
    stripe *st;
    loop = lock_live(loop, &st);
    if (loop == NULL)
        return;
    atomic_store(&loop->stop, true);
    weft__loop_wake(loop);
    pthread_mutex_unlock(&st->lock);
}

int weft__thread_start(void *(*fn)(void *), void *arg, size_t stack_size)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return WEFT_ENOMEM;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_size > 0)
        pthread_attr_setstacksize(&attr, stack_size);
    /* The new thread inherits this mask; ours is put back at once. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : (rc == EAGAIN ? WEFT_EAGAIN : -rc);
}
