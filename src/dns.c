/*
 * dns.c - getaddrinfo off the loop, on a small pool used for lookups
 * alone (decision 9): a slow resolver never stalls I/O, and lookups never
 * queue behind anything else (the work pool, work.c, has its own
 * threads). Two doors share it: weft_dns_lookup() (Node's dns.lookup
 * with {all: true}) and the internal lookups of connect and listen.
 *
 * Threads: the pool (pool.c) takes requests from its FIFO queue, runs
 * getaddrinfo on one of up to DNS_THREADS threads, and hands the result
 * to the request's loop through its `dns_done` list and the loop's
 * wake-up (async.c). Everything a worker and a loop share (the queue,
 * each request's state and loop pointer, every loop's
 * dns_reqs/dns_done) is guarded by the pool's lock.
 *
 *   state      where its node is     who frees it
 *   QUEUED     the pool's queue      a cancel or loop close, at once
 *   RESOLVING  loop->dns_reqs        the worker, if its loop is gone
 *   DONE       loop->dns_done        the drain (after the callback, if
 *                                    any) or loop close
 *
 * The callbacks (`fn`, `cb`) are read and cleared on the loop thread
 * only; the worker never looks at them. Cancelling clears them, so the
 * result is freed unseen. Closing the loop orphans its resolving requests
 * (req->loop = NULL) and their worker frees them.
 *
 * A public lookup holds one of the loop's active_refs while its callback
 * is set (until just before it runs, or until it is cancelled); internal
 * lookups hold none, their stream or server keeps the loop alive.
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
/* Longer than any name DNS can carry (253): refused before the pool. */
#define HOST_MAX 1024

enum { QUEUED, RESOLVING, DONE };

struct weft_dns_req {
    weft__qnode node;      /* pool queue, loop->dns_reqs, dns_done */
    weft_loop *loop;       /* NULL once the loop is gone */
    weft__dns_fn fn;       /* internal lookups; NULL once cancelled */
    weft_dns_lookup_cb cb; /* weft_dns_lookup(); NULL once cancelled */
    void *ctx;
    int state;
    int family; /* AF_* */
    bool passive;
    bool literal; /* answered with `lit`, never went to the pool */
    int err;
    struct addrinfo *res;
    weft_address lit;
    char port[8];
    char host[];
};

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
    default: /* EAI_NONAME, EAI_NODATA, EAI_FAMILY, EAI_ADDRFAMILY, ... */
        return WEFT_ENOTFOUND;
    }
}

static void req_start(weft__qnode *n)
{
    weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
    /* Only requests of live loops are queued: loop close frees the
     * queued ones of its loop. */
    req->state = RESOLVING;
    weft__q_push(&req->loop->dns_reqs, &req->node);
}

static void req_run(weft__qnode *n)
{
    /* Nothing else reads `res` or `err` before the request is DONE, and
     * a resolving request is freed by its worker only. */
    weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
    /* SOCK_STREAM: one answer per address, not one per socket type. */
    struct addrinfo hints = {0};
    hints.ai_family = req->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (req->passive ? AI_PASSIVE : 0);
    req->res = NULL;
    req->err =
        gai_to_weft(getaddrinfo(req->host, req->port, &hints, &req->res));
}

static void req_finish(weft__qnode *n)
{
    weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
    weft_loop *loop = req->loop;
    if (loop == NULL) {
        if (req->res)
            freeaddrinfo(req->res);
        free(req);
        return;
    }
    req->state = DONE;
    weft__q_remove(&req->node);
    weft__q_push(&loop->dns_done, &req->node);
    /* Under the lock: loop close detaches its requests under it too,
     * so the loop is still there to be woken. */
    weft__loop_wake(loop);
}

/* 256 KiB stacks: getaddrinfo needs far less than the default 8 MiB. */
static weft__pool pool = WEFT__POOL_INIT(pool, DNS_THREADS, 256 * 1024,
                                         req_start, req_run, req_finish);

/* weft_dns_lookup()'s answer: the addrinfo list as weft_address, in the
 * resolver's order. Converted here rather than on the worker so that the
 * allocation is the loop thread's (weft__malloc's failure injection is
 * not thread-safe). */
static void deliver(weft__dns_req *req, weft_dns_lookup_cb cb)
{
    if (req->literal) {
        cb(req, 0, &req->lit, 1, req->ctx);
        return;
    }
    if (req->err < 0) {
        cb(req, req->err, NULL, 0, req->ctx);
        return;
    }
    size_t n = 0;
    for (struct addrinfo *ai = req->res; ai != NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            n++;
    if (n == 0) {
        cb(req, WEFT_ENOTFOUND, NULL, 0, req->ctx);
        return;
    }
    weft_address *v = weft__malloc(n * sizeof(*v));
    if (v == NULL) {
        cb(req, WEFT_ENOMEM, NULL, 0, req->ctx);
        return;
    }
    size_t i = 0;
    for (struct addrinfo *ai = req->res; ai != NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            weft__address_from(ai->ai_addr, ai->ai_addrlen, &v[i++]);
    cb(req, 0, v, n, req->ctx);
    free(v);
}

/* Called on the loop thread when the loop is woken. */
void weft__dns_drain(weft_loop *loop)
{
    if (loop->dns_pending == 0)
        return; /* nothing of ours in flight: leave the lock alone */
    weft__qnode done;
    pthread_mutex_lock(&pool.lock);
    weft__q_take_all(&done, &loop->dns_done);
    pthread_mutex_unlock(&pool.lock);
    /* A callback may cancel a request still in `done`: it then finds
     * that request's callbacks cleared and frees it unseen. */
    while (!weft__q_empty(&done)) {
        weft__qnode *n = done.next;
        weft__q_remove(n);
        weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
        loop->dns_pending--;
        if (req->cb != NULL) {
            weft_dns_lookup_cb cb = req->cb;
            req->cb = NULL; /* a cancel inside it must not unref again */
            loop->active_refs--;
            deliver(req, cb);
        } else if (req->fn != NULL) {
            req->fn(req, req->res, req->err, req->ctx);
            req->res = NULL; /* the callback's now */
        }
        if (req->res != NULL)
            freeaddrinfo(req->res);
        free(req);
    }
}

static weft__dns_req *req_new(weft_loop *loop, const char *host, int port,
                              int family, void *ctx)
{
    size_t hlen = strlen(host);
    weft__dns_req *req = weft__calloc(1, sizeof(*req) + hlen + 1);
    if (req == NULL)
        return NULL;
    req->loop = loop;
    req->ctx = ctx;
    req->family = family;
    loop->dns_pending++;
    snprintf(req->port, sizeof(req->port), "%d", port);
    memcpy(req->host, host, hlen + 1);
    return req;
}

bool weft__dns_idle(void)
{
    return weft__pool_idle(&pool);
}

/* Hands `req` to the pool; on failure it is freed (it was never seen). */
static int submit(weft__dns_req *req)
{
    req->state = QUEUED;
    if (weft__pool_submit(&pool, &req->node) < 0) {
        req->loop->dns_pending--;
        free(req);
        return WEFT_ENOMEM;
    }
    return 0;
}

int weft__dns_lookup_af(weft_loop *loop, const char *host, int port, int family,
                        bool passive, weft__dns_fn fn, void *ctx,
                        weft__dns_req **out)
{
    if (strlen(host) > HOST_MAX)
        return WEFT_EINVAL;
    weft__dns_req *req = req_new(loop, host, port, family, ctx);
    if (req == NULL)
        return WEFT_ENOMEM;
    req->fn = fn;
    req->passive = passive;
    int err = submit(req);
    if (err < 0)
        return err;
    *out = req;
    return 0;
}

int weft_dns_lookup(weft_loop *loop, const char *host, int family,
                    weft_dns_lookup_cb cb, void *ctx, weft_dns_req **out)
{
    int af;
    switch (family) {
    case 0:
        af = AF_UNSPEC;
        break;
    case 4:
        af = AF_INET;
        break;
    case 6:
        af = AF_INET6;
        break;
    default:
        return WEFT_EINVAL;
    }
    /* "" is refused too: Node answers it with an empty list only for
     * compatibility and warns that it is deprecated (DEP0118). */
    if (host == NULL || *host == '\0' || cb == NULL || strlen(host) > HOST_MAX)
        return WEFT_EINVAL;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    weft__dns_req *req = req_new(loop, host, 0, af, ctx);
    if (req == NULL)
        return WEFT_ENOMEM;
    req->cb = cb;
    weft__sockaddr sa;
    if (weft__parse_ip(host, 0, &sa) &&
        strlen(host) < sizeof(req->lit.address)) {
        /* As Node: an IP literal is its own answer, whatever `family`
         * asked for, and is returned as written (a zone kept). Through
         * dns_done and the wake-up, so it comes on a later turn. */
        weft__address_from(&sa.u.sa, sa.len, &req->lit);
        memcpy(req->lit.address, host, strlen(host) + 1);
        req->literal = true;
        pthread_mutex_lock(&pool.lock);
        req->state = DONE;
        weft__q_push(&loop->dns_done, &req->node);
        weft__loop_wake(loop);
        pthread_mutex_unlock(&pool.lock);
    } else {
        int err = submit(req);
        if (err < 0)
            return err;
    }
    loop->active_refs++;
    if (out != NULL)
        *out = req;
    return 0;
}

void weft_dns_cancel(weft_dns_req *req)
{
    if (req == NULL)
        return;
    if (req->cb != NULL) {
        req->cb = NULL;
        req->loop->active_refs--;
    }
    req->fn = NULL;
    /* Not started yet: nothing will ever look at it again. Resolving or
     * done: the worker or the drain frees it, unseen. */
    pthread_mutex_lock(&pool.lock);
    if (req->state == QUEUED) {
        weft__pool_unqueue_locked(&pool, &req->node);
        if (req->loop != NULL)
            req->loop->dns_pending--;
        free(req);
    }
    pthread_mutex_unlock(&pool.lock);
}

void weft__dns_cancel(weft__dns_req *req)
{
    weft_dns_cancel(req);
}

void weft__dns_loop_free(weft_loop *loop)
{
    pthread_mutex_lock(&pool.lock);
    /* Queued: dropped. Resolving: orphaned, the worker frees them. Done:
     * ours to free. No callback runs. */
    weft__qnode *n, *next;
    for (n = pool.queue.next; n != &pool.queue; n = next) {
        next = n->next;
        weft__dns_req *req = WEFT__CONTAINER_OF(n, weft__dns_req, node);
        if (req->loop == loop) {
            weft__pool_unqueue_locked(&pool, n);
            free(req);
        }
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
    pthread_mutex_unlock(&pool.lock);
}
