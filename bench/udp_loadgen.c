/*
 * bench/udp_loadgen.c - the load for the UDP benchmark, and its figures.
 *
 *   udp_loadgen echo PORT SERVER_PID COUNTFILE SECONDS WARMUP [CLIENTS
 * INFLIGHT] CLIENTS connected sockets (default 16), each keeping INFLIGHT
 *       (default 4) 64-byte datagrams in flight: a reply is answered at
 *       once by the next datagram (recvmmsg / sendmmsg per socket); a
 *       client that heard nothing for 20 ms sends its window again, so a
 *       loss does not stall it. Rate: replies per second.
 *   udp_loadgen stream PORT SERVER_PID COUNTFILE SECONDS WARMUP
 *       one socket sending 1,200-byte datagrams as fast as sendmmsg of 64
 *       goes. Rate: datagrams the server counted per second (SIGUSR2 at
 *       both ends of the window makes it write its count to COUNTFILE).
 *   udp_loadgen gso PORT SERVER_PID COUNTFILE SECONDS WARMUP
 *       the same 1,200-byte datagrams sent as a QUIC sender does: UDP GSO
 *       (UDP_SEGMENT 1,200), 32 datagrams per send, 8 sends per sendmmsg.
 *       A receiver with UDP GRO gets each train as one buffer; one
 *       without gets 32 datagrams. Rate: datagrams counted, as above.
 *
 * Prints one line: rate=<dgrams/s> server_us=<server CPU us per datagram>
 * server_cpu=<% of a core> client_cpu=<%>. The server's CPU is utime +
 * stime from /proc/PID/stat over the window.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define GSO_SEGMENTS 32 /* datagrams per GSO send */
#define GSO_SENDS    8  /* GSO sends per sendmmsg */
#define MAX_CLIENTS 256

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long ut = 0, st = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
           &st);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long long server_count(int pid, const char *file)
{
    remove(file);
    kill(pid, SIGUSR2);
    for (int i = 0; i < 200; i++) { /* up to 1 s */
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        FILE *f = fopen(file, "r");
        long long c;
        if (f != NULL) {
            int ok = fscanf(f, "%lld", &c);
            fclose(f);
            if (ok == 1)
                return c;
        }
    }
    return -1;
}

static struct sockaddr_in server;

static int client_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (connect(fd, (struct sockaddr *)&server, sizeof(server)) < 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: see the file's head\n");
        return 64;
    }
    bool echo = strcmp(argv[1], "echo") == 0;
    bool gso = strcmp(argv[1], "gso") == 0;
    int port = atoi(argv[2]);
    int pid = atoi(argv[3]);
    const char *file = argv[4];
    double secs = atof(argv[5]), warm = atof(argv[6]);
    int clients = argc > 7 ? atoi(argv[7]) : 16;
    int inflight = argc > 8 ? atoi(argv[8]) : 4;
    if (clients < 1 || clients > MAX_CLIENTS || inflight < 1 ||
        inflight > BATCH)
        return 64;
    server = (struct sockaddr_in){.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static char payload[BATCH][1200];
    static struct iovec iov[BATCH];
    static struct mmsghdr msg[BATCH];
    size_t size = echo ? 64 : 1200;
    for (int i = 0; i < BATCH; i++) {
        memset(payload[i], 'a' + i % 26, size);
        iov[i] = (struct iovec){payload[i], size};
        msg[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    double start = now_s(), t0 = 0, c0 = 0, s0 = 0, end = start + warm + secs;
    long long n0 = 0, replies = 0;
    bool measuring = false;

    if (echo) {
        int fds[MAX_CLIENTS];
        double heard[MAX_CLIENTS];
        int ep = epoll_create1(0);
        for (int c = 0; c < clients; c++) {
            fds[c] = client_socket();
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)c};
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[c], &ev);
            sendmmsg(fds[c], msg, (unsigned)inflight, 0);
            heard[c] = start;
        }
        static struct mmsghdr rmsg[BATCH];
        static struct iovec riov[BATCH];
        static char rbuf[BATCH][2048];
        double last_check = start;
        for (;;) {
            double t = now_s();
            if (!measuring && t >= start + warm) {
                measuring = true;
                t0 = t;
                n0 = replies;
                c0 = self_cpu_s();
                s0 = proc_cpu_s(pid);
            }
            if (t >= end)
                break;
            if (t - last_check > 0.02) {
                for (int c = 0; c < clients; c++)
                    if (t - heard[c] > 0.02) {
                        sendmmsg(fds[c], msg, (unsigned)inflight, 0);
                        heard[c] = t;
                    }
                last_check = t;
            }
            struct epoll_event evs[64];
            int n = epoll_wait(ep, evs, 64, 10);
            for (int i = 0; i < n; i++) {
                int c = (int)evs[i].data.u32;
                for (int k = 0; k < BATCH; k++) {
                    riov[k] = (struct iovec){rbuf[k], sizeof(rbuf[k])};
                    rmsg[k].msg_hdr =
                        (struct msghdr){.msg_iov = &riov[k], .msg_iovlen = 1};
                }
                int r = recvmmsg(fds[c], rmsg, BATCH, MSG_DONTWAIT, NULL);
                if (r <= 0)
                    continue;
                replies += r;
                heard[c] = t;
                sendmmsg(fds[c], msg, (unsigned)r, 0);
            }
        }
    } else {
        int fd = client_socket();
        unsigned per_call = BATCH;
        if (gso) {
            /* Every send longer than 1,200 bytes leaves as a train. */
            int seg = 1200;
            if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)) < 0) {
                perror("UDP_SEGMENT");
                return 1;
            }
            static char train[GSO_SEGMENTS * 1200];
            memset(train, 'g', sizeof(train));
            for (int i = 0; i < GSO_SENDS; i++)
                iov[i] = (struct iovec){train, sizeof(train)};
            per_call = GSO_SENDS;
        }
        for (;;) {
            double t = now_s();
            if (!measuring && t >= start + warm) {
                measuring = true;
                n0 = server_count(pid, file);
                t0 = now_s();
                c0 = self_cpu_s();
                s0 = proc_cpu_s(pid);
            }
            if (t >= end)
                break;
            for (int k = 0; k < 16; k++)
                if (sendmmsg(fd, msg, per_call, 0) < 0 && errno == EAGAIN) {
                    struct timespec ts = {0, 20000};
                    nanosleep(&ts, NULL);
                }
        }
    }
    double t1 = now_s();
    double s1 = proc_cpu_s(pid), c1 = self_cpu_s();
    long long n1 = echo ? replies : server_count(pid, file);
    double win = t1 - t0;
    long long done = n1 - n0;
    if (done <= 0 || win <= 0) {
        printf("rate=0 server_us=0 server_cpu=0 client_cpu=0\n");
        return 1;
    }
    printf("rate=%.0f server_us=%.3f server_cpu=%.0f client_cpu=%.0f\n",
           (double)done / win, (s1 - s0) * 1e6 / (double)done,
           (s1 - s0) * 100 / win, (c1 - c0) * 100 / win);
    return 0;
}
