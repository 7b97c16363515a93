/*
 * test_starttls.c - STARTTLS: weft_stream_set_secure() on an open plain
 * stream after a plaintext exchange, on both sides, against weft and
 * against `openssl s_client -starttls smtp`; and the CVE-2011-0411 rule:
 * a server sees plaintext pipelined after its STARTTLS and refuses it.
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define GEN_CERTS WEFT_SOURCE_DIR "/tests/tls/gen-certs.sh"

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
} cli;

static void cli_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    cli *c = ctx;
    (void)n;
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
    weft_stream_write_string(s, "hello under tls\r\n", NULL);
}

static void setup_certs(void)
{
    snprintf(cert_dir, sizeof(cert_dir), "/tmp/weft-starttls-%d",
             (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >/dev/null 2>&1", GEN_CERTS,
             cert_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void cleanup_certs(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cert_dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(weft_client_and_server_upgrade_after_plaintext)
{
    setup_certs();
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
    cleanup_certs();
}
END_TEST

START_TEST(server_sees_and_refuses_plaintext_pipelined_after_starttls)
{
    setup_certs();
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
    cleanup_certs();
}
END_TEST

/* `openssl s_client -starttls smtp` (EHLO, STARTTLS, handshake), then a
 * line under TLS that the server echoes. */
START_TEST(openssl_s_client_starttls_smtp_against_weft)
{
    setup_certs();
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
    cleanup_certs();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("starttls");
    TCase *tc = tu_tcase("starttls");
    tcase_add_test(tc, weft_client_and_server_upgrade_after_plaintext);
    tcase_add_test(tc,
                   server_sees_and_refuses_plaintext_pipelined_after_starttls);
    tcase_add_test(tc, openssl_s_client_starttls_smtp_against_weft);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
