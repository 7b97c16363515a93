/*
 * bench/tls_bench.c - weft's TLS on loopback, both ends in one loop on
 * one thread (bench/tls_bench_node.js does the same with Node's tls, so
 * the two figures compare one core's worth of TLS each).
 *
 *   tls_bench CERTDIR [CERT] [SECONDS] [CONCURRENCY] [MB]
 *
 *   CERTDIR      made by tests/tls/gen-certs.sh
 *   CERT         "server" (EC P-256, default) or "server-rsa" (RSA 2048)
 *   SECONDS      length of the handshake run (default 5)
 *   CONCURRENCY  connections in flight during it (default 16)
 *   MB           bulk transfer size (default 1024)
 *
 * handshakes/s: each connection connects, does a full handshake (TLS 1.3,
 * no resumption, the client verifying chain and host name), then both
 * sides end with close_notify and the stream closes; the next one starts
 * from the 'close'. Counted at the client's 'secure'.
 *
 * bulk MB/s: one connection; the client writes MB MiB in 64 KiB writes,
 * pausing on false and going on at 'drain'; the server counts. Timed from
 * the client's 'secure' to the server's 'end'.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "weft.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process: the machine may be
 * shared, and CPU time is less disturbed by neighbours than wall time. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static weft_credentials *server_creds, *client_creds;
static weft_server *server;
static int port;

static weft_credentials *make(const char *dir, const char *cert, bool srv)
{
    char c[512], k[512], ca[512], why[256];
    snprintf(c, sizeof(c), "%s/%s.pem", dir, cert);
    snprintf(k, sizeof(k), "%s/%s.key", dir, cert);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    weft_credentials_options o = {0};
    if (srv) {
        o.cert_file = c;
        o.key_file = k;
    } else {
        o.ca_file = ca;
    }
    int err;
    weft_credentials *r = weft_credentials_new(&o, srv, &err, why, sizeof(why));
    if (r == NULL) {
        fprintf(stderr, "tls_bench: credentials: %s\n", why);
        exit(1);
    }
    return r;
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    fprintf(stderr, "tls_bench: %s: %s\n", weft_err_name(err), msg);
    exit(1);
}

/* ---- handshakes ---------------------------------------------------------- */

static long handshakes;
static bool stopping;
static int in_flight;

static void hs_start(void);

static void hs_secure(weft_stream *s, void *ctx)
{
    (void)ctx;
    handshakes++;
    weft_stream_end(s, NULL, 0);
}

static void hs_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    (void)ctx;
    in_flight--;
    if (!stopping)
        hs_start();
    else if (in_flight == 0)
        weft_server_close(server);
}

static void hs_start(void)
{
    weft_stream *c;
    if (weft_create_connection(NULL, port, "127.0.0.1", &c) < 0 ||
        weft_stream_set_servername(c, "localhost") < 0 ||
        weft_stream_set_secure(c, client_creds) < 0) {
        fprintf(stderr, "tls_bench: cannot start a connection\n");
        exit(1);
    }
    in_flight++;
    weft_stream_on_secure(c, hs_secure, NULL);
    weft_stream_on_error(c, on_error, NULL);
    weft_stream_on_close(c, hs_close, NULL);
}

static void hs_stop(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    stopping = true;
}

static void accept_secure(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    if (weft_stream_set_secure(s, server_creds) < 0)
        weft_stream_destroy(s);
}

/* ---- bulk ---------------------------------------------------------------- */

#define CHUNK 65536

static char chunk[CHUNK];
static size_t bulk_total, bulk_sent, bulk_got;
static double bulk_t0, bulk_t1, bulk_c0, bulk_c1;

static void bulk_pump(weft_stream *s)
{
    while (bulk_sent < bulk_total) {
        bulk_sent += CHUNK;
        if (weft_stream_write(s, chunk, CHUNK) == 0)
            return; /* 'drain' calls again */
    }
    weft_stream_end(s, NULL, 0);
}

static void bulk_drain(weft_stream *s, void *ctx)
{
    (void)ctx;
    if (bulk_sent < bulk_total)
        bulk_pump(s);
}

static void bulk_secure(weft_stream *s, void *ctx)
{
    (void)ctx;
    bulk_t0 = now_s();
    bulk_c0 = cpu_s();
    bulk_pump(s);
}

static void bulk_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)ctx;
    bulk_got += n;
}

static void bulk_end(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
    bulk_t1 = now_s();
    bulk_c1 = cpu_s();
}

static void accept_bulk(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    weft_stream_set_secure(s, server_creds);
    weft_stream_on_data(s, bulk_data, NULL);
    weft_stream_on_end(s, bulk_end, NULL);
    weft_stream_on_error(s, on_error, NULL);
}

/* ---- ping-pong ----------------------------------------------------------- */

/* Small request/response over established sessions: what a TLS API
 * server does most. Each of CONCURRENCY clients writes "PING\r\n" and
 * the next one when "+PONG\r\n" is back; the server answers each read.
 * Both ends in this process, as above. Round trips after the
 * handshakes, over PP_SECONDS. */
static long pp_done;
static bool pp_counting, pp_stopping;
static int pp_secure;
static weft_stream *pp_clients[256];
static int pp_n;

static void pp_server_data(weft_stream *s, const char *d, size_t n,
                           void *ctx)
{
    (void)d;
    (void)ctx;
    for (size_t i = 0; i < n / 6; i++)
        weft_stream_write(s, "+PONG\r\n", 7);
}

static void pp_client_data(weft_stream *s, const char *d, size_t n,
                           void *ctx)
{
    (void)d;
    (void)n;
    (void)ctx;
    if (pp_counting)
        pp_done++;
    if (pp_stopping)
        weft_stream_end(s, NULL, 0);
    else
        weft_stream_write(s, "PING\r\n", 6);
}

static void pp_client_secure(weft_stream *s, void *ctx)
{
    (void)ctx;
    pp_secure++;
    weft_stream_write(s, "PING\r\n", 6);
}

static void accept_pp(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    weft_stream_set_secure(s, server_creds);
    weft_stream_on_data(s, pp_server_data, NULL);
    weft_stream_on_error(s, on_error, NULL);
}

static double pp_t0, pp_c0, pp_t1, pp_c1;

static void pp_stop(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    pp_t1 = now_s();
    pp_c1 = cpu_s();
    pp_counting = false;
    pp_stopping = true;
    weft_server_close(server);
}

static void pp_go(weft_timer *t, void *ctx)
{
    (void)t;
    int secs = (int)(intptr_t)ctx;
    pp_t0 = now_s();
    pp_c0 = cpu_s();
    pp_counting = true;
    weft_set_timeout(NULL, (uint64_t)secs * 1000, pp_stop, NULL);
}

static int listen_on(weft_server_connection_cb cb)
{
    server = weft_create_server(NULL, cb, NULL);
    weft_address a;
    if (server == NULL ||
        weft_server_listen(server, 0, "127.0.0.1", NULL, NULL) < 0 ||
        weft_server_address(server, &a) < 0) {
        fprintf(stderr, "tls_bench: cannot listen\n");
        exit(1);
    }
    weft_server_set_backlog(server, 1024);
    return a.port;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tls_bench CERTDIR [CERT] [SECONDS] "
                        "[CONCURRENCY] [MB] [PP_SECONDS]\n");
        return 2;
    }
    const char *cert = argc > 2 ? argv[2] : "server";
    int seconds = argc > 3 ? atoi(argv[3]) : 5;
    int conc = argc > 4 ? atoi(argv[4]) : 16;
    long mb = argc > 5 ? atol(argv[5]) : 1024;
    int pp_secs = argc > 6 ? atoi(argv[6]) : 0;
    server_creds = make(argv[1], cert, true);
    client_creds = make(argv[1], cert, false);

    if (seconds > 0) {
        port = listen_on(accept_secure);
        weft_set_timeout(NULL, (uint64_t)seconds * 1000, hs_stop, NULL);
        for (int i = 0; i < conc; i++)
            hs_start();
        double t0 = now_s(), c0 = cpu_s();
        weft_run();
        double dt = now_s() - t0, dc = cpu_s() - c0;
        printf("weft handshakes (%s, %d in flight): %ld in %.2f s = %.0f/s; "
               "%.0f per CPU-second\n",
               cert, conc, handshakes, dt, handshakes / dt, handshakes / dc);
    }

    if (mb > 0) {
        bulk_total = (size_t)mb << 20;
        memset(chunk, 'x', sizeof(chunk));
        port = listen_on(accept_bulk);
        weft_stream *c;
        if (weft_create_connection(NULL, port, "127.0.0.1", &c) < 0 ||
            weft_stream_set_servername(c, "localhost") < 0 ||
            weft_stream_set_secure(c, client_creds) < 0)
            return 1;
        weft_stream_on_secure(c, bulk_secure, NULL);
        weft_stream_on_drain(c, bulk_drain, NULL);
        weft_stream_on_error(c, on_error, NULL);
        weft_run();
        double dt = bulk_t1 - bulk_t0, dc = bulk_c1 - bulk_c0;
        double mib = (double)(bulk_got >> 20);
        printf("weft bulk (%s, one way): %.0f MiB in %.2f s = %.0f MiB/s; "
               "%.0f MiB per CPU-second\n",
               cert, mib, dt, mib / dt, mib / dc);
        if (bulk_got != bulk_total)
            return 1;
    }
    if (pp_secs > 0) {
        port = listen_on(accept_pp);
        pp_n = conc < 256 ? conc : 256;
        for (int i = 0; i < pp_n; i++) {
            weft_stream *c;
            if (weft_create_connection(NULL, port, "127.0.0.1", &c) < 0 ||
                weft_stream_set_servername(c, "localhost") < 0 ||
                weft_stream_set_secure(c, client_creds) < 0)
                return 1;
            weft_stream_set_no_delay(c, true);
            weft_stream_on_secure(c, pp_client_secure, NULL);
            weft_stream_on_data(c, pp_client_data, NULL);
            weft_stream_on_error(c, on_error, NULL);
            pp_clients[i] = c;
        }
        /* Count from 0.5 s on: the handshakes are done by then. */
        weft_set_timeout(NULL, 500, pp_go, (void *)(intptr_t)pp_secs);
        weft_run();
        double dt = pp_t1 - pp_t0, dc = pp_c1 - pp_c0;
        printf("weft ping-pong (%s, %d connections): %ld round trips in "
               "%.2f s = %.0f/s; %.0f per CPU-second\n",
               cert, pp_n, pp_done, dt, pp_done / dt, pp_done / dc);
        if (pp_secure != pp_n)
            return 1;
    }
    weft_loop_close(weft_default_loop());
    weft_credentials_unref(server_creds);
    weft_credentials_unref(client_creds);
    return 0;
}
