/*
 * test_economy.c - the syscalls weft spends on healthy traffic, counted by
 * the interposer of tests/fault.c (nothing armed: it only counts). These
 * are the figures behind the benchmark notes, kept as tests so that a
 * change which adds a syscall per request fails here rather than hiding
 * in a noisy benchmark:
 *
 *   - request/response: one read and one send per message per side, no
 *     read that can only say EAGAIN, no epoll_ctl at all, with or
 *     without an idle timeout on every stream, and when the answer is a
 *     writev of two pieces;
 *   - backpressure: epoll_ctl only when the queue starts and stops
 *     waiting for room (two per 'drain'), never per write;
 *   - cork: writes held by cork() go out in one send at uncork(), with
 *     no epoll_ctl.
 *
 * Server and clients run on one loop in this process, so a round trip is
 * two messages: two reads and two sends at best.
 */
#include "fault.h"
#include "internal.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- request/response ---------------------------------------------------- */

#define PP_STREAMS 8
#define PP_WARM 20     /* round trips per stream before counting */
#define PP_COUNTED 300 /* round trips per stream counted */

static struct {
    weft_stream *c[PP_STREAMS];
    int rounds[PP_STREAMS];
    int warm, done, closed;
    long reads0, sends0, ctl0;
    long reads, sends, ctl;
    uint64_t timeout_ms;
    bool gather; /* the server answers with a two-piece writev */
} pp;

static void snapshot(long *r, long *s, long *c)
{
    *r = fault_calls(FAULT_READ);
    *s = fault_calls(FAULT_SEND);
    *c = fault_calls(FAULT_EPOLL_CTL);
}

static void pp_echo(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    if (pp.gather && n > 2) {
        weft_buf b[2] = {{d, 2}, {d + 2, n - 2}};
        ck_assert_int_eq(weft_stream_writev(s, b, 2), 1);
        return;
    }
    ck_assert_int_eq(weft_stream_write(s, d, n), 1);
}

static void pp_accept(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    weft_stream_set_no_delay(s, true);
    if (pp.timeout_ms > 0)
        weft_stream_set_timeout(s, pp.timeout_ms);
    weft_stream_on_data(s, pp_echo, NULL);
}

static void pp_reply(weft_stream *s, const char *d, size_t n, void *ctx)
{
    int i = (int)(intptr_t)ctx;
    ck_assert_uint_eq(n, 5);
    ck_assert(memcmp(d, "ping\n", 5) == 0);
    int r = ++pp.rounds[i];
    if (r == PP_WARM && ++pp.warm == PP_STREAMS) {
        /* Every stream is past its warm-up: count from here. The other
         * streams' requests already in flight were sent uncounted and are
         * answered counted, which the bounds' slack covers. */
        snapshot(&pp.reads0, &pp.sends0, &pp.ctl0);
    }
    if (r == PP_WARM + PP_COUNTED) {
        if (++pp.done == PP_STREAMS) {
            long r1, s1, c1;
            snapshot(&r1, &s1, &c1);
            pp.reads = r1 - pp.reads0;
            pp.sends = s1 - pp.sends0;
            pp.ctl = c1 - pp.ctl0;
        }
        weft_stream_end(s, NULL, 0);
        return;
    }
    ck_assert_int_eq(weft_stream_write(s, "ping\n", 5), 1);
}

static void pp_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    ck_assert_int_eq(weft_stream_write(s, "ping\n", 5), 1);
}

static void pp_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    ck_assert(!had_error);
    if (++pp.closed == PP_STREAMS)
        weft_server_close(ctx);
}

START_TEST(request_response_costs_one_read_and_one_send_per_message)
{
    memset(&pp, 0, sizeof(pp));
    /* _i == 1: every stream (both ends) keeps a 30 s idle timeout.
     * _i == 2: the server answers with writev(2 pieces): still one send. */
    pp.timeout_ms = _i == 1 ? 30000 : 0;
    pp.gather = _i == 2;
    int port;
    weft_server *srv = tu_server(pp_accept, NULL, &port);
    for (int i = 0; i < PP_STREAMS; i++) {
        weft_stream *c;
        ck_assert_int_eq(
            weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
        weft_stream_set_no_delay(c, true);
        if (pp.timeout_ms > 0)
            weft_stream_set_timeout(c, pp.timeout_ms);
        weft_stream_on_connect(c, pp_connect, NULL);
        weft_stream_on_data(c, pp_reply, (void *)(intptr_t)i);
        weft_stream_on_close(c, pp_close, srv);
        pp.c[i] = c;
    }
    tu_run(20000);
    ck_assert_int_eq(pp.done, PP_STREAMS);
    ck_assert_int_eq(pp.closed, PP_STREAMS);
    long trips = (long)PP_STREAMS * PP_COUNTED;
    if (getenv("WEFT_TEST_VERBOSE") != NULL)
        fprintf(stderr,
                "%ld round trips: %ld reads, %ld sends, %ld epoll_ctl\n",
                trips, pp.reads, pp.sends, pp.ctl);
    /* Two messages per round trip; the slack is the streams' requests in
     * flight at the two snapshots. */
    long slack = 2 * PP_STREAMS;
    ck_assert_msg(pp.reads <= 2 * trips + slack,
                  "%ld reads for %ld round trips", pp.reads, trips);
    ck_assert_msg(pp.sends <= 2 * trips + slack,
                  "%ld sends for %ld round trips", pp.sends, trips);
    ck_assert_msg(pp.reads >= 2 * trips - slack, "%ld reads: not counted?",
                  pp.reads);
    ck_assert_msg(pp.ctl == 0, "%ld epoll_ctl calls for %ld round trips",
                  pp.ctl, trips);
}
END_TEST

/* ---- backpressure -------------------------------------------------------- */

#define BP_CHUNK (64 * 1024)
#define BP_TOTAL (48u * 1024 * 1024)

static struct {
    size_t sent, got;
    int drains, zeros;
    long ctl0, ctl;
    bool counting;
} bp;

static char bp_buf[BP_CHUNK];

static void bp_sink(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)ctx;
    bp.got += n;
}

static void bp_accept(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    weft_stream_on_data(s, bp_sink, NULL);
}

static void bp_pump(weft_stream *s)
{
    while (bp.sent < BP_TOTAL) {
        bp.sent += BP_CHUNK;
        int r = weft_stream_write(s, bp_buf, BP_CHUNK);
        ck_assert_int_ge(r, 0);
        if (r == 0) {
            bp.zeros++;
            return; /* 'drain' comes back */
        }
    }
    bp.ctl = fault_calls(FAULT_EPOLL_CTL) - bp.ctl0;
    weft_stream_end(s, NULL, 0);
}

static void bp_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    bp.ctl0 = fault_calls(FAULT_EPOLL_CTL);
    bp_pump(s);
}

static void bp_drain(weft_stream *s, void *ctx)
{
    (void)ctx;
    bp.drains++;
    bp_pump(s);
}

START_TEST(backpressure_costs_two_epoll_ctl_per_drain_not_per_write)
{
    memset(&bp, 0, sizeof(bp));
    int port;
    tu_server(bp_accept, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    weft_stream_on_connect(c, bp_connect, NULL);
    weft_stream_on_drain(c, bp_drain, NULL);
    tu_run(30000);
    ck_assert_uint_eq(bp.got, BP_TOTAL);
    ck_assert_int_gt(bp.drains, 0);
    ck_assert_int_eq(bp.drains, bp.zeros);
    if (getenv("WEFT_TEST_VERBOSE") != NULL)
        fprintf(stderr, "%u writes, %d drains, %ld epoll_ctl\n",
                BP_TOTAL / BP_CHUNK, bp.drains, bp.ctl);
    /* Arm EPOLLOUT when a write queues, disarm when the queue empties. */
    ck_assert_msg(bp.ctl <= 2L * bp.drains,
                  "%ld epoll_ctl calls for %d drains (%u writes)", bp.ctl,
                  bp.drains, BP_TOTAL / BP_CHUNK);
}
END_TEST

/* ---- cork ---------------------------------------------------------------- */

static struct {
    long sends, ctl;
    size_t got;
} ck;

static void ck_sink(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)ctx;
    ck.got += n;
}

static void ck_accept(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    weft_stream_on_data(s, ck_sink, NULL);
}

static void ck_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    long r0, s0, c0, r1, s1, c1;
    snapshot(&r0, &s0, &c0);
    weft_stream_cork(s);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(weft_stream_write(s, "0123456789", 10), 1);
    weft_buf v[2] = {{"head", 4}, {"body", 4}};
    ck_assert_int_eq(weft_stream_writev(s, v, 2), 1);
    weft_stream_uncork(s);
    snapshot(&r1, &s1, &c1);
    ck.sends = s1 - s0;
    ck.ctl = c1 - c0;
    ck_assert_uint_eq(weft_stream_buffer_size(s), 0);
    weft_stream_end(s, NULL, 0);
}

START_TEST(corked_writes_leave_in_one_send)
{
    memset(&ck, 0, sizeof(ck));
    int port;
    tu_server(ck_accept, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    weft_stream_on_connect(c, ck_connect, NULL);
    tu_run(5000);
    ck_assert_uint_eq(ck.got, 108);
    ck_assert_int_eq(ck.sends, 1);
    ck_assert_int_eq(ck.ctl, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("economy");
    TCase *tc = tu_tcase("economy");
    tcase_add_loop_test(
        tc, request_response_costs_one_read_and_one_send_per_message, 0, 3);
    tcase_add_test(tc,
                   backpressure_costs_two_epoll_ctl_per_drain_not_per_write);
    tcase_add_test(tc, corked_writes_leave_in_one_send);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
