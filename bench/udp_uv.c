/*
 * bench/udp_uv.c - libuv's best idiom for a UDP server: uv_udp_init_ex
 * with UV_UDP_RECVMMSG and a buffer of 20 x 64 KiB from alloc_cb (libuv
 * 1.44 reads up to 20 datagrams per recvmmsg into it), replies with
 * uv_udp_try_send (no request allocation; dropped if the kernel is full).
 *   udp_uv echo|sink|gro PORT COUNTFILE
 * (gro is a plain sink: libuv 1.44 has no UDP GRO, so a sender's GSO
 * train reaches it as separate datagrams.)
 */
#include "udp_common.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define UV_BUF (20 * 65536)

static uv_udp_t udp;
static uv_signal_t sig_report, sig_stop;
static const char *count_file;
static bool echo;
static char *big;

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    *buf = uv_buf_init(big, UV_BUF);
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags)
{
    (void)flags;
    if (nread < 0 || addr == NULL)
        return; /* error, or the end of a recvmmsg batch */
    udp_count++;
    if (echo) {
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
        uv_udp_try_send(h, &b, 1, addr);
    }
}

static void on_report(uv_signal_t *s, int sig)
{
    (void)s, (void)sig;
    udp_report(count_file);
}

static void on_stop(uv_signal_t *s, int sig)
{
    (void)s, (void)sig;
    uv_close((uv_handle_t *)&udp, NULL);
    uv_close((uv_handle_t *)&sig_report, NULL);
    uv_close((uv_handle_t *)&sig_stop, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 64;
    echo = strcmp(argv[1], "echo") == 0;
    count_file = argv[3];
    big = malloc(UV_BUF);
    uv_loop_t *loop = uv_default_loop();
    uv_udp_init_ex(loop, &udp, AF_INET | UV_UDP_RECVMMSG);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", atoi(argv[2]), &a);
    if (uv_udp_bind(&udp, (struct sockaddr *)&a, 0) < 0)
        return 1;
    int sz = 4 << 20;
    uv_recv_buffer_size((uv_handle_t *)&udp, &sz);
    sz = 4 << 20;
    uv_send_buffer_size((uv_handle_t *)&udp, &sz);
    uv_udp_recv_start(&udp, alloc_cb, recv_cb);
    uv_signal_init(loop, &sig_report);
    uv_signal_start(&sig_report, on_report, SIGUSR2);
    uv_signal_init(loop, &sig_stop);
    uv_signal_start(&sig_stop, on_stop, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
