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
 * Which loops are alive: a list under `registry_lock` (a rwlock: callers
 * from many threads share it, only loop creation and close take it for
 * writing). weft_loop_call() looks its loop up there before touching it,
 * so a call into a closed loop is WEFT_ESTATE, never a write into freed
 * memory. Knows nothing of sockets, timers or signals.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static pthread_rwlock_t registry_lock = PTHREAD_RWLOCK_INITIALIZER;
static weft__qnode registry = {&registry, &registry};

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
    pthread_mutex_init(&loop->calls_lock, NULL);
    pthread_rwlock_wrlock(&registry_lock);
    weft__q_push(&registry, &loop->registry);
    pthread_rwlock_unlock(&registry_lock);
    return 0;
}

void weft__async_free(weft_loop *loop)
{
    /* Once out of the list no other thread can reach the loop: a caller
     * holding the read lock has finished with it before we get here. */
    pthread_rwlock_wrlock(&registry_lock);
    weft__q_remove(&loop->registry);
    pthread_rwlock_unlock(&registry_lock);
    weft__io_close(loop, &loop->wake_io);
    pthread_mutex_destroy(&loop->calls_lock);
    free(loop->calls);
    free(loop->calls_spare);
    loop->calls = loop->calls_spare = NULL;
    loop->calls_n = loop->calls_cap = loop->calls_spare_cap = 0;
}

void weft__loop_wake(weft_loop *loop)
{
    if (atomic_exchange(&loop->wake_pending, 1) != 0)
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
    pthread_mutex_lock(&loop->calls_lock);
    weft__call *batch = loop->calls;
    size_t n = loop->calls_n, cap = loop->calls_cap;
    loop->calls = loop->calls_spare;
    loop->calls_cap = loop->calls_spare_cap;
    loop->calls_n = 0;
    loop->calls_spare = NULL;
    loop->calls_spare_cap = 0;
    pthread_mutex_unlock(&loop->calls_lock);
    for (size_t i = 0; i < n; i++)
        batch[i].fn(loop, batch[i].ctx);
    /* Keep the batch's array as the next spare. A call above may have
     * closed the loop only if it was not running: impossible, since a
     * running loop refuses weft_loop_close(). */
    pthread_mutex_lock(&loop->calls_lock);
    if (loop->calls_spare == NULL) {
        loop->calls_spare = batch;
        loop->calls_spare_cap = cap;
        batch = NULL;
    }
    pthread_mutex_unlock(&loop->calls_lock);
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

static bool is_live(weft_loop *loop)
{
    for (weft__qnode *n = registry.next; n != &registry; n = n->next)
        if (n == &loop->registry)
            return true;
    return false;
}

/* The loop a cross-thread caller named, read-locked, or NULL. */
static weft_loop *lock_live(weft_loop *loop)
{
    pthread_rwlock_rdlock(&registry_lock);
    if (loop == NULL)
        loop = weft__default_loop_peek();
    if (loop == NULL || !is_live(loop)) {
        pthread_rwlock_unlock(&registry_lock);
        return NULL;
    }
    return loop;
}

int weft_loop_call(weft_loop *loop, weft_call_fn fn, void *ctx)
{
    if (fn == NULL)
        return WEFT_EINVAL;
    loop = lock_live(loop);
    if (loop == NULL)
        return WEFT_ESTATE;
    int err = 0;
    pthread_mutex_lock(&loop->calls_lock);
    if (loop->calls_n == loop->calls_cap) {
        size_t cap = loop->calls_cap ? loop->calls_cap * 2 : CALLS_MIN;
        weft__call *v = weft__realloc(loop->calls, cap * sizeof(*v));
        if (v == NULL) {
            err = WEFT_ENOMEM;
            goto out_unlock;
        }
        loop->calls = v;
        loop->calls_cap = cap;
    }
    loop->calls[loop->calls_n++] = (weft__call){fn, ctx};
out_unlock:
    pthread_mutex_unlock(&loop->calls_lock);
    if (err == 0)
        weft__loop_wake(loop);
    pthread_rwlock_unlock(&registry_lock);
    return err;
}

void weft_loop_stop(weft_loop *loop)
{
    loop = lock_live(loop);
    if (loop == NULL)
        return;
    atomic_store(&loop->stop, true);
    weft__loop_wake(loop);
    pthread_rwlock_unlock(&registry_lock);
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
