/*
 * work.c - the work pool (uv_queue_work): blocking jobs run on pool
 * threads, their `done` on the loop that queued them. Separate from the
 * lookup pool (dns.c), so a slow job never delays a name lookup.
 *
 * Threads are made as jobs need them, up to `max_threads` (default 4,
 * weft_set_work_threads() from any thread); lowering the size lets the
 * extra threads end once they are between jobs.
 *
 * One lock guards everything a worker and a loop share: the global FIFO
 * queue, each job's state and loop pointer, and every loop's
 * `work_done` list. A job's life:
 *
 *   state     where its node is          who may free it
 *   QUEUED    `queue` (global, FIFO)     weft__work_loop_free (dropped)
 *   RUNNING   `running` (global)         the worker, if its loop is gone
 *   DONE      loop->work_done            the drain, after `done`; or
 *                                        weft__work_loop_free (undelivered)
 *
 * A cancel takes QUEUED straight to DONE with WEFT_ECANCELED, so the
 * cancelled `done` reaches the loop through the same wake-up and drain
 * as a finished one: a later turn, never inside weft_work_cancel().
 *
 * A queued job holds one of the loop's active_refs until just before its
 * `done` runs; only the loop thread touches that count. Knows nothing of
 * sockets or handles.
 */
#include "internal.h"

#include <stdlib.h>

/* Four, as libuv: enough to overlap a few blocking calls (file I/O,
 * hashing) without a thread per job. */
#define WORK_THREADS_DEFAULT 4
/* The ceiling libuv long had. Past it the threads cost more (stacks,
 * scheduling) than the blocking they hide. */
#define WORK_THREADS_MAX 128

enum { QUEUED, RUNNING, DONE };

struct weft_work {
    weft__qnode node; /* queue, running, then loop->work_done */
    weft_loop *loop;  /* NULL once the loop is gone (RUNNING only) */
    weft_work_fn work;
    weft_work_done_cb done;
    void *ctx;
    int state;
    int status; /* 0, or WEFT_ECANCELED */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static weft__qnode queue = {&queue, &queue};
static weft__qnode running = {&running, &running};
static size_t queued_n;
static unsigned max_threads = WORK_THREADS_DEFAULT;
static unsigned threads_alive;
static unsigned threads_idle;

/*
 * A thread counts as idle whenever it is not running a job: from its
 * creation (it takes a job as soon as it gets the lock) and while it is
 * woken but not yet holding the lock. So "queued jobs outnumber idle
 * threads" is exactly "some job has no thread coming for it".
 */
static void *worker(void *arg)
{
    WEFT__UNUSED(arg);
    pthread_mutex_lock(&lock);
    for (;;) {
        while (weft__q_empty(&queue) && threads_alive <= max_threads)
            pthread_cond_wait(&cond, &lock);
        /* Checked between jobs only: a job is never abandoned. */
        if (threads_alive > max_threads)
            break;
        threads_idle--;
        weft__qnode *n = queue.next;
        weft__q_remove(n);
        queued_n--;
        weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
        w->state = RUNNING;
        weft__q_push(&running, &w->node);
        pthread_mutex_unlock(&lock);

        w->work(w->ctx);

        pthread_mutex_lock(&lock);
        threads_idle++;
        weft__q_remove(&w->node);
        weft_loop *loop = w->loop;
        if (loop == NULL) {
            free(w); /* orphaned by weft_loop_close() */
            continue;
        }
        w->state = DONE;
        weft__q_push(&loop->work_done, &w->node);
        /* Under the lock: weft__work_loop_free() takes it before the loop
         * goes, so the loop is still there to be woken. */
        weft__loop_wake(loop);
    }
    threads_idle--;
    threads_alive--;
    pthread_mutex_unlock(&lock);
    return NULL;
}

/*
 * fork(): the pool's threads do not exist in the child. The lock is held
 * across the fork; the child's pool counts no thread, so its next job
 * makes one (jobs still queued then run too). Jobs that were running at
 * the fork never finish in the child.
 */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

static void fork_child(void)
{
    threads_alive = 0;
    threads_idle = 0;
    pthread_cond_init(&cond, NULL); /* its waiters stayed behind */
    pthread_mutex_unlock(&lock);
}

static void fork_handlers(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Makes threads while some queued job has no idle thread coming for it,
 * within the pool's size. Called with the lock held. */
static void grow_locked(void)
{
    while (queued_n > threads_idle && threads_alive < max_threads) {
        if (weft__thread_start(worker, NULL, 0) < 0)
            return;
        threads_alive++;
        threads_idle++;
    }
}

int weft_queue_work(weft_loop *loop, weft_work_fn work, weft_work_done_cb done,
                    void *ctx, weft_work **out)
{
    if (work == NULL)
        return WEFT_EINVAL;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    weft_work *w = weft__calloc(1, sizeof(*w));
    if (w == NULL)
        return WEFT_ENOMEM;
    w->loop = loop;
    w->work = work;
    w->done = done;
    w->ctx = ctx;
    w->state = QUEUED;

    pthread_once(&fork_once, fork_handlers);
    pthread_mutex_lock(&lock);
    weft__q_push(&queue, &w->node);
    queued_n++;
    grow_locked();
    if (threads_alive == 0) {
        /* Not one thread could be made: the job would never run. */
        weft__q_remove(&w->node);
        queued_n--;
        pthread_mutex_unlock(&lock);
        free(w);
        return WEFT_EAGAIN;
    }
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    loop->active_refs++;
    loop->work_pending++;
    if (out != NULL)
        *out = w;
    return 0;
}

int weft_work_cancel(weft_work *w)
{
    if (w == NULL)
        return WEFT_EINVAL;
    int err = 0;
    pthread_mutex_lock(&lock);
    if (w->state != QUEUED) {
        err = WEFT_EBUSY;
        goto out_unlock;
    }
    weft__q_remove(&w->node);
    queued_n--;
    w->state = DONE;
    w->status = WEFT_ECANCELED;
    weft__q_push(&w->loop->work_done, &w->node);
    weft__loop_wake(w->loop);
out_unlock:
    pthread_mutex_unlock(&lock);
    return err;
}

int weft_set_work_threads(unsigned n)
{
    if (n < 1 || n > WORK_THREADS_MAX)
        return WEFT_EINVAL;
    pthread_mutex_lock(&lock);
    max_threads = n;
    /* Idle threads above the new size must wake to end; below it, jobs
     * already waiting may now get more threads. */
    pthread_cond_broadcast(&cond);
    grow_locked();
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Called on the loop thread when the loop is woken. */
void weft__work_drain(weft_loop *loop)
{
    if (loop->work_pending == 0)
        return; /* no job of ours: leave the pool's lock alone */
    weft__qnode done;
    pthread_mutex_lock(&lock);
    weft__q_take_all(&done, &loop->work_done);
    pthread_mutex_unlock(&lock);
    /* Jobs finished or cancelled meanwhile (even by a `done` below) wait
     * in loop->work_done for the wake-up they made. */
    while (!weft__q_empty(&done)) {
        weft__qnode *n = done.next;
        weft__q_remove(n);
        weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
        loop->active_refs--;
        loop->work_pending--;
        if (w->done != NULL)
            w->done(loop, w->status, w->ctx);
        free(w);
    }
}

void weft__work_loop_free(weft_loop *loop)
{
    pthread_mutex_lock(&lock);
    weft__qnode *n, *next;
    for (n = queue.next; n != &queue; n = next) {
        next = n->next;
        weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
        if (w->loop != loop)
            continue;
        weft__q_remove(n);
        queued_n--;
        free(w);
    }
    for (n = running.next; n != &running; n = n->next) {
        weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
        if (w->loop == loop)
            w->loop = NULL;
    }
    while (!weft__q_empty(&loop->work_done)) {
        n = loop->work_done.next;
        weft__q_remove(n);
        free(WEFT__CONTAINER_OF(n, weft_work, node));
    }
    pthread_mutex_unlock(&lock);
}
