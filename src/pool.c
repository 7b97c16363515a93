/*
 * pool.c - the thread pool under both of weft's pools: the lookup pool
 * (dns.c) and the work pool (work.c). It owns the threads, the FIFO
 * queue and the counts; its owner owns the jobs. A job is a queue node
 * embedded in the owner's request, and the pool calls the owner three
 * times per job:
 *
 *   start(n)    lock held: n has left the queue for a thread
 *   run(n)      no lock: the blocking part
 *   finish(n)   lock held: the owner hands the result to its loop
 *
 * The pool's `lock` also guards whatever the owner's jobs share with
 * its loops (states, loop pointers, the loops' done lists), so a job's
 * hand-over to its loop needs one lock, not two.
 *
 * Threads are made as jobs need them, up to `max_threads`; lowering the
 * size lets the extra threads end once they are between jobs. A thread
 * counts as idle whenever it is not running a job: from its creation
 * (it takes a job as soon as it gets the lock) and while it is woken but
 * not yet holding the lock. So "queued jobs outnumber idle threads" is
 * exactly "some job has no thread coming for it".
 */
#include "internal.h"

/*
 * fork(): only the forking thread exists in the child, so a pool's
 * threads are gone there while its counts still say they wait. Every
 * pool's lock is held across the fork (no worker is inside it), and the
 * child's pools count no thread: the next submit makes one, and jobs
 * still queued then run too. Jobs running at the fork never finish in
 * the child.
 */
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static weft__pool *pools; /* every pool used so far, for the handlers */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&pools_lock);
    for (weft__pool *p = pools; p != NULL; p = p->next_pool)
        pthread_mutex_lock(&p->lock);
}

static void fork_parent(void)
{
    for (weft__pool *p = pools; p != NULL; p = p->next_pool)
        pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&pools_lock);
}

static void fork_child(void)
{
    for (weft__pool *p = pools; p != NULL; p = p->next_pool) {
        p->alive = 0;
        p->idle = 0;
        pthread_cond_init(&p->cond, NULL); /* its waiters stayed behind */
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&pools_lock);
}

static void fork_handlers(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Puts `p` on the handlers' list before its first job. Never with
 * p->lock held: fork_prepare takes pools_lock first. */
static void make_known(weft__pool *p)
{
    if (atomic_load_explicit(&p->known, memory_order_acquire))
        return;
    pthread_once(&fork_once, fork_handlers);
    pthread_mutex_lock(&pools_lock);
    if (!atomic_load_explicit(&p->known, memory_order_relaxed)) {
        p->next_pool = pools;
        pools = p;
        atomic_store_explicit(&p->known, true, memory_order_release);
    }
    pthread_mutex_unlock(&pools_lock);
}

static void *worker(void *arg)
{
    weft__pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (weft__q_empty(&p->queue) && p->alive <= p->max_threads)
            pthread_cond_wait(&p->cond, &p->lock);
        /* Checked between jobs only: a job is never abandoned. */
        if (p->alive > p->max_threads)
            break;
        p->idle--;
        weft__qnode *n = p->queue.next;
        weft__q_remove(n);
        p->queued--;
        p->start(n);
        pthread_mutex_unlock(&p->lock);

        p->run(n);

        pthread_mutex_lock(&p->lock);
        p->idle++;
        p->finish(n);
    }
    p->idle--;
    p->alive--;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Makes threads while some queued job has no idle thread coming for it,
 * within the pool's size. Lock held. */
static void grow_locked(weft__pool *p)
{
    while (p->queued > p->idle && p->alive < p->max_threads) {
        if (weft__thread_start(worker, p, p->stack_size) < 0)
            return;
        p->alive++;
        p->idle++;
    }
}

int weft__pool_submit(weft__pool *p, weft__qnode *n)
{
    make_known(p);
    int err = 0;
    pthread_mutex_lock(&p->lock);
    weft__q_push(&p->queue, n);
    p->queued++;
    grow_locked(p);
    if (p->alive == 0) {
        /* Not one thread could be made: the job would never run. */
        weft__q_remove(n);
        p->queued--;
        err = WEFT_EAGAIN;
    } else {
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    return err;
}

void weft__pool_unqueue_locked(weft__pool *p, weft__qnode *n)
{
    weft__q_remove(n);
    p->queued--;
}

void weft__pool_resize(weft__pool *p, unsigned max_threads)
{
    pthread_mutex_lock(&p->lock);
    p->max_threads = max_threads;
    /* Idle threads above the new size must wake to end; below it, jobs
     * already waiting may now get more threads. */
    pthread_cond_broadcast(&p->cond);
    grow_locked(p);
    pthread_mutex_unlock(&p->lock);
}

bool weft__pool_idle(weft__pool *p)
{
    pthread_mutex_lock(&p->lock);
    bool idle = p->queued == 0 && p->idle == p->alive;
    pthread_mutex_unlock(&p->lock);
    return idle;
}
