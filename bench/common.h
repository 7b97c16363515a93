/*
 * bench/common.h - what every C server and the load generator of the
 * benchmark suite share: the wire constants (requests and replies), the
 * request counters, and address parsing.
 *
 * The counters are deliberately the same code in every C server so that a
 * difference between two servers is the library's, not the parser's. They
 * know nothing about sockets or event loops.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Wire constants. bench/node_server.js holds a copy of the replies. */
#define PONG_REQ   "PING\r\n"
#define PONG_REPLY "+PONG\r\n"
#define HTTP_REQ   "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#define HTTP_REPLY                                                             \
    "HTTP/1.1 200 OK\r\n"                                                      \
    "Content-Type: text/plain\r\n"                                             \
    "Content-Length: 13\r\n"                                                   \
    "Connection: keep-alive\r\n"                                               \
    "\r\n"                                                                     \
    "Hello, World!"

/* One read of this many bytes at most; every server reads into one
 * buffer of this size (libuv's suggested size, Node's pool slab). */
#define BENCH_READ_SIZE 65536

/* Replies prebuilt once, so a read of many requests costs one write. A
 * read holding more requests than this (never, with 16 in flight per
 * connection) is answered in several writes. */
#define BENCH_MAX_BATCH 1024

typedef enum bench_mode { MODE_PONG, MODE_HTTP, MODE_SINK } bench_mode;

static inline int bench_parse_mode(const char *s, bench_mode *out)
{
    if (strcmp(s, "pong") == 0)
        *out = MODE_PONG;
    else if (strcmp(s, "http") == 0)
        *out = MODE_HTTP;
    else if (strcmp(s, "sink") == 0)
        *out = MODE_SINK;
    else
        return -1;
    return 0;
}

/* An address argument is a Unix socket path if it contains a '/', else a
 * TCP port on 127.0.0.1. */
static inline int bench_is_path(const char *addr)
{
    return strchr(addr, '/') != NULL;
}

/*
 * Complete inline commands in `p[0..n)`: one per '\n'. A line split
 * across two reads is counted when its '\n' arrives, so no state is
 * carried.
 */
static inline size_t bench_count_lines(const char *p, size_t n)
{
    size_t count = 0;
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        count++;
        p = nl + 1;
    }
    return count;
}

/*
 * Complete HTTP requests in `p[0..n)`: one per "\r\n\r\n". `*state` is how
 * many bytes of the terminator ended the previous read (0..3), so a
 * terminator split across reads is counted once. Jumps from '\n' to '\n';
 * a request is ~40 bytes, so this is a few ns per request.
 */
static inline size_t bench_count_http(const char *p, size_t n, unsigned *state)
{
    size_t count = 0;
    unsigned st = *state;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\r')
            st = (st == 2) ? 3 : 1;
        else if (c == '\n') {
            if (st == 3) {
                count++;
                st = 0;
            } else {
                st = (st == 1) ? 2 : 0;
            }
        } else {
            st = 0;
            /* Skip to the next '\r': most bytes of a request are text. */
            const char *cr = memchr(p + i + 1, '\r', n - i - 1);
            if (cr == NULL) {
                i = n;
                break;
            }
            i = (size_t)(cr - p) - 1;
        }
    }
    *state = st;
    return count;
}

/*
 * A buffer holding `BENCH_MAX_BATCH` copies of `reply`, back to back.
 * Never freed: it lives as long as the server.
 */
static inline char *bench_build_replies(const char *reply, size_t len)
{
    char *buf = malloc(len * BENCH_MAX_BATCH);
    if (buf == NULL) {
        perror("malloc");
        exit(1);
    }
    for (size_t i = 0; i < BENCH_MAX_BATCH; i++)
        memcpy(buf + i * len, reply, len);
    return buf;
}

static inline void bench_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s pong|http|sink PORT|PATH [WORKERS]\n"
            "  PATH (anything with a '/') is a Unix socket, else a TCP port"
            " on 127.0.0.1;\n  WORKERS (weft_server only): processes"
            " sharing the port with SO_REUSEPORT\n",
            prog);
    exit(2);
}

#endif /* BENCH_COMMON_H */
