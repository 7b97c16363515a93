/*
 * curl_glue.c - libcurl's multi-socket interface on a weft loop (see
 * curl_glue.h). Owns the multi handle, one fd watcher per socket curl
 * wants watched, the one timer curl asks for, and the list of transfers
 * in flight. Never reads, writes or closes curl's sockets.
 *
 * The rules libcurl sets (CURLMOPT_SOCKETFUNCTION, CURLMOPT_TIMERFUNCTION,
 * curl_multi_socket_action) and how they map:
 *
 *   curl says                     the glue does
 *   IN / OUT / INOUT for s        weft_poll_start, or _change if watched
 *   REMOVE for s                  weft_poll_close; curl may add s again
 *                                 later (a cached connection reused)
 *   timeout n >= 0 ms             one weft timer in n ms (0: next turn,
 *                                 never a socket_action from inside the
 *                                 timer callback itself)
 *   timeout -1                    clear the timer
 *   a watcher or the timer fires  curl_multi_socket_action, then collect
 *                                 finished transfers (curl_multi_info_read)
 *
 * weft calls nothing from inside the call that caused it, and neither
 * does the glue: curl_multi_* is never called from curl's callbacks.
 */
#include "curl_glue.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* One socket curl wants watched: the `socketp` curl hands back. */
typedef struct gsock {
    curl_glue *g;
    weft_poll *poll;
    curl_socket_t fd;
    struct gsock *prev, *next;
} gsock;

struct curl_glue {
    weft_loop *loop;
    CURLM *multi;
    weft_timer *timer; /* NULL while curl wants none, and while it fires */
    curl_glue_done_cb done;
    void *ctx;
    CURL **easy; /* transfers added and not yet done */
    size_t n, cap;
    gsock socks; /* list head */
    char err[160];
};

static void set_error(curl_glue *g, const char *what, int err)
{
    if (g->err[0] == '\0')
        snprintf(g->err, sizeof(g->err), "%s: %s", what, weft_strerror(err));
}

/* Gives `easy` back to the caller through the done callback. */
static void finish(curl_glue *g, CURL *easy, CURLcode result)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->easy[i] == easy) {
            g->easy[i] = g->easy[--g->n];
            break;
        }
    }
    curl_multi_remove_handle(g->multi, easy);
    g->done(g, easy, result, g->ctx);
}

static void collect_done(curl_glue *g)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        /* `m` dies with the remove: copy first. */
        CURL *easy = m->easy_handle;
        CURLcode result = m->data.result;
        finish(g, easy, result);
    }
}

static void sock_close(gsock *s)
{
    weft_poll_close(s->poll);
    s->prev->next = s->next;
    s->next->prev = s->prev;
    free(s);
}

/* Once curl has aborted, nothing of it may keep the loop alive. */
static void abort_all(curl_glue *g)
{
    while (g->n > 0)
        finish(g, g->easy[g->n - 1], CURLE_ABORTED_BY_CALLBACK);
    for (gsock *s = g->socks.next; s != &g->socks; s = s->next)
        weft_poll_change(s->poll, 0);
    if (g->timer != NULL) {
        weft_clear_timer(g->timer);
        g->timer = NULL;
    }
}

static void act(curl_glue *g, curl_socket_t fd, int flags)
{
    int running;
    CURLMcode mc = curl_multi_socket_action(g->multi, fd, flags, &running);
    collect_done(g);
    if (mc != CURLM_OK) {
        /* CURLM_ABORTED_BY_CALLBACK: one of ours returned -1 and said
         * why in g->err. */
        if (g->err[0] == '\0')
            snprintf(g->err, sizeof(g->err), "curl_multi_socket_action: %s",
                     curl_multi_strerror(mc));
        abort_all(g);
    }
}

static void on_poll(weft_poll *poll, unsigned events, void *ctx)
{
    (void)poll;
    gsock *s = ctx;
    int flags = 0;
    if (events & WEFT_POLL_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & WEFT_POLL_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    if (events & WEFT_POLL_ERROR)
        flags |= CURL_CSELECT_ERR;
    /* `s` may be freed inside (curl says REMOVE): read it first. */
    act(s->g, s->fd, flags);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp)
{
    (void)easy;
    curl_glue *g = userp;
    gsock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            sock_close(s);
            curl_multi_assign(g->multi, fd, NULL);
        }
        return 0;
    }
    unsigned events = 0;
    if (what & CURL_POLL_IN)
        events |= WEFT_POLL_READABLE;
    if (what & CURL_POLL_OUT)
        events |= WEFT_POLL_WRITABLE;
    if (s != NULL) {
        int err = weft_poll_change(s->poll, events);
        if (err < 0) {
            set_error(g, "weft_poll_change", err);
            return -1;
        }
        return 0;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        set_error(g, "watch socket", WEFT_ENOMEM);
        return -1;
    }
    int err = weft_poll_start(g->loop, fd, events, on_poll, s, &s->poll);
    if (err < 0) {
        free(s);
        set_error(g, "weft_poll_start", err);
        return -1;
    }
    s->g = g;
    s->fd = fd;
    s->next = &g->socks;
    s->prev = g->socks.prev;
    g->socks.prev->next = s;
    g->socks.prev = s;
    curl_multi_assign(g->multi, fd, s);
    return 0;
}

static void on_timeout(weft_timer *t, void *ctx)
{
    (void)t;
    curl_glue *g = ctx;
    g->timer = NULL; /* a one-shot: weft frees it after this returns */
    act(g, CURL_SOCKET_TIMEOUT, 0);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    curl_glue *g = userp;
    if (g->timer != NULL) {
        weft_clear_timer(g->timer);
        g->timer = NULL;
    }
    if (timeout_ms < 0)
        return 0;
    g->timer = weft_set_timeout(g->loop, (uint64_t)timeout_ms, on_timeout, g);
    if (g->timer == NULL) {
        set_error(g, "weft_set_timeout", WEFT_ENOMEM);
        return -1;
    }
    return 0;
}

curl_glue *curl_glue_new(weft_loop *loop, curl_glue_done_cb done, void *ctx)
{
    if (done == NULL)
        return NULL;
    curl_glue *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->loop = loop;
    g->done = done;
    g->ctx = ctx;
    g->socks.next = g->socks.prev = &g->socks;
    g->multi = curl_multi_init();
    if (g->multi == NULL) {
        free(g);
        return NULL;
    }
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
    return g;
}

CURLM *curl_glue_multi(curl_glue *g)
{
    return g->multi;
}

CURLMcode curl_glue_add(curl_glue *g, CURL *easy)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        CURL **v = realloc(g->easy, cap * sizeof(*v));
        if (v == NULL)
            return CURLM_OUT_OF_MEMORY;
        g->easy = v;
        g->cap = cap;
    }
    /* curl arms its timer from inside (0 ms): the transfer starts from
     * the loop, not from this call. */
    CURLMcode mc = curl_multi_add_handle(g->multi, easy);
    if (mc == CURLM_OK)
        g->easy[g->n++] = easy;
    return mc;
}

size_t curl_glue_pending(const curl_glue *g)
{
    return g->n;
}

const char *curl_glue_error(const curl_glue *g)
{
    return g->err[0] ? g->err : NULL;
}

void curl_glue_free(curl_glue *g)
{
    if (g == NULL)
        return;
    while (g->n > 0)
        finish(g, g->easy[g->n - 1], CURLE_ABORTED_BY_CALLBACK);
    /* Closes cached connections; curl may still call on_socket (REMOVE)
     * and on_timer from inside, so both stay usable until it returns. */
    curl_multi_cleanup(g->multi);
    while (g->socks.next != &g->socks)
        sock_close(g->socks.next);
    if (g->timer != NULL)
        weft_clear_timer(g->timer);
    free(g->easy);
    free(g);
}
