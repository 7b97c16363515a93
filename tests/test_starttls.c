/*
 * test_starttls.c - STARTTLS: weft_stream_set_secure() on an open plain
 * stream after a plaintext exchange, on both sides, against weft and
 * against `openssl s_client -starttls smtp`; and the CVE-2011-0411 rule:
 * a server sees plaintext pipelined after its STARTTLS and refuses it.
 *
 * Then against peers weft did not write: examples/starttls-server (built,
 * spawned with fresh certificates, stopped with SIGTERM) talking to
 * `openssl s_client -starttls smtp` and to a plain socket that pipelines
 * after STARTTLS; and a weft client upgrading against `openssl s_server`
 * behind a plaintext SMTP front (s_server has no STARTTLS mode of its
 * own). Child processes die with the test (PR_SET_PDEATHSIG), every read
 * of theirs has a deadline, and each is reaped on every path.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define GEN_CERTS WEFT_SOURCE_DIR "/tests/tls/gen-certs.sh"
#define STARTTLS_SERVER WEFT_BINARY_DIR "/examples/starttls-server"
/* Startup and a handshake under ASan on a loaded machine. */
#define CHILD_MS 10000
/* The brief: a stopped example must be gone within this. */
#define EXIT_MS 5000

static char cert_dir[128];

static const char *cp(const char *name)
{
    static char buf[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", cert_dir, name);
    return buf[i];
}

static weft_credentials *server_creds(void)
{
    weft_credentials_options o = {0};
    o.cert_file = cp("server.pem");
    o.key_file = cp("server.key");
    int err = 0;
    weft_credentials *c = weft_credentials_new(&o, true, &err, NULL, 0);
    ck_assert_ptr_nonnull(c);
    return c;
}

static weft_credentials *client_creds(void)
{
    weft_credentials_options o = {0};
    o.ca_file = cp("ca.pem");
    o.flags = WEFT_TLS_NO_SYSTEM_CA;
    int err = 0;
    weft_credentials *c = weft_credentials_new(&o, false, &err, NULL, 0);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* ---- an SMTP-shaped server: 220, EHLO, STARTTLS, then an echo --------- */

typedef struct {
    weft_credentials *creds;
    bool secure;
} smtp;

static void smtp_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    smtp *m = weft_stream_data(s);
    (void)ctx;
    if (m->secure) {
        tu_logf("srv-tls:%.*s", (int)strcspn(d, "\r\n"), d);
        weft_stream_write(s, d, n); /* the echo, encrypted */
        return;
    }
    if (strncmp(d, "EHLO", 4) == 0) {
        weft_stream_write_string(s, "250-weft\r\n250 STARTTLS\r\n", NULL);
        return;
    }
    if (strncmp(d, "STARTTLS\r\n", 10) == 0) {
        if (n > 10) {
            /* CVE-2011-0411: bytes after the command came as plaintext
             * and must not be taken as if they had come under TLS. */
            tu_logf("srv-refused:%zu", n - 10);
            weft_stream_end_string(s, "554 plaintext after STARTTLS\r\n",
                                   NULL);
            return;
        }
        ck_assert_int_eq(weft_stream_write_string(s, "220 go ahead\r\n", NULL),
                         1);
        ck_assert_int_eq(weft_stream_set_secure(s, m->creds), 0);
        tu_log("srv-starttls");
        return;
    }
    if (strncmp(d, "QUIT", 4) == 0) {
        weft_stream_end_string(s, "221 bye\r\n", NULL);
        return;
    }
    weft_stream_write_string(s, "500 what\r\n", NULL);
}

static void smtp_secure(weft_stream *s, void *ctx)
{
    smtp *m = weft_stream_data(s);
    (void)ctx;
    m->secure = true;
    tu_log("srv-secure");
}

/* s_client leaves without close_notify: expected, not worth a line on
 * stderr. */
static void smtp_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)err;
    (void)msg;
    (void)ctx;
}

static void smtp_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    weft_stream_on_error(s, smtp_error, NULL);
    weft_stream_set_data(s, ctx);
    weft_stream_on_data(s, smtp_data, NULL);
    weft_stream_on_secure(s, smtp_secure, NULL);
    weft_stream_write_string(s, "220 weft ESMTP\r\n", NULL);
    weft_server_close(srv);
}

/* ---- a weft client that upgrades ---------------------------------------- */

typedef struct {
    weft_credentials *creds;
    int step;
    const char *pipelined; /* sent with STARTTLS in one write, or NULL */
    const char *send;      /* sent under TLS (default "hello under tls") */
    const char *want;      /* end once this came under TLS; NULL: any data */
    char rx[512];          /* what came under TLS */
    size_t rx_len;
} cli;

static void cli_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    cli *c = ctx;
    if (c->step == 4 && c->want != NULL) {
        /* The answer may come in pieces: log it once, whole. */
        if (n > sizeof(c->rx) - 1 - c->rx_len)
            n = sizeof(c->rx) - 1 - c->rx_len;
        memcpy(c->rx + c->rx_len, d, n);
        c->rx_len += n;
        c->rx[c->rx_len] = '\0';
        if (strstr(c->rx, c->want) != NULL) {
            tu_logf("cli-tls:%s", c->want);
            c->step = 5;
            weft_stream_end(s, NULL, 0);
        }
        return;
    }
    tu_logf("cli:%.*s", (int)strcspn(d, "\r\n"), d);
    if (c->step == 0 && strncmp(d, "220 ", 4) == 0) {
        c->step = 1;
        weft_stream_write_string(s, "EHLO me\r\n", NULL);
    } else if (c->step == 1 && strstr(d, "250 STARTTLS")) {
        c->step = 2;
        char buf[128];
        snprintf(buf, sizeof(buf), "STARTTLS\r\n%s",
                 c->pipelined ? c->pipelined : "");
        weft_stream_write_string(s, buf, NULL);
    } else if (c->step == 2 && strncmp(d, "220 go ahead", 12) == 0) {
        c->step = 3;
        ck_assert_int_eq(weft_stream_set_secure(s, c->creds), 0);
    } else if (c->step == 4) {
        weft_stream_end(s, NULL, 0);
    }
}

static void cli_secure(weft_stream *s, void *ctx)
{
    cli *c = ctx;
    c->step = 4;
    tu_logf("cli-secure:%d", weft_stream_verify_peer(s));
    weft_stream_write_string(s, c->send ? c->send : "hello under tls\r\n",
                             NULL);
}

/* Made once per run in main() (gen-certs.sh takes over a second); the
 * forked cases inherit the path. */
static bool setup_certs(void)
{
    snprintf(cert_dir, sizeof(cert_dir), "/tmp/weft-starttls-%d",
             (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >/dev/null 2>&1", GEN_CERTS,
             cert_dir);
    return system(cmd) == 0;
}

static void cleanup_certs(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cert_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", cert_dir);
}

START_TEST(weft_client_and_server_upgrade_after_plaintext)
{
    smtp m = {.creds = server_creds()};
    int port;
    tu_server(smtp_conn, &m, &port);
    cli c = {.creds = client_creds()};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "localhost", &s),
                     0);
    weft_stream_on_data(s, cli_data, &c);
    weft_stream_on_secure(s, cli_secure, &c);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(),
                     "cli:220 weft ESMTP,cli:250-weft,"
                     "srv-starttls,cli:220 go ahead,cli-secure:1,srv-secure,"
                     "srv-tls:hello under tls,cli:hello under tls");
    weft_credentials_unref(m.creds);
    weft_credentials_unref(c.creds);
}
END_TEST

START_TEST(server_sees_and_refuses_plaintext_pipelined_after_starttls)
{
    smtp m = {.creds = server_creds()};
    int port;
    tu_server(smtp_conn, &m, &port);
    cli c = {.creds = client_creds(), .pipelined = "MAIL FROM:<evil>\r\n"};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &s),
                     0);
    weft_stream_on_data(s, cli_data, &c);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(), "cli:220 weft ESMTP,cli:250-weft,"
                                   "srv-refused:18,"
                                   "cli:554 plaintext after STARTTLS");
    weft_credentials_unref(m.creds);
    weft_credentials_unref(c.creds);
}
END_TEST

/* `openssl s_client -starttls smtp` (EHLO, STARTTLS, handshake), then a
 * line under TLS that the server echoes. */
START_TEST(openssl_s_client_starttls_smtp_against_weft)
{
    smtp m = {.creds = server_creds()};
    int port;
    tu_server(smtp_conn, &m, &port);
    char cmd[1024], out[256];
    snprintf(out, sizeof(out), "%s/s_client.out", cert_dir);
    snprintf(cmd, sizeof(cmd),
             "(sleep 1; printf 'over tls\\r\\n'; sleep 1) | timeout 10 "
             "openssl s_client -starttls smtp -connect 127.0.0.1:%d "
             "-CAfile '%s' -verify_return_error -quiet >'%s' 2>&1",
             port, cp("ca.pem"), out);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    tu_run(15000);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_str_eq(tu_log_str(), "srv-starttls,srv-secure,srv-tls:over tls");
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    ck_assert_msg(strstr(buf, "over tls") != NULL, "s_client saw: %s", buf);
    weft_credentials_unref(m.creds);
}
END_TEST

/* ---- child processes: the example, openssl s_client and s_server ------- */

/* Starts argv (looked up on PATH) with stdout on a pipe; stdin on a pipe
 * the test writes to if `with_stdin` (else /dev/null); stderr on a pipe
 * if `capture_err` (else /dev/null, or the test's own with
 * WEFT_TEST_VERBOSE). */
static void spawn(tu_child *c, char *const argv[], bool with_stdin,
                  bool capture_err)
{
    tu_spawn_opts o = {.stdin_pipe = with_stdin,
                       .err = capture_err ? TU_STDERR_PIPE : TU_STDERR_QUIET};
    tu_spawn(c, argv, &o);
}

/* Spawns examples/starttls-server on 127.0.0.1 port 0; returns its port. */
static int start_example(tu_child *srv, bool capture_err)
{
    ck_assert_msg(access(STARTTLS_SERVER, X_OK) == 0, "%s not built",
                  STARTTLS_SERVER);
    char *argv[] = {STARTTLS_SERVER,
                    (char *)cp("server.pem"),
                    (char *)cp("server.key"),
                    "0",
                    "127.0.0.1",
                    NULL};
    spawn(srv, argv, false, capture_err);
    const char *want = "starttls-server listening on 127.0.0.1 port ";
    char line[256];
    bool found = tu_child_read_line_of(srv, want, line, sizeof(line), CHILD_MS);
    TU_REQUIRE(found, "starttls-server printed '%s'", srv->seen);
    int port = atoi(line + strlen(want));
    TU_REQUIRE(port > 0, "starttls-server printed '%s'", srv->seen);
    return port;
}

/* A blocking TCP connection to 127.0.0.1:port whose every call gives up
 * after 3 s, so nothing can hang. */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
    TU_REQUIRE(r == 0, "connect: %s", strerror(errno));
    return fd;
}

/* Reads from `fd` into buf (appending at *len) until `needle` is there.
 * Returns false on EOF, error or timeout. */
static bool recv_until(int fd, char *buf, size_t size, size_t *len,
                       const char *needle)
{
    for (;;) {
        buf[*len] = '\0';
        if (strstr(buf, needle) != NULL)
            return true;
        if (*len + 1 >= size)
            return false;
        ssize_t k = recv(fd, buf + *len, size - 1 - *len, 0);
        if (k <= 0)
            return false;
        *len += (size_t)k;
    }
}

static void send_all(int fd, const char *s)
{
    ssize_t n = send(fd, s, strlen(s), MSG_NOSIGNAL);
    TU_REQUIRE(n == (ssize_t)strlen(s), "send: %s", strerror(errno));
}

/* ---- examples/starttls-server against real clients -------------------- */

/* `openssl s_client -starttls smtp` does the plaintext phase itself
 * (EHLO, STARTTLS, 220), verifies the certificate against the test CA,
 * then prints what comes under TLS: the TLS greeting, then the echo of a
 * line we give it. SIGTERM then ends the connection (s_client, which
 * -quiet keeps from leaving at EOF on its stdin, exits on its own) and
 * the example exits 0 (under ASan: without a leak). */
START_TEST(openssl_s_client_starttls_smtp_against_the_example)
{
    static tu_child srv, cl;
    int port = start_example(&srv, false);
    char connect_to[32];
    snprintf(connect_to, sizeof(connect_to), "127.0.0.1:%d", port);
    char *argv[] = {"openssl",
                    "s_client",
                    "-connect",
                    connect_to,
                    "-starttls",
                    "smtp",
                    "-CAfile",
                    (char *)cp("ca.pem"),
                    "-verify_return_error",
                    "-quiet",
                    NULL};
    spawn(&cl, argv, true, false);

    bool greeted =
        tu_child_read_until(&cl, "220 weft ESMTP ready (TLS)\r\n", CHILD_MS);
    TU_REQUIRE(greeted, "s_client printed '%s'", cl.seen);
    const char *line = "over tls, raw \x01\xff bytes\r\n";
    ssize_t w = write(cl.in, line, strlen(line));
    TU_REQUIRE(w == (ssize_t)strlen(line), "write to s_client: %s",
               strerror(errno));
    bool echoed = tu_child_read_until(&cl, line, CHILD_MS);
    TU_REQUIRE(echoed, "s_client printed '%s'", cl.seen);

    kill(srv.pid, SIGTERM);
    int srv_code = tu_exit_code(tu_child_reap(&srv, EXIT_MS));
    int cl_code = tu_exit_code(tu_child_reap(&cl, EXIT_MS));
    ck_assert_str_eq(cl.seen, "220 weft ESMTP ready (TLS)\r\n"
                              "over tls, raw \x01\xff bytes\r\n");
    ck_assert_int_eq(srv_code, 0);
    /* Gone by itself: the example ended its connection on SIGTERM. */
    ck_assert_int_ne(cl_code, TU_CHILD_KILLED);
}
END_TEST

/* CVE-2011-0411 in the example: a command pipelined behind STARTTLS in
 * the same segment gets no answer at all (not even "220 go ahead": no
 * handshake starts), the connection is closed, and stderr says why. */
START_TEST(the_example_closes_without_a_word_on_plaintext_after_starttls)
{
    static tu_child srv;
    int port = start_example(&srv, true);
    int fd = dial(port);
    char buf[512];
    size_t len = 0;
    TU_REQUIRE(
        recv_until(fd, buf, sizeof(buf), &len, "220 weft ESMTP ready\r\n"),
        "banner: '%s'", buf);
    send_all(fd, "EHLO attacker\r\n");
    TU_REQUIRE(recv_until(fd, buf, sizeof(buf), &len, "250 STARTTLS\r\n"),
               "EHLO answer: '%s'", buf);
    /* One send: the server reads both lines in one 'data'. */
    send_all(fd, "STARTTLS\r\nMAIL FROM:<evil>\r\n");
    len = 0;
    char rest[64];
    ssize_t k = recv(fd, rest, sizeof(rest), 0);
    int recv_errno = errno;
    close(fd);

    kill(srv.pid, SIGTERM);
    int code = tu_exit_code(tu_child_wait(&srv, EXIT_MS));
    char err[2048];
    tu_child_read_all(&srv, srv.err, err, sizeof(err), 1000);
    tu_child_close(&srv);
    /* EOF, or a reset if the kernel still held unread bytes of ours. */
    ck_assert_msg(k == 0 || (k < 0 && recv_errno == ECONNRESET),
                  "after STARTTLS+MAIL got %zd bytes (errno %d)", k,
                  recv_errno);
    ck_assert_msg(strstr(err, "18 plaintext bytes after STARTTLS "
                              "(CVE-2011-0411): refused, closing") != NULL,
                  "stderr: %s", err);
    ck_assert_int_eq(code, 0);
}
END_TEST

START_TEST(the_example_answers_quit_in_plaintext_with_221_and_ends)
{
    static tu_child srv;
    int port = start_example(&srv, false);
    int fd = dial(port);
    char buf[512];
    size_t len = 0;
    TU_REQUIRE(
        recv_until(fd, buf, sizeof(buf), &len, "220 weft ESMTP ready\r\n"),
        "banner: '%s'", buf);
    send_all(fd, "EHLO me\r\nNOOP\r\nQUIT\r\n");
    bool bye = recv_until(fd, buf, sizeof(buf), &len, "221 bye\r\n");
    ssize_t k = bye ? recv(fd, buf + len, sizeof(buf) - 1 - len, 0) : -1;
    close(fd);
    kill(srv.pid, SIGTERM);
    int code = tu_exit_code(tu_child_reap(&srv, EXIT_MS));
    ck_assert_msg(bye, "got '%s'", buf);
    ck_assert_str_eq(buf, "220 weft ESMTP ready\r\n250-weft\r\n250 STARTTLS\r\n"
                          "250 ok\r\n221 bye\r\n");
    ck_assert_int_eq(k, 0); /* then the end */
    ck_assert_int_eq(code, 0);
}
END_TEST

/* ---- a weft client upgrading against openssl s_server ------------------ */

/* `openssl s_server` has no STARTTLS mode, so a plaintext front stands
 * before it: a weft server in the test's loop greets, answers EHLO and
 * STARTTLS, and from "220 go ahead" on relays raw bytes both ways between
 * the client and a plain TCP connection to s_server. The handshake, the
 * certificate check and the data are the client's and s_server's alone. */
typedef struct {
    int upstream_port;
    weft_stream *down; /* the client's connection, until its 'close' */
    weft_stream *up;   /* to s_server, until its 'close' */
} front;

static void relay_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    front *f = ctx;
    weft_stream *to = s == f->down ? f->up : f->down;
    if (to != NULL)
        weft_stream_write(to, d, n);
}

/* A FIN crosses the relay as a FIN (close_notify is just bytes here). */
static void relay_end(weft_stream *s, void *ctx)
{
    front *f = ctx;
    weft_stream *to = s == f->down ? f->up : f->down;
    if (to != NULL)
        weft_stream_end(to, NULL, 0);
}

static void relay_close(weft_stream *s, bool had_error, void *ctx)
{
    front *f = ctx;
    weft_stream *other = s == f->down ? f->up : f->down;
    if (s == f->down)
        f->down = NULL;
    else
        f->up = NULL;
    /* A clean close already ended the other side through relay_end;
     * destroying it now would drop what it still has to deliver (the
     * close_notify). After an error, nothing more is coming. */
    if (other != NULL && had_error)
        weft_stream_destroy(other);
}

/* Any 'error' on the relay or the client fails the log comparison. */
static void relay_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    front *f = ctx;
    const char *who = "cli";
    if (s == f->down)
        who = "down";
    else if (s == f->up)
        who = "up";
    tu_logf("%s-error:%s:%s", who, weft_err_name(err), msg);
}

static void front_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    front *f = ctx;
    if (f->up != NULL) {
        relay_data(s, d, n, ctx);
        return;
    }
    if (strncmp(d, "EHLO", 4) == 0) {
        weft_stream_write_string(s, "250-front\r\n250 STARTTLS\r\n", NULL);
    } else if (n == 10 && strncmp(d, "STARTTLS\r\n", 10) == 0) {
        tu_log("front-relay");
        ck_assert_int_eq(weft_create_connection(tu_loop, f->upstream_port,
                                                "127.0.0.1", &f->up),
                         0);
        weft_stream_set_allow_half_open(f->up, true);
        weft_stream_on_data(f->up, relay_data, f);
        weft_stream_on_end(f->up, relay_end, f);
        weft_stream_on_error(f->up, relay_error, f);
        weft_stream_on_close(f->up, relay_close, f);
        weft_stream_write_string(s, "220 go ahead\r\n", NULL);
    } else {
        weft_stream_end_string(s, "500 what\r\n", NULL);
    }
}

static void front_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    front *f = ctx;
    f->down = s;
    /* A FIN is forwarded, not answered: the client's close_notify comes
     * back from s_server after the client's FIN reached us. */
    weft_stream_set_allow_half_open(s, true);
    weft_stream_on_data(s, front_data, f);
    weft_stream_on_end(s, relay_end, f);
    weft_stream_on_error(s, relay_error, f);
    weft_stream_on_close(s, relay_close, f);
    weft_stream_write_string(s, "220 front ESMTP\r\n", NULL);
    weft_server_close(srv);
}

START_TEST(weft_client_upgrades_against_openssl_s_server)
{
    static tu_child tls;
    /* -rev answers each line reversed; -naccept 1: it exits after us. */
    char *argv[] = {"openssl",  "s_server",
                    "-accept",  "127.0.0.1:0",
                    "-cert",    (char *)cp("server.pem"),
                    "-key",     (char *)cp("server.key"),
                    "-naccept", "1",
                    "-rev",     NULL};
    spawn(&tls, argv, false, false);
    /* "ACCEPT 127.0.0.1:PORT" */
    char line[256];
    bool found =
        tu_child_read_line_of(&tls, "ACCEPT ", line, sizeof(line), CHILD_MS);
    const char *colon = found ? strchr(line, ':') : NULL;
    TU_REQUIRE(colon != NULL && atoi(colon + 1) > 0, "s_server printed '%s'",
               tls.seen);
    front f = {.upstream_port = atoi(colon + 1)};
    int port;
    tu_server(front_conn, &f, &port);

    cli c = {.creds = client_creds(),
             .send = "hello s_server\n",
             .want = "revres_s olleh\n"};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &s), 0);
    ck_assert_int_eq(weft_stream_set_servername(s, "localhost"), 0);
    weft_stream_on_data(s, cli_data, &c);
    weft_stream_on_secure(s, cli_secure, &c);
    weft_stream_on_error(s, relay_error, &f);
    tu_run(CHILD_MS);
    /* close_notify and the FIN went through the front: s_server is done. */
    int code = tu_exit_code(tu_child_reap(&tls, EXIT_MS));
    weft_credentials_unref(c.creds);
    ck_assert_str_eq(tu_log_str(),
                     "cli:220 front ESMTP,cli:250-front,front-relay,"
                     "cli:220 go ahead,cli-secure:1,"
                     "cli-tls:revres_s olleh\n");
    ck_assert_int_eq(code, 0);
}
END_TEST

int main(void)
{
    /* The certificates, s_client and s_server all need the command. */
    if (!tu_have_program("openssl")) {
        fprintf(stderr, "test_starttls: skipped: no openssl command\n");
        return 0;
    }
    if (!setup_certs()) {
        fprintf(stderr, "test_starttls: %s failed\n", GEN_CERTS);
        cleanup_certs();
        return 1;
    }
    Suite *s = suite_create("starttls");
    TCase *tc = tu_tcase("starttls");
    tcase_add_test(tc, weft_client_and_server_upgrade_after_plaintext);
    tcase_add_test(tc,
                   server_sees_and_refuses_plaintext_pipelined_after_starttls);
    tcase_add_test(tc, openssl_s_client_starttls_smtp_against_weft);
    suite_add_tcase(s, tc);

    tc = tu_tcase("interop");
    tcase_add_test(tc, openssl_s_client_starttls_smtp_against_the_example);
    tcase_add_test(
        tc, the_example_closes_without_a_word_on_plaintext_after_starttls);
    tcase_add_test(tc, the_example_answers_quit_in_plaintext_with_221_and_ends);
    tcase_add_test(tc, weft_client_upgrades_against_openssl_s_server);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    cleanup_certs();
    return rc;
}
