/*
 * echo-server.c - the seed's echo server in weft.
 *
 *   echo-server            listen on localhost:8124
 *   echo-server 9000       listen on localhost:9000
 *   echo-server /tmp/e.sk  listen on a Unix socket
 *
 * Each client gets "hello\r\n", its bytes echoed back exactly as they
 * came (raw bytes, no decoding, so binary data survives), and
 * "goodbye\r\n" when it ends its side. Made robust as a first program
 * should be: it honours backpressure (pause when write() says false,
 * resume on 'drain'), reports errors without dying, exits 1 with the
 * reason when it cannot listen, and on SIGINT/SIGTERM (weft's signal
 * events: no handler of our own, no polling) stops accepting and ends
 * every connection, so the loop finishes and the process exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

static weft_server *server;
static int exit_status;

/* Open connections, so a signal can end them. */
typedef struct conn {
    weft_stream *stream;
    struct conn *prev, *next;
} conn;
static conn conns = {NULL, &conns, &conns};

static void on_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_write_string(s, "hello\r\n", NULL);
}

static void on_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)ctx;
    /* false: the rest sits in weft's queue; stop reading until it drains,
     * so a client that never reads cannot grow our memory. */
    if (weft_stream_write(s, data, len) == 0)
        weft_stream_pause(s);
}

static void on_drain(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_resume(s);
}

static void on_end(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_write_string(s, "goodbye\r\n", NULL);
    weft_stream_end(s, NULL, 0);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    (void)err;
    fprintf(stderr, "echo-server: %s\n", msg);
}

static void on_close(weft_stream *s, bool had_error, void *ctx)
{
    conn *c = ctx;
    (void)s;
    (void)had_error;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    free(c);
}

static void on_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    conn *c = malloc(sizeof(*c));
    if (c == NULL) {
        weft_stream_destroy(s);
        return;
    }
    c->stream = s;
    c->next = &conns;
    c->prev = conns.prev;
    conns.prev->next = c;
    conns.prev = c;
    weft_stream_on_connect(s, on_connect, NULL);
    weft_stream_on_data(s, on_data, NULL);
    weft_stream_on_drain(s, on_drain, NULL);
    weft_stream_on_end(s, on_end, NULL);
    weft_stream_on_error(s, on_error, NULL);
    weft_stream_on_close(s, on_close, c);
}

static void on_listening(weft_server *srv, void *ctx)
{
    (void)ctx;
    weft_address a;
    if (weft_server_address(srv, &a) == 0) {
        if (a.family)
            printf("echo server listening on %s port %d\n", a.address,
                   a.port);
        else
            printf("echo server listening on %s\n", a.address);
        fflush(stdout);
    }
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx);

/* Stops accepting, ends every connection and stops listening for the
 * signals: once the last connection closes, nothing is left and
 * weft_run() returns. */
static void shut_down(void)
{
    weft_signal_off(NULL, SIGINT, on_stop_signal, NULL);
    weft_signal_off(NULL, SIGTERM, on_stop_signal, NULL);
    weft_server_close(server);
    for (conn *c = conns.next; c != &conns; c = c->next)
        weft_stream_end(c->stream, NULL, 0);
}

static void on_server_error(weft_server *srv, int err, const char *msg,
                            void *ctx)
{
    (void)srv;
    (void)err;
    (void)ctx;
    /* A listen that fails (a name that resolves to an address in use, or
     * not ours) arrives here: say so and fail, never exit 0 in silence. */
    fprintf(stderr, "echo-server: %s\n", msg);
    exit_status = 1;
    shut_down();
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx)
{
    (void)loop;
    (void)ctx;
    fprintf(stderr, "echo-server: %s, closing\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    shut_down();
}

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "8124";

    server = weft_create_server(NULL, on_connection, NULL);
    if (server == NULL) {
        fprintf(stderr, "echo-server: out of memory\n");
        return 1;
    }
    weft_server_on_error(server, on_server_error, NULL);
    int err;
    if (strchr(where, '/') != NULL) {
        err = weft_server_listen_path(server, where, on_listening, NULL);
    } else {
        char *end;
        long port = strtol(where, &end, 10);
        err = *end != '\0' ? WEFT_EINVAL
                           : weft_server_listen(server, (int)port, "localhost",
                                                on_listening, NULL);
    }
    if (err < 0) {
        fprintf(stderr, "echo-server: listen %s: %s\n", where,
                weft_strerror(err));
        weft_server_close(server);
        weft_loop_close(weft_default_loop());
        return 1;
    }
    /* Signal listeners do not keep the loop alive (as in Node): the
     * server does, until shut_down() closes it. */
    if (weft_signal_on(NULL, SIGINT, on_stop_signal, NULL) < 0 ||
        weft_signal_on(NULL, SIGTERM, on_stop_signal, NULL) < 0) {
        fprintf(stderr, "echo-server: cannot listen for signals\n");
        weft_server_close(server);
        weft_loop_close(weft_default_loop());
        return 1;
    }
    weft_run();
    weft_loop_close(weft_default_loop());
    return exit_status;
}
