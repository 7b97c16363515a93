/*
 * bench/udp_common.h - what the UDP benchmark servers share: the
 * datagram counter each one keeps, and how it reports it. The runner
 * (udp_loadgen) sends SIGUSR2 at the start and the end of the measured
 * window; the server then writes its count to the file named on its
 * command line, from its own loop (no work in a signal handler).
 */
#ifndef BENCH_UDP_COMMON_H
#define BENCH_UDP_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define UDP_BATCH 64    /* recvmmsg / sendmmsg width of the raw loop */
#define UDP_SLOT 65536  /* one datagram's room in a receive batch */

static uint64_t udp_count;

static inline void udp_report(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%llu\n", (unsigned long long)udp_count);
        fclose(f);
    }
}

#endif
