/*
 * bench/udp_raw.c - the practical limit: epoll, recvmmsg of 64, the
 * batch's replies with one sendmmsg. No abstraction.
 *   udp_raw echo|sink|gro PORT COUNTFILE
 * gro: a sink with UDP_GRO on, counting each buffer's datagrams by the
 * segment size the kernel reports with it.
 */
#define _GNU_SOURCE
#include "udp_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t want_report, want_stop;
static void on_sig(int sig)
{
    if (sig == SIGUSR2)
        want_report = 1;
    else
        want_stop = 1;
}

static struct mmsghdr msg[UDP_BATCH];
static struct iovec iov[UDP_BATCH];
static struct sockaddr_in from[UDP_BATCH];
static union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
} ctl[UDP_BATCH];
static char *buf;

/* Datagrams in entry i: one, or a GRO buffer's worth. */
static uint64_t datagrams(int i)
{
    struct msghdr *h = &msg[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int seg;
            memcpy(&seg, CMSG_DATA(c), sizeof(seg));
            if (seg > 0)
                return (msg[i].msg_len + (unsigned)seg - 1) / (unsigned)seg;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 64;
    bool echo = strcmp(argv[1], "echo") == 0;
    bool gro = strcmp(argv[1], "gro") == 0;
    buf = malloc((size_t)UDP_BATCH * UDP_SLOT);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[2])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return 1;
    int on = 1;
    if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) < 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_sig};
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    while (!want_stop) {
        struct epoll_event out[8];
        int n = epoll_wait(ep, out, 8, -1);
        if (want_report) {
            want_report = 0;
            udp_report(argv[3]);
        }
        if (n <= 0)
            continue;
        for (int round = 0; round < 4; round++) {
            for (int i = 0; i < UDP_BATCH; i++) {
                iov[i] = (struct iovec){buf + (size_t)i * UDP_SLOT, UDP_SLOT};
                msg[i].msg_hdr = (struct msghdr){
                    .msg_name = &from[i], .msg_namelen = sizeof(from[i]),
                    .msg_iov = &iov[i], .msg_iovlen = 1};
                if (gro) {
                    msg[i].msg_hdr.msg_control = ctl[i].buf;
                    msg[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
                }
            }
            int k = recvmmsg(fd, msg, UDP_BATCH, MSG_DONTWAIT, NULL);
            if (k <= 0)
                break;
            if (gro)
                for (int i = 0; i < k; i++)
                    udp_count += datagrams(i);
            else
                udp_count += (uint64_t)k;
            if (echo) {
                for (int i = 0; i < k; i++)
                    iov[i].iov_len = msg[i].msg_len;
                int off = 0;
                while (off < k) {
                    int s = sendmmsg(fd, msg + off, (unsigned)(k - off), 0);
                    if (s <= 0)
                        break; /* full: dropped, as UDP may */
                    off += s;
                }
            }
            if (k < UDP_BATCH)
                break;
        }
    }
    return 0;
}
