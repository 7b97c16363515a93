/*
 * tls.c - TLS transport and credentials on OpenSSL 3 (see tls.h).
 * Placeholder until the implementation lands: every entry point reports
 * WEFT_ENOTSUP, so streams stay plain.
 */
#include "tls.h"

weft_credentials *weft_credentials_new(const weft_credentials_options *opts,
                                       bool is_server, int *err, char *errbuf,
                                       size_t errbuf_size)
{
    (void)opts;
    (void)is_server;
    (void)errbuf;
    (void)errbuf_size;
    if (err)
        *err = WEFT_ENOTSUP;
    return NULL;
}

weft_credentials *weft_credentials_ref(weft_credentials *c)
{
    return c;
}

void weft_credentials_unref(weft_credentials *c)
{
    (void)c;
}

int weft_credentials_add_sni(weft_credentials *server, const char *name,
                             weft_credentials *creds)
{
    (void)server;
    (void)name;
    (void)creds;
    return WEFT_ENOTSUP;
}

int weft__tls_new(weft_credentials *creds, int fd, bool is_server,
                  const char *servername, weft__tls **out)
{
    (void)creds;
    (void)fd;
    (void)is_server;
    (void)servername;
    *out = NULL;
    return WEFT_ENOTSUP;
}

void weft__tls_free(weft__tls *t)
{
    (void)t;
}

int weft__tls_handshake(weft__tls *t, unsigned *want)
{
    (void)t;
    *want = 0;
    return WEFT_ENOTSUP;
}

ssize_t weft__tls_read(weft__tls *t, char *buf, size_t len, unsigned *want)
{
    (void)t;
    (void)buf;
    (void)len;
    *want = 0;
    return WEFT_ENOTSUP;
}

ssize_t weft__tls_write(weft__tls *t, const char *buf, size_t len,
                        unsigned *want)
{
    (void)t;
    (void)buf;
    (void)len;
    *want = 0;
    return WEFT_ENOTSUP;
}

int weft__tls_shutdown(weft__tls *t)
{
    (void)t;
    return WEFT_ENOTSUP;
}

bool weft__tls_pending(const weft__tls *t)
{
    (void)t;
    return false;
}

const char *weft__tls_error(const weft__tls *t)
{
    (void)t;
    return "TLS not supported";
}

bool weft__tls_verify_peer(weft__tls *t)
{
    (void)t;
    return false;
}

const char *weft__tls_verify_error(weft__tls *t)
{
    (void)t;
    return NULL;
}

int weft__tls_peer_certificate(weft__tls *t, weft_certificate *out)
{
    (void)t;
    (void)out;
    return WEFT_ENOTSUP;
}

const char *weft__tls_alpn(weft__tls *t)
{
    (void)t;
    return NULL;
}

const char *weft__tls_version(weft__tls *t)
{
    (void)t;
    return NULL;
}

bool weft__tls_is_server_creds(const weft_credentials *c)
{
    (void)c;
    return false;
}
