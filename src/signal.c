/*
 * signal.c - signals as loop events (decision 16), Node's
 * process.on('SIGINT').
 *
 * Owns the process-wide signal state: which loops watch which signals,
 * how many loops watch each signal, the dispositions the program had
 * before weft caught a signal, and the lock that guards all of it. Knows
 * nothing of sockets or epoll: it reaches a loop only through the loop's
 * emitter, its delivery counters and weft__loop_wake().
 *
 * Per signal s, process-wide (changed under the lock only):
 *
 *   state    watchers[s]  disposition   entered when
 *   -------  -----------  ------------  ----------------------------------
 *   IDLE     0            the program's at start; or the last watching loop
 *                                       stops: saved[s] is put back as it
 *                                       was, handler, flags and mask
 *   CAUGHT   >= 1         on_signal     the first loop starts watching:
 *                                       the program's action -> saved[s]
 *
 * Per loop and signal, the loop WATCHES s (bit s-1 of loop->sig_mask,
 * and the loop is in `watching` while any bit is set) exactly when its
 * emitter holds a live listener for s. Everything that can break that
 * equality ends in sync_watch(): on/once (the only step that can fail:
 * the listener is taken back), off, an emit that used up once-listeners
 * or whose listeners called off, and loop close (which drops every bit).
 * watchers[s] counts loops, not listeners: "does anyone listen" is the
 * same question, and the emitter already knows the listeners. sync_watch()
 * touches the lock only when the bit flips, so adding a second listener
 * or emitting costs no syscall.
 *
 * Delivery:
 *
 *   kernel ──► on_signal (any thread whose mask lets s in)
 *                takes the lock; for each watching loop whose mask has s:
 *                sig_count[s]++ then weft__loop_wake(); gives the lock
 *   loop thread: the wake eventfd ──► weft__signal_drain()
 *                exchanges each count with 0, emits once per delivery,
 *                then sync_watch() for once-listeners the emit used up
 *
 * The listeners run on the loop thread, never in the handler. Every
 * call of the handler is counted, so deliveries that arrive before the
 * loop drains are not merged by weft (the kernel merges a standard
 * signal sent again while it is still pending). A count is cleared when
 * its loop stops watching, so a later listener never hears an old
 * signal. The handler is installed with SA_RESTART, so the program's
 * blocking calls are not cut short by it.
 *
 * The lock is a pipe holding one byte: take = blocking read of the byte
 * (retried on EINTR), give = write it back. A pthread mutex is not
 * async-signal-safe and a spinlock taken in a handler that interrupted
 * its own holder spins forever; read() and write() are safe in a handler
 * and a waiter sleeps in the kernel. It cannot deadlock because:
 *   - a loop thread that changes the state (a modifier) blocks every
 *     signal in its own thread while it holds the byte, so the handler
 *     never runs on top of the holder;
 *   - the handler's sa_mask is full, so it never nests in itself;
 *   - the handler holds the byte for a walk of a short list, no more.
 * The handler saves and restores errno; it allocates nothing.
 *
 * fork(): a child of a program that uses signals would share the pipe
 * with its parent, and a child killed while holding the byte would stop
 * the parent's delivery for good. The prepare hook makes a fresh pipe
 * and takes the lock (so the child's copy of the list is whole); the
 * child swaps the fresh pipe in with its byte, the parent gives the byte
 * back. If the fresh pipe cannot be made, nothing is taken and the two
 * processes keep sharing one pipe, which still holds one byte for both.
 *
 * Process lifetime: the pipe (two fds) stays once made, as the handler
 * may run on any thread at any time after the first listener.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

/* Bit s-1 of a loop's sig_mask: 64 bits, and the emitter's uint8_t event,
 * bound signal numbers to 1..64 (sig_count has 65 slots). */
#define MAX_SIGNUM 64
#define BIT(s)     ((uint64_t)1 << ((s)-1))

/* Read by the handler on any thread, hence atomic; -1 until made. */
static atomic_int lock_rd = -1, lock_wr = -1;
static pthread_once_t lock_once = PTHREAD_ONCE_INIT;
static int lock_init_err;

/* Under the lock. */
static weft__qnode watching = {&watching, &watching};
static unsigned watchers[MAX_SIGNUM + 1];
static struct sigaction saved[MAX_SIGNUM + 1];

/* ---- the lock -------------------------------------------------------- */

static bool take(void)
{
    char token;
    ssize_t r;
    do
        r = read(atomic_load_explicit(&lock_rd, memory_order_relaxed), &token,
                 1);
    while (r < 0 && errno == EINTR);
    return r == 1;
}

static void give(void)
{
    char token = 0;
    ssize_t w;
    do
        w = write(atomic_load_explicit(&lock_wr, memory_order_relaxed), &token,
                  1);
    while (w < 0 && errno == EINTR);
}

/* A modifier's lock: every signal blocked in this thread while held. */
static void lock(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
    /* Fails only if the program closed weft's fds; then the handler
     * cannot take it either and delivers nothing. */
    (void)take();
}

static void unlock(const sigset_t *old)
{
    give();
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Per forking thread: two threads may fork at once (the second waits for
 * the lock in its prepare hook). */
static _Thread_local int fork_fds[2];
static _Thread_local bool fork_locked;
static _Thread_local sigset_t fork_mask;

static void fork_prepare(void)
{
    int saved_errno = errno; /* a failed pipe2 is no failure of fork */
    fork_locked = pipe2(fork_fds, O_CLOEXEC) == 0;
    if (fork_locked)
        lock(&fork_mask);
    errno = saved_errno;
}

static void fork_parent(void)
{
    if (!fork_locked)
        return;
    unlock(&fork_mask);
    close(fork_fds[0]);
    close(fork_fds[1]);
}

static void fork_child(void)
{
    if (!fork_locked)
        return;
    /* The old pipe's byte is the parent's (it gives it back); the child
     * starts its own with one byte. Writing one byte to an empty pipe
     * cannot fail. */
    close(atomic_load(&lock_rd));
    close(atomic_load(&lock_wr));
    atomic_store(&lock_rd, fork_fds[0]);
    atomic_store(&lock_wr, fork_fds[1]);
    give();
    pthread_sigmask(SIG_SETMASK, &fork_mask, NULL);
}

static void lock_make(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        lock_init_err = weft__err(errno);
        return;
    }
    atomic_store(&lock_rd, fds[0]);
    atomic_store(&lock_wr, fds[1]);
    give();
    /* Without the hooks (ENOMEM) a child shares the pipe: still correct,
     * one byte for both processes, only less isolated. */
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- the handler ----------------------------------------------------- */

static void on_signal(int signum)
{
    int saved_errno = errno;
    if (take()) {
        uint64_t bit = BIT(signum);
        for (weft__qnode *n = watching.next; n != &watching; n = n->next) {
            weft_loop *loop = WEFT__CONTAINER_OF(n, weft_loop, sig_node);
            if (loop->sig_mask & bit) {
                atomic_fetch_add(&loop->sig_count[signum], 1);
                weft__loop_wake(loop);
            }
        }
        give();
    }
    errno = saved_errno;
}

/* ---- watching: the per-loop bits and the per-signal counts ----------- */

/* Under the lock. */
static void unwatch_locked(weft_loop *loop, int signum)
{
    loop->sig_mask &= ~BIT(signum);
    atomic_store(&loop->sig_count[signum], 0);
    if (--watchers[signum] == 0)
        sigaction(signum, &saved[signum], NULL);
    if (loop->sig_mask == 0)
        weft__q_remove(&loop->sig_node);
}

static int watch(weft_loop *loop, int signum)
{
    pthread_once(&lock_once, lock_make);
    if (lock_init_err < 0)
        return lock_init_err;
    int err = 0;
    sigset_t old;
    lock(&old);
    if (watchers[signum] == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigfillset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        /* EINVAL here: a real-time signal the C library keeps for itself
         * (glibc's 32 and 33). */
        if (sigaction(signum, &sa, &saved[signum]) < 0) {
            err = weft__err(errno);
            goto out_unlock;
        }
    }
    watchers[signum]++;
    atomic_store(&loop->sig_count[signum], 0);
    loop->sig_mask |= BIT(signum);
    if (!weft__q_linked(&loop->sig_node))
        weft__q_push(&watching, &loop->sig_node);
out_unlock:
    unlock(&old);
    return err;
}

static void unwatch(weft_loop *loop, int signum)
{
    sigset_t old;
    lock(&old);
    unwatch_locked(loop, signum);
    unlock(&old);
}

/* Makes the loop's bit for `signum` say whether it has a listener. Only
 * reads the loop's own mask when nothing changes: no lock, no syscall. */
static int sync_watch(weft_loop *loop, int signum)
{
    bool want = weft__emitter_has(&loop->sig_em, signum);
    bool has = (loop->sig_mask & BIT(signum)) != 0;
    if (want && !has)
        return watch(loop, signum);
    if (!want && has)
        unwatch(loop, signum);
    return 0;
}

/* ---- the API --------------------------------------------------------- */

/*
 * KILL and STOP cannot be caught. SEGV, BUS, FPE and ILL come from the
 * instruction that faulted: a handler that returns runs it again, so a
 * deferred event would spin, never run.
 */
static bool valid_signum(int signum)
{
    if (signum <= 0 || signum > MAX_SIGNUM || signum > SIGRTMAX)
        return false;
    switch (signum) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
        return false;
    default:
        return true;
    }
}

static int add(weft_loop *loop, int signum, weft_signal_cb cb, void *ctx,
               bool once)
{
    if (!valid_signum(signum) || cb == NULL)
        return WEFT_EINVAL;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    int err = weft__emitter_add(&loop->sig_em, signum, (weft__fn)cb, ctx, once);
    if (err < 0)
        return err;
    err = sync_watch(loop, signum);
    if (err < 0) /* the latest (cb, ctx) is the one just added */
        weft__emitter_remove(&loop->sig_em, signum, (weft__fn)cb, ctx);
    return err;
}

int weft_signal_on(weft_loop *loop, int signum, weft_signal_cb cb, void *ctx)
{
    return add(loop, signum, cb, ctx, false);
}

int weft_signal_once(weft_loop *loop, int signum, weft_signal_cb cb, void *ctx)
{
    return add(loop, signum, cb, ctx, true);
}

int weft_signal_off(weft_loop *loop, int signum, weft_signal_cb cb, void *ctx)
{
    if (!valid_signum(signum) || cb == NULL)
        return WEFT_EINVAL;
    if (loop == NULL)
        loop = weft__default_loop_peek();
    if (loop == NULL)
        return WEFT_ENOENT;
    int err = weft__emitter_remove(&loop->sig_em, signum, (weft__fn)cb, ctx);
    if (err == 0)
        sync_watch(loop, signum);
    return err;
}

/* ---- the loop's side ------------------------------------------------- */

void weft__signal_drain(weft_loop *loop)
{
    /* The mask as the drain starts: a listener added by a callback for
     * another signal has no deliveries yet (its count was cleared). */
    uint64_t mask = loop->sig_mask;
    while (mask != 0) {
        int signum = __builtin_ctzll(mask) + 1;
        mask &= mask - 1;
        unsigned n = atomic_exchange(&loop->sig_count[signum], 0);
        if (n == 0)
            continue;
        for (unsigned i = 0; i < n; i++)
            WEFT__EMIT(&loop->sig_em, signum, weft_signal_cb, loop, signum);
        /* Once-listeners were taken out by the emit without an off(). */
        sync_watch(loop, signum);
    }
}

void weft__signal_loop_free(weft_loop *loop)
{
    /* A loop with no bit set was never seen by the handler; one with
     * bits leaves the list before its memory goes. */
    if (loop->sig_mask != 0) {
        sigset_t old;
        lock(&old);
        while (loop->sig_mask != 0)
            unwatch_locked(loop, __builtin_ctzll(loop->sig_mask) + 1);
        unlock(&old);
    }
    weft__emitter_free(&loop->sig_em);
}
