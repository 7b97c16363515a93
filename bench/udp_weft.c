/*
 * bench/udp_weft.c - the UDP benchmark server on weft.h alone.
 *   udp_weft echo|sink|gro PORT COUNTFILE
 * echo answers every datagram with itself (weft_dgram_reply inside
 * 'message': the replies of one batch leave with one sendmmsg); sink
 * counts; gro counts with the `gro` option on (a sender's GSO train
 * arrives as one buffer, which weft splits into its datagrams again).
 * SIGUSR2 writes the count; SIGTERM ends.
 */
#include "udp_common.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

static const char *count_file;
static weft_dgram *sock;

static void on_echo(weft_dgram *s, const char *data, size_t len,
                    const weft_dgram_rinfo *ri, void *ctx)
{
    (void)ctx;
    udp_count++;
    weft_dgram_reply(s, ri, data, len);
}

static void on_sink(weft_dgram *s, const char *data, size_t len,
                    const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s, (void)data, (void)len, (void)ri, (void)ctx;
    udp_count++;
}

static void on_signal(weft_loop *loop, int sig, void *ctx)
{
    (void)loop, (void)ctx;
    if (sig == SIGUSR2) {
        udp_report(count_file);
        return;
    }
    weft_signal_off(NULL, SIGUSR2, on_signal, NULL);
    weft_signal_off(NULL, SIGTERM, on_signal, NULL);
    weft_dgram_close(sock, NULL, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 64;
    count_file = argv[3];
    bool echo = strcmp(argv[1], "echo") == 0;
    weft_dgram_options o = {.recv_buffer_size = 4 << 20,
                            .send_buffer_size = 4 << 20,
                            .gro = strcmp(argv[1], "gro") == 0};
    if (weft_dgram_create_socket(NULL, &o, echo ? on_echo : on_sink, NULL,
                                 &sock) < 0 ||
        weft_dgram_bind(sock, atoi(argv[2]), "127.0.0.1", NULL, NULL) < 0)
        return 1;
    weft_signal_on(NULL, SIGUSR2, on_signal, NULL);
    weft_signal_on(NULL, SIGTERM, on_signal, NULL);
    weft_run();
    weft_loop_close(NULL);
    return 0;
}
