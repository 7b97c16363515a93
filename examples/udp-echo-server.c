/*
 * udp-echo-server.c - a datagram echo server in weft (Node's dgram).
 *
 *   udp-echo-server              listen on 127.0.0.1 port 41234
 *   udp-echo-server 9000         on port 9000 (0: any free port)
 *   udp-echo-server 9000 ::1     on an IPv6 address (a udp6 socket)
 *
 * Every datagram goes back to whoever sent it, byte for byte (an empty
 * one too). Once bound it prints "udp echo server listening on ADDR port
 * P". The replies of one batch of datagrams leave with one sendmmsg;
 * when the kernel cannot take them they wait in weft's send queue, which
 * is bounded: a reply refused because the queue is full is dropped, as
 * UDP may, and counted, and the count is reported at exit. A bind that
 * fails exits 1 with the reason; other errors are reported on stderr and
 * the server goes on; SIGINT/SIGTERM (weft's signal events, no handler
 * of our own) close the socket, the loop ends and the process exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

static weft_dgram *sock;
static unsigned long answered, dropped, truncated;

static void on_message(weft_dgram *s, const char *data, size_t len,
                       const weft_dgram_rinfo *from, void *ctx)
{
    (void)ctx;
    if (from->truncated)
        truncated++; /* longer than max_message: only `len` bytes came */
    int rc = weft_dgram_reply(s, from, data, len);
    if (rc >= 0)
        answered++;
    else if (rc == WEFT_ENOBUFS)
        dropped++; /* the send queue is full: drop, do not grow */
    else
        fprintf(stderr, "udp-echo-server: reply to %s port %d: %s\n",
                weft_dgram_rinfo_address(from), from->port, weft_strerror(rc));
}

static void on_listening(weft_dgram *s, void *ctx)
{
    (void)ctx;
    weft_address a;
    if (weft_dgram_address(s, &a) == 0) {
        printf("udp echo server listening on %s port %d\n", a.address, a.port);
        fflush(stdout);
    }
}

static void on_error(weft_dgram *s, int err, const char *msg, void *ctx)
{
    (void)s, (void)err, (void)ctx;
    /* An unconnected socket hears of few errors (a send the kernel
     * refuses later); none ends the server. */
    fprintf(stderr, "udp-echo-server: %s\n", msg);
}

static void on_stop_signal(weft_loop *loop, int signum, void *ctx)
{
    (void)loop, (void)ctx;
    fprintf(stderr, "udp-echo-server: %s, closing\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    weft_signal_off(NULL, SIGINT, on_stop_signal, NULL);
    weft_signal_off(NULL, SIGTERM, on_stop_signal, NULL);
    /* Replies join a batch inside 'message'; if the kernel refused that
     * batch and the queue had no room, weft dropped and counted them.
     * Read before close: the socket is freed after its 'close'. */
    dropped += weft_dgram_send_dropped(sock);
    weft_dgram_close(sock, NULL, NULL);
}

int main(int argc, char **argv)
{
    const char *port_arg = argc > 1 ? argv[1] : "41234";
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    char *end;
    long port = strtol(port_arg, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "udp-echo-server: bad port '%s'\n", port_arg);
        return 1;
    }
    weft_dgram_options o = {.family = strchr(host, ':') ? 6 : 4};
    int err = weft_dgram_create_socket(NULL, &o, on_message, NULL, &sock);
    if (err < 0) {
        fprintf(stderr, "udp-echo-server: socket: %s\n", weft_strerror(err));
        return 1;
    }
    weft_dgram_on_error(sock, on_error, NULL);
    /* An address is bound at once: its errors (EADDRINUSE, EADDRNOTAVAIL)
     * come back here; a host name would be looked up and its errors come
     * as 'error' instead. */
    err = weft_dgram_bind(sock, (int)port, host, on_listening, NULL);
    if (err == 0 && (weft_signal_on(NULL, SIGINT, on_stop_signal, NULL) < 0 ||
                     weft_signal_on(NULL, SIGTERM, on_stop_signal, NULL) < 0))
        err = WEFT_ENOMEM;
    if (err < 0) {
        fprintf(stderr, "udp-echo-server: bind %s port %ld: %s\n", host, port,
                weft_strerror(err));
        weft_signal_off(NULL, SIGINT, on_stop_signal, NULL);
        weft_signal_off(NULL, SIGTERM, on_stop_signal, NULL);
        weft_dgram_close(sock, NULL, NULL);
        weft_run();
        weft_loop_close(weft_default_loop());
        return 1;
    }
    weft_run();
    fprintf(stderr,
            "udp-echo-server: %lu answered, %lu dropped (send queue full), "
            "%lu truncated\n",
            answered, dropped, truncated);
    weft_loop_close(weft_default_loop());
    return 0;
}
