/*
 * bench/loadgen.c - a lean closed-loop load generator for the benchmark
 * servers. It exists because redis-benchmark and wrk saturate their own
 * core before a fast server saturates its one (see shared BENCH.md): this
 * one does no parsing and no per-request allocation, and reads the clock
 * once per wake-up (for batch round-trip percentiles), so the server, not
 * the generator, is what gets measured.
 *
 * Modes (one line of key=value results on stdout, errors on stderr and a
 * non-zero exit):
 *
 *   req     N connections, each with a batch of P requests in flight:
 *           writes P requests in one write, counts reply bytes (replies
 *           have a fixed length), and writes the next batch once the
 *           whole batch is answered. The first reply of every connection
 *           is checked byte for byte. Prints req/s.
 *   bulk    one connection writes up to N GiB (or for D seconds) into a
 *           sink as fast as it can, then half-closes and waits for the
 *           server to close, so every byte was consumed. Prints GB/s.
 *   idle    opens K connections, each sends one PING and waits for its
 *           PONG, then all are held; prints the server's VmRSS growth per
 *           connection (the server and its child processes). -j N splits
 *           the connections over N processes, each from its own loopback
 *           source address, to pass one process's open-file limit.
 *   accept  C concurrent clients, each connecting, sending one request,
 *           reading its reply and closing, over and over. Prints conn/s.
 *   wait    retries connecting until the server accepts (startup).
 *
 * With -p PID the server's CPU time (utime + stime from /proc/PID/stat)
 * over the measured window is reported too; the generator's own comes
 * from getrusage. Every loop is bounded by a deadline.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct lconn {
    int fd;
    double sent_at;  /* req: when the current batch was sent */
    uint32_t got;    /* reply bytes of the current batch received */
    uint32_t unsent; /* bytes of the current batch not yet written */
    uint8_t checked; /* first reply compared */
    uint8_t state;   /* idle/accept: CS_* */
} lconn;

enum { CS_FREE, CS_CONNECTING, CS_WAITING, CS_DONE };

static const char *addr = "6379";
static int nconn = 50;
static int pipeline = 1;
static double duration = 5.0;
static double warmup = 0.0;
static double gib = 4.0;
static int server_pid = 0;
/* TCP_NODELAY on client sockets; off where a connection carries a single
 * request (Nagle never delays a first segment) to save the syscall. */
static bool nodelay = true;
static const char *req;
static const char *reply;
static size_t req_len, reply_len;

static char rbuf[BENCH_READ_SIZE];

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of `pid` in seconds (all its threads), or -1. */
static double proc_cpu_s(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces: fields count from its ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* fields 3..13 skipped, 14 utime, 15 stime */
    if (sscanf(p + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of `pid` in KiB, or -1. */
static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* VmRSS of `pid` and its child processes (a server with workers). */
static long tree_rss_kb(int pid)
{
    long kb = proc_rss_kb(pid);
    if (kb < 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return kb;
    int child;
    while (fscanf(f, "%d", &child) == 1) {
        long c = proc_rss_kb(child);
        if (c > 0)
            kb += c;
    }
    fclose(f);
    return kb;
}

/* idle -j: the loopback source address of this process's connections
 * (0: the kernel's choice). One address gives ~28,000 ports towards one
 * server port; each process of a 100,000-connection test takes its own. */
static uint32_t source_ip;

static socklen_t make_addr(struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (bench_is_path(addr)) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", addr);
        return sizeof(*sun);
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)atoi(addr));
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*sin);
}

/* A new socket with a connect in progress (or done); -1 and errno on
 * failure. */
static int start_connect(bool nonblock)
{
    struct sockaddr_storage ss;
    socklen_t sl = make_addr(&ss);
    int fd =
        socket(ss.ss_family,
               SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    if (ss.ss_family == AF_INET && nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (ss.ss_family == AF_INET && source_ip != 0) {
        /* The port is picked at connect(), per destination, not at bind. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(source_ip);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void print_cpu(double wall, double c0, double s0)
{
    printf(" client_cpu=%.1f", 100.0 * (self_cpu_s() - c0) / wall);
    if (server_pid > 0 && s0 >= 0) {
        double s1 = proc_cpu_s(server_pid);
        if (s1 >= 0)
            printf(" server_cpu=%.1f server_cpu_s=%.3f",
                   100.0 * (s1 - s0) / wall, s1 - s0);
    }
}

/* ---- req ---------------------------------------------------------- */

static char *batch;
static size_t batch_len, batch_reply_len;

/*
 * Round-trip times of whole batches (a batch's requests all wait for its
 * last reply, as with redis-benchmark -P). Time is read once per wake-up,
 * not per request, so the generator stays lean; a batch answered in the
 * same wake-up it was sent in counts as 0. 10 us buckets up to 100 ms,
 * and one overflow bucket.
 */
#define LAT_BUCKET_US 10
#define LAT_BUCKETS 10001
static unsigned long long lat_hist[LAT_BUCKETS];

static void lat_record(double secs)
{
    long b = (long)(secs * 1e6 / LAT_BUCKET_US);
    if (b < 0)
        b = 0;
    if (b >= LAT_BUCKETS)
        b = LAT_BUCKETS - 1;
    lat_hist[b]++;
}

/* The latency under which a fraction q of the batches came back, ms
 * (upper edge of its bucket). */
static double lat_quantile(double q)
{
    unsigned long long total = 0, seen = 0;
    for (int i = 0; i < LAT_BUCKETS; i++)
        total += lat_hist[i];
    if (total == 0)
        return 0;
    unsigned long long want = (unsigned long long)(q * (double)total);
    if (want >= total)
        want = total - 1;
    for (int i = 0; i < LAT_BUCKETS; i++) {
        seen += lat_hist[i];
        if (seen > want)
            return (double)(i + 1) * LAT_BUCKET_US / 1000.0;
    }
    return (double)LAT_BUCKETS * LAT_BUCKET_US / 1000.0;
}

/* Writes what is left of c's batch; -1 on a dead connection. */
static int flush_batch(int ep, lconn *c, uint32_t idx)
{
    while (c->unsent > 0) {
        ssize_t w =
            send(c->fd, batch + batch_len - c->unsent, c->unsent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                         .data.u32 = idx};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                return 0;
            }
            return -1;
        }
        c->unsent -= (uint32_t)w;
    }
    return 0;
}

static int mode_req(void)
{
    batch_len = req_len * (size_t)pipeline;
    batch_reply_len = reply_len * (size_t)pipeline;
    batch = malloc(batch_len);
    lconn *conns = calloc((size_t)nconn, sizeof(lconn));
    if (batch == NULL || conns == NULL)
        die("malloc");
    for (int i = 0; i < pipeline; i++)
        memcpy(batch + (size_t)i * req_len, req, req_len);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconn; i++) {
        /* Blocking connect: on loopback it returns once the handshake is
         * done, which is all the setup needs. */
        int fd = start_connect(false);
        if (fd < 0)
            die("connect");
        set_nonblock(fd);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    for (int i = 0; i < nconn; i++) {
        conns[i].unsent = (uint32_t)batch_len;
        conns[i].sent_at = now_s();
        if (flush_batch(ep, &conns[i], (uint32_t)i) < 0)
            die("send");
    }

    double t = now_s();
    bool measuring = warmup <= 0;
    double t0 = t, t_end = warmup > 0 ? t + warmup : t + duration;
    double c0 = self_cpu_s(), s0 = proc_cpu_s(server_pid);
    unsigned long long done = 0;
    struct epoll_event evs[512];
    for (;;) {
        t = now_s();
        if (t >= t_end) {
            if (measuring)
                break;
            measuring = true;
            done = 0;
            memset(lat_hist, 0, sizeof(lat_hist));
            t0 = t;
            t_end = t + duration;
            c0 = self_cpu_s();
            s0 = proc_cpu_s(server_pid);
        }
        int n = epoll_wait(ep, evs, 512, 20);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        double woke = n > 0 ? now_s() : t;
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32;
            lconn *c = &conns[idx];
            if ((evs[k].events & EPOLLOUT) && c->unsent > 0) {
                if (flush_batch(ep, c, idx) < 0)
                    die("send");
                if (c->unsent == 0) {
                    struct epoll_event ev = {.events = EPOLLIN,
                                             .data.u32 = idx};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            ssize_t r = read(c->fd, rbuf, sizeof(rbuf));
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "loadgen: server closed connection %u (%s)\n",
                        idx, r == 0 ? "EOF" : strerror(errno));
                exit(1);
            }
            if (!c->checked) {
                size_t m = (size_t)r < reply_len ? (size_t)r : reply_len;
                if (memcmp(rbuf, reply, m) != 0) {
                    fprintf(stderr, "loadgen: unexpected reply: %.*s\n", (int)m,
                            rbuf);
                    exit(1);
                }
                c->checked = 1;
            }
            c->got += (uint32_t)r;
            if (c->got > batch_reply_len) {
                fprintf(stderr, "loadgen: more reply bytes than requests\n");
                exit(1);
            }
            if (c->got == batch_reply_len) {
                c->got = 0;
                done += (unsigned long long)pipeline;
                lat_record(woke - c->sent_at);
                c->sent_at = woke;
                c->unsent = (uint32_t)batch_len;
                if (flush_batch(ep, c, idx) < 0)
                    die("send");
            }
        }
    }
    double wall = now_s() - t0;
    printf("rps=%.0f requests=%llu secs=%.3f p50_ms=%.2f p99_ms=%.2f",
           (double)done / wall, done, wall, lat_quantile(0.50),
           lat_quantile(0.99));
    print_cpu(wall, c0, s0);
    if (server_pid > 0 && s0 >= 0 && done > 0)
        printf(" server_us_per_req=%.3f",
               1e6 * (proc_cpu_s(server_pid) - s0) / (double)done);
    printf("\n");
    return 0;
}

/* ---- bulk --------------------------------------------------------- */

#define BULK_CHUNK (256 * 1024)

static int mode_bulk(void)
{
    static char chunk[BULK_CHUNK];
    memset(chunk, 'x', sizeof(chunk));
    int fd = start_connect(false);
    if (fd < 0)
        die("connect");
    uint64_t limit = (uint64_t)(gib * 1073741824.0);
    uint64_t sent = 0;
    double t0 = now_s(), t_end = t0 + duration;
    double c0 = self_cpu_s(), s0 = proc_cpu_s(server_pid);
    unsigned iter = 0;
    while (sent < limit) {
        size_t want =
            limit - sent < BULK_CHUNK ? (size_t)(limit - sent) : BULK_CHUNK;
        ssize_t w = send(fd, chunk, want, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("send");
        }
        sent += (uint64_t)w;
        if ((++iter & 15) == 0 && now_s() >= t_end)
            break;
    }
    /* Wait for the sink to close after our FIN: then it has read all. */
    shutdown(fd, SHUT_WR);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&pfd, 1, 10000);
        if (r <= 0) {
            fprintf(stderr, "loadgen: sink did not close within 10 s\n");
            exit(1);
        }
        ssize_t n = read(fd, rbuf, sizeof(rbuf));
        if (n <= 0)
            break;
    }
    double wall = now_s() - t0;
    close(fd);
    printf("gbps=%.3f bytes=%llu secs=%.3f", (double)sent / wall / 1e9,
           (unsigned long long)sent, wall);
    print_cpu(wall, c0, s0);
    printf("\n");
    return 0;
}

/* ---- idle and accept: many short-lived or held connections ---------- */

/* Opens `c` with a nonblocking connect and registers it. -1 if the
 * system refuses a socket now (counted as an error by the caller). */
static int slot_open(int ep, lconn *c, uint32_t idx)
{
    int fd = start_connect(true);
    if (fd < 0)
        return -1;
    c->fd = fd;
    c->got = 0;
    /* On loopback the handshake has usually completed inside connect():
     * send at once and skip a wake-up for writability, which keeps the
     * generator's cost per connection down (it is the saturated side). */
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
    if (send(fd, req, req_len, MSG_NOSIGNAL) == (ssize_t)req_len) {
        c->state = CS_WAITING;
        ev.events = EPOLLIN;
    } else {
        c->state = CS_CONNECTING;
    }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
    return 0;
}

/*
 * Advances `c` on an event: connected -> send one request -> reply read.
 * Returns 1 when the reply is complete, 0 if more is to come, -1 on a
 * failed connection.
 */
static int slot_step(int ep, lconn *c, uint32_t idx, uint32_t events)
{
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t sl = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            errno = err ? err : ECONNRESET;
            return -1;
        }
        if (send(c->fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len)
            return -1;
        c->state = CS_WAITING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return 0;
    }
    ssize_t r = read(c->fd, rbuf, sizeof(rbuf));
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0) {
        errno = r == 0 ? ECONNRESET : errno;
        return -1;
    }
    c->got += (uint32_t)r;
    return c->got >= reply_len ? 1 : 0;
}

static void slot_close(int ep, lconn *c)
{
    (void)ep; /* close() drops the fd from the epoll set */
    close(c->fd);
    c->fd = -1;
    c->state = CS_FREE;
}

/* One blocking request on a fresh connection: the server's lazy one-time
 * allocations happen before the baseline is read. */
static void one_request(void)
{
    int fd = start_connect(false);
    if (fd < 0)
        die("connect");
    if (send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len)
        die("send");
    size_t got = 0;
    while (got < reply_len) {
        ssize_t r = read(fd, rbuf, sizeof(rbuf));
        if (r <= 0)
            die("read");
        got += (size_t)r;
    }
    close(fd);
}

/* Raises the open-file limit to its maximum; exits if `per_process`
 * connections (plus a few files) still do not fit. */
static void raise_nofile(int per_process)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)per_process + 16 > rl.rlim_cur) {
        fprintf(stderr,
                "loadgen: %d connections per process need more than the "
                "open file limit (%llu); -j spreads them\n",
                per_process, (unsigned long long)rl.rlim_cur);
        exit(1);
    }
}

/* At most this many connects in flight while opening idle connections:
 * well under the listen backlog (511), so no SYN is dropped and retried a
 * second later. */
#define IDLE_OPEN_WINDOW 128

/* Opens and holds `count` connections, one PING/PONG each; returns the
 * seconds it took. Exits on failure. */
static double hold_idle(lconn *conns, int count)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int opened = 0, inflight = 0, held = 0;
    double t0 = now_s(), deadline = t0 + duration;
    struct epoll_event evs[512];
    while (held < count) {
        while (inflight < IDLE_OPEN_WINDOW && opened < count) {
            if (slot_open(ep, &conns[opened], (uint32_t)opened) < 0)
                die("connect");
            opened++;
            inflight++;
        }
        if (now_s() > deadline) {
            fprintf(stderr,
                    "loadgen: only %d of %d connections answered "
                    "within %.0f s\n",
                    held, count, duration);
            exit(1);
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32;
            int r = slot_step(ep, &conns[idx], idx, evs[k].events);
            if (r < 0)
                die("idle connection");
            if (r == 1) {
                /* Held: off the epoll set, fd kept open. */
                epoll_ctl(ep, EPOLL_CTL_DEL, conns[idx].fd, NULL);
                conns[idx].state = CS_DONE;
                held++;
                inflight--;
            }
        }
    }
    close(ep);
    return now_s() - t0;
}

/* idle -j N: N processes each hold nconn / N connections from their own
 * source address (127.0.0.2, .3, ...), since one process may hold at most
 * the open-file limit. Each says "held" on `up` and keeps its connections
 * until `down` closes. */
static int jobs = 1;

static void fork_holders(int count, const int upfd[2], const int downfd[2],
                         pid_t *pids)
{
    for (int j = 0; j < jobs; j++) {
        int share = count / jobs + (j < count % jobs ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid > 0) {
            pids[j] = pid;
            continue;
        }
        /* Only the parent may hold the write end of `down`, or no
         * holder would see it close. */
        close(upfd[0]);
        close(downfd[1]);
        int up = upfd[1], down = downfd[0];
        source_ip = 0x7f000002u + (uint32_t)j;
        lconn *conns = calloc((size_t)share, sizeof(lconn));
        if (conns == NULL)
            die("calloc");
        hold_idle(conns, share);
        char ok = 1;
        if (write(up, &ok, 1) != 1)
            _exit(1);
        while (read(down, &ok, 1) > 0)
            ;
        _exit(0);
    }
}

static int mode_idle(void)
{
    raise_nofile((nconn + jobs - 1) / jobs);
    if (server_pid <= 0) {
        fprintf(stderr, "loadgen: idle needs -p SERVER_PID\n");
        return 2;
    }
    /* Warm the server (each worker, most likely, when it has several). */
    for (int i = 0; i < (jobs > 1 ? 64 : 1); i++)
        one_request();
    usleep(200 * 1000);
    long rss0 = tree_rss_kb(server_pid);

    double open_s;
    lconn *conns = NULL;
    int upfd[2], downfd[2];
    pid_t pids[64];
    if (jobs == 1) {
        conns = calloc((size_t)nconn, sizeof(lconn));
        if (conns == NULL)
            die("calloc");
        open_s = hold_idle(conns, nconn);
    } else {
        if (pipe(upfd) < 0 || pipe(downfd) < 0)
            die("pipe");
        double t0 = now_s();
        fork_holders(nconn, upfd, downfd, pids);
        close(upfd[1]);
        close(downfd[0]);
        char ok;
        int ready = 0;
        while (ready < jobs && read(upfd[0], &ok, 1) == 1)
            ready++;
        open_s = now_s() - t0;
        if (ready < jobs) {
            fprintf(stderr, "loadgen: %d of %d holder processes failed\n",
                    jobs - ready, jobs);
            close(downfd[1]);
            exit(1);
        }
    }
    usleep(300 * 1000); /* let the server finish whatever a read started */
    long rss1 = tree_rss_kb(server_pid);
    printf("conns=%d procs=%d rss_before_kb=%ld rss_after_kb=%ld "
           "bytes_per_conn=%.0f open_secs=%.2f\n",
           nconn, jobs, rss0, rss1, (double)(rss1 - rss0) * 1024.0 / nconn,
           open_s);
    fflush(stdout);
    if (jobs == 1) {
        for (int i = 0; i < nconn; i++)
            close(conns[i].fd);
    } else {
        close(downfd[1]); /* the holders close theirs and exit */
        for (int j = 0; j < jobs; j++)
            waitpid(pids[j], NULL, 0);
    }
    return 0;
}

static int mode_accept(void)
{
    raise_nofile(nconn);
    lconn *conns = calloc((size_t)nconn, sizeof(lconn));
    if (conns == NULL)
        die("calloc");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconn; i++)
        if (slot_open(ep, &conns[i], (uint32_t)i) < 0)
            die("connect");
    double t = now_s();
    bool measuring = warmup <= 0;
    double t0 = t, t_end = warmup > 0 ? t + warmup : t + duration;
    double c0 = self_cpu_s(), s0 = proc_cpu_s(server_pid);
    unsigned long long done = 0, errors = 0;
    struct epoll_event evs[512];
    for (;;) {
        t = now_s();
        if (t >= t_end) {
            if (measuring)
                break;
            measuring = true;
            done = errors = 0;
            t0 = t;
            t_end = t + duration;
            c0 = self_cpu_s();
            s0 = proc_cpu_s(server_pid);
        }
        int n = epoll_wait(ep, evs, 512, 20);
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32;
            lconn *c = &conns[idx];
            int r = slot_step(ep, c, idx, evs[k].events);
            if (r == 0)
                continue;
            if (r == 1)
                done++;
            else
                errors++;
            slot_close(ep, c);
            if (slot_open(ep, c, idx) < 0) {
                /* Out of ports or fds: count it, back off a little. */
                errors++;
                usleep(1000);
                if (slot_open(ep, c, idx) < 0)
                    die("connect");
            }
        }
        if (errors > 1000 && errors > done) {
            fprintf(stderr, "loadgen: accept: %llu errors, %llu done\n", errors,
                    done);
            exit(1);
        }
    }
    double wall = now_s() - t0;
    printf("cps=%.0f conns=%llu errors=%llu secs=%.3f", (double)done / wall,
           done, errors, wall);
    print_cpu(wall, c0, s0);
    if (server_pid > 0 && s0 >= 0 && done > 0)
        printf(" server_us_per_conn=%.3f",
               1e6 * (proc_cpu_s(server_pid) - s0) / (double)done);
    printf("\n");
    return 0;
}

static int mode_wait(void)
{
    double deadline = now_s() + duration;
    for (;;) {
        int fd = start_connect(false);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "loadgen: nothing listening on %s after %.1f s\n",
                    addr, duration);
            return 1;
        }
        usleep(10 * 1000);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen MODE [options]\n"
            "  req     -a ADDR -w pong|http -c CONNS -P PIPELINE -d SECS "
            "[-W WARMUP] [-p PID]\n"
            "  bulk    -a ADDR -g GIB -d MAX_SECS [-p PID]\n"
            "  idle    -a ADDR -c CONNS -p PID [-d MAX_SECS] [-j PROCS]\n"
            "  accept  -a ADDR -w pong|http -c CONCURRENCY -d SECS "
            "[-W WARMUP] [-p PID]\n"
            "  wait    -a ADDR -d MAX_SECS\n"
            "ADDR is a TCP port on 127.0.0.1, or a Unix socket path.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    const char *work = "pong";
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "a:c:P:d:W:g:p:w:j:")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'c':
            nconn = atoi(optarg);
            break;
        case 'P':
            pipeline = atoi(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'W':
            warmup = atof(optarg);
            break;
        case 'g':
            gib = atof(optarg);
            break;
        case 'p':
            server_pid = atoi(optarg);
            break;
        case 'j':
            jobs = atoi(optarg);
            if (jobs < 1 || jobs > 64) {
                fprintf(stderr, "loadgen: -j is 1..64\n");
                return 2;
            }
            break;
        case 'w':
            work = optarg;
            break;
        default:
            usage();
        }
    }
    if (nconn < 1 || pipeline < 1 || pipeline > 1024 || duration <= 0)
        usage();
    if (strcmp(work, "http") == 0) {
        req = HTTP_REQ;
        reply = HTTP_REPLY;
    } else if (strcmp(work, "pong") == 0) {
        req = PONG_REQ;
        reply = PONG_REPLY;
    } else {
        usage();
    }
    req_len = strlen(req);
    reply_len = strlen(reply);
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(mode, "req") == 0)
        return mode_req();
    if (strcmp(mode, "bulk") == 0)
        return mode_bulk();
    nodelay = false;
    if (strcmp(mode, "idle") == 0)
        return mode_idle();
    if (strcmp(mode, "accept") == 0)
        return mode_accept();
    if (strcmp(mode, "wait") == 0)
        return mode_wait();
    usage();
    return 2;
}
