/*
 * starttls-server.c - an SMTP-shaped server that upgrades to TLS in the
 * middle of a connection (STARTTLS), as SMTP, IMAP, POP3 and XMPP do.
 *
 *   starttls-server CERT KEY [PORT] [HOST]
 *
 * Listens on HOST (default 127.0.0.1) port PORT (default 2525; 0 picks a
 * free one, printed on stdout) with the certificate chain CERT and its
 * key KEY. The plaintext phase speaks just enough SMTP:
 *
 *   S: 220 weft ESMTP ready
 *   C: EHLO x                 S: 250-weft / 250 STARTTLS
 *   C: STARTTLS               S: 220 go ahead      (then the TLS handshake)
 *   C: QUIT                   S: 221 bye           (and the end)
 *
 * After the handshake the client gets "220 weft ESMTP ready (TLS)\r\n"
 * and from then on every byte it sends is echoed back exactly as it came
 * (raw bytes, with backpressure as in echo-server.c).
 *
 * The one rule that matters here (docs/tls.md, CVE-2011-0411): bytes the
 * client sent after "STARTTLS\r\n" but before the handshake came as
 * plaintext, so anyone on the path could have written them. This server
 * answers nothing to them, says so on stderr and closes the connection.
 *
 * SIGINT/SIGTERM stop accepting and end every connection (a plaintext
 * one gets "421"); peers that do not close within a grace period are
 * dropped, so the process always exits, with 0. Every error is reported
 * on stderr; a listen that fails exits 1.
 *
 * Try it with the test certificates:
 *
 *   tests/tls/gen-certs.sh /tmp/certs
 *   starttls-server /tmp/certs/server.pem /tmp/certs/server.key 2525
 *   openssl s_client -connect 127.0.0.1:2525 -starttls smtp \
 *       -CAfile /tmp/certs/ca.pem -verify_return_error -quiet
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "weft.h"

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF. */
#define LINE_MAX_LEN 512
/* How long peers get to close after SIGINT/SIGTERM before they are
 * dropped: long enough for a TLS close_notify round trip, short enough
 * that a stop is never held up by a client that went quiet. */
#define GRACE_MS 2000

typedef enum {
    PLAIN,     /* SMTP commands, line by line */
    UPGRADING, /* "220 go ahead" still queued: set_secure waits for drain */
    HANDSHAKE, /* set_secure done, waiting for 'secure' */
    SECURE,    /* TLS: echo */
    CLOSING,   /* QUIT answered or refused: nothing more is read */
} conn_state;

typedef struct conn {
    weft_stream *stream;
    conn_state state;
    size_t len; /* bytes of an unfinished command line in `line` */
    char line[LINE_MAX_LEN];
    struct conn *prev, *next;
} conn;

static weft_server *server;
static weft_credentials *creds;
static int exit_status;
static bool stopping;
/* Open connections, so a signal can end them. */
static conn conns = {.prev = &conns, .next = &conns};

static void reply(conn *c, const char *text)
{
    /* 0: the rest waits in weft's queue. Stop reading until 'drain', so a
     * client that pipelines commands and never reads the answers cannot
     * grow our memory. */
    if (weft_stream_write_string(c->stream, text, NULL) == 0)
        weft_stream_pause(c->stream);
}

/* WEFT_EBUSY: "220 go ahead" is still queued, and TLS must not start
 * under a plaintext write (the peer would find it in the middle of the
 * handshake). Stay paused and come back from 'drain'. */
static void start_tls(conn *c)
{
    int err = weft_stream_set_secure(c->stream, creds);
    if (err == WEFT_EBUSY) {
        c->state = UPGRADING;
        weft_stream_pause(c->stream);
        return;
    }
    if (err < 0) {
        fprintf(stderr, "starttls-server: %s:%d: set_secure: %s\n",
                weft_stream_remote_address(c->stream),
                weft_stream_remote_port(c->stream), weft_strerror(err));
        c->state = CLOSING;
        weft_stream_destroy(c->stream);
        return;
    }
    c->state = HANDSHAKE;
    weft_stream_resume(c->stream);
}

/* Plaintext that followed STARTTLS: no answer, a line on stderr, and
 * the connection closed now (destroy: nothing more is read from it). */
static void refuse_plaintext(conn *c, size_t n)
{
    fprintf(stderr,
            "starttls-server: %s:%d: %zu plaintext bytes after STARTTLS "
            "(CVE-2011-0411): refused, closing\n",
            weft_stream_remote_address(c->stream),
            weft_stream_remote_port(c->stream), n);
    c->state = CLOSING;
    weft_stream_destroy(c->stream);
}

/* One command line, without its line ending. `after` is how many bytes
 * the client sent behind it that this server has already received. */
static void command(conn *c, const char *cmd, size_t after)
{
    if (strncasecmp(cmd, "EHLO", 4) == 0 && (cmd[4] == ' ' || !cmd[4])) {
        reply(c, "250-weft\r\n250 STARTTLS\r\n");
    } else if (strncasecmp(cmd, "HELO", 4) == 0 && (cmd[4] == ' ' || !cmd[4])) {
        reply(c, "250 weft\r\n");
    } else if (strcasecmp(cmd, "STARTTLS") == 0) {
        if (after > 0) {
            /* CVE-2011-0411: these bytes came before any handshake, in
             * plaintext that anyone on the path could have written (or
             * added). Running them as if they had come under TLS is the
             * bug; answering them at all tells an injector it worked.
             * Discarding them and going on would also be correct, but
             * closing is the safe choice: a client that pipelines past
             * STARTTLS is broken or attacked, and nothing it sends on
             * this connection can be trusted any more. */
            refuse_plaintext(c, after);
            return;
        }
        int r = weft_stream_write_string(c->stream, "220 go ahead\r\n", NULL);
        if (r < 0) /* the stream is failing: 'error' and 'close' follow */
            return;
        start_tls(c);
    } else if (strcasecmp(cmd, "QUIT") == 0) {
        c->state = CLOSING;
        weft_stream_end_string(c->stream, "221 bye\r\n", NULL);
    } else if (strcasecmp(cmd, "NOOP") == 0) {
        reply(c, "250 ok\r\n");
    } else {
        reply(c, "500 unrecognized command\r\n");
    }
}

/* Plaintext: gather lines, run each command in order. */
static void plain_data(conn *c, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && c->state == PLAIN) {
        char ch = data[i++];
        if (ch == '\n') {
            if (c->len > 0 && c->line[c->len - 1] == '\r')
                c->len--;
            c->line[c->len] = '\0';
            c->len = 0;
            command(c, c->line, len - i);
        } else if (c->len + 1 < sizeof(c->line)) {
            c->line[c->len++] = ch;
        } else {
            c->state = CLOSING;
            weft_stream_end_string(c->stream, "500 line too long\r\n", NULL);
        }
    }
}

static void on_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    conn *c = ctx;
    switch (c->state) {
    case PLAIN:
        plain_data(c, data, len);
        break;
    case UPGRADING:
        /* Plaintext the client sent while our "220 go ahead" was still
         * queued, so before it could have seen it: the same injection. */
        refuse_plaintext(c, len);
        break;
    case SECURE:
        /* Raw bytes back, under TLS. */
        if (weft_stream_write(s, data, len) == 0)
            weft_stream_pause(s);
        break;
    case HANDSHAKE: /* weft delivers no 'data' before 'secure' */
    case CLOSING:
        break;
    }
}

static void on_drain(weft_stream *s, void *ctx)
{
    conn *c = ctx;
    if (c->state == UPGRADING)
        start_tls(c);
    else
        weft_stream_resume(s);
}

static void on_secure(weft_stream *s, void *ctx)
{
    conn *c = ctx;
    c->state = SECURE;
    if (stopping) { /* the handshake finished after the signal */
        weft_stream_end(s, NULL, 0);
        return;
    }
    if (weft_stream_write_string(s, "220 weft ESMTP ready (TLS)\r\n", NULL) ==
        0)
        weft_stream_pause(s);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)err;
    (void)ctx;
    fprintf(stderr, "starttls-server: %s\n", msg);
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
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        fprintf(stderr, "starttls-server: out of memory, connection dropped\n");
        weft_stream_destroy(s);
        return;
    }
    c->stream = s;
    c->state = PLAIN;
    c->next = &conns;
    c->prev = conns.prev;
    conns.prev->next = c;
    conns.prev = c;
    weft_stream_on_data(s, on_data, c);
    weft_stream_on_drain(s, on_drain, c);
    weft_stream_on_secure(s, on_secure, c);
    weft_stream_on_error(s, on_error, c);
    weft_stream_on_close(s, on_close, c);
    if (stopping) /* accepted in the turn the signal arrived */
        weft_stream_end_string(s, "421 weft closing\r\n", NULL);
    else
        reply(c, "220 weft ESMTP ready\r\n");
}

static void on_listening(weft_server *srv, void *ctx)
{
    (void)ctx;
    weft_address a;
    if (weft_server_address(srv, &a) == 0) {
        printf("starttls-server listening on %s port %d\n", a.address, a.port);
        fflush(stdout);
    }
}

static void drop_stragglers(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    /* destroy() unlinks only at 'close', on a later turn: the links stay
     * valid for this walk. */
    for (conn *c = conns.next; c != &conns; c = c->next)
        weft_stream_destroy(c->stream);
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx);

/* Stops accepting, ends every connection and stops listening for the
 * signals: once the last connection closes, weft_run() returns. */
static void shut_down(void)
{
    if (stopping)
        return;
    stopping = true;
    weft_signal_off(NULL, SIGINT, on_stop_signal, NULL);
    weft_signal_off(NULL, SIGTERM, on_stop_signal, NULL);
    weft_server_close(server);
    for (conn *c = conns.next; c != &conns; c = c->next) {
        if (c->state == PLAIN)
            weft_stream_end_string(c->stream, "421 weft closing\r\n", NULL);
        else if (c->state == UPGRADING) /* never got its handshake */
            weft_stream_destroy(c->stream);
        else /* under TLS: close_notify, then FIN */
            weft_stream_end(c->stream, NULL, 0);
    }
    /* Unref'd: it must not keep the loop alive once every peer closed. */
    weft_timer *t = weft_set_timeout(NULL, GRACE_MS, drop_stragglers, NULL);
    if (t != NULL)
        weft_timer_unref(t);
}

static void on_server_error(weft_server *srv, int err, const char *msg,
                            void *ctx)
{
    (void)srv;
    (void)err;
    (void)ctx;
    /* A listen that fails later (a name whose address is in use) comes
     * here: say so and fail, never exit 0 in silence. */
    fprintf(stderr, "starttls-server: %s\n", msg);
    exit_status = 1;
    shut_down();
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx)
{
    (void)loop;
    (void)ctx;
    fprintf(stderr, "starttls-server: %s, closing\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    shut_down();
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: starttls-server CERT KEY [PORT] [HOST]\n");
        return 2;
    }
    long port = 2525;
    if (argc > 3) {
        char *end;
        port = strtol(argv[3], &end, 10);
        if (*end != '\0' || end == argv[3] || port < 0 || port > 65535) {
            fprintf(stderr, "starttls-server: bad port '%s'\n", argv[3]);
            return 2;
        }
    }
    const char *host = argc > 4 ? argv[4] : "127.0.0.1";

    weft_credentials_options o = {0};
    o.cert_file = argv[1];
    o.key_file = argv[2];
    o.passphrase = getenv("TLS_KEY_PASSPHRASE");
    char why[256];
    int err;
    creds = weft_credentials_new(&o, true, &err, why, sizeof(why));
    if (creds == NULL) {
        fprintf(stderr, "starttls-server: %s: %s\n", weft_err_name(err), why);
        return 1;
    }

    server = weft_create_server(NULL, on_connection, NULL);
    if (server == NULL) {
        fprintf(stderr, "starttls-server: out of memory\n");
        weft_credentials_unref(creds);
        return 1;
    }
    weft_server_on_error(server, on_server_error, NULL);
    err = weft_server_listen(server, (int)port, host, on_listening, NULL);
    if (err < 0) {
        fprintf(stderr, "starttls-server: listen %s port %ld: %s\n", host, port,
                weft_strerror(err));
    } else if (weft_signal_on(NULL, SIGINT, on_stop_signal, NULL) < 0 ||
               weft_signal_on(NULL, SIGTERM, on_stop_signal, NULL) < 0) {
        /* Signal listeners do not keep the loop alive (as in Node): the
         * server does, until shut_down() closes it. */
        fprintf(stderr, "starttls-server: cannot listen for signals\n");
        err = WEFT_ENOMEM;
    }
    if (err < 0) {
        weft_server_close(server);
        weft_loop_close(weft_default_loop());
        weft_credentials_unref(creds);
        return 1;
    }
    weft_run();
    weft_loop_close(weft_default_loop());
    /* Streams held their own references; this is the last one. */
    weft_credentials_unref(creds);
    return exit_status;
}
