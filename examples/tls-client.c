/*
 * tls-client.c - a TLS client in weft: connect, check the server, send a
 * message, print the answer.
 *
 *   tls-client [options] HOST PORT [MESSAGE]
 *
 *   --ca FILE          trust these CAs instead of the system's store
 *   --cert FILE --key FILE   present a client certificate
 *   --servername NAME  SNI and the name checked (default: HOST)
 *   --alpn LIST        offer protocols, e.g. "h2,http/1.1"
 *   --insecure         finish the handshake even if the certificate does
 *                      not verify (verifyPeer() still tells)
 *
 * MESSAGE defaults to an HTTP/1.0 request for "/" on HOST, so
 * `tls-client example.com 443` fetches a page with the system CAs and
 * the host name checked. The handshake report goes to stderr, the
 * answer to stdout. Exit 0 after a clean end, 1 on an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

static int status = 1;

static void on_secure(weft_stream *s, void *ctx)
{
    const char *message = ctx;
    weft_certificate cert;
    const char *alpn = weft_stream_alpn_protocol(s);
    fprintf(stderr, "* %s, ALPN %s\n", weft_stream_tls_version(s),
            alpn ? alpn : "none");
    if (weft_stream_get_peer_certificate(s, &cert) == 0) {
        fprintf(stderr, "* subject: %s\n* issuer: %s\n", cert.subject,
                cert.issuer);
        fprintf(stderr, "* valid: %s .. %s\n", cert.valid_from, cert.valid_to);
        fprintf(stderr, "* altnames: %s\n* sha256: %s\n", cert.subjectaltname,
                cert.fingerprint256);
    }
    if (weft_stream_verify_peer(s))
        fprintf(stderr, "* certificate verified\n");
    else
        fprintf(stderr, "* certificate NOT verified: %s\n",
                weft_stream_verify_error(s));
    /* end(data): the message, then close_notify once it is out. */
    weft_stream_end_string(s, message, NULL);
}

static void on_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)s;
    (void)ctx;
    fwrite(data, 1, len, stdout);
}

static void on_end(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
    status = 0;
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    fprintf(stderr, "tls-client: %s: %s\n", weft_err_name(err), msg);
    status = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: tls-client [--ca FILE] [--cert FILE --key FILE] "
                    "[--servername NAME]\n"
                    "                  [--alpn LIST] [--insecure] HOST PORT "
                    "[MESSAGE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    weft_credentials_options o = {0};
    const char *servername = NULL;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--insecure") == 0) {
            o.flags |= WEFT_TLS_NO_REJECT;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        const char *val = argv[++i];
        if (strcmp(opt, "--ca") == 0)
            o.ca_file = val;
        else if (strcmp(opt, "--cert") == 0)
            o.cert_file = val;
        else if (strcmp(opt, "--key") == 0)
            o.key_file = val;
        else if (strcmp(opt, "--servername") == 0)
            servername = val;
        else if (strcmp(opt, "--alpn") == 0)
            o.alpn = val;
        else
            return usage();
    }
    if (argc - i < 2)
        return usage();
    const char *host = argv[i];
    int port = atoi(argv[i + 1]);
    char request[512];
    const char *message = argv[i + 2];
    if (message == NULL) {
        snprintf(request, sizeof(request),
                 "GET / HTTP/1.0\r\nHost: %s\r\nUser-Agent: weft\r\n\r\n",
                 servername ? servername : host);
        message = request;
    }

    char why[256];
    int err;
    weft_credentials *creds =
        weft_credentials_new(&o, false, &err, why, sizeof(why));
    if (creds == NULL) {
        fprintf(stderr, "tls-client: %s: %s\n", weft_err_name(err), why);
        return 1;
    }
    weft_stream *s;
    err = weft_create_connection(NULL, port, host, &s);
    if (err == 0 && servername != NULL)
        err = weft_stream_set_servername(s, servername);
    if (err == 0)
        err = weft_stream_set_secure(s, creds);
    weft_credentials_unref(creds); /* the stream holds its own */
    if (err < 0) {
        fprintf(stderr, "tls-client: %s\n", weft_strerror(err));
        weft_loop_close(weft_default_loop());
        return 1;
    }
    weft_stream_on_secure(s, on_secure, (void *)message);
    weft_stream_on_data(s, on_data, NULL);
    weft_stream_on_end(s, on_end, NULL);
    weft_stream_on_error(s, on_error, NULL);
    weft_run();
    weft_loop_close(weft_default_loop());
    return status;
}
