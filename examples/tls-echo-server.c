/*
 * tls-echo-server.c - the seed's echo server over TLS.
 *
 *   tls-echo-server CERT KEY [CA] [PORT]
 *
 * Listens on localhost (default port 8443) with the certificate chain
 * CERT and its key KEY. With CA, clients are asked for a certificate and
 * the greeting says whether theirs verified (the seed's "credentials
 * holding CA certificates request a client certificate"). Each client
 * gets "hello <who>\r\n" once the handshake is done, its bytes echoed,
 * and "goodbye\r\n" when it ends its side (end() sends close_notify).
 * Backpressure and SIGINT/SIGTERM are handled as in echo-server.c.
 * TLS_SESSION_TICKETS=N in the environment sets the TLS 1.3 session
 * tickets sent per handshake (-1: none; default: OpenSSL's 2).
 *
 * Try it with the test certificates:
 *
 *   tests/tls/gen-certs.sh /tmp/certs
 *   tls-echo-server /tmp/certs/server.pem /tmp/certs/server.key \
 *       /tmp/certs/ca.pem
 *   openssl s_client -connect localhost:8443 -CAfile /tmp/certs/ca.pem \
 *       -cert /tmp/certs/client.pem -key /tmp/certs/client.key
 *   tls-client --ca /tmp/certs/ca.pem localhost 8443 'hi there'
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

static int exit_status;
static weft_server *server;
static weft_credentials *creds;

typedef struct conn {
    weft_stream *stream;
    struct conn *prev, *next;
} conn;
static conn conns = {NULL, &conns, &conns};

static void on_secure(weft_stream *s, void *ctx)
{
    (void)ctx;
    char line[400];
    weft_certificate cert;
    if (weft_stream_get_peer_certificate(s, &cert) == 0)
        snprintf(line, sizeof(line), "hello %s (%s)\r\n", cert.subject,
                 weft_stream_verify_peer(s) ? "verified"
                                            : weft_stream_verify_error(s));
    else
        snprintf(line, sizeof(line), "hello stranger (%s)\r\n",
                 weft_stream_tls_version(s));
    weft_stream_write_string(s, line, NULL);
}

static void on_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)ctx;
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
    weft_stream_end_string(s, "goodbye\r\n", NULL);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    fprintf(stderr, "tls-echo-server: %s: %s\n", weft_err_name(err), msg);
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
    if (c == NULL || weft_stream_set_secure(s, creds) < 0) {
        free(c);
        weft_stream_destroy(s);
        return;
    }
    c->stream = s;
    c->next = &conns;
    c->prev = conns.prev;
    conns.prev->next = c;
    conns.prev = c;
    weft_stream_on_secure(s, on_secure, NULL);
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
        printf("tls echo server listening on %s port %d\n", a.address, a.port);
        fflush(stdout);
    }
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx);

/* Stops accepting, ends every connection (close_notify, then FIN) and
 * stops listening for signals: weft_run() returns once the last one has
 * closed. */
static void shut_down(void)
{
    weft_signal_off(NULL, SIGINT, on_stop_signal, NULL);
    weft_signal_off(NULL, SIGTERM, on_stop_signal, NULL);
    weft_server_close(server);
    for (conn *c = conns.next; c != &conns; c = c->next)
        weft_stream_end(c->stream, NULL, 0);
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx)
{
    (void)loop;
    (void)ctx;
    fprintf(stderr, "tls-echo-server: %s, closing\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    shut_down();
}

static void on_server_error(weft_server *srv, int err, const char *msg,
                            void *ctx)
{
    (void)srv;
    (void)err;
    (void)ctx;
    fprintf(stderr, "tls-echo-server: %s\n", msg);
    exit_status = 1;
    shut_down();
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tls-echo-server CERT KEY [CA] [PORT]\n");
        return 2;
    }
    int port = 8443;
    const char *ca = NULL;
    for (int i = 3; i < argc; i++) {
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (*end == '\0' && end != argv[i])
            port = (int)v;
        else
            ca = argv[i];
    }

    weft_credentials_options o = {0};
    o.cert_file = argv[1];
    o.key_file = argv[2];
    o.ca_file = ca;
    o.passphrase = getenv("TLS_KEY_PASSPHRASE");
    const char *tickets = getenv("TLS_SESSION_TICKETS");
    if (tickets != NULL)
        o.session_tickets = atoi(tickets);
    char why[256];
    int err;
    creds = weft_credentials_new(&o, true, &err, why, sizeof(why));
    if (creds == NULL) {
        fprintf(stderr, "tls-echo-server: %s: %s\n", weft_err_name(err), why);
        return 1;
    }

    server = weft_create_server(NULL, on_connection, NULL);
    if (server != NULL)
        weft_server_on_error(server, on_server_error, NULL);
    err = server ? weft_server_listen(server, port, "localhost", on_listening,
                                      NULL)
                 : WEFT_ENOMEM;
    if (err < 0) {
        fprintf(stderr, "tls-echo-server: listen %d: %s\n", port,
                weft_strerror(err));
        if (server != NULL)
            weft_server_close(server);
        weft_loop_close(weft_default_loop());
        weft_credentials_unref(creds);
        return 1;
    }
    /* Signal listeners do not keep the loop alive; the server does. */
    if (weft_signal_on(NULL, SIGINT, on_stop_signal, NULL) < 0 ||
        weft_signal_on(NULL, SIGTERM, on_stop_signal, NULL) < 0) {
        fprintf(stderr, "tls-echo-server: cannot listen for signals\n");
        exit_status = 1;
        shut_down();
    }
    weft_run();
    weft_loop_close(weft_default_loop());
    /* Streams held their own references; this is the last one. */
    weft_credentials_unref(creds);
    return exit_status;
}
