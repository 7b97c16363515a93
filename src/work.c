/*
 * work.c - the work pool (uv_queue_work): blocking jobs run on pool
 * threads, their `done` on the loop that queued them. Separate from the
 * lookup pool (dns.c), so a slow job never delays a name lookup.
 *
 * The threads, the FIFO queue and the fork handling are pool.c's: up to
 * 4 threads by default, weft_set_work_threads() from any thread. The
 * pool's lock guards everything a worker and a loop share: the queue,
 * each job's state and loop pointer, and every loop's `work_done` list.
 * A job's life:
 *
 *   state     where its node is          who may free it
 *   QUEUED    the pool's queue (FIFO)    weft__work_loop_free (dropped)
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

static void job_start(weft__qnode *n);
static void job_run(weft__qnode *n);
static void job_finish(weft__qnode *n);

static weft__pool pool = WEFT__POOL_INIT(pool, WORK_THREADS_DEFAULT, 0,
                                         job_start, job_run, job_finish);
static weft__qnode running = {&running, &running};

static void job_start(weft__qnode *n)
{
    weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
    w->state = RUNNING;
    weft__q_push(&running, &w->node);
}

static void job_run(weft__qnode *n)
{
    weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
    w->work(w->ctx);
}

static void job_finish(weft__qnode *n)
{
    weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
    weft__q_remove(&w->node);
    weft_loop *loop = w->loop;
    if (loop == NULL) {
        free(w); /* orphaned by weft_loop_close() */
        return;
    }
    w->state = DONE;
    weft__q_push(&loop->work_done, &w->node);
    /* Under the lock: weft__work_loop_free() takes it before the loop
     * goes, so the loop is still there to be woken. */
    weft__loop_wake(loop);
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

    int err = weft__pool_submit(&pool, &w->node);
    if (err < 0) {
        free(w);
        return err;
    }
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
    pthread_mutex_lock(&pool.lock);
    if (w->state != QUEUED) {
        err = WEFT_EBUSY;
        goto out_unlock;
    }
    weft__pool_unqueue_locked(&pool, &w->node);
    w->state = DONE;
    w->status = WEFT_ECANCELED;
    weft__q_push(&w->loop->work_done, &w->node);
    weft__loop_wake(w->loop);
out_unlock:
    pthread_mutex_unlock(&pool.lock);
    return err;
}

int weft_set_work_threads(unsigned n)
{
    if (n < 1 || n > WORK_THREADS_MAX)
        return WEFT_EINVAL;
    weft__pool_resize(&pool, n);
    return 0;
}

/* Called on the loop thread when the loop is woken. */
void weft__work_drain(weft_loop *loop)
{
    if (loop->work_pending == 0)
        return; /* no job of ours: leave the pool's lock alone */
    weft__qnode done;
    pthread_mutex_lock(&pool.lock);
    weft__q_take_all(&done, &loop->work_done);
    pthread_mutex_unlock(&pool.lock);
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
    pthread_mutex_lock(&pool.lock);
    weft__qnode *n, *next;
    for (n = pool.queue.next; n != &pool.queue; n = next) {
        next = n->next;
        weft_work *w = WEFT__CONTAINER_OF(n, weft_work, node);
        if (w->loop != loop)
            continue;
        weft__pool_unqueue_locked(&pool, n);
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
    pthread_mutex_unlock(&pool.lock);
}
