/*
 * multicore-echo.c - an echo server on every core: one loop per thread,
 * each listening on the same port with SO_REUSEPORT, so the kernel
 * spreads connections over them.
 *
 *   multicore-echo                 127.0.0.1:8124, one thread per CPU
 *   multicore-echo PORT [THREADS] [HOST]
 *
 * PORT 0 picks a free port (printed). On SIGINT or SIGTERM the main
 * thread asks every worker, through weft_loop_call() (the one door into
 * another thread's loop), to close its server and end its connections;
 * a worker whose peers have not closed a second later destroys them.
 * Each worker tells the main thread when its loop has finished; when all
 * have, the process exits 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

/* How long peers get to close after our FIN before we drop them. */
#define GRACE_MS 1000
#define MAX_THREADS 64

typedef struct conn {
    weft_stream *stream;
    struct conn *prev, *next;
} conn;

typedef struct worker {
    int id;
    weft_loop *loop;
    weft_server *server;
    pthread_t thread;
    conn conns; /* open connections, to end them at shutdown */
    bool stopping;
} worker;

static weft_loop *main_loop;
static worker workers[MAX_THREADS];
static int nworkers, exited;

/* ---- on a worker's thread -------------------------------------------- */

static void on_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)ctx;
    if (weft_stream_write(s, data, len) == 0)
        weft_stream_pause(s); /* resumed on 'drain' */
}

static void on_drain(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_resume(s);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)err;
    (void)ctx;
    worker *w = weft_stream_data(s);
    fprintf(stderr, "multicore-echo[%d]: %s\n", w->id, msg);
}

static void on_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    conn *c = ctx;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    free(c);
}

static void on_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    worker *w = ctx;
    conn *c = malloc(sizeof(*c));
    if (c == NULL) {
        fprintf(stderr, "multicore-echo[%d]: out of memory\n", w->id);
        weft_stream_destroy(s);
        return;
    }
    c->stream = s;
    c->next = &w->conns;
    c->prev = w->conns.prev;
    w->conns.prev->next = c;
    w->conns.prev = c;
    weft_stream_set_data(s, w);
    weft_stream_on_data(s, on_data, NULL);
    weft_stream_on_drain(s, on_drain, NULL);
    weft_stream_on_error(s, on_error, c);
    weft_stream_on_close(s, on_close, c);
    if (w->stopping) /* accepted in the turn the stop arrived */
        weft_stream_end(s, NULL, 0);
}

static void on_server_error(weft_server *srv, int err, const char *msg,
                            void *ctx)
{
    (void)srv;
    (void)err;
    worker *w = ctx;
    fprintf(stderr, "multicore-echo[%d]: %s\n", w->id, msg);
}

static void drop_stragglers(weft_timer *t, void *ctx)
{
    (void)t;
    worker *w = ctx;
    /* Destroying unlinks from the list only at 'close': walk a copy of
     * the links that stays valid until then. */
    for (conn *c = w->conns.next; c != &w->conns; c = c->next)
        weft_stream_destroy(c->stream);
}

/* Called on the worker's thread, queued there by the main thread. */
static void worker_stop(weft_loop *loop, void *ctx)
{
    worker *w = ctx;
    if (w->stopping)
        return;
    w->stopping = true;
    weft_server_close(w->server);
    for (conn *c = w->conns.next; c != &w->conns; c = c->next)
        weft_stream_end(c->stream, NULL, 0);
    /* Unref'd: it must not keep the loop alive once every peer closed. */
    weft_timer *t = weft_set_timeout(loop, GRACE_MS, drop_stragglers, w);
    if (t != NULL)
        weft_timer_unref(t);
}

/* Called on the main thread, queued there by a worker that finished. */
static void worker_exited(weft_loop *loop, void *ctx)
{
    (void)ctx;
    if (++exited == nworkers)
        weft_loop_unref(loop); /* main_loop ends */
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    weft_loop_run(w->loop);
    /* Everything is closed; nothing else reaches this loop. */
    weft_loop_close(w->loop);
    int err = weft_loop_call(main_loop, worker_exited, w);
    if (err < 0)
        fprintf(stderr, "multicore-echo[%d]: %s\n", w->id, weft_strerror(err));
    return NULL;
}

/* ---- on the main thread ---------------------------------------------- */

static void on_signal(weft_loop *loop, int signum, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "multicore-echo: %s, stopping %d workers\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM", nworkers);
    weft_signal_off(loop, SIGINT, on_signal, NULL);
    weft_signal_off(loop, SIGTERM, on_signal, NULL);
    for (int i = 0; i < nworkers; i++) {
        int err = weft_loop_call(workers[i].loop, worker_stop, &workers[i]);
        if (err < 0)
            fprintf(stderr, "multicore-echo: worker %d: %s\n", i,
                    weft_strerror(err));
    }
}

/* Makes worker `w`'s loop and server and listens; the thread that will
 * run the loop starts afterwards, so it takes the handles over whole. */
static int worker_listen(worker *w, int port, const char *host)
{
    w->conns.next = w->conns.prev = &w->conns;
    w->loop = weft_loop_new();
    if (w->loop == NULL)
        return WEFT_ENOMEM;
    w->server = weft_create_server(w->loop, on_connection, w);
    if (w->server == NULL)
        return WEFT_ENOMEM;
    weft_server_on_error(w->server, on_server_error, w);
    weft_server_set_reuse_port(w->server, true);
    return weft_server_listen(w->server, port, host, NULL, NULL);
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8124;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    nworkers = argc > 2 ? atoi(argv[2]) : (int)(ncpu > 0 ? ncpu : 1);
    const char *host = argc > 3 ? argv[3] : "127.0.0.1";
    if (nworkers < 1 || nworkers > MAX_THREADS || port < 0 || port > 65535) {
        fprintf(stderr, "usage: multicore-echo [PORT] [1..%d] [HOST]\n",
                MAX_THREADS);
        return 2;
    }
    main_loop = weft_default_loop();
    if (main_loop == NULL) {
        fprintf(stderr, "multicore-echo: out of memory\n");
        return 1;
    }
    int status = 0;
    for (int i = 0; i < nworkers; i++) {
        workers[i].id = i;
        int err = worker_listen(&workers[i], port, host);
        if (err < 0) {
            fprintf(stderr, "multicore-echo: listen %s:%d: %s\n", host, port,
                    weft_strerror(err));
            status = 1;
            nworkers = i + 1;
            goto out_close;
        }
        if (port == 0) { /* the others join the port the first one got */
            weft_address a;
            weft_server_address(workers[i].server, &a);
            port = a.port;
        }
    }
    /* Ref'd until every worker has reported back. Signal listeners do
     * not keep a loop alive. */
    weft_loop_ref(main_loop);
    if (weft_signal_on(main_loop, SIGINT, on_signal, NULL) < 0 ||
        weft_signal_on(main_loop, SIGTERM, on_signal, NULL) < 0) {
        fprintf(stderr, "multicore-echo: cannot listen for signals\n");
        status = 1;
        goto out_close;
    }
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main,
                           &workers[i]) != 0) {
            /* Workers not started are closed here; those running are
             * stopped the way a signal stops them. */
            fprintf(stderr, "multicore-echo: cannot start thread %d\n", i);
            for (int j = i; j < nworkers; j++) {
                weft_server_close(workers[j].server);
                weft_loop_close(workers[j].loop);
            }
            nworkers = i;
            status = 1;
            if (nworkers == 0)
                weft_loop_unref(main_loop);
            else
                on_signal(main_loop, SIGTERM, NULL);
            break;
        }
    }
    printf("multicore-echo listening on %s port %d with %d threads\n", host,
           port, nworkers);
    fflush(stdout);
    weft_run();
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
    weft_loop_close(main_loop);
    return status;

out_close:
    for (int i = 0; i < nworkers; i++) {
        if (workers[i].loop != NULL) {
            if (workers[i].server != NULL)
                weft_server_close(workers[i].server);
            weft_loop_close(workers[i].loop);
        }
    }
    weft_loop_close(main_loop);
    return status;
}
