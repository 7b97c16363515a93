/*
 * test_poll.c - fd watchers (weft_poll_*): readiness on pipes and
 * socketpairs, hang-ups and errors, changing, stopping and closing from
 * inside the callback, refusals, ref counting, and that weft never
 * closes the program's fd.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What one watcher saw: each call's events in order. */
typedef struct seen {
    unsigned events[16];
    int n;
    int fd;
    /* what to do inside the callback */
    enum { KEEP, CLOSE, STOP, READ_THEN_WRITE, CLOSE_AT_2 } action;
    weft_poll *other; /* closed by the first call, if set */
} seen;

static void on_poll(weft_poll *p, unsigned events, void *ctx)
{
    seen *s = ctx;
    ck_assert_int_lt(s->n, 16);
    s->events[s->n++] = events;
    if (s->other != NULL) {
        weft_poll_close(s->other);
        s->other = NULL;
    }
    switch (s->action) {
    case KEEP:
        break;
    case CLOSE:
        weft_poll_close(p);
        /* Closed: changes are refused, the fd is no longer ours. */
        ck_assert_int_eq(weft_poll_change(p, WEFT_POLL_READABLE), WEFT_ESTATE);
        ck_assert_int_eq(weft_poll_fd(p), WEFT_EBADF);
        break;
    case STOP:
        ck_assert_int_eq(weft_poll_change(p, 0), 0);
        break;
    case READ_THEN_WRITE:
        if (events & WEFT_POLL_READABLE) {
            char buf[16];
            ck_assert_int_gt(read(s->fd, buf, sizeof(buf)), 0);
            ck_assert_int_eq(weft_poll_change(p, WEFT_POLL_WRITABLE), 0);
        } else {
            weft_poll_close(p);
        }
        break;
    case CLOSE_AT_2:
        if (s->n == 2)
            weft_poll_close(p);
        break;
    }
}

static void nothing(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

static void make_pipe(int fds[2])
{
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
}

static void make_socketpair(int fds[2])
{
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds),
        0);
}

/* The fd is still open and still the program's. */
static void assert_open(int fd)
{
    ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
}

START_TEST(pipe_read_end_is_readable_once_written)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE};
    weft_poll *p = NULL;
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &p),
        0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(weft_poll_fd(p), fds[0]);
    ck_assert_int_eq(write(fds[1], "x", 1), 1);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_READABLE);
    assert_open(fds[0]);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(empty_pipe_write_end_is_writable)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE};
    /* Asking for both on a write end: only the one that is ready comes. */
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[1],
                                     WEFT_POLL_WRITABLE | WEFT_POLL_HANGUP,
                                     on_poll, &s, NULL),
                     0);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_WRITABLE);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(pipe_hangup_is_reported_when_the_write_end_closes)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_HANGUP, on_poll, &s, NULL),
        0);
    close(fds[1]);
    tu_run(2000);
    /* EPOLLHUP on a pipe; READABLE was not asked for, so not reported. */
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_HANGUP);
    close(fds[0]);
}
END_TEST

START_TEST(pipe_hangup_with_data_reports_readable_and_hangup)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0],
                                     WEFT_POLL_READABLE | WEFT_POLL_HANGUP,
                                     on_poll, &s, NULL),
                     0);
    ck_assert_int_eq(write(fds[1], "bye", 3), 3);
    close(fds[1]);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_READABLE | WEFT_POLL_HANGUP);
    close(fds[0]);
}
END_TEST

START_TEST(error_is_reported_without_being_asked_for)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[1], WEFT_POLL_WRITABLE, on_poll, &s, NULL),
        0);
    close(fds[0]); /* no reader: EPOLLERR on the write end */
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_WRITABLE | WEFT_POLL_ERROR);
    close(fds[1]);
}
END_TEST

START_TEST(socketpair_shutdown_wr_gives_hangup)
{
    int fds[2];
    make_socketpair(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_HANGUP, on_poll, &s, NULL),
        0);
    /* A half-close: EPOLLRDHUP only (the socket stays writable). */
    ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_HANGUP);

    /* Asked for reading too: the FIN makes the fd readable as well. */
    seen s2 = {.action = CLOSE};
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0],
                                     WEFT_POLL_READABLE | WEFT_POLL_HANGUP,
                                     on_poll, &s2, NULL),
                     0);
    tu_run(2000);
    ck_assert_int_eq(s2.n, 1);
    ck_assert_uint_eq(s2.events[0], WEFT_POLL_READABLE | WEFT_POLL_HANGUP);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(socketpair_without_hangup_interest_sees_no_hangup_bit)
{
    int fds[2];
    make_socketpair(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, NULL),
        0);
    ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_READABLE);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(interest_changes_from_read_to_write_inside_the_callback)
{
    int fds[2];
    make_socketpair(fds);
    seen s = {.action = READ_THEN_WRITE, .fd = fds[0]};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, NULL),
        0);
    ck_assert_int_eq(write(fds[1], "ping", 4), 4);
    tu_run(2000);
    ck_assert_int_eq(s.n, 2);
    ck_assert_uint_eq(s.events[0], WEFT_POLL_READABLE);
    ck_assert_uint_eq(s.events[1], WEFT_POLL_WRITABLE);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(level_triggered_until_the_data_is_read)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE_AT_2};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, NULL),
        0);
    ck_assert_int_eq(write(fds[1], "x", 1), 1);
    tu_run(2000);
    /* Not read the first time: reported again on the next turn. */
    ck_assert_int_eq(s.n, 2);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(stop_inside_the_callback_lets_the_loop_end)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = STOP};
    weft_poll *p;
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &p),
        0);
    ck_assert_int_eq(write(fds[1], "x", 1), 1); /* never read */
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    /* Stopped, still valid: watching again works, then close for good. */
    ck_assert(!weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_poll_fd(p), fds[0]);
    s.action = CLOSE;
    ck_assert_int_eq(weft_poll_change(p, WEFT_POLL_READABLE), 0);
    ck_assert(weft_loop_alive(tu_loop));
    tu_run(2000);
    ck_assert_int_eq(s.n, 2);
    assert_open(fds[0]);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(close_inside_the_callback_is_never_called_again)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, NULL),
        0);
    ck_assert_int_eq(write(fds[1], "x", 1), 1); /* never read */
    /* The loop keeps turning a while, the data still there: a watcher
     * still registered would be called on every turn. */
    weft_set_timeout(tu_loop, 30, nothing, NULL);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    assert_open(fds[0]);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(watcher_closed_by_another_in_the_same_batch_gets_no_stale_event)
{
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    seen sa = {.action = CLOSE}, sb = {.action = CLOSE};
    weft_poll *pa, *pb;
    ck_assert_int_eq(
        weft_poll_start(tu_loop, a[0], WEFT_POLL_READABLE, on_poll, &sa, &pa),
        0);
    ck_assert_int_eq(
        weft_poll_start(tu_loop, b[0], WEFT_POLL_READABLE, on_poll, &sb, &pb),
        0);
    /* Whichever runs first closes the other, whose event sits in the
     * same epoll batch. */
    sa.other = pb;
    sb.other = pa;
    ck_assert_int_eq(write(a[1], "x", 1), 1);
    ck_assert_int_eq(write(b[1], "x", 1), 1);
    tu_run(2000);
    ck_assert_int_eq(sa.n + sb.n, 1);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}
END_TEST

START_TEST(second_watcher_on_the_same_fd_is_eexist)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = KEEP};
    weft_poll *p, *q = (weft_poll *)&s;
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &p),
        0);
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &q),
        WEFT_EEXIST);
    ck_assert_ptr_null(q);
    /* Also when the first is stopped (not registered with the kernel). */
    ck_assert_int_eq(weft_poll_change(p, 0), 0);
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &q),
        WEFT_EEXIST);
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0], 0, on_poll, &s, &q),
                     WEFT_EEXIST);
    /* Closed, the fd is free to watch again at once. */
    weft_poll_close(p);
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0], 0, on_poll, &s, &q), 0);
    weft_poll_close(q);
    tu_run(2000);
    ck_assert_int_eq(s.n, 0);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(started_with_no_interest_then_second_is_eexist)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = KEEP};
    weft_poll *p, *q;
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0], 0, on_poll, &s, &p), 0);
    ck_assert(!weft_loop_alive(tu_loop)); /* no interest: not active */
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_WRITABLE, on_poll, &s, &q),
        WEFT_EEXIST);
    weft_poll_close(p);
    tu_run(2000);
    ck_assert_int_eq(s.n, 0);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(regular_file_is_eperm_even_with_no_interest)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    int fd = fileno(f);
    seen s = {.action = KEEP};
    weft_poll *p = (weft_poll *)&s;
    ck_assert_int_eq(weft_poll_start(tu_loop, fd, 0, on_poll, &s, &p),
                     WEFT_EPERM);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fd, WEFT_POLL_READABLE, on_poll, &s, &p),
        WEFT_EPERM);
    assert_open(fd);
    fclose(f);
}
END_TEST

START_TEST(bad_fd_is_ebadf)
{
    seen s = {.action = KEEP};
    weft_poll *p;
    ck_assert_int_eq(
        weft_poll_start(tu_loop, -1, WEFT_POLL_READABLE, on_poll, &s, &p),
        WEFT_EBADF);
    int fds[2];
    make_pipe(fds);
    close(fds[0]);
    close(fds[1]);
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &p),
        WEFT_EBADF);
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0], 0, on_poll, &s, &p),
                     WEFT_EBADF);
}
END_TEST

START_TEST(bad_arguments_are_einval)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = KEEP};
    weft_poll *p;
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, NULL, &s, &p),
        WEFT_EINVAL);
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0], 16, on_poll, &s, &p),
                     WEFT_EINVAL);
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &p),
        0);
    ck_assert_int_eq(weft_poll_change(p, 0x100), WEFT_EINVAL);
    ck_assert_int_eq(weft_poll_change(NULL, 0), WEFT_EINVAL);
    ck_assert_int_eq(weft_poll_fd(NULL), WEFT_EINVAL);
    weft_poll_close(NULL);
    weft_poll_ref(NULL);
    weft_poll_unref(NULL);
    weft_poll_close(p);
    tu_run(2000);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(unrefd_watcher_does_not_keep_the_loop_alive)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = KEEP};
    weft_poll *p;
    /* An empty pipe's read end: never ready. */
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, &p),
        0);
    ck_assert(weft_loop_alive(tu_loop));
    weft_poll_unref(p);
    ck_assert(!weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    weft_poll_ref(p);
    ck_assert(weft_loop_alive(tu_loop));
    weft_poll_close(p);
    tu_run(2000);
    ck_assert_int_eq(s.n, 0);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(weft_never_closes_the_fd)
{
    int fds[2];
    make_socketpair(fds);
    seen s = {.action = CLOSE};
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[0],
                                     WEFT_POLL_READABLE | WEFT_POLL_WRITABLE,
                                     on_poll, &s, NULL),
                     0);
    tu_run(2000);
    ck_assert_int_eq(s.n, 1);
    /* Still open, still usable, and no longer watched: a new watcher on
     * it is accepted. */
    assert_open(fds[0]);
    ck_assert_int_eq(write(fds[0], "x", 1), 1);
    seen s2 = {.action = CLOSE};
    ck_assert_int_eq(weft_poll_start(tu_loop, fds[1], WEFT_POLL_READABLE,
                                     on_poll, &s2, NULL),
                     0);
    tu_run(2000);
    ck_assert_int_eq(s2.n, 1);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(watcher_left_open_is_freed_by_loop_close_and_fd_survives)
{
    int fds[2];
    make_pipe(fds);
    seen s = {.action = KEEP};
    ck_assert_int_eq(
        weft_poll_start(tu_loop, fds[0], WEFT_POLL_READABLE, on_poll, &s, NULL),
        0);
    ck_assert_int_eq(weft_loop_close(tu_loop), 0);
    tu_loop = weft_loop_new(); /* for the teardown */
    ck_assert_ptr_nonnull(tu_loop);
    assert_open(fds[0]);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("poll");
    TCase *tc = tu_tcase("poll");
    tcase_add_test(tc, pipe_read_end_is_readable_once_written);
    tcase_add_test(tc, empty_pipe_write_end_is_writable);
    tcase_add_test(tc, pipe_hangup_is_reported_when_the_write_end_closes);
    tcase_add_test(tc, pipe_hangup_with_data_reports_readable_and_hangup);
    tcase_add_test(tc, error_is_reported_without_being_asked_for);
    tcase_add_test(tc, socketpair_shutdown_wr_gives_hangup);
    tcase_add_test(tc, socketpair_without_hangup_interest_sees_no_hangup_bit);
    tcase_add_test(tc, interest_changes_from_read_to_write_inside_the_callback);
    tcase_add_test(tc, level_triggered_until_the_data_is_read);
    tcase_add_test(tc, stop_inside_the_callback_lets_the_loop_end);
    tcase_add_test(tc, close_inside_the_callback_is_never_called_again);
    tcase_add_test(
        tc, watcher_closed_by_another_in_the_same_batch_gets_no_stale_event);
    tcase_add_test(tc, second_watcher_on_the_same_fd_is_eexist);
    tcase_add_test(tc, started_with_no_interest_then_second_is_eexist);
    tcase_add_test(tc, regular_file_is_eperm_even_with_no_interest);
    tcase_add_test(tc, bad_fd_is_ebadf);
    tcase_add_test(tc, bad_arguments_are_einval);
    tcase_add_test(tc, unrefd_watcher_does_not_keep_the_loop_alive);
    tcase_add_test(tc, weft_never_closes_the_fd);
    tcase_add_test(tc,
                   watcher_left_open_is_freed_by_loop_close_and_fd_survives);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
