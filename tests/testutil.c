#include "testutil.h"
#include "internal.h"

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

void tu_wait_lookups_done(void)
{
    /* A cancelled or orphaned lookup's getaddrinfo() runs to its end on
     * the pool thread, with the resolver's own files open meanwhile. */
    long long deadline = tu_now_ms() + 10000;
    while (!weft__dns_idle()) {
        ck_assert_msg(tu_now_ms() < deadline, "a lookup still runs after 10 s");
        usleep(1000);
    }
}

void tu_teardown(void)
{
    ck_assert_int_eq(weft_loop_close(tu_loop), 0);
    tu_loop = NULL;
    tu_wait_lookups_done();
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

/* ---- child processes ------------------------------------------------- */

#include <errno.h>
#include <fcntl.h>
#include <sys/poll.h> /* not <poll.h>: src/poll.h shadows it */
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

/* How often tu_child_wait() looks for the exit: fine enough that the
 * exit times test_examples prints are not rounded up by much. */
#define WAIT_POLL_US 2000
/* With tu_spawn_opts.loop: the longest a read waits on the pipe before
 * it turns the loop again. */
#define TURN_MS 1

/* Pids of the children not waited for yet, for tu_child_kill_all(). Pids
 * rather than tu_child pointers: a test that fails between tu_spawn()
 * and tu_child_wait() leaves no pointer into a dead stack frame. */
#define MAX_CHILDREN 8
static pid_t live[MAX_CHILDREN];

long long tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool tu_have_program(const char *name)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s", path != NULL ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r(dirs, ":", &save); dir != NULL;
         dir = strtok_r(NULL, ":", &save)) {
        char exe[4200];
        snprintf(exe, sizeof(exe), "%s/%s", dir, name);
        if (access(exe, X_OK) == 0)
            return true;
    }
    return false;
}

static void reap_blocking(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

void tu_child_kill_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            reap_blocking(live[i]);
            live[i] = 0;
        }
    }
}

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (live[i] == pid)
            live[i] = 0;
}

/* Runs in the forked child and never returns. The test process may have
 * other threads (weft's pools), whose locks fork() copies as they were:
 * hence dprintf() rather than stderr's FILE, and getenv() left to the
 * parent. */
static void exec_child(char *const argv[], pid_t parent, int in, int out,
                       int err, bool quiet)
{
    /* Dies with the test process, whatever path that takes; the getppid()
     * check covers a parent that died before prctl() took effect. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    /* Until exec() the child runs the test's signal handlers, and Check's
     * for SIGTERM kills the test's whole process group: every signal stays
     * blocked (tu_spawn() blocked them before fork()) until each handler
     * is back to SIG_DFL. SIGTERM, SIGINT and SIGPIPE are reset even when
     * ignored, which exec() would keep, and the mask is emptied: the
     * program sees signals as a shell would start it. */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGTERM || sig == SIGINT || sig == SIGPIPE ||
            (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL &&
             sa.sa_handler != SIG_IGN))
            signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDWR);
    dup2(in >= 0 ? in : null, 0);
    dup2(out, 1);
    if (err >= 0)
        dup2(err, 2);
    else if (quiet)
        dup2(null, 2);
    /* Nothing of the test's beyond stdio, O_CLOEXEC or not. */
    close_range(3, ~0U, 0);
    execvp(argv[0], argv);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

void tu_spawn(tu_child *c, char *const argv[], const tu_spawn_opts *o)
{
    static const tu_spawn_opts defaults;
    if (o == NULL)
        o = &defaults;
    int slot = 0;
    while (slot < MAX_CHILDREN && live[slot] != 0)
        slot++;
    TU_REQUIRE(slot < MAX_CHILDREN, "more than %d children", MAX_CHILDREN);

    int in[2] = {-1, -1}, out[2], err[2] = {-1, -1};
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    if (o->stdin_pipe || o->input != NULL)
        ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    if (o->err == TU_STDERR_PIPE)
        ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    bool quiet =
        o->err == TU_STDERR_QUIET && getenv("WEFT_TEST_VERBOSE") == NULL;
    pid_t parent = getpid();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        exec_child(argv, parent, in[0], out[1], err[1], quiet);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    ck_assert_int_ge(pid, 0);
    live[slot] = pid;
    close(out[1]);
    if (in[0] >= 0)
        close(in[0]);
    if (err[1] >= 0)
        close(err[1]);
    if (!o->stdin_pipe && in[1] >= 0) {
        size_t len = strlen(o->input);
        ssize_t w = write(in[1], o->input, len);
        close(in[1]);
        in[1] = -1;
        TU_REQUIRE(w == (ssize_t)len, "write to %s's stdin: %s", argv[0],
                   strerror(errno));
    }
    *c = (tu_child){.pid = pid,
                    .status = TU_CHILD_KILLED,
                    .in = in[1],
                    .out = out[0],
                    .err = err[0],
                    .loop = o->loop};
}

/* Waits until `fd` is readable (or at EOF) or `deadline` passes. With
 * c->loop it waits in TURN_MS slices and turns the loop between them. */
static bool wait_readable(tu_child *c, int fd, long long deadline)
{
    for (;;) {
        long long left = deadline - tu_now_ms();
        if (left <= 0)
            return false;
        int slice = c->loop != NULL && left > TURN_MS ? TURN_MS : (int)left;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, slice);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        if (r == 0 && c->loop != NULL)
            weft_loop_run_mode(c->loop, WEFT_RUN_NOWAIT);
    }
}

static void note_seen(tu_child *c, const char *p, size_t n)
{
    size_t room = sizeof(c->seen) - 1 - c->seen_len;
    if (n > room)
        n = room;
    memcpy(c->seen + c->seen_len, p, n);
    c->seen_len += n;
    c->seen[c->seen_len] = '\0';
}

/* One byte of the child's stdout into *ch, by `deadline`. */
static bool read_byte(tu_child *c, char *ch, long long deadline)
{
    if (!wait_readable(c, c->out, deadline) || read(c->out, ch, 1) != 1)
        return false;
    note_seen(c, ch, 1);
    return true;
}

static bool read_line_by(tu_child *c, char *buf, size_t size,
                         long long deadline)
{
    size_t n = 0;
    while (n + 1 < size && read_byte(c, &buf[n], deadline)) {
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return true;
        }
        n++;
    }
    buf[n] = '\0';
    return false;
}

bool tu_child_read_line(tu_child *c, char *buf, size_t size, int ms)
{
    return read_line_by(c, buf, size, tu_now_ms() + ms);
}

bool tu_child_read_line_of(tu_child *c, const char *prefix, char *buf,
                           size_t size, int ms)
{
    long long deadline = tu_now_ms() + ms;
    size_t len = strlen(prefix);
    while (read_line_by(c, buf, size, deadline))
        if (strncmp(buf, prefix, len) == 0)
            return true;
    return false;
}

bool tu_child_read_until(tu_child *c, const char *needle, int ms)
{
    long long deadline = tu_now_ms() + ms;
    char ch;
    while (strstr(c->seen, needle) == NULL)
        if (c->seen_len + 1 >= sizeof(c->seen) || !read_byte(c, &ch, deadline))
            return false;
    return true;
}

size_t tu_child_read_all(tu_child *c, int fd, char *buf, size_t size, int ms)
{
    size_t n = 0;
    long long deadline = tu_now_ms() + ms;
    while (n + 1 < size && wait_readable(c, fd, deadline)) {
        ssize_t k = read(fd, buf + n, size - 1 - n);
        if (k <= 0)
            break;
        if (fd == c->out)
            note_seen(c, buf + n, (size_t)k);
        n += (size_t)k;
    }
    buf[n] = '\0';
    return n;
}

int tu_child_wait(tu_child *c, int ms)
{
    if (c->pid <= 0)
        return c->status;
    long long deadline = tu_now_ms() + ms;
    int status;
    for (;;) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid)
            break;
        if (r < 0 && errno != EINTR) {
            /* Reaped already (tu_child_kill_all()): the pid may name
             * another process by now, so it is not signalled. */
            status = TU_CHILD_KILLED;
            break;
        }
        if (tu_now_ms() >= deadline) {
            kill(c->pid, SIGKILL);
            reap_blocking(c->pid);
            status = TU_CHILD_KILLED;
            break;
        }
        usleep(WAIT_POLL_US);
    }
    forget(c->pid);
    c->pid = 0;
    c->status = status;
    return status;
}

void tu_child_close(tu_child *c)
{
    if (c->in >= 0)
        close(c->in);
    if (c->out >= 0)
        close(c->out);
    if (c->err >= 0)
        close(c->err);
    c->in = c->out = c->err = -1;
}

int tu_child_reap(tu_child *c, int ms)
{
    int status = tu_child_wait(c, ms);
    tu_child_close(c);
    return status;
}

int tu_exit_code(int status)
{
    if (status == TU_CHILD_KILLED)
        return status;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
