/*
 * dns.c - getaddrinfo off the loop, on a small pool used for lookups
 * alone (decision 9): a slow resolver never stalls I/O, and lookups never
 * queue behind anything else.
 *
 * Threads: workers take requests from one global queue, run getaddrinfo
 * and hand the result to the request's loop through its `dns_done` list
 * and the loop's wake-up (async.c). Everything a worker and a loop share is guarded by the
 * one `lock` below. A request belongs to its loop while in flight
 * (loop->dns_reqs); cancelling it only clears `fn`, so the worker's
 * result is freed unseen; closing the loop orphans its requests
 * (req->loop = NULL) and the worker frees them.
 */
#include "internal.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Enough for several slow lookups at once without a thread per request. */
#define DNS_THREADS 4

struct weft__dns_req {
    weft__qnode node; /* global queue, then loop->dns_reqs / dns_done */
    weft_loop *loop;  /* NULL once the loop is gone */
    weft__dns_fn fn;  /* NULL once cancelled */
    void *ctx;
    bool passive;
    int err;
    struct addrinfo *res;
    char port[8];
    char host[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static weft__qnode work = {&work, &work};
static int threads_started;
static int threads_idle;

static int gai_to_weft(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EAI_AGAIN:
        return WEFT_EAI_AGAIN;
    case EAI_MEMORY:
        return WEFT_ENOMEM;
    case EAI_SYSTEM:
        return weft__err(errno);
    default: /* EAI_NONAME, EAI_NODATA, EAI_FAMILY, ... */
        return WEFT_ENOTFOUND;
    }
}

static void *worker(void *arg)
{
    WEFT__UNUSED(arg);
    pthread_mutex_lock(&lock);
    for (;;) {
        while (weft__q_empty(&work)) {
            threads_idle++;
            pthread_cond_wait(&work_cond, &lock);
            threads_idle--;
        }
        weft__qnode *n = work.next;
        weft__q_remove(n);
        weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
        if (req->loop != NULL)
            weft__q_push(&req->loop->dns_reqs, &req->node);
        pthread_mutex_unlock(&lock);

        struct addrinfo hints = {0};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV | (req->passive ? AI_PASSIVE : 0);
        int rc = getaddrinfo(req->host, req->port, &hints, &req->res);
        req->err = gai_to_weft(rc);

        pthread_mutex_lock(&lock);
        weft_loop *loop = req->loop;
        if (loop == NULL) {
            if (req->res)
                freeaddrinfo(req->res);
            free(req);
            continue;
        }
        weft__q_remove(&req->node);
        weft__q_push(&loop->dns_done, &req->node);
        /* Under the lock: loop close detaches its requests under it too,
         * so the loop is still there to be woken. */
        weft__loop_wake(loop);
    }
    return NULL;
}

/* Called on the loop thread when the loop is woken. */
void weft__dns_drain(weft_loop *loop)
{
    weft__qnode done;
    weft__q_init(&done);
    pthread_mutex_lock(&lock);
    while (!weft__q_empty(&loop->dns_done)) {
        weft__qnode *n = loop->dns_done.next;
        weft__q_remove(n);
        weft__q_push(&done, n);
    }
    pthread_mutex_unlock(&lock);
    while (!weft__q_empty(&done)) {
        weft__qnode *n = done.next;
        weft__q_remove(n);
        weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
        if (req->fn != NULL)
            req->fn(req, req->res, req->err, req->ctx);
        else if (req->res != NULL)
            freeaddrinfo(req->res);
        free(req);
    }
}

int weft__dns_lookup(weft_loop *loop, const char *host, int port, bool passive,
                     weft__dns_fn fn, void *ctx, weft__dns_req **out)
{
    size_t hlen = strlen(host);
    if (hlen > 1024)
        return WEFT_EINVAL;
    weft__dns_req *req = weft__calloc(1, sizeof(*req) + hlen + 1);
    if (req == NULL)
        return WEFT_ENOMEM;
    req->loop = loop;
    req->fn = fn;
    req->ctx = ctx;
    req->passive = passive;
    snprintf(req->port, sizeof(req->port), "%d", port);
    memcpy(req->host, host, hlen + 1);

    pthread_mutex_lock(&lock);
    if (threads_idle == 0 && threads_started < DNS_THREADS) {
        if (weft__thread_start(worker, NULL, 256 * 1024) == 0)
            threads_started++;
        if (threads_started == 0) {
            pthread_mutex_unlock(&lock);
            free(req);
            return WEFT_ENOMEM;
        }
    }
    weft__q_push(&work, &req->node);
    pthread_cond_signal(&work_cond);
    pthread_mutex_unlock(&lock);
    *out = req;
    return 0;
}

void weft__dns_cancel(weft__dns_req *req)
{
    /* Only the loop thread reads fn; the worker never touches it. */
    req->fn = NULL;
}

void weft__dns_loop_free(weft_loop *loop)
{
    pthread_mutex_lock(&lock);
    /* Requests still queued or resolving: the worker frees them. Those
     * already done are ours to free. */
    weft__qnode *n;
    for (n = work.next; n != &work; n = n->next) {
        weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
        if (req->loop == loop)
            req->loop = NULL;
    }
    while (!weft__q_empty(&loop->dns_reqs)) {
        n = loop->dns_reqs.next;
        weft__q_remove(n);
        WEFT__CONTAINER_OF(n, weft__dns_req, node)->loop = NULL;
    }
    while (!weft__q_empty(&loop->dns_done)) {
        n = loop->dns_done.next;
        weft__q_remove(n);
        weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
        if (req->res)
            freeaddrinfo(req->res);
        free(req);
    }
    pthread_mutex_unlock(&lock);
}
