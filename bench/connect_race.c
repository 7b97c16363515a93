/*
 * connect_race.c - time to 'connect' for one client connection to
 * host:port, as a new user would dial it (weft_create_connection, Happy
 * Eyeballs on by default). Prints "<ms> <remote address>" or the error.
 * Driven by bench/connect_race.py next to Node 20's net.connect.
 */
#include "weft.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static struct timespec t0;

static double ms_since(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6;
}

static void on_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    printf("%.1f %s\n", ms_since(), weft_stream_remote_address(s));
    weft_stream_destroy(s);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)err;
    (void)ctx;
    printf("%.1f error %s\n", ms_since(), msg);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: connect_race host port [sequential]\n");
        return 2;
    }
    weft_connect_options o = {.host = argv[1], .port = atoi(argv[2])};
    o.no_auto_select_family = argc > 3;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    weft_stream *s;
    if (weft_create_connection_options(NULL, &o, &s) < 0)
        return 1;
    weft_stream_on_connect(s, on_connect, NULL);
    weft_stream_on_error(s, on_error, NULL);
    return weft_run();
}
