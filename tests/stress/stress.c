/*
 * stress.c - figures for hostile conditions (not a test: tests never time
 * anything). Each subcommand runs one situation against a release build
 * of weft and prints one line of key=value figures for figures.sh.
 *
 *   slow-reader SECS   a peer that never reads while a weft server writes
 *                      and respects write()'s false; then, for contrast,
 *                      one that ignores it: weft's RSS over time
 *   flood SECS         a peer writing as fast as it can to a weft stream
 *                      paused from its first moment: RSS over time, and
 *                      where the bytes are (kernel queues)
 *   emfile SECS RATE   the fd limit exhausted while a client keeps
 *                      connecting RATE times a second (0: flat out): the
 *                      server's CPU% from /proc/self/stat, connections shed
 *   idle N             N connections that connect and send nothing:
 *                      heap (mallinfo2) and RSS per idle connection
 *
 * Peers run in forked children with their own fd tables; they use plain
 * sockets, so only weft's side is measured.
 */
#include "weft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static weft_loop *loop;
static char chunk[CHUNK];

static void die(const char *what)
{
    fprintf(stderr, "stress: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS in KiB. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* utime + stime of this process, in seconds, from /proc/self/stat. The
 * file stays open (pread from 0 re-reads it), since the EMFILE run has
 * no fd to spare for opening it. */
static double cpu_s(void)
{
    static int fd = -1;
    if (fd < 0 && (fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)) < 0)
        die("/proc/self/stat");
    char buf[1024];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        die("/proc/self/stat");
    buf[n] = '\0';
    /* Fields after the ")" of the command name: state is field 3. */
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoul(tok, NULL, 10);
        if (field == 15) {
            st = strtoul(tok, NULL, 10);
            break;
        }
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int listen_port(weft_server *srv)
{
    if (weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL) < 0)
        die("listen");
    weft_address a;
    weft_server_address(srv, &a);
    return a.port;
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        return -1;
    return fd;
}

/* A peer process: fn(port, shared) runs in a child whose fd table holds
 * nothing of ours; it dies with us. */
static pid_t peer(void (*fn)(int, volatile uint64_t *), int port,
                  volatile uint64_t *shared)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close_range(3, ~0u, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(port, shared);
        _exit(0);
    }
    return pid;
}

static volatile uint64_t *shared_counters(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static void stop_peer(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* The fd of our end of a TCP connection whose local port is not `port`
 * but whose peer is (a client) or the reverse: found by scanning. */
static int fd_with_local_port(int port)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in sin;
        socklen_t len = sizeof(sin);
        if (getsockname(fd, (struct sockaddr *)&sin, &len) == 0 &&
            sin.sin_family == AF_INET && ntohs(sin.sin_port) == port &&
            getpeername(fd, (struct sockaddr *)&sin, &len) == 0)
            return fd;
    }
    return -1;
}

static void stop_loop(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    weft_loop_stop(loop);
}

/* Runs the loop for `secs`, calling `sample` every `every` seconds. */
static void run_for(double secs, double every, void (*sample)(double))
{
    double t0 = now_s();
    int n = (int)(secs / every + 0.5);
    for (int i = 0; i < n; i++) {
        weft_timer *tm =
            weft_set_timeout(loop, (uint64_t)(every * 1000), stop_loop, NULL);
        (void)tm;
        weft_loop_run(loop);
        sample(now_s() - t0);
    }
}

/* ---- slow reader ------------------------------------------------------- */

static void never_read(int port, volatile uint64_t *shared)
{
    (void)shared;
    int fd = raw_connect(port);
    if (fd < 0)
        _exit(1);
    pause();
}

static struct {
    weft_stream *s;
    weft_timer *ignorer;
    int port;
    bool ignore_false;
    uint64_t handed; /* bytes given to write() */
    long rss0, rss_max;
    char series[1024];
    size_t series_len;
} sr;

static void sr_pump(weft_stream *s, void *ctx)
{
    (void)ctx;
    /* Respecting false: write until the kernel and queue say stop. */
    while (weft_stream_write(s, chunk, CHUNK) == 1)
        sr.handed += CHUNK;
    sr.handed += CHUNK;
}

static void sr_ignore(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    /* Ignoring false: 64 KiB every millisecond, whatever write() says. */
    if (sr.s != NULL && weft_stream_write(sr.s, chunk, CHUNK) >= 0)
        sr.handed += CHUNK;
}

static void sr_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    sr.s = s;
    if (sr.ignore_false)
        sr.ignorer = weft_set_interval(loop, 1, sr_ignore, NULL);
    else
        weft_stream_on_drain(s, sr_pump, NULL); /* never comes */
    sr_pump(s, NULL);
}

static void sr_sample(double t)
{
    long rss = rss_kib();
    if (rss > sr.rss_max)
        sr.rss_max = rss;
    int fd = sr.s ? fd_with_local_port(sr.port) : -1;
    int outq = 0;
    if (fd >= 0)
        ioctl(fd, SIOCOUTQ, &outq);
    sr.series_len += (size_t)snprintf(
        sr.series + sr.series_len, sizeof(sr.series) - sr.series_len,
        "%s%.0fs:%+ldKiB", sr.series_len ? " " : "", t, rss - sr.rss0);
    if (t > 0.99 && t < 1.01)
        fprintf(stderr, "  t=%.1fs rss=%ld KiB weft-queue=%zu kernel-sndq=%d\n",
                t, rss, sr.s ? weft_stream_buffer_size(sr.s) : 0, outq);
}

static void slow_reader(double secs, bool ignore_false)
{
    memset(&sr, 0, sizeof(sr));
    sr.ignore_false = ignore_false;
    weft_server *srv = weft_create_server(loop, sr_conn, NULL);
    sr.port = listen_port(srv);
    pid_t pid = peer(never_read, sr.port, NULL);
    sr.rss0 = rss_kib();
    run_for(secs, 1.0, sr_sample);
    size_t queued = weft_stream_buffer_size(sr.s);
    int outq = 0;
    ioctl(fd_with_local_port(sr.port), SIOCOUTQ, &outq);
    printf("%s secs=%.0f rss_growth_kib=%ld handed_mib=%.1f "
           "weft_queue_kib=%zu kernel_sndq_kib=%d series=\"%s\"\n",
           ignore_false ? "slow-reader-ignoring-false"
                        : "slow-reader-respecting-false",
           secs, sr.rss_max - sr.rss0, (double)sr.handed / 1048576.0,
           queued / 1024, outq / 1024, sr.series);
    stop_peer(pid);
    weft_clear_timer(sr.ignorer);
    weft_stream_destroy(sr.s);
    sr.s = NULL;
    weft_set_timeout(loop, 10, stop_loop, NULL);
    weft_loop_run(loop);
}

/* ---- flood ------------------------------------------------------------- */

/* c[0]: bytes the kernel took, c[1]: of those, still in our send queue. */
static void write_forever(int port, volatile uint64_t *c)
{
    static char buf[CHUNK];
    int fd = raw_connect(port);
    if (fd < 0)
        _exit(1);
    struct timeval tv = {0, 100000}; /* wake to report the queue */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    for (;;) {
        ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
        if (w == 0 || (w < 0 && errno != EAGAIN && errno != EINTR))
            _exit(0);
        if (w > 0)
            c[0] += (uint64_t)w;
        int outq = 0;
        ioctl(fd, SIOCOUTQ, &outq);
        c[1] = (uint64_t)outq;
    }
}

static struct {
    weft_stream *s;
    int port;
    volatile uint64_t *sent;
    long rss0, rss_max;
    uint64_t read;
    char series[1024];
    size_t series_len;
} fl;

static void fl_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)ctx;
    fl.read += n;
}

static void fl_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    fl.s = s;
    /* Paused before anything is read. */
    weft_stream_pause(s);
    weft_stream_on_data(s, fl_data, NULL);
}

static void fl_sample(double t)
{
    long rss = rss_kib();
    if (rss > fl.rss_max)
        fl.rss_max = rss;
    fl.series_len += (size_t)snprintf(
        fl.series + fl.series_len, sizeof(fl.series) - fl.series_len,
        "%s%.0fs:%+ldKiB/%.1fMiB", fl.series_len ? " " : "", t, rss - fl.rss0,
        (double)fl.sent[0] / 1048576.0);
}

static void flood(double secs)
{
    memset(&fl, 0, sizeof(fl));
    fl.sent = shared_counters();
    weft_server *srv = weft_create_server(loop, fl_conn, NULL);
    fl.port = listen_port(srv);
    pid_t pid = peer(write_forever, fl.port, fl.sent);
    fl.rss0 = rss_kib();
    run_for(secs, 1.0, fl_sample);
    int inq = 0;
    ioctl(fd_with_local_port(fl.port), SIOCINQ, &inq);
    uint64_t sent = fl.sent[0], peer_q = fl.sent[1];
    uint64_t read_paused = fl.read;
    /* Resume: what was held back is all there. */
    weft_stream_resume(fl.s);
    stop_peer(pid);
    weft_set_timeout(loop, 500, stop_loop, NULL);
    weft_loop_run(loop);
    printf("flood-paused secs=%.0f rss_growth_kib=%ld peer_wrote_kib=%llu "
           "weft_read_while_paused=%llu weft_rcvq_kib=%d peer_sndq_kib=%llu "
           "read_after_resume_kib=%llu series=\"%s\"\n",
           secs, fl.rss_max - fl.rss0, (unsigned long long)sent / 1024,
           (unsigned long long)read_paused, inq / 1024,
           (unsigned long long)peer_q / 1024,
           (unsigned long long)fl.read / 1024, fl.series);
    weft_stream_destroy(fl.s);
    weft_set_timeout(loop, 10, stop_loop, NULL);
    weft_loop_run(loop);
}

/* ---- EMFILE ------------------------------------------------------------ */

static int em_rate;

static void keep_connecting(int port, volatile uint64_t *c)
{
    /* c[0]: attempts, c[1]: shed (closed or reset by the server),
     * c[2]: served (data came back: must stay 0 while out of fds). */
    struct timespec gap = {0, em_rate > 0 ? 1000000000L / em_rate : 0};
    for (;;) {
        int fd = raw_connect(port);
        if (fd >= 0) {
            c[0]++;
            struct timeval tv = {2, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            char b;
            ssize_t r = recv(fd, &b, 1, 0);
            if (r == 0 || (r < 0 && errno == ECONNRESET))
                c[1]++;
            else if (r > 0)
                c[2]++;
            close(fd);
        }
        if (em_rate > 0)
            nanosleep(&gap, NULL);
    }
}

static unsigned em_accepted;

static void em_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    em_accepted++;
    weft_stream_end_string(s, "x", NULL);
}

static void nothing(double t)
{
    (void)t;
}

static void emfile(double secs, int rate)
{
    em_rate = rate;
    volatile uint64_t *c = shared_counters();
    weft_server *srv = weft_create_server(loop, em_conn, NULL);
    int port = listen_port(srv);
    cpu_s(); /* opens /proc/self/stat while there are fds */
    /* Lower the limit to just above what is open, and fill it. */
    struct rlimit old, rl;
    getrlimit(RLIMIT_NOFILE, &old);
    int top = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            top = fd;
    rl.rlim_cur = (rlim_t)top + 8;
    rl.rlim_max = old.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    static int fill[65536];
    int nfill = 0, fd;
    while (nfill < 65536 && (fd = open("/dev/null", O_RDONLY)) >= 0)
        fill[nfill++] = fd;
    if (errno != EMFILE)
        die("filling the fd table");
    pid_t pid = peer(keep_connecting, port, c);
    /* Let the client get going, then measure a window. */
    weft_set_timeout(loop, 200, stop_loop, NULL);
    weft_loop_run(loop);
    double cpu0 = cpu_s(), t0 = now_s();
    uint64_t a0 = c[0], s0 = c[1];
    run_for(secs, secs, nothing);
    double cpu = cpu_s() - cpu0, wall = now_s() - t0;
    uint64_t attempts = c[0] - a0, shed = c[1] - s0;
    unsigned accepted_while_full = em_accepted;
    /* fds back: the next connection is served. */
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    setrlimit(RLIMIT_NOFILE, &old);
    uint64_t served0 = c[2];
    for (int i = 0; i < 40 && c[2] == served0; i++) {
        weft_set_timeout(loop, 50, stop_loop, NULL);
        weft_loop_run(loop);
    }
    stop_peer(pid);
    printf("emfile rate=%s secs=%.1f server_cpu_pct=%.2f connects=%llu "
           "(%.0f/s) shed=%llu accepted_while_full=%u recovered=%s "
           "us_per_shed=%.1f\n",
           rate > 0 ? "paced" : "flat-out", wall, 100.0 * cpu / wall,
           (unsigned long long)attempts, (double)attempts / wall,
           (unsigned long long)shed, accepted_while_full,
           c[2] > served0 ? "yes" : "NO",
           shed ? cpu * 1e6 / (double)shed : 0.0);
    weft_server_close(srv);
    weft_set_timeout(loop, 10, stop_loop, NULL);
    weft_loop_run(loop);
}

/* ---- idle -------------------------------------------------------------- */

static int idle_n;

static void connect_idle(int port, volatile uint64_t *c)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    for (int i = 0; i < idle_n; i++) {
        if (raw_connect(port) < 0)
            _exit(1);
        c[0]++;
    }
    pause();
}

static unsigned idle_accepted;

static void idle_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    (void)ctx;
}

static void idle_noop_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)n;
    (void)ctx;
}

static void idle_noop_end(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
}

static void idle_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    idle_accepted++;
    /* What a plain server registers. */
    weft_stream_on_data(s, idle_noop_data, NULL);
    weft_stream_on_end(s, idle_noop_end, NULL);
    weft_stream_on_close(s, idle_close, NULL);
}

static void idle(int n)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)n + 64 > rl.rlim_cur)
        n = (int)rl.rlim_cur - 64;
    idle_n = n;
    volatile uint64_t *c = shared_counters();
    weft_server *srv = weft_create_server(loop, idle_conn, NULL);
    weft_server_set_backlog(srv, 4096);
    int port = listen_port(srv);
    weft_set_timeout(loop, 10, stop_loop, NULL);
    weft_loop_run(loop);
    malloc_trim(0);
    struct mallinfo2 m0 = mallinfo2();
    long rss0 = rss_kib();
    pid_t pid = peer(connect_idle, port, c);
    for (int i = 0; i < 600 && idle_accepted < (unsigned)n; i++) {
        weft_set_timeout(loop, 50, stop_loop, NULL);
        weft_loop_run(loop);
    }
    struct mallinfo2 m1 = mallinfo2();
    long rss1 = rss_kib();
    printf("idle connections=%u heap_bytes_per_conn=%.0f "
           "rss_bytes_per_conn=%.0f\n",
           idle_accepted,
           (double)(m1.uordblks + m1.hblkhd - m0.uordblks - m0.hblkhd) /
               idle_accepted,
           (double)(rss1 - rss0) * 1024 / idle_accepted);
    stop_peer(pid);
    weft_server_close(srv);
    weft_set_timeout(loop, 500, stop_loop, NULL);
    weft_loop_run(loop);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_DFL); /* weft must never raise it */
    loop = weft_loop_new();
    if (loop == NULL)
        die("loop");
    const char *cmd = argc > 1 ? argv[1] : "";
    double secs = argc > 2 ? atof(argv[2]) : 5;
    if (strcmp(cmd, "slow-reader") == 0) {
        slow_reader(secs, false);
        slow_reader(secs > 2 ? 2 : secs, true);
    } else if (strcmp(cmd, "flood") == 0) {
        flood(secs);
    } else if (strcmp(cmd, "emfile") == 0) {
        emfile(secs, argc > 3 ? atoi(argv[3]) : 0);
    } else if (strcmp(cmd, "idle") == 0) {
        idle(argc > 2 ? atoi(argv[2]) : 10000);
    } else {
        fprintf(stderr, "usage: stress slow-reader SECS | flood SECS | "
                        "emfile SECS RATE | idle N\n");
        return 2;
    }
    weft_loop_close(loop);
    return 0;
}
