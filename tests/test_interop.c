/*
 * test_interop.c - weft against peers it did not write.
 *
 *   (a) the built example examples/echo-server (the seed's echo
 *       conversation: "hello\r\n" on connect, echo, "goodbye\r\n" on end,
 *       setEncoding utf8), driven by a Node.js `net` client
 *       (tests/node/echo_client.js), over TCP and over a Unix socket;
 *       then SIGTERM must stop the example cleanly (exit 0, which under
 *       ASan also means no leak).
 *   (b) a weft client against a Node.js `net` echo server
 *       (tests/node/echo_server.js, allowHalfOpen): 1 MiB of random
 *       bytes out, end(), the echo and a trailer back, byte-exact.
 *   (c) the other half-close: the Node server ends first, the weft
 *       client (allowHalfOpen) keeps writing 1 MiB, then ends; Node
 *       reports the length and checksum it received.
 *
 * Every child runs under a deadline and is killed on every path: killed
 * explicitly when the test ends, and by PR_SET_PDEATHSIG if the test
 * process dies first (a failed assertion exits the forked test at once).
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ECHO_SERVER WEFT_BINARY_DIR "/examples/echo-server"
#define NODE_DIR    WEFT_SOURCE_DIR "/tests/node"
#define CHILD_MS    15000

/* ---- child processes --------------------------------------------------- */

static void require_node(void)
{
    if (!tu_have_program("node"))
        ck_abort_msg("node not found in PATH: the interop tests need Node.js "
                     "(scripts/install-deps installs it)");
}

static void assert_exit_0(int status, const char *what)
{
    ck_assert_msg(status != TU_CHILD_KILLED, "%s did not finish in time", what);
    ck_assert_msg(WIFEXITED(status), "%s died of signal %d", what,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ck_assert_msg(WEXITSTATUS(status) == 0, "%s exited with %d", what,
                  WEXITSTATUS(status));
}

/* ---- (a) the example echo server, a Node client ------------------------ */

static void echo_server_with_node_client(const char *where)
{
    require_node();
    ck_assert_msg(access(ECHO_SERVER, X_OK) == 0, "%s not built", ECHO_SERVER);
    char *srv_argv[] = {ECHO_SERVER, (char *)where, NULL};
    tu_child srv;
    tu_spawn(&srv, srv_argv, NULL);

    /* "echo server listening on 127.0.0.1 port N" / "... on PATH" */
    char line[256];
    bool ok = tu_child_read_line(&srv, line, sizeof(line), CHILD_MS);
    if (!ok)
        tu_child_reap(&srv, 0);
    ck_assert_msg(ok, "echo-server printed no address: '%s'", line);
    /* TCP: connect where the example says it bound ("localhost" may be
     * 127.0.0.1 or ::1 depending on /etc/hosts). */
    char host[128], port[16];
    int portnum;
    char *cli_argv[] = {"node", NODE_DIR "/echo_client.js", (char *)where, NULL,
                        NULL};
    if (sscanf(line, "echo server listening on %127s port %d", host,
               &portnum) == 2) {
        snprintf(port, sizeof(port), "%d", portnum);
        cli_argv[2] = port;
        cli_argv[3] = host;
    }

    tu_child cli;
    tu_spawn(&cli, cli_argv, NULL);
    int cli_status = tu_child_reap(&cli, CHILD_MS);

    /* SIGTERM: the example stops accepting, ends its connections and
     * returns from its loop. */
    kill(srv.pid, SIGTERM);
    int srv_status = tu_child_reap(&srv, 5000);
    assert_exit_0(cli_status, "node echo_client.js");
    assert_exit_0(srv_status, "echo-server after SIGTERM");
}

START_TEST(example_echo_server_holds_the_seed_conversation_with_node_client)
{
    echo_server_with_node_client("0");
}
END_TEST

START_TEST(example_echo_server_on_unix_socket_with_node_client)
{
    const char *path = tu_sock_path("echo");
    echo_server_with_node_client(path);
    /* The server unlinked its socket file when it closed. */
    ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

/* ---- (b) a weft client, the Node echo server ---------------------------- */

#define PAYLOAD (1024 * 1024)

typedef struct xfer {
    unsigned char *sent;
    unsigned char *got;
    size_t got_len, got_cap;
    tu_slog log;
    int write_ret;
    unsigned closes;
} xfer;

static const char *state(weft_stream *s)
{
    return weft_ready_state_name(weft_stream_ready_state(s));
}

static void x_connect(weft_stream *s, void *ctx)
{
    xfer *x = ctx;
    tu_slog_add(&x->log, "connect:%s", state(s));
    /* Half of it in one write, the rest as end(data). */
    x->write_ret = weft_stream_write(s, x->sent, PAYLOAD / 2);
    ck_assert_int_ge(x->write_ret, 0);
    ck_assert_int_eq(weft_stream_end(s, x->sent + PAYLOAD / 2, PAYLOAD / 2), 0);
    tu_slog_add(&x->log, "end():%s", state(s));
}

static void x_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    xfer *x = ctx;
    ck_assert_uint_le(x->got_len + n, x->got_cap);
    memcpy(x->got + x->got_len, d, n);
    x->got_len += n;
}

static void x_end(weft_stream *s, void *ctx)
{
    xfer *x = ctx;
    tu_slog_add(&x->log, "end:%s", state(s));
}

static void x_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    xfer *x = ctx;
    tu_slog_add(&x->log, "error:%s", weft_err_name(err));
    fprintf(stderr, "weft client: %s\n", msg);
}

static void x_close(weft_stream *s, bool had_error, void *ctx)
{
    xfer *x = ctx;
    x->closes++;
    tu_slog_add(&x->log, "close:%d:%s", had_error, state(s));
}

START_TEST(weft_client_exchanges_bytes_with_node_server_including_half_close)
{
    require_node();
    char *argv[] = {"node", NODE_DIR "/echo_server.js", NULL};
    tu_child srv;
    tu_spawn(&srv, argv, NULL);
    char line[64];
    bool ok = tu_child_read_line(&srv, line, sizeof(line), CHILD_MS);
    int port = 0;
    if (!ok || sscanf(line, "PORT %d", &port) != 1)
        tu_child_reap(&srv, 0);
    ck_assert_msg(port > 0, "node echo_server.js printed '%s'", line);

    static xfer x;
    memset(&x, 0, sizeof(x));
    x.sent = malloc(PAYLOAD);
    x.got_cap = PAYLOAD + 64;
    x.got = malloc(x.got_cap);
    ck_assert(x.sent != NULL && x.got != NULL);
    tu_fill_random(x.sent, PAYLOAD, 42);

    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &s), 0);
    weft_stream_on_connect(s, x_connect, &x);
    weft_stream_on_data(s, x_data, &x);
    weft_stream_on_end(s, x_end, &x);
    weft_stream_on_error(s, x_error, &x);
    weft_stream_on_close(s, x_close, &x);
    tu_run(CHILD_MS);
    int status = tu_child_reap(&srv, 5000);

    char trailer[64];
    int tn = snprintf(trailer, sizeof(trailer), "\nbytes=%d\n", PAYLOAD);
    ck_assert_str_eq(x.log.buf, "connect:open,end():readOnly,end:closed,"
                                "close:0:closed");
    ck_assert_uint_eq(x.got_len, PAYLOAD + (size_t)tn);
    size_t i = 0;
    while (i < PAYLOAD && x.got[i] == x.sent[i])
        i++;
    ck_assert_msg(i == PAYLOAD, "echo differs at byte %zu", i);
    ck_assert(memcmp(x.got + PAYLOAD, trailer, (size_t)tn) == 0);
    ck_assert_uint_eq(x.closes, 1);
    assert_exit_0(status, "node echo_server.js");
    free(x.sent);
    free(x.got);
}
END_TEST

/* ---- (c) a Node server that ends first, a half-open weft client -------- */

static uint32_t fnv1a32(const unsigned char *p, size_t n)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x01000193u;
    }
    return h;
}

static void h_end(weft_stream *s, void *ctx)
{
    xfer *x = ctx;
    tu_slog_add(&x->log, "end:%s", state(s));
    /* writeOnly: the peer is done, we may keep writing. */
    for (int i = 0; i < 4; i++) {
        int r = weft_stream_write(s, x->sent + i * (PAYLOAD / 4), PAYLOAD / 4);
        ck_assert_int_ge(r, 0);
    }
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    tu_slog_add(&x->log, "end():%s", state(s));
}

static void h_connect(weft_stream *s, void *ctx)
{
    xfer *x = ctx;
    tu_slog_add(&x->log, "connect:%s", state(s));
}

START_TEST(half_open_weft_client_keeps_writing_after_node_server_ends)
{
    require_node();
    char *argv[] = {"node", NODE_DIR "/echo_server.js", "end-first", NULL};
    tu_child srv;
    tu_spawn(&srv, argv, NULL);
    char line[64];
    bool ok = tu_child_read_line(&srv, line, sizeof(line), CHILD_MS);
    int port = 0;
    if (!ok || sscanf(line, "PORT %d", &port) != 1)
        tu_child_reap(&srv, 0);
    ck_assert_msg(port > 0, "node echo_server.js printed '%s'", line);

    static xfer x;
    memset(&x, 0, sizeof(x));
    x.sent = malloc(PAYLOAD);
    x.got_cap = 64;
    x.got = malloc(x.got_cap);
    ck_assert(x.sent != NULL && x.got != NULL);
    tu_fill_random(x.sent, PAYLOAD, 43);

    weft_stream *s = weft_stream_new(tu_loop);
    ck_assert_ptr_nonnull(s);
    weft_stream_set_allow_half_open(s, true);
    weft_stream_on_connect(s, h_connect, &x);
    weft_stream_on_data(s, x_data, &x);
    weft_stream_on_end(s, h_end, &x);
    weft_stream_on_error(s, x_error, &x);
    weft_stream_on_close(s, x_close, &x);
    ck_assert_int_eq(weft_stream_connect(s, port, "127.0.0.1"), 0);
    tu_run(CHILD_MS);

    /* What Node received, as it reports it. */
    char got[96];
    ok = tu_child_read_line(&srv, got, sizeof(got), CHILD_MS);
    int status = tu_child_reap(&srv, 5000);
    ck_assert_msg(ok, "node printed no result: '%s'", got);
    char want[96];
    snprintf(want, sizeof(want), "GOT %d %08x", PAYLOAD,
             (unsigned)fnv1a32(x.sent, PAYLOAD));
    ck_assert_str_eq(got, want);
    ck_assert_str_eq(x.log.buf, "connect:open,end:writeOnly,end():closed,"
                                "close:0:closed");
    ck_assert_uint_eq(x.got_len, 9);
    ck_assert(memcmp(x.got, "greeting\n", 9) == 0);
    ck_assert_uint_eq(x.closes, 1);
    assert_exit_0(status, "node echo_server.js end-first");
    free(x.sent);
    free(x.got);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interop");
    TCase *tc = tu_tcase("interop");
    tcase_add_test(
        tc, example_echo_server_holds_the_seed_conversation_with_node_client);
    tcase_add_test(tc, example_echo_server_on_unix_socket_with_node_client);
    tcase_add_test(
        tc, weft_client_exchanges_bytes_with_node_server_including_half_close);
    tcase_add_test(tc,
                   half_open_weft_client_keeps_writing_after_node_server_ends);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
