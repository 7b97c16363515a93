#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

weft_loop *tu_loop;
static int fds_at_start;
static char log_buf[8192];
static size_t log_len;

int tu_fd_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

void tu_setup(void)
{
    /* Writing to a closed peer must never raise SIGPIPE: keep the default
     * action so that a missing MSG_NOSIGNAL kills the test. */
    signal(SIGPIPE, SIG_DFL);
    tu_log_reset();
    fds_at_start = tu_fd_count();
    tu_loop = weft_loop_new();
    ck_assert_ptr_nonnull(tu_loop);
}

void tu_teardown(void)
{
    ck_assert_int_eq(weft_loop_close(tu_loop), 0);
    tu_loop = NULL;
    ck_assert_int_eq(tu_fd_count(), fds_at_start);
}

static void deadline(weft_timer *t, void *ctx)
{
    (void)t;
    unsigned *ms = ctx;
    ck_abort_msg("loop still running after %u ms; log: %s", *ms, log_buf);
}

void tu_run(unsigned ms)
{
    static unsigned limit;
    limit = ms;
    weft_timer *t = weft_set_timeout(tu_loop, ms, deadline, &limit);
    ck_assert_ptr_nonnull(t);
    weft_timer_unref(t);
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    weft_clear_timer(t);
    /* Let the close phase free the cleared timer. */
    weft_loop_run(tu_loop);
    ck_assert(!weft_loop_alive(tu_loop));
}

void tu_log(const char *event)
{
    size_t n = strlen(event);
    if (log_len + n + 2 >= sizeof(log_buf))
        return;
    if (log_len)
        log_buf[log_len++] = ',';
    memcpy(log_buf + log_len, event, n + 1);
    log_len += n;
}

void tu_logf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    tu_log(buf);
}

const char *tu_log_str(void)
{
    return log_buf;
}

void tu_log_reset(void)
{
    log_len = 0;
    log_buf[0] = '\0';
}

const char *tu_sock_path(const char *name)
{
    static char path[108];
    snprintf(path, sizeof(path), "/tmp/weft-%d-%s.sock", (int)getpid(), name);
    unlink(path);
    return path;
}

TCase *tu_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_set_timeout(tc, 30);
    return tc;
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

weft_server *tu_server(weft_server_connection_cb cb, void *ctx, int *port)
{
    weft_server *srv = weft_create_server(tu_loop, cb, ctx);
    ck_assert_ptr_nonnull(srv);
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    *port = a.port;
    return srv;
}

#include <netinet/in.h>
#include <sys/socket.h>

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

int tu_fd_for_ports(int port, int peer_port)
{
    for (int fd = 0; fd < 4096; fd++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
            port_of(&ss) != port)
            continue;
        if (peer_port < 0)
            return fd;
        len = sizeof(ss);
        if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
            port_of(&ss) == peer_port)
            return fd;
    }
    return -1;
}

/* ---- helpers for the socket suites ---------------------------------- */

void tu_fill_random(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    unsigned char *p = buf;
    while (len > 0) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545f4914f6cdd1dULL;
        size_t n = len < 8 ? len : 8;
        memcpy(p, &v, n);
        p += n;
        len -= n;
    }
}

uint64_t tu_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int tu_listen(weft_server *srv, const char *host)
{
    ck_assert_ptr_nonnull(srv);
    ck_assert_int_eq(weft_server_listen(srv, 0, host, NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    ck_assert_int_gt(a.port, 0);
    return a.port;
}

void tu_slog_add(tu_slog *l, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    size_t n = strlen(buf);
    if (l->len + n + 2 >= sizeof(l->buf))
        return;
    if (l->len)
        l->buf[l->len++] = ',';
    memcpy(l->buf + l->len, buf, n + 1);
    l->len += n;
}

/* ---- helpers for the stress suites ---------------------------------- */

#include <sys/resource.h>

uint64_t tu_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Word i of stream `seed`; byte `off` is byte off % 8 of word off / 8. */
static uint64_t pattern_word(uint64_t seed, uint64_t i)
{
    return tu_mix(seed * 0xd1b54a32d192ed03ULL ^ i);
}

void tu_pattern(void *buf, uint64_t off, size_t len, uint64_t seed)
{
    unsigned char *p = buf;
    while (len > 0) {
        uint64_t w = pattern_word(seed, off / 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (off % 8 == 0 && len >= 8) { /* whole words: the common case */
            memcpy(p, &w, 8);
            p += 8;
            off += 8;
            len -= 8;
            continue;
        }
#endif
        unsigned k = (unsigned)(off % 8);
        size_t n = 8 - k < len ? 8 - k : len;
        for (size_t j = 0; j < n; j++)
            p[j] = (unsigned char)(w >> (8 * (k + j)));
        p += n;
        off += n;
        len -= n;
    }
}

size_t tu_pattern_diff(const void *buf, uint64_t off, size_t len, uint64_t seed)
{
    const unsigned char *p = buf;
    unsigned char want[4096];
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < sizeof(want) ? len - done : sizeof(want);
        tu_pattern(want, off + done, n, seed);
        if (memcmp(want, p + done, n) != 0) {
            for (size_t j = 0; j < n; j++)
                if (want[j] != p[done + j])
                    return done + j;
        }
        done += n;
    }
    return len;
}

bool tu_under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

long tu_raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rlim_t target = (rlim_t)want;
    if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max)
        target = rl.rlim_max;
    if (rl.rlim_cur < target) {
        rl.rlim_cur = target;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}
