/*
 * test_netem.c - churn with checksums across a lossy, delaying,
 * reordering network: three network namespaces created by the test,
 *
 *     [server ns] veth ─── veth [router ns] veth ─── veth [client ns]
 *      10.231.1.1                 forwards,              10.231.2.1
 *                              impairs both ways
 *
 * with `tc netem loss 2% delay 5ms reorder 10%` on the router's two
 * egress devices where the kernel has sch_netem. Where it does not, the
 * same router emulates bad conditions with what is there: an htb qdisc
 * sends a quarter of the TCP segments (picked by sequence-number bits)
 * through a slow class with a short queue, so those are delayed (queueing),
 * overtaken by the rest (reordering) and tail-dropped (loss). The output
 * says which was applied, and the TCP counters (retransmissions,
 * out-of-order segments) the client saw.
 *
 * The weft server runs in a forked child that has entered the server
 * namespace (setns); the weft clients run in the test process, which
 * enters the client namespace for the run and leaves it after. As in
 * test_churn.c, each connection carries two seeded pattern streams
 * checked byte by byte at the receiving end; the server child reports
 * its side per connection through a pipe.
 *
 * Needs root, iproute2 and network namespaces; without them the test
 * passes and prints SKIPPED with the reason. Nothing is created outside
 * the three namespaces, and they are deleted on every path (and stale
 * ones from a killed run are deleted by the next).
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define KiB         1024u
#define C2S         0
#define S2C         1
#define SERVER_IP   "10.231.1.1"
#define SERVER_PORT 7777
#define NS_PREFIX   "weftnt-"

/* ---- namespaces ------------------------------------------------------- */

static char ns_srv[32], ns_cli[32], ns_rtr[32];
static bool ns_made;

/* Runs a shell command quietly; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[600];
    snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void ns_delete(void)
{
    if (!ns_made)
        return;
    ns_made = false;
    /* Deleting a namespace destroys the veth ends inside it. */
    sh("ip netns del %s", ns_srv);
    sh("ip netns del %s", ns_cli);
    sh("ip netns del %s", ns_rtr);
}

/* Namespaces left by a run that was killed (the pid is in the name). */
static void ns_delete_stale(void)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0)
            continue;
        const char *dash = strrchr(e->d_name, '-');
        long pid = dash ? strtol(dash + 1, NULL, 10) : 0;
        if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
            sh("ip netns del %s", e->d_name);
    }
    closedir(d);
}

/* Returns NULL, or why the network could not be made (a skip). Sets
 * *how to a description of the conditions applied. */
static const char *ns_create(char *how, size_t how_size)
{
    if (geteuid() != 0)
        return "not root";
    /* With --trace-children every ip and tc command would run under
     * valgrind too (tens of seconds); weft's side of this run is the
     * same code the other suites check under valgrind. */
    if (tu_under_valgrind())
        return "under valgrind";
    if (sh("ip -V") != 0 || sh("tc -V") != 0)
        return "ip or tc (iproute2) not found";
    ns_delete_stale();
    int pid = (int)getpid();
    snprintf(ns_srv, sizeof(ns_srv), NS_PREFIX "s-%d", pid);
    snprintf(ns_cli, sizeof(ns_cli), NS_PREFIX "c-%d", pid);
    snprintf(ns_rtr, sizeof(ns_rtr), NS_PREFIX "r-%d", pid);
    if (sh("ip netns add %s", ns_srv) != 0)
        return "cannot create network namespaces (ip netns add failed)";
    ns_made = true;
    if (sh("ip netns add %s", ns_cli) != 0 || sh("ip netns add %s", ns_rtr))
        return "cannot create network namespaces (ip netns add failed)";
    /* Each pair is created inside the namespaces: nothing appears in the
     * namespace the test started in. */
    if (sh("ip -n %s link add wrs type veth peer name ws netns %s", ns_rtr,
           ns_srv) != 0 ||
        sh("ip -n %s link add wrc type veth peer name wc netns %s", ns_rtr,
           ns_cli) != 0)
        return "cannot create veth pairs";
    const char *setup[] = {
        "ip -n %1$s addr add 10.231.1.1/24 dev ws",
        "ip -n %2$s addr add 10.231.2.1/24 dev wc",
        "ip -n %3$s addr add 10.231.1.2/24 dev wrs",
        "ip -n %3$s addr add 10.231.2.2/24 dev wrc",
        /* MTU-sized packets through the qdiscs, not 64 KiB GSO ones. */
        "ip -n %1$s link set ws gso_max_segs 1 up",
        "ip -n %2$s link set wc gso_max_segs 1 up",
        "ip -n %3$s link set wrs gso_max_segs 1 up",
        "ip -n %3$s link set wrc gso_max_segs 1 up",
        "ip -n %1$s link set lo up",
        "ip -n %2$s link set lo up",
        "ip -n %1$s route add default via 10.231.1.2",
        "ip -n %2$s route add default via 10.231.2.2",
        "ip netns exec %3$s sysctl -qw net.ipv4.ip_forward=1",
    };
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++) {
        char cmd[256];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(cmd, sizeof(cmd), setup[i], ns_srv, ns_cli, ns_rtr);
#pragma GCC diagnostic pop
        if (sh("%s", cmd) != 0) {
            snprintf(how, how_size, "setup failed: %s", cmd);
            return how;
        }
    }
    const char *devs[] = {"wrs", "wrc"};
    bool netem = true;
    for (int i = 0; i < 2 && netem; i++)
        netem = sh("ip netns exec %s tc qdisc add dev %s root netem loss 2%% "
                   "delay 5ms reorder 10%%",
                   ns_rtr, devs[i]) == 0;
    if (netem) {
        snprintf(how, how_size,
                 "netem loss 2%% delay 5ms reorder 10%% on both directions");
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        sh("ip netns exec %s tc qdisc del dev %s root", ns_rtr, devs[i]);
        /* Class 1:10: the fast path. Class 1:20: a quarter of the TCP
         * segments (sequence bits 10-11 == 01), 100 Mbit/s with a 30
         * packet queue: up to ~3.6 ms of queueing delay, reordered
         * behind the fast path, tail-dropped when a burst overflows. */
        if (sh("ip netns exec %s tc qdisc add dev %s root handle 1: htb "
               "default 10 r2q 100",
               ns_rtr, devs[i]) != 0 ||
            sh("ip netns exec %s tc class add dev %s parent 1: classid 1:10 "
               "htb rate 1gbit",
               ns_rtr, devs[i]) != 0 ||
            sh("ip netns exec %s tc class add dev %s parent 1: classid 1:20 "
               "htb rate 100mbit ceil 100mbit",
               ns_rtr, devs[i]) != 0 ||
            sh("ip netns exec %s tc qdisc add dev %s parent 1:20 handle 20: "
               "pfifo limit 30",
               ns_rtr, devs[i]) != 0 ||
            sh("ip netns exec %s tc filter add dev %s parent 1: protocol ip "
               "prio 1 u32 match ip protocol 6 0xff match u32 0x00000400 "
               "0x00000c00 at 24 flowid 1:20",
               ns_rtr, devs[i]) != 0)
            return "neither netem nor htb/u32/pfifo qdiscs are available";
    }
    snprintf(how, how_size,
             "netem not in this kernel; emulated with htb+u32+pfifo: a "
             "quarter of the segments queued (delay), overtaken (reorder) "
             "and tail-dropped (loss), both directions");
    return NULL;
}

static int ns_fd(const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* A counter from /proc/net/{snmp,netstat} of the current namespace:
 * `table` is the row prefix ("Tcp:", "TcpExt:"), `key` the column. */
static long net_counter(const char *file, const char *table, const char *key)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return -1;
    char head[4096], vals[4096];
    long v = -1;
    while (fgets(head, sizeof(head), f) && fgets(vals, sizeof(vals), f)) {
        if (strncmp(head, table, strlen(table)) != 0)
            continue;
        char *sh_, *sv;
        char *h = strtok_r(head, " \n", &sh_);
        char *x = strtok_r(vals, " \n", &sv);
        while (h != NULL && x != NULL) {
            if (strcmp(h, key) == 0)
                v = strtol(x, NULL, 10);
            h = strtok_r(NULL, " \n", &sh_);
            x = strtok_r(NULL, " \n", &sv);
        }
    }
    fclose(f);
    return v;
}

/* ---- the churn -------------------------------------------------------- */

enum order {
    O_CLIENT_FIRST,
    O_SERVER_FIRST,
    O_TOGETHER,
    O_AUTO,
    O_CLIENT_DESTROY,
    O_SERVER_DESTROY,
    N_ORDERS
};

typedef struct plan {
    uint8_t order;
    uint32_t len[2], chunk[2], cut;
} plan;

typedef struct side {
    int id;
    bool is_server;
    weft_stream *s;
    uint8_t hdr[8];
    unsigned hdr_got;
    uint64_t sent, recvd;
    bool blocked, ended, peer_ended, destroyed, closed, had_error;
    int err;
    unsigned closes, errors;
} side;

/* What the server child reports per connection. */
typedef struct srv_result {
    uint32_t recvd, sent;
    uint8_t closes, had_error, peer_ended, seen;
} srv_result;

static struct churn {
    uint64_t seed;
    unsigned n, inflight;
    plan *plans;
    side *cli, *srv;
    int *srv_of_id;
    weft_loop *loop;
    weft_server *server;
    unsigned accepted, srv_closed, cli_next, cli_closed;
    bool in_child;
    int report_fd;
    unsigned char *buf;
} C;

/* Fails the test; in the server child, reports the message and exits. */
static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (C.in_child) {
        uint32_t tag = 0xbad;
        if (write(C.report_fd, &tag, sizeof(tag)) < 0 ||
            write(C.report_fd, msg, sizeof(msg)) < 0)
            _exit(3);
        _exit(1);
    }
    /* A client-side symptom often has its cause in the server child:
     * give its message if it has failed already. */
    char child[200] = "";
    uint32_t tag = 0;
    if (C.report_fd >= 0 && fcntl(C.report_fd, F_SETFL, O_NONBLOCK) == 0 &&
        read(C.report_fd, &tag, sizeof(tag)) == sizeof(tag) && tag == 0xbad) {
        fcntl(C.report_fd, F_SETFL, 0);
        if (read(C.report_fd, child, sizeof(child)) <= 0)
            child[0] = '\0';
    }
    ck_abort_msg("%s%s%s", msg, child[0] ? "; server child: " : "", child);
}

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            failf(__VA_ARGS__);                                                \
    } while (0)

static uint64_t stream_seed(unsigned id, int dir)
{
    return (C.seed << 32) ^ ((uint64_t)id * 2 + (uint64_t)dir + 1);
}

static void make_plans(void)
{
    C.plans = calloc(C.n, sizeof(*C.plans));
    CHECK(C.plans != NULL, "ENOMEM");
    for (unsigned id = 0; id < C.n; id++) {
        plan *p = &C.plans[id];
        uint64_t r = tu_mix(C.seed ^ ((uint64_t)id << 20));
        p->order = (uint8_t)(r % N_ORDERS);
        for (int d = 0; d < 2; d++) {
            uint64_t q = tu_mix(r + 11 + (uint64_t)d);
            /* 0..256 KiB, log-uniform: mostly small, some large. */
            p->len[d] = (uint32_t)((q >> 8) % (1u << ((q >> 2) % 19)));
            uint32_t c = 1u << ((q >> 40) % 17);
            p->chunk[d] = c < p->len[d] / 64 ? p->len[d] / 64 : c;
        }
        int cut_dir = p->order == O_CLIENT_DESTROY   ? S2C
                      : p->order == O_SERVER_DESTROY ? C2S
                                                     : -1;
        if (cut_dir >= 0) {
            if (p->len[cut_dir] == 0)
                p->len[cut_dir] = 1 + (uint32_t)(r % (16 * KiB));
            p->cut = 1 + (uint32_t)(tu_mix(r + 41) % p->len[cut_dir]);
        }
        if (p->order == O_AUTO)
            for (int d = 0; d < 2; d++)
                p->chunk[d] = p->len[d] > 0 ? p->len[d] : 1;
    }
}

static bool ends_when_written(const side *sd)
{
    switch (C.plans[sd->id].order) {
    case O_CLIENT_FIRST:
        return !sd->is_server || sd->peer_ended;
    case O_SERVER_FIRST:
        return sd->is_server || sd->peer_ended;
    case O_TOGETHER:
        return true;
    case O_CLIENT_DESTROY:
        return sd->is_server;
    case O_SERVER_DESTROY:
        return !sd->is_server;
    default:
        return false;
    }
}

static void pump(side *sd)
{
    const plan *p = &C.plans[sd->id];
    int dir = sd->is_server ? S2C : C2S;
    uint64_t seed = stream_seed((unsigned)sd->id, dir);
    while (!sd->blocked && !sd->destroyed && !sd->ended &&
           sd->sent < p->len[dir]) {
        uint64_t n = p->len[dir] - sd->sent;
        if (n > p->chunk[dir])
            n = p->chunk[dir];
        tu_pattern(C.buf, sd->sent, (size_t)n, seed);
        int r = weft_stream_write(sd->s, C.buf, (size_t)n);
        if (r < 0) {
            CHECK(weft_stream_ready_state(sd->s) == WEFT_CLOSED,
                  "write on id %d: %s", sd->id, weft_err_name(r));
            return;
        }
        sd->sent += n;
        if (r == 0)
            sd->blocked = true;
    }
    if (!sd->ended && !sd->destroyed && sd->sent == p->len[dir] &&
        ends_when_written(sd)) {
        sd->ended = true;
        CHECK(weft_stream_end(sd->s, NULL, 0) == 0, "end failed");
    }
}

static void received(side *sd, const char *d, size_t n)
{
    const plan *p = &C.plans[sd->id];
    int dir = sd->is_server ? C2S : S2C;
    CHECK(sd->recvd + n <= p->len[dir], "id %d: bytes beyond the %u sent",
          sd->id, p->len[dir]);
    size_t at =
        tu_pattern_diff(d, sd->recvd, n, stream_seed((unsigned)sd->id, dir));
    CHECK(at == n, "id %d %s: byte %llu differs", sd->id,
          sd->is_server ? "client->server" : "server->client",
          (unsigned long long)(sd->recvd + at));
    sd->recvd += n;
    bool cuts = (p->order == O_CLIENT_DESTROY && !sd->is_server) ||
                (p->order == O_SERVER_DESTROY && sd->is_server);
    if (cuts && sd->recvd >= p->cut && !sd->destroyed) {
        sd->destroyed = true;
        weft_stream_destroy(sd->s);
    }
}

static void alive(side *sd, const char *ev)
{
    CHECK(!sd->closed, "%s %d: '%s' after 'close'",
          sd->is_server ? "server" : "client", sd->id, ev);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    side *sd = ctx;
    alive(sd, "error");
    sd->errors++;
    sd->err = err;
}

static void on_drain(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    alive(sd, "drain");
    sd->blocked = false;
    if (sd->id >= 0 && C.plans[sd->id].order != O_AUTO)
        pump(sd);
}

static void on_end(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    alive(sd, "end");
    CHECK(!sd->peer_ended, "id %d: 'end' twice", sd->id);
    sd->peer_ended = true;
    CHECK(sd->id >= 0, "'end' before the header");
    const plan *p = &C.plans[sd->id];
    int dir = sd->is_server ? C2S : S2C;
    bool cut_by_peer = (p->order == O_CLIENT_DESTROY && sd->is_server) ||
                       (p->order == O_SERVER_DESTROY && !sd->is_server);
    CHECK(cut_by_peer || sd->recvd == p->len[dir],
          "id %d: 'end' after %llu of %u bytes", sd->id,
          (unsigned long long)sd->recvd, p->len[dir]);
    if (p->order != O_AUTO)
        pump(sd);
}

static void mark_closed(side *sd, bool had_error)
{
    alive(sd, "close");
    sd->closes++;
    sd->closed = true;
    sd->had_error = had_error;
    CHECK(had_error == (sd->errors > 0), "close(%d) after %u errors", had_error,
          sd->errors);
}

/* server side (the child) */

static void srv_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    side *sd = ctx;
    alive(sd, "data");
    if (sd->hdr_got < 8) {
        size_t k = 8 - sd->hdr_got < n ? 8 - sd->hdr_got : n;
        memcpy(sd->hdr + sd->hdr_got, d, k);
        sd->hdr_got += (unsigned)k;
        d += k;
        n -= k;
        if (sd->hdr_got < 8)
            return;
        unsigned id = sd->hdr[4] | sd->hdr[5] << 8 | sd->hdr[6] << 16 |
                      (unsigned)sd->hdr[7] << 24;
        CHECK(memcmp(sd->hdr, "WFT1", 4) == 0 && id < C.n, "bad header");
        CHECK(C.srv_of_id[id] < 0, "id %u accepted twice", id);
        C.srv_of_id[id] = (int)(sd - C.srv);
        sd->id = (int)id;
        weft_stream_set_allow_half_open(s, C.plans[id].order != O_AUTO);
        pump(sd);
        if (sd->destroyed || n == 0)
            return;
    }
    received(sd, d, n);
}

static void srv_close(weft_stream *s, bool had_error, void *ctx)
{
    side *sd = ctx;
    mark_closed(sd, had_error);
    if (++C.srv_closed == C.n) {
        CHECK(weft_server_connections(C.server) == 0, "connections left");
        weft_server_close(C.server);
    }
}

static void srv_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    CHECK(C.accepted < C.n, "more connections than clients");
    side *sd = &C.srv[C.accepted++];
    sd->id = -1;
    sd->is_server = true;
    sd->s = s;
    weft_stream_on_data(s, srv_data, sd);
    weft_stream_on_end(s, on_end, sd);
    weft_stream_on_drain(s, on_drain, sd);
    weft_stream_on_error(s, on_error, sd);
    weft_stream_on_close(s, srv_close, sd);
}

/* Never returns: serves C.n connections in the server namespace. */
static void server_child(int nsfd, int report_fd)
{
    C.in_child = true;
    C.report_fd = report_fd;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    alarm(60);
    if (setns(nsfd, CLONE_NEWNET) < 0)
        failf("setns: %s", strerror(errno));
    /* Drop the parent's fds (its loop's epoll fd among them). */
    close_range(3, (unsigned)report_fd - 1, 0);
    close_range((unsigned)report_fd + 1, ~0u, 0);
    C.loop = weft_loop_new();
    CHECK(C.loop != NULL, "loop");
    C.server = weft_create_server(C.loop, srv_connection, NULL);
    weft_server_set_allow_half_open(C.server, true);
    int r = weft_server_listen(C.server, SERVER_PORT, SERVER_IP, NULL, NULL);
    CHECK(r == 0, "listen: %s", weft_err_name(r));
    uint32_t ready = 0x600d;
    CHECK(write(report_fd, &ready, sizeof(ready)) == sizeof(ready), "pipe");
    weft_loop_run(C.loop);
    CHECK(C.srv_closed == C.n, "server loop ended early");
    srv_result *res = calloc(C.n, sizeof(*res));
    CHECK(res != NULL, "ENOMEM");
    for (unsigned id = 0; id < C.n; id++) {
        if (C.srv_of_id[id] < 0)
            continue;
        const side *sd = &C.srv[C.srv_of_id[id]];
        res[id] = (srv_result){.recvd = (uint32_t)sd->recvd,
                               .sent = (uint32_t)sd->sent,
                               .closes = (uint8_t)sd->closes,
                               .had_error = sd->had_error,
                               .peer_ended = sd->peer_ended,
                               .seen = 1};
    }
    uint32_t tag = 0x600d;
    size_t len = C.n * sizeof(*res);
    if (write(report_fd, &tag, sizeof(tag)) != sizeof(tag) ||
        write(report_fd, res, len) != (ssize_t)len)
        _exit(4);
    _exit(0);
}

/* clients (the test process) */

static void start_client(void);

static void cli_connect(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    alive(sd, "connect");
    if (C.plans[sd->id].order != O_AUTO)
        pump(sd);
}

static void cli_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    side *sd = ctx;
    alive(sd, "data");
    received(sd, d, n);
}

static void cli_close(weft_stream *s, bool had_error, void *ctx)
{
    mark_closed(ctx, had_error);
    C.cli_closed++;
    start_client();
}

static void start_client(void)
{
    if (C.cli_next >= C.n)
        return;
    unsigned id = C.cli_next++;
    const plan *p = &C.plans[id];
    side *sd = &C.cli[id];
    sd->id = (int)id;
    ck_assert_int_eq(
        weft_create_connection(tu_loop, SERVER_PORT, SERVER_IP, &sd->s), 0);
    weft_stream_set_allow_half_open(sd->s, p->order != O_CLIENT_FIRST &&
                                               p->order != O_AUTO);
    weft_stream_on_connect(sd->s, cli_connect, sd);
    weft_stream_on_data(sd->s, cli_data, sd);
    weft_stream_on_end(sd->s, on_end, sd);
    weft_stream_on_drain(sd->s, on_drain, sd);
    weft_stream_on_error(sd->s, on_error, sd);
    weft_stream_on_close(sd->s, cli_close, sd);
    uint8_t h[8] = {'W',
                    'F',
                    'T',
                    '1',
                    (uint8_t)id,
                    (uint8_t)(id >> 8),
                    (uint8_t)(id >> 16),
                    (uint8_t)(id >> 24)};
    ck_assert_int_eq(weft_stream_write(sd->s, h, 8), 0);
    if (p->order == O_AUTO) {
        tu_pattern(C.buf, 0, p->len[C2S], stream_seed(id, C2S));
        ck_assert_int_eq(weft_stream_end(sd->s, C.buf, p->len[C2S]), 0);
        sd->sent = p->len[C2S];
        sd->ended = true;
    }
}

static void read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        ck_assert_msg(r > 0, "server child report cut short");
        p += r;
        len -= (size_t)r;
    }
}

START_TEST(churn_across_lossy_reordering_network_loses_no_byte)
{
    char how[512] = "";
    const char *why = ns_create(how, sizeof(how));
    if (why != NULL) {
        ns_delete();
        printf("netem: SKIPPED: %s\n", why);
        fflush(stdout);
        return;
    }
    printf("netem: network: %s\n", how);
    fflush(stdout);

    memset(&C, 0, sizeof(C));
    C.report_fd = -1;
    C.seed = 0x4e7e3;
    C.n = tu_under_valgrind() ? 40 : 400;
    C.inflight = 60;
    make_plans();
    C.cli = calloc(C.n, sizeof(*C.cli));
    C.srv = calloc(C.n, sizeof(*C.srv));
    C.srv_of_id = malloc(C.n * sizeof(int));
    C.buf = malloc(256 * KiB + 1);
    ck_assert(C.cli && C.srv && C.srv_of_id && C.buf);
    for (unsigned i = 0; i < C.n; i++)
        C.srv_of_id[i] = -1;

    int srv_ns = ns_fd(ns_srv), cli_ns = ns_fd(ns_cli);
    int home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ck_assert(srv_ns >= 0 && cli_ns >= 0 && home_ns >= 0);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        server_child(srv_ns, p[1]);
    }
    close(p[1]);
    close(srv_ns);
    C.report_fd = p[0];
    uint32_t tag;
    read_all(p[0], &tag, sizeof(tag));
    if (tag != 0x600d) {
        char msg[200];
        read_all(p[0], msg, sizeof(msg));
        ck_abort_msg("server child: %s", msg);
    }

    /* The clients' sockets are made in the client namespace. */
    ck_assert_int_eq(setns(cli_ns, CLONE_NEWNET), 0);
    long retrans0 = net_counter("/proc/net/snmp", "Tcp:", "RetransSegs");
    long ofo0 = net_counter("/proc/net/netstat", "TcpExt:", "TCPOFOQueue");
    for (unsigned i = 0; i < C.inflight; i++)
        start_client();
    tu_run(50000);
    long retrans =
        net_counter("/proc/net/snmp", "Tcp:", "RetransSegs") - retrans0;
    long ofo =
        net_counter("/proc/net/netstat", "TcpExt:", "TCPOFOQueue") - ofo0;
    ck_assert_int_eq(setns(home_ns, CLONE_NEWNET), 0);
    close(home_ns);
    close(cli_ns);

    read_all(p[0], &tag, sizeof(tag));
    if (tag != 0x600d) {
        char msg[200];
        read_all(p[0], msg, sizeof(msg));
        ck_abort_msg("server child: %s", msg);
    }
    srv_result *res = calloc(C.n, sizeof(*res));
    ck_assert_ptr_nonnull(res);
    read_all(p[0], res, C.n * sizeof(*res));
    close(p[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "server child status %#x", status);
    ns_delete();

    uint64_t bytes = 0;
    unsigned clean = 0;
    for (unsigned id = 0; id < C.n; id++) {
        const plan *pl = &C.plans[id];
        const side *cl = &C.cli[id];
        const srv_result *sv = &res[id];
        ck_assert_msg(sv->seen, "id %u never reached the server", id);
        ck_assert_uint_eq(sv->closes, 1);
        ck_assert_uint_eq(cl->closes, 1);
        bytes += cl->recvd + sv->recvd;
        if (pl->order == O_CLIENT_DESTROY || pl->order == O_SERVER_DESTROY)
            continue;
        clean++;
        ck_assert_msg(!sv->had_error && sv->recvd == pl->len[C2S] &&
                          sv->sent == pl->len[S2C] && sv->peer_ended,
                      "id %u server side: error %d, %u/%u in, %u/%u out", id,
                      sv->had_error, sv->recvd, pl->len[C2S], sv->sent,
                      pl->len[S2C]);
        ck_assert_msg(!cl->had_error && cl->recvd == pl->len[S2C] &&
                          cl->peer_ended,
                      "id %u client side: error %s, %llu/%u in", id,
                      weft_err_name(cl->err), (unsigned long long)cl->recvd,
                      pl->len[S2C]);
    }
    printf("netem: %u connections (%u closed cleanly, %u destroyed "
           "mid-way), %llu bytes checked; the client saw %ld TCP "
           "retransmissions and %ld out-of-order segments\n",
           C.n, clean, C.n - clean, (unsigned long long)bytes, retrans, ofo);
    fflush(stdout);
    /* The conditions were really there. */
    ck_assert_int_gt(retrans, 0);
    ck_assert_int_gt(ofo, 0);
    free(res);
    free(C.plans);
    free(C.cli);
    free(C.srv);
    free(C.srv_of_id);
    free(C.buf);
}
END_TEST

/* Runs in the runner process after the forked test is gone, whether it
 * passed, failed (Check's failure path is _exit, so no atexit) or timed
 * out: its namespaces name a dead pid now. */
static void delete_left_namespaces(void)
{
    ns_delete_stale();
}

int main(void)
{
    Suite *s = suite_create("netem");
    TCase *tc = tu_tcase("netem");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, NULL, delete_left_namespaces);
    tcase_add_test(tc, churn_across_lossy_reordering_network_loses_no_byte);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
