/*
 * tls.c - TLS credentials and the TLS transport under a stream, on
 * OpenSSL 3 (tls.h is the stream's side of the contract).
 *
 * Owns one SSL_CTX per weft_credentials and one SSL per stream. Knows
 * nothing of the loop, the poller or the stream's queues: it does I/O
 * only through OpenSSL's socket BIO on the fd stream.c lends it (never
 * closing it), and answers "call again once the fd is readable /
 * writable" through *want. No global state beyond OpenSSL's own.
 *
 * Verifying the peer. OpenSSL calls verify_cb() for every problem it
 * finds while checking the chain, then once per certificate, top down,
 * with ok = 1; the call for depth 0 comes last. We let the handshake go
 * on (return 1) unless the credentials ask for rejection, and remember
 * what was wrong so that verifyPeer() can tell afterwards:
 *
 *   problem                         remembered as    rejecting side
 *   chain / dates / signature       verify_err (1st) fails at once
 *   name mismatch (set1_host/ip)    host_bad         fails at depth 0,
 *   no name to check against        no_host          after chain errors
 *   no certificate at all           (peer is NULL)   server: OpenSSL
 *
 * Chain errors outrank a name mismatch, as Node reports them (it checks
 * the name only once the chain verified). "Rejecting" means a client
 * without WEFT_TLS_NO_REJECT, or a server with WEFT_TLS_REQUIRE_PEER_CERT.
 *
 * SIGPIPE. weft promises that SIGPIPE never kills a program and installs
 * no handler (decision 11). OpenSSL's own socket BIO writes with write(2),
 * which raises SIGPIPE on a socket that can no longer send, and any SSL
 * call may write (alerts, key updates, tickets inside a read). So OpenSSL
 * gets weft's own BIO, whose writes are send(MSG_NOSIGNAL): a gone peer
 * is an EPIPE like on a plain stream, and no SSL call costs a syscall
 * beyond its reads and writes (the signal-mask guard this replaced cost
 * three per call).
 */
#include "tls.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/*
 * A PEM file bigger than this is refused rather than read into memory: a
 * full CA bundle is about 200 KiB, so 16 MiB only stops a wrong path
 * (a disk image, /dev/zero) from eating memory.
 */
#define PEM_FILE_MAX (16u << 20)

/*
 * Records decrypted per weft__tls_read() call. Real traffic fills the
 * stream's 64 KiB buffer with four or five full records; a peer that
 * sends 1-byte records would otherwise keep one call busy for 64K of
 * them while every other stream waits. What is left stays in OpenSSL or
 * the socket, and the stream reads it on its next turn.
 */
#define RECORDS_PER_READ 64

/*
 * Bytes the socket BIO holds back while a handshake step and the
 * 'secure' listeners run (see "Holding the last flight" below). A
 * handshake flight with a long RSA chain is 5 to 8 KiB; past this much
 * the BIO sends what it holds and stops holding: a big first write does
 * not wait for a delayed ACK anyway (Nagle sends full segments), and its
 * ciphertext must not pile up here.
 */
#define HOLD_MAX (32u * 1024)

/* The handshake timeout when the credentials leave it at 0 (Node's
 * handshakeTimeout). */
#define HANDSHAKE_TIMEOUT_MS 120000

/* ---- credentials --------------------------------------------------------- */

typedef struct sni_entry {
    char *name; /* lower case; "*.example.com" matches one label */
    weft_credentials *creds;
} sni_entry;

struct weft_credentials {
    atomic_uint refs; /* streams on other loops may share credentials */
    bool is_server;
    unsigned flags;
    SSL_CTX *ctx;
    unsigned char *alpn; /* wire format: length-prefixed names */
    size_t alpn_len;
    sni_entry *sni;
    size_t sni_n;
    unsigned handshake_timeout_ms; /* 0: none */
};

/* ---- a session ----------------------------------------------------------- */

struct weft__tls {
    SSL *ssl;
    weft_credentials *creds; /* a reference */
    weft_credentials *sni;   /* server: chosen by SNI (a reference) */
    char *servername;        /* client: what the certificate must name */
    int verify_err;          /* first X509_V_ERR_* seen, X509_V_OK if none */
    int read_stash;          /* result owed after returning bytes */
    int fd;                  /* the stream's; read and written by the BIO */
    bool read_stashed;
    bool drained;  /* the BIO's last read() was short: the socket was empty */
    bool is_server;
    bool done;     /* handshake complete */
    bool host_bad; /* the certificate does not name servername */
    bool no_host;  /* a name check was wanted but there is no name */
    bool no_cert;  /* the handshake failed for want of a certificate */
    bool fatal;    /* OpenSSL gave a fatal error: no close_notify */
    bool shut;     /* close_notify is out (or held in `out`) */
    bool holding;  /* the BIO keeps what OpenSSL writes in `out` */
    char *out;     /* ciphertext held or not yet taken by the kernel */
    size_t out_off, out_len, out_cap;
    char alpn[256];
    char err[256];
};

/* ---- small helpers ------------------------------------------------------- */

static void set_msg(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_msg(char *buf, size_t size, const char *fmt, ...)
{
    if (buf == NULL || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* Appends to a fixed buffer, truncating; `*len` tracks the text. */
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

/* The oldest error on OpenSSL's queue, as OpenSSL words it ("error:
 * 0A00010B:SSL routines::wrong version number"); empties the queue. */
static void ssl_reason(char *buf, size_t size, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        set_msg(buf, size, "%s", fallback);
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
}

/* Only the reason ("bad decrypt"), for credential errors. */
static const char *short_reason(unsigned long e)
{
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

/* ---- the socket BIO (see the top of the file) ---------------------------- */

/*
 * OpenSSL reads and writes the stream's fd through this BIO only. It is
 * OpenSSL's socket BIO minus what weft never uses (connect, close on
 * free), with two differences: writes are send(MSG_NOSIGNAL), so a peer
 * that is gone gives EPIPE, never SIGPIPE; and a short read marks the
 * socket drained, so weft__tls_read() can stop without the read() that
 * would only say EAGAIN (as the plain read path does). errno is left as
 * the syscall set it, for io_error(). The BIO's data is the session.
 */
static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

static weft__tls *sock_tls(BIO *b)
{
    return BIO_get_data(b);
}

/*
 * Holding the last flight. A handshake step may end the handshake and
 * write its last flight (the server's TLS 1.3 session tickets, the TLS
 * 1.2 server's Finished, a client's Finished); the program then writes
 * its first bytes from 'secure'. Sent apart, the second send waits for
 * the peer's delayed ACK under Nagle: 40 ms on Linux. So while a
 * handshake step runs (and, when it completes, while the 'secure'
 * listeners run) the BIO appends what OpenSSL writes to `out`, and
 * weft__tls_release() sends it in one send. A step that does not
 * complete the handshake is released at once: its flight leaves in one
 * send instead of one per record.
 *
 * `out` also keeps what the kernel did not take of such a send; while
 * it is not empty, a write goes behind it (or waits, retry), so bytes
 * never overtake each other.
 */
static int out_append(weft__tls *t, const char *data, size_t len)
{
    if (t->out_len + len > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 4096;
        while (cap < t->out_len + len)
            cap *= 2;
        char *p = realloc(t->out, cap);
        if (p == NULL)
            return -1;
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, data, len);
    t->out_len += len;
    return 0;
}

/* Sends what `out` holds: 0 when it is empty, WEFT_EAGAIN, or -errno. */
static int out_flush(weft__tls *t)
{
    while (t->out_off < t->out_len) {
        ssize_t n = send(t->fd, t->out + t->out_off, t->out_len - t->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return WEFT_EAGAIN;
            return weft__err(errno);
        }
        t->out_off += (size_t)n;
    }
    /* Empty: the buffer goes back; most connections need it once. */
    free(t->out);
    t->out = NULL;
    t->out_off = t->out_len = t->out_cap = 0;
    return 0;
}

static int sock_write(BIO *b, const char *data, size_t len, size_t *written)
{
    BIO_clear_retry_flags(b);
    weft__tls *t = sock_tls(b);
    if (t->holding && t->out_len + len <= HOLD_MAX) {
        if (out_append(t, data, len) < 0) {
            errno = ENOMEM;
            return 0;
        }
        *written = len;
        return 1;
    }
    t->holding = false;
    if (t->out_len > 0) {
        int r = out_flush(t);
        if (r == WEFT_EAGAIN) {
            BIO_set_retry_write(b);
            return 0;
        }
        if (r < 0) {
            errno = -r;
            return 0;
        }
    }
    ssize_t n = send(t->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_write(b);
        return 0;
    }
    *written = (size_t)n;
    return 1;
}

static int sock_read(BIO *b, char *buf, size_t len, size_t *got)
{
    BIO_clear_retry_flags(b);
    weft__tls *t = sock_tls(b);
    ssize_t n = read(t->fd, buf, len);
    t->drained = n >= 0 && (size_t)n < len;
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_read(b);
        return 0;
    }
    if (n == 0) {
        /* OpenSSL asks BIO_eof() to tell a peer's FIN (a truncation
         * unless close_notify came first) from an error. */
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);
        return 0;
    }
    *got = (size_t)n;
    return 1;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr != NULL)
            *(int *)ptr = sock_tls(b)->fd;
        return sock_tls(b)->fd;
    default:
        return 0;
    }
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void sock_method_init(void)
{
    BIO_METHOD *m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
                         BIO_TYPE_DESCRIPTOR,
                     "weft socket");
    if (m == NULL)
        return;
    if (!BIO_meth_set_write_ex(m, sock_write) ||
        !BIO_meth_set_read_ex(m, sock_read) ||
        !BIO_meth_set_ctrl(m, sock_ctrl) ||
        !BIO_meth_set_create(m, sock_create)) {
        BIO_meth_free(m);
        return;
    }
    sock_method = m;
}

/* A BIO on t->fd (not owned: freeing the BIO leaves the fd open), or
 * NULL. */
static BIO *sock_bio(weft__tls *t)
{
    pthread_once(&sock_method_once, sock_method_init);
    if (sock_method == NULL)
        return NULL;
    BIO *b = BIO_new(sock_method);
    if (b != NULL)
        BIO_set_data(b, t);
    return b;
}

/* ---- verification -------------------------------------------------------- */

/*
 * X509_V_ERR_* in Node's words (the name without its prefix), which is
 * what users search for. One table; anything else is "UNSPECIFIED", as
 * in Node.
 */
#define WEFT_X509_NAMES(X)                                                     \
    X(UNABLE_TO_GET_ISSUER_CERT)                                               \
    X(UNABLE_TO_GET_CRL)                                                       \
    X(UNABLE_TO_DECRYPT_CERT_SIGNATURE)                                        \
    X(UNABLE_TO_DECRYPT_CRL_SIGNATURE)                                         \
    X(UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY)                                      \
    X(CERT_SIGNATURE_FAILURE)                                                  \
    X(CRL_SIGNATURE_FAILURE)                                                   \
    X(CERT_NOT_YET_VALID)                                                      \
    X(CERT_HAS_EXPIRED)                                                        \
    X(CRL_NOT_YET_VALID)                                                       \
    X(CRL_HAS_EXPIRED)                                                         \
    X(ERROR_IN_CERT_NOT_BEFORE_FIELD)                                          \
    X(ERROR_IN_CERT_NOT_AFTER_FIELD)                                           \
    X(ERROR_IN_CRL_LAST_UPDATE_FIELD)                                          \
    X(ERROR_IN_CRL_NEXT_UPDATE_FIELD)                                          \
    X(OUT_OF_MEM)                                                              \
    X(DEPTH_ZERO_SELF_SIGNED_CERT)                                             \
    X(SELF_SIGNED_CERT_IN_CHAIN)                                               \
    X(UNABLE_TO_GET_ISSUER_CERT_LOCALLY)                                       \
    X(UNABLE_TO_VERIFY_LEAF_SIGNATURE)                                         \
    X(CERT_CHAIN_TOO_LONG)                                                     \
    X(CERT_REVOKED)                                                            \
    X(INVALID_CA)                                                              \
    X(PATH_LENGTH_EXCEEDED)                                                    \
    X(INVALID_PURPOSE)                                                         \
    X(CERT_UNTRUSTED)                                                          \
    X(CERT_REJECTED)                                                           \
    X(EE_KEY_TOO_SMALL)                                                        \
    X(CA_KEY_TOO_SMALL)                                                        \
    X(CA_MD_TOO_WEAK)                                                          \
    X(INVALID_CALL)                                                            \
    X(STORE_LOOKUP)

static const char *x509_err_name(int e)
{
    switch (e) {
#define WEFT_X509_CASE_(name)                                                  \
    case X509_V_ERR_##name:                                                    \
        return #name;
        WEFT_X509_NAMES(WEFT_X509_CASE_)
#undef WEFT_X509_CASE_
    }
    return "UNSPECIFIED";
}

#define ALTNAME_INVALID "ERR_TLS_CERT_ALTNAME_INVALID"
#define NO_PEER_CERT    "NO_PEER_CERTIFICATE"

static unsigned active_flags(const weft__tls *t)
{
    return (t->sni != NULL ? t->sni : t->creds)->flags;
}

static bool rejecting(const weft__tls *t)
{
    unsigned f = active_flags(t);
    return t->is_server ? (f & WEFT_TLS_REQUIRE_PEER_CERT) != 0
                        : (f & WEFT_TLS_NO_REJECT) == 0;
}

static void format_san(X509 *cert, char *out, size_t size);

/* The message of a name mismatch, with the names the certificate has. */
static void host_message(weft__tls *t, X509 *leaf)
{
    char san[200] = "";
    if (leaf != NULL)
        format_san(leaf, san, sizeof(san));
    if (t->no_host)
        set_msg(t->err, sizeof(t->err),
                "no host name to check the certificate against (set one "
                "with weft_stream_set_servername) (" ALTNAME_INVALID ")");
    else
        set_msg(t->err, sizeof(t->err),
                "host name '%s' does not match the certificate's altnames: "
                "%s (" ALTNAME_INVALID ")",
                t->servername, san[0] ? san : "none");
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl =
        X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    weft__tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t == NULL)
        return ok;
    int e = X509_STORE_CTX_get_error(x);
    if (!ok) {
        if (e == X509_V_ERR_HOSTNAME_MISMATCH ||
            e == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            t->host_bad = true; /* decided at depth 0, see the top */
            return 1;
        }
        /* A lone leaf whose issuer is unknown: OpenSSL would go on to
         * say "unable to verify the first certificate", the name Node
         * users know for a missing intermediate or an unknown CA. */
        if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY &&
            X509_STORE_CTX_get_error_depth(x) == 0)
            e = X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
        if (t->verify_err == X509_V_OK)
            t->verify_err = e;
        return rejecting(t) ? 0 : 1;
    }
    if (X509_STORE_CTX_get_error_depth(x) == 0 && rejecting(t) &&
        (t->host_bad || t->no_host)) {
        host_message(t, X509_STORE_CTX_get_current_cert(x));
        X509_STORE_CTX_set_error(x, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

/* The chain's verdict: ours, or the session's when it was resumed (no
 * verify_cb calls then; OpenSSL kept the first handshake's result). */
static int chain_result(const weft__tls *t)
{
    if (SSL_session_reused(t->ssl)) {
        long r = SSL_get_verify_result(t->ssl);
        return r == X509_V_ERR_HOSTNAME_MISMATCH ||
                       r == X509_V_ERR_IP_ADDRESS_MISMATCH
                   ? X509_V_OK
                   : (int)r;
    }
    return t->verify_err;
}

/* ---- ALPN and SNI callbacks (server side) -------------------------------- */

/* The server's first preference that the client offers (fuzzed alone:
 * fuzz/fuzz_tls_pure.c). A malformed tail of `in` is ignored. */
bool weft__alpn_select(const unsigned char *mine, size_t mine_len,
                       const unsigned char *in, unsigned inlen,
                       const unsigned char **out, unsigned char *outlen)
{
    for (size_t i = 0; i < mine_len; i += 1u + mine[i]) {
        const unsigned char *p = mine + i;
        for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen)
                break;
            if (in[j] == p[0] && memcmp(in + j + 1, p + 1, in[j]) == 0) {
                *out = in + j + 1;
                *outlen = in[j];
                return true;
            }
        }
    }
    return false;
}

/* No overlap is a fatal no_application_protocol alert, as RFC 7301 asks. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned inlen, void *arg)
{
    (void)ssl;
    const weft_credentials *c = arg;
    return weft__alpn_select(c->alpn, c->alpn_len, in, inlen, out, outlen)
               ? SSL_TLSEXT_ERR_OK
               : SSL_TLSEXT_ERR_ALERT_FATAL;
}

bool weft__sni_match(const char *pattern, const char *name)
{
    if (pattern[0] != '*')
        return strcasecmp(pattern, name) == 0;
    /* "*.example.com": exactly one non-empty label before ".example.com" */
    const char *dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

static weft_credentials *sni_find(const weft_credentials *c, const char *name)
{
    /* An exact name wins over a wildcard, whatever the order added. */
    for (size_t i = 0; i < c->sni_n; i++)
        if (c->sni[i].name[0] != '*' && weft__sni_match(c->sni[i].name, name))
            return c->sni[i].creds;
    for (size_t i = 0; i < c->sni_n; i++)
        if (c->sni[i].name[0] == '*' && weft__sni_match(c->sni[i].name, name))
            return c->sni[i].creds;
    return NULL;
}

/*
 * Runs while OpenSSL processes the ClientHello, before the server's
 * certificate, CertificateRequest and ALPN choice: switching the SSL_CTX
 * here swaps the key, chain, trusted CAs and ALPN list; the verify mode
 * lives in the SSL, so it is set again from the chosen credentials.
 */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const weft_credentials *c = arg;
    weft__tls *t = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (t == NULL || name == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (t->sni != NULL) /* a second ClientHello, after a retry request */
        return SSL_TLSEXT_ERR_OK;
    weft_credentials *chosen = sni_find(c, name);
    if (chosen == NULL)
        return SSL_TLSEXT_ERR_OK;
    if (SSL_set_SSL_CTX(ssl, chosen->ctx) == NULL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(chosen->ctx), verify_cb);
    t->sni = weft_credentials_ref(chosen);
    return SSL_TLSEXT_ERR_OK;
}

/* ---- loading PEM --------------------------------------------------------- */

typedef struct cred_err {
    int *err;
    char *buf;
    size_t size;
} cred_err;

static void cred_fail(cred_err *ce, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cred_fail(cred_err *ce, int code, const char *fmt, ...)
{
    if (ce->err != NULL)
        *ce->err = code;
    if (ce->buf != NULL && ce->size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ce->buf, ce->size, fmt, ap);
        va_end(ap);
    }
    ERR_clear_error();
}

/* The whole file into a memory BIO; errno decides the code on failure. */
static BIO *file_bio(const char *path, const char *what, cred_err *ce)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        int e = errno;
        cred_fail(ce, weft__err(e), "%s %s: %s", what, path, strerror(e));
        return NULL;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char chunk[8192];
    size_t total = 0, n;
    while (b != NULL && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        total += n;
        if (total > PEM_FILE_MAX || BIO_write(b, chunk, (int)n) != (int)n) {
            BIO_free(b);
            fclose(f);
            cred_fail(ce, total > PEM_FILE_MAX ? WEFT_EINVAL : WEFT_ENOMEM,
                      "%s %s: %s", what, path,
                      total > PEM_FILE_MAX ? "file too large" : "no memory");
            return NULL;
        }
    }
    if (b == NULL || ferror(f)) {
        int e = errno;
        BIO_free(b);
        fclose(f);
        cred_fail(ce, b == NULL ? WEFT_ENOMEM : weft__err(e), "%s %s: %s", what,
                  path, b == NULL ? "no memory" : strerror(e));
        return NULL;
    }
    fclose(f);
    return b;
}

/*
 * The BIO for one PEM input, or NULL: *given says whether the input was
 * set at all (NULL with *given is an error, already reported).
 */
static BIO *pem_input(const char *file, const char *pem, const char *what,
                      bool *given, cred_err *ce)
{
    *given = file != NULL || pem != NULL;
    if (file != NULL && pem != NULL) {
        cred_fail(ce, WEFT_EINVAL, "%s: give a file or PEM text, not both",
                  what);
        return NULL;
    }
    if (file != NULL)
        return file_bio(file, what, ce);
    if (pem == NULL)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (b == NULL)
        cred_fail(ce, WEFT_ENOMEM, "%s: no memory", what);
    return b;
}

/* Never prompts on a terminal (OpenSSL's default would): no passphrase
 * given means the key cannot be decrypted. */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pass = u;
    if (pass == NULL || size <= 0)
        return 0;
    size_t n = strlen(pass);
    if (n > (size_t)size)
        n = (size_t)size;
    memcpy(buf, pass, n);
    return (int)n;
}

/* True if the queue holds only "no more PEM blocks" (the normal end of a
 * file of certificates). */
static bool pem_eof(void)
{
    unsigned long e = ERR_peek_last_error();
    return e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM &&
                      ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

static int load_key(SSL_CTX *ctx, BIO *b, const char *pass, cred_err *ce)
{
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, pass_cb, (void *)pass);
    if (k == NULL) {
        cred_fail(ce, WEFT_ETLS, "cannot load the private key: %s",
                  short_reason(ERR_peek_last_error()));
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, k);
    EVP_PKEY_free(k);
    if (!ok) {
        cred_fail(ce, WEFT_ETLS, "cannot use the private key: %s",
                  short_reason(ERR_peek_last_error()));
        return -1;
    }
    return 0;
}

/* The first certificate is ours; any that follow are its chain. */
static int load_cert(SSL_CTX *ctx, BIO *b, cred_err *ce)
{
    X509 *x = PEM_read_bio_X509_AUX(b, NULL, pass_cb, NULL);
    if (x == NULL) {
        cred_fail(ce, WEFT_ETLS, "cannot load the certificate: %s",
                  short_reason(ERR_peek_last_error()));
        return -1;
    }
    int ok = SSL_CTX_use_certificate(ctx, x);
    X509_free(x);
    if (!ok) {
        cred_fail(ce, WEFT_ETLS, "cannot use the certificate: %s",
                  short_reason(ERR_peek_last_error()));
        return -1;
    }
    SSL_CTX_clear_chain_certs(ctx);
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(b, NULL, pass_cb, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(ctx, x)) {
            X509_free(x);
            cred_fail(ce, WEFT_ETLS, "cannot add a chain certificate: %s",
                      short_reason(ERR_peek_last_error()));
            return -1;
        }
    }
    if (!pem_eof()) {
        cred_fail(ce, WEFT_ETLS, "bad chain certificate: %s",
                  short_reason(ERR_peek_last_error()));
        return -1;
    }
    ERR_clear_error();
    return 0;
}

/* Trusted CAs; a server also names them in its CertificateRequest. */
static int load_ca(SSL_CTX *ctx, BIO *b, bool is_server, cred_err *ce)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509 *x;
    int n = 0;
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(b, NULL, pass_cb, NULL)) != NULL) {
        int ok = X509_STORE_add_cert(store, x);
        if (ok && is_server)
            ok = SSL_CTX_add_client_CA(ctx, x);
        X509_free(x);
        if (!ok) {
            cred_fail(ce, WEFT_ETLS, "cannot add a CA certificate: %s",
                      short_reason(ERR_peek_last_error()));
            return -1;
        }
        n++;
    }
    if (!pem_eof() || n == 0) {
        cred_fail(ce, WEFT_ETLS, "cannot load the CA certificates: %s",
                  n == 0 && pem_eof() ? "no certificate found"
                                      : short_reason(ERR_peek_last_error()));
        return -1;
    }
    ERR_clear_error();
    return 0;
}

/* "h2,http/1.1" into ALPN's wire format (each name prefixed by its
 * length). */
static int parse_alpn(const char *list, weft_credentials *c, cred_err *ce)
{
    size_t n = strlen(list);
    if (n == 0 || n > 65535) {
        cred_fail(ce, WEFT_EINVAL, "alpn: empty or too long list");
        return -1;
    }
    c->alpn = weft__malloc(n + 1);
    if (c->alpn == NULL) {
        cred_fail(ce, WEFT_ENOMEM, "alpn: no memory");
        return -1;
    }
    size_t out = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > 255) {
            cred_fail(ce, WEFT_EINVAL,
                      "alpn: every protocol name needs 1 to 255 bytes");
            return -1;
        }
        c->alpn[out++] = (unsigned char)len;
        memcpy(c->alpn + out, p, len);
        out += len;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    c->alpn_len = out;
    return 0;
}

/* True if `dir` holds OpenSSL's hashed names ("9d66eef0.0"). */
static bool hashed_dir(const char *dir)
{
    if (strchr(dir, ':') != NULL)
        return true; /* a list: OpenSSL looks each up the same way */
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        size_t i = 0;
        while (i < 8 &&
               ((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            i++;
        found = i == 8 && n[8] == '.' && n[9] >= '0' && n[9] <= '9';
    }
    closedir(d);
    return found;
}

/*
 * The system's trusted CAs, as OpenSSL finds them (SSL_CERT_DIR,
 * SSL_CERT_FILE, else its built-in paths). A hashed directory
 * (/etc/ssl/certs on Debian) is searched lazily, one small file per
 * issuer when a chain needs it. The bundle file is parsed whole (30 to
 * 50 ms with OpenSSL 3, for each new credentials: each setSecure(NULL)),
 * so it is loaded only without such a directory or when SSL_CERT_FILE
 * asks for it.
 */
static int load_system_ca(SSL_CTX *ctx)
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    bool hashed = hashed_dir(dir ? dir : X509_get_default_cert_dir());
    if (hashed && !SSL_CTX_set_default_verify_dir(ctx))
        return 0;
    if ((!hashed || getenv(X509_get_default_cert_file_env()) != NULL) &&
        !SSL_CTX_set_default_verify_file(ctx))
        return 0;
    return 1;
}

static void credentials_free(weft_credentials *c)
{
    for (size_t i = 0; i < c->sni_n; i++) {
        free(c->sni[i].name);
        weft_credentials_unref(c->sni[i].creds);
    }
    free(c->sni);
    free(c->alpn);
    SSL_CTX_free(c->ctx);
    free(c);
}

#define WEFT_TLS_KNOWN_FLAGS                                                   \
    (WEFT_TLS_NO_REJECT | WEFT_TLS_NO_HOSTNAME_CHECK |                         \
     WEFT_TLS_REQUIRE_PEER_CERT | WEFT_TLS_NO_SYSTEM_CA)

static int configure(weft_credentials *c, const weft_credentials_options *o,
                     cred_err *ce)
{
    SSL_CTX *ctx = c->ctx;
    if (o->flags & ~(unsigned)WEFT_TLS_KNOWN_FLAGS) {
        cred_fail(ce, WEFT_EINVAL, "unknown flags 0x%x", o->flags);
        return -1;
    }
    int minv = o->min_version == 0 ? WEFT_TLS1_2 : o->min_version;
    if (minv != WEFT_TLS1_2 && minv != WEFT_TLS1_3) {
        cred_fail(ce, WEFT_EINVAL,
                  "min_version: WEFT_TLS1_2 or WEFT_TLS1_3, not 0x%x",
                  o->min_version);
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, minv);
    if (o->ciphers != NULL && !SSL_CTX_set_cipher_list(ctx, o->ciphers)) {
        cred_fail(ce, WEFT_ETLS, "ciphers '%s': %s", o->ciphers,
                  short_reason(ERR_peek_last_error()));
        return -1;
    }
    if (o->ciphersuites != NULL &&
        !SSL_CTX_set_ciphersuites(ctx, o->ciphersuites)) {
        cred_fail(ce, WEFT_ETLS, "ciphersuites '%s': %s", o->ciphersuites,
                  short_reason(ERR_peek_last_error()));
        return -1;
    }

    bool given;
    BIO *key = pem_input(o->key_file, o->key_pem, "key", &given, ce);
    if (key == NULL && given)
        return -1;
    bool have_key = given;
    BIO *cert = pem_input(o->cert_file, o->cert_pem, "cert", &given, ce);
    if (cert == NULL && given) {
        BIO_free(key);
        return -1;
    }
    bool have_cert = given;
    if (have_key != have_cert || (c->is_server && !have_key)) {
        BIO_free(key);
        BIO_free(cert);
        cred_fail(ce, WEFT_EINVAL, "%s",
                  c->is_server ? "server credentials need a key and a "
                                 "certificate"
                               : "a client certificate needs its key, and "
                                 "a key its certificate");
        return -1;
    }
    int r = 0;
    if (have_cert)
        r = load_cert(ctx, cert, ce);
    if (r == 0 && have_key)
        r = load_key(ctx, key, o->passphrase, ce);
    BIO_free(key);
    BIO_free(cert);
    if (r < 0)
        return -1;
    if (have_key && !SSL_CTX_check_private_key(ctx)) {
        cred_fail(ce, WEFT_ETLS, "the key does not match the certificate: %s",
                  short_reason(ERR_peek_last_error()));
        return -1;
    }

    BIO *ca = pem_input(o->ca_file, o->ca_pem, "ca", &given, ce);
    if (ca == NULL && given)
        return -1;
    bool have_ca = given;
    if (have_ca) {
        r = load_ca(ctx, ca, c->is_server, ce);
        BIO_free(ca);
        if (r < 0)
            return -1;
    }

    if (o->alpn != NULL && parse_alpn(o->alpn, c, ce) < 0)
        return -1;

    if (o->handshake_timeout_ms < -1) {
        cred_fail(ce, WEFT_EINVAL,
                  "handshake_timeout_ms: 0 (default), -1 (none) or a delay, "
                  "not %d",
                  o->handshake_timeout_ms);
        return -1;
    }
    c->handshake_timeout_ms =
        o->handshake_timeout_ms == 0    ? HANDSHAKE_TIMEOUT_MS
        : o->handshake_timeout_ms == -1 ? 0
                                        : (unsigned)o->handshake_timeout_ms;
    if (o->session_tickets < -1) {
        cred_fail(ce, WEFT_EINVAL,
                  "session_tickets: 0 (default), -1 (none) or a count, not "
                  "%d",
                  o->session_tickets);
        return -1;
    }
    if (o->session_tickets == -1) {
        SSL_CTX_set_num_tickets(ctx, 0);
    } else if (o->session_tickets > 0) {
        SSL_CTX_set_num_tickets(ctx, (size_t)o->session_tickets);
    }

    if (c->is_server) {
        if ((o->flags & WEFT_TLS_REQUIRE_PEER_CERT) && !have_ca) {
            cred_fail(ce, WEFT_EINVAL,
                      "WEFT_TLS_REQUIRE_PEER_CERT needs "
                      "ca_file or ca_pem");
            return -1;
        }
        int mode = SSL_VERIFY_NONE;
        if (have_ca)
            mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE |
                   ((o->flags & WEFT_TLS_REQUIRE_PEER_CERT)
                        ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                        : 0);
        SSL_CTX_set_verify(ctx, mode, have_ca ? verify_cb : NULL);
        /* Resumed sessions carry the client's certificate; OpenSSL
         * refuses to resume under SSL_VERIFY_PEER without an id context. */
        static const unsigned char sid[] = "weft";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
        SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
        SSL_CTX_set_tlsext_servername_arg(ctx, c);
        if (c->alpn != NULL)
            SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, c);
    } else {
        if (!have_ca && !(o->flags & WEFT_TLS_NO_SYSTEM_CA) &&
            !load_system_ca(ctx)) {
            cred_fail(ce, WEFT_ETLS, "cannot load the system CA store: %s",
                      short_reason(ERR_peek_last_error()));
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
        /* SSL_CTX_set_alpn_protos returns 0 on success. */
        if (c->alpn != NULL &&
            SSL_CTX_set_alpn_protos(ctx, c->alpn, (unsigned)c->alpn_len)) {
            cred_fail(ce, WEFT_ENOMEM, "alpn: no memory");
            return -1;
        }
    }
    return 0;
}

weft_credentials *weft_credentials_new(const weft_credentials_options *opts,
                                       bool is_server, int *err, char *errbuf,
                                       size_t errbuf_size)
{
    cred_err ce = {err, errbuf, errbuf_size};
    static const weft_credentials_options none;
    if (err != NULL)
        *err = 0;
    if (errbuf != NULL && errbuf_size > 0)
        errbuf[0] = '\0';
    weft_credentials *c = weft__calloc(1, sizeof(*c));
    if (c == NULL) {
        cred_fail(&ce, WEFT_ENOMEM, "no memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->is_server = is_server;
    c->flags = opts ? opts->flags : 0;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_method());
    if (c->ctx == NULL) {
        cred_fail(&ce, WEFT_ENOMEM, "SSL_CTX_new: %s",
                  short_reason(ERR_peek_last_error()));
        free(c);
        return NULL;
    }
    /*
     * Renegotiation is refused (a TLS 1.2 peer asking for it gets an
     * alert, and the read that sees it fails). Partial writes let a big
     * write go out record by record; the buffer may move between retries
     * because the stream's queue is reallocated. Record buffers are kept
     * while the connection is busy (SSL_MODE_RELEASE_BUFFERS would free
     * and allocate ~17 KiB twice per record); the stream gives them back
     * once it has been idle a while (weft__tls_free_buffers, decision
     * 4). The chain sent is exactly
     * the cert input's: without NO_AUTO_CHAIN a server holding CA
     * certificates (for its clients) would append them to its own chain.
     */
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_NO_AUTO_CHAIN);
    if (configure(c, opts ? opts : &none, &ce) < 0) {
        credentials_free(c);
        return NULL;
    }
    return c;
}

weft_credentials *weft_credentials_ref(weft_credentials *c)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void weft_credentials_unref(weft_credentials *c)
{
    if (c == NULL)
        return;
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        credentials_free(c);
}

int weft_credentials_add_sni(weft_credentials *server, const char *name,
                             weft_credentials *creds)
{
    /* SNI credentials never have a table of their own: that also makes a
     * reference cycle (A serves B serves A) impossible. */
    if (server == NULL || !server->is_server || name == NULL ||
        name[0] == '\0' || creds == NULL || !creds->is_server ||
        creds == server || creds->sni_n > 0)
        return WEFT_EINVAL;
    if (name[0] == '*' && (name[1] != '.' || name[2] == '\0'))
        return WEFT_EINVAL;
    for (size_t i = 0; i < server->sni_n; i++) {
        if (strcasecmp(server->sni[i].name, name) == 0) {
            weft_credentials *old = server->sni[i].creds;
            server->sni[i].creds = weft_credentials_ref(creds);
            weft_credentials_unref(old);
            return 0;
        }
    }
    sni_entry *v = weft__realloc(server->sni, (server->sni_n + 1) * sizeof(*v));
    if (v == NULL)
        return WEFT_ENOMEM;
    server->sni = v;
    char *copy = weft__strdup(name);
    if (copy == NULL)
        return WEFT_ENOMEM;
    for (char *p = copy; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    v[server->sni_n].name = copy;
    v[server->sni_n].creds = weft_credentials_ref(creds);
    server->sni_n++;
    return 0;
}

bool weft__tls_is_server_creds(const weft_credentials *c)
{
    return c != NULL && c->is_server;
}

unsigned weft__tls_handshake_timeout(const weft_credentials *c)
{
    return c != NULL ? c->handshake_timeout_ms : 0;
}

/* ---- sessions ------------------------------------------------------------ */

/* Client: SNI (never for an IP literal) and the name the certificate must
 * carry (set1_host, or set1_ip_asc for a literal, its %zone dropped). */
static int client_setup(weft__tls *t, const char *servername)
{
    bool check = !(t->creds->flags & WEFT_TLS_NO_HOSTNAME_CHECK);
    if (servername == NULL || servername[0] == '\0') {
        t->no_host = check;
        return 0;
    }
    t->servername = weft__strdup(servername);
    if (t->servername == NULL)
        return WEFT_ENOMEM;
    bool ip = weft_is_ip(servername) != 0;
    if (!ip && !SSL_set_tlsext_host_name(t->ssl, servername))
        return WEFT_ETLS;
    if (!check)
        return 0;
    X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!ip)
        return X509_VERIFY_PARAM_set1_host(p, servername, 0) ? 0 : WEFT_ETLS;
    char lit[64];
    snprintf(lit, sizeof(lit), "%s", servername);
    char *zone = strchr(lit, '%');
    if (zone != NULL)
        *zone = '\0';
    return X509_VERIFY_PARAM_set1_ip_asc(p, lit) ? 0 : WEFT_ETLS;
}

int weft__tls_new(weft_credentials *creds, int fd, bool is_server,
                  const char *servername, weft__tls **out)
{
    *out = NULL;
    if (creds != NULL && creds->is_server != is_server)
        return WEFT_EINVAL;
    if (creds == NULL && is_server)
        return WEFT_EINVAL;
    weft__tls *t = weft__calloc(1, sizeof(*t));
    if (t == NULL)
        return WEFT_ENOMEM;
    t->is_server = is_server;
    if (creds != NULL) {
        t->creds = weft_credentials_ref(creds);
    } else {
        int err = 0;
        t->creds =
            weft_credentials_new(NULL, false, &err, t->err, sizeof(t->err));
        if (t->creds == NULL) {
            free(t);
            return err;
        }
    }
    ERR_clear_error();
    t->ssl = SSL_new(t->creds->ctx);
    int err = t->ssl == NULL ? WEFT_ENOMEM : 0;
    if (err == 0) {
        t->fd = fd;
        BIO *bio = sock_bio(t);
        if (bio == NULL) {
            err = WEFT_ENOMEM;
        } else {
            SSL_set_bio(t->ssl, bio, bio); /* one reference, both ways */
            /* Read what the socket has, not a record header then its
             * body: one read() per burst of records instead of two per
             * record. What it reads beyond a record waits inside
             * OpenSSL, which weft__tls_pending() reports. */
            SSL_set_read_ahead(t->ssl, 1);
            if (!SSL_set_app_data(t->ssl, t))
                err = WEFT_ETLS;
        }
    }
    if (err == 0 && !is_server)
        err = client_setup(t, servername);
    if (err < 0) {
        ERR_clear_error();
        weft__tls_free(t);
        return err;
    }
    if (is_server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    *out = t;
    return 0;
}

void weft__tls_free(weft__tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees the BIO; the fd is the stream's */
    free(t->out);
    weft_credentials_unref(t->sni);
    weft_credentials_unref(t->creds);
    free(t->servername);
    free(t);
}

/* ---- I/O ----------------------------------------------------------------- */

enum tls_op { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

static const char *op_name(enum tls_op op)
{
    static const char *const names[] = {"handshake", "read", "write",
                                        "shutdown"};
    return names[op];
}

/* The peer closed TCP without close_notify (EOF where a record was due). */
static int peer_gone(weft__tls *t, enum tls_op op)
{
    t->fatal = true;
    switch (op) {
    case OP_READ:
        set_msg(t->err, sizeof(t->err),
                "unexpected eof while reading: the peer closed the "
                "connection without close_notify");
        return WEFT_ETLSTRUNC;
    case OP_HANDSHAKE:
        set_msg(t->err, sizeof(t->err),
                "the peer closed the connection during the TLS handshake");
        return WEFT_ECONNRESET;
    default:
        set_msg(t->err, sizeof(t->err), "the peer closed the connection");
        return WEFT_EPIPE;
    }
}

/* Why our side rejected the peer's certificate (OpenSSL only says
 * "certificate verify failed"). */
static int cert_failure(weft__tls *t)
{
    if (t->verify_err != X509_V_OK)
        set_msg(t->err, sizeof(t->err), "%s (%s)",
                X509_verify_cert_error_string(t->verify_err),
                x509_err_name(t->verify_err));
    else if (!t->host_bad && !t->no_host)
        set_msg(t->err, sizeof(t->err), "certificate verify failed");
    /* else host_message() has written it */
    return WEFT_ECERT;
}

/*
 * Turns a failed SSL call into a code: WEFT_EAGAIN with *want, 0 for a
 * close_notify on a read, or an error with t->err written. `sys_errno`
 * is errno as the call left it. Empties OpenSSL's error queue.
 */
static int io_error(weft__tls *t, int ret, int sys_errno, enum tls_op op,
                    unsigned *want)
{
    int e = SSL_get_error(t->ssl, ret);
    unsigned long ec = ERR_peek_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (ec != 0)
            ERR_clear_error();
        *want = WEFT__IO_READ;
        return WEFT_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        if (ec != 0)
            ERR_clear_error();
        *want = WEFT__IO_WRITE;
        return WEFT_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        if (ec != 0)
            ERR_clear_error();
        if (op == OP_READ) {
            set_msg(t->err, sizeof(t->err), "the peer sent close_notify");
            return 0;
        }
        t->fatal = true;
        set_msg(t->err, sizeof(t->err),
                "the peer closed the TLS session (close_notify) during %s",
                op_name(op));
        return op == OP_HANDSHAKE ? WEFT_ECONNRESET : WEFT_EPIPE;
    case SSL_ERROR_SYSCALL:
        if (ec == 0 && sys_errno != 0 && sys_errno != EAGAIN) {
            t->fatal = true;
            int code = weft__err(sys_errno);
            set_msg(t->err, sizeof(t->err), "%s: %s", op_name(op),
                    strerror(sys_errno));
            ERR_clear_error();
            return code;
        }
        if (ec == 0) {
            ERR_clear_error();
            return peer_gone(t, op);
        }
        break;
    case SSL_ERROR_SSL:
        break;
    default:
        t->fatal = true;
        set_msg(t->err, sizeof(t->err), "unexpected SSL_get_error %d", e);
        ERR_clear_error();
        return WEFT_ETLS;
    }
    t->fatal = true;
    int lib = ERR_GET_LIB(ec), reason = ERR_GET_REASON(ec);
    if (lib == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return peer_gone(t, op);
    }
    if (lib == ERR_LIB_SYS && reason > 0) {
        set_msg(t->err, sizeof(t->err), "%s: %s", op_name(op),
                strerror(reason));
        ERR_clear_error();
        return weft__err(reason);
    }
    if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        ERR_clear_error();
        return cert_failure(t);
    }
    if (lib == ERR_LIB_SSL &&
        reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        t->no_cert = true;
        set_msg(t->err, sizeof(t->err),
                "the peer did not return a certificate (" NO_PEER_CERT ")");
        ERR_clear_error();
        return WEFT_ECERT;
    }
    ssl_reason(t->err, sizeof(t->err), "TLS error");
    return WEFT_ETLS;
}

/*
 * OpenSSL's error queue is per thread and SSL_get_error() reads it, so it
 * must be empty before an SSL call (OpenSSL's own rule). weft keeps it
 * so: every failure path (io_error, the credential and certificate
 * helpers) empties it after reading it. Clearing it before every call
 * instead cost about 1.8% of a small exchange's CPU, and even peeking at
 * it (ERR_peek_error: OPENSSL_init_crypto, then the thread's state) 3%:
 * 200 instructions per call. A program that calls OpenSSL itself on a
 * loop's thread must leave the queue empty too (docs/tls.md).
 */

/* A failed send of held bytes, as io_error words a failed syscall. */
static int out_failed(weft__tls *t, int code, enum tls_op op)
{
    t->fatal = true;
    set_msg(t->err, sizeof(t->err), "%s: %s", op_name(op), strerror(-code));
    return code;
}

/*
 * A step of the handshake, holding what it writes (see "Holding the last
 * flight"): a step that completes it keeps holding until the stream has
 * run its 'secure' listeners and calls weft__tls_flush(); any other step
 * sends its flight at once.
 */
int weft__tls_handshake(weft__tls *t, unsigned *want)
{
    *want = 0;
    if (t->done)
        return 0;
    if (t->fatal)
        return WEFT_ETLS;
    if (t->out_len > 0) { /* the last flight, partly taken */
        int f = out_flush(t);
        if (f == WEFT_EAGAIN) {
            *want = WEFT__IO_WRITE;
            return WEFT_EAGAIN;
        }
        if (f < 0)
            return out_failed(t, f, OP_HANDSHAKE);
    }
    errno = 0;
    t->holding = true;
    int r = SSL_do_handshake(t->ssl);
    int code = r == 1 ? 0 : io_error(t, r, errno, OP_HANDSHAKE, want);
    if (code == 0) {
        t->done = true;
        return 0;
    }
    t->holding = false;
    int f = out_flush(t); /* the flight, or the alert of a failure */
    if (code != WEFT_EAGAIN)
        return code;
    if (f == WEFT_EAGAIN)
        *want = WEFT__IO_WRITE;
    else if (f < 0)
        return out_failed(t, f, OP_HANDSHAKE);
    return WEFT_EAGAIN;
}

int weft__tls_flush(weft__tls *t, unsigned *want)
{
    *want = 0;
    t->holding = false;
    if (t->out_len == 0)
        return 0;
    int f = out_flush(t);
    if (f == WEFT_EAGAIN)
        *want = WEFT__IO_WRITE;
    else if (f < 0)
        return out_failed(t, f, OP_WRITE);
    return f;
}

bool weft__tls_flush_pending(const weft__tls *t)
{
    return t != NULL && t->out_len > 0;
}

bool weft__tls_free_buffers(weft__tls *t)
{
    /* SSL_free_buffers() refuses while a record waits in either buffer. */
    return t->out_len == 0 && !t->holding && SSL_free_buffers(t->ssl) == 1;
}

/*
 * Fills `buf` record by record (OpenSSL returns one record per call), so
 * that a 64 KiB read costs the stream one call, as on a plain socket; it
 * stops early once the socket was found empty and OpenSSL holds nothing
 * more (no read() just to meet EAGAIN). If
 * an end or an error follows some bytes, the bytes go first and the
 * result is owed to the next call (weft__tls_pending() says so meanwhile:
 * the fd may never become readable again).
 */
ssize_t weft__tls_read(weft__tls *t, char *buf, size_t len, unsigned *want)
{
    *want = 0;
    if (t->read_stashed)
        return t->read_stash;
    if (t->fatal)
        return WEFT_ETLS;
    if (len == 0)
        return 0;
    size_t got = 0;
    ssize_t result = 0;
    int records = 0;
    while (got < len) {
        size_t n = 0;
        errno = 0;
        if (SSL_read_ex(t->ssl, buf + got, len - got, &n)) {
            got += n;
            /* The socket was empty at the last read() and OpenSSL holds
             * nothing more: another call would only meet EAGAIN. Data
             * that arrives later makes the fd readable again. */
            if (t->drained && !SSL_has_pending(t->ssl))
                break;
            if (++records == RECORDS_PER_READ)
                break;
            continue;
        }
        unsigned w = 0;
        int r = io_error(t, 0, errno, OP_READ, &w);
        if (got == 0) {
            *want = w;
            result = r;
        } else if (r != WEFT_EAGAIN) {
            t->read_stash = r;
            t->read_stashed = true;
        }
        break;
    }
    return got > 0 ? (ssize_t)got : result;
}

/*
 * With partial writes OpenSSL takes one record per call; loop so that
 * the stream sees "all taken" unless the socket is full. A record that
 * blocked half-written stays inside OpenSSL and is not counted: the
 * stream's next call, with the same bytes, finishes it.
 */
ssize_t weft__tls_write(weft__tls *t, const char *buf, size_t len,
                        unsigned *want)
{
    *want = 0;
    if (t->fatal)
        return WEFT_ETLS;
    if (len == 0)
        return 0;
    size_t done = 0;
    ssize_t result = 0;
    while (done < len) {
        size_t n = 0;
        errno = 0;
        if (SSL_write_ex(t->ssl, buf + done, len - done, &n)) {
            done += n;
            continue;
        }
        int r = io_error(t, 0, errno, OP_WRITE, want);
        if (r != WEFT_EAGAIN || done == 0)
            result = r;
        break;
    }
    return result < 0 ? result : (ssize_t)done;
}

/*
 * Sends close_notify once. If the socket has no room for the alert this
 * returns WEFT_EAGAIN (want WRITE) and OpenSSL keeps it: calling again
 * once writable sends it.
 */
int weft__tls_shutdown(weft__tls *t)
{
    unsigned want;
    if (t->shut) /* the alert may still be held: it leaves first */
        return t->holding ? WEFT_EAGAIN : weft__tls_flush(t, &want);
    if (t->fatal) {
        set_msg(t->err, sizeof(t->err),
                "no close_notify after a fatal TLS error");
        return WEFT_ETLS;
    }
    if (!t->done) {
        set_msg(t->err, sizeof(t->err),
                "close_notify before the handshake completed");
        return WEFT_ESTATE;
    }
    errno = 0;
    int r = SSL_shutdown(t->ssl);
    int code = r >= 0 ? 0 : io_error(t, r, errno, OP_SHUTDOWN, &want);
    if (code < 0)
        return code;
    t->shut = true;
    /* Held (end() inside 'secure'): the FIN must wait for the flush. */
    return t->holding ? WEFT_EAGAIN : weft__tls_flush(t, &want);
}

bool weft__tls_pending(const weft__tls *t)
{
    /* SSL_has_pending also counts records read ahead but not yet
     * decrypted, which the fd will never announce again. */
    return t != NULL && (t->read_stashed || SSL_has_pending(t->ssl));
}

const char *weft__tls_error(const weft__tls *t)
{
    return t != NULL && t->err[0] ? t->err : "TLS error";
}

/* ---- what the handshake established -------------------------------------- */

bool weft__tls_verify_peer(weft__tls *t)
{
    return t != NULL && t->done && weft__tls_verify_error(t) == NULL;
}

const char *weft__tls_verify_error(weft__tls *t)
{
    if (t == NULL)
        return NULL;
    if (t->no_cert)
        return NO_PEER_CERT;
    if (!t->done) {
        /* A rejected handshake: what verify_cb found, if anything. */
        if (t->verify_err != X509_V_OK)
            return x509_err_name(t->verify_err);
        return t->host_bad || t->no_host ? ALTNAME_INVALID : NULL;
    }
    if (SSL_get0_peer_certificate(t->ssl) == NULL)
        return NO_PEER_CERT;
    int chain = chain_result(t);
    if (chain != X509_V_OK)
        return x509_err_name(chain);
    if (!t->is_server && (t->host_bad || t->no_host))
        return ALTNAME_INVALID;
    return NULL;
}

/* RFC 2253 order, most specific first: "CN=localhost,O=weft test"; UTF-8
 * is kept as is rather than escaped. */
static void format_name(const X509_NAME *name, char *out, size_t size)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, name, 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) {
            size_t k = (size_t)n < size - 1 ? (size_t)n : size - 1;
            memcpy(out, p, k);
            out[k] = '\0';
        }
    }
    BIO_free(b);
}

/* As Node prints dates: "Nov 25 13:00:00 2026 GMT" (day space-padded).
 * Written by hand: strftime's month names follow the locale. */
static void format_time(const ASN1_TIME *at, char *out, size_t size)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    out[0] = '\0';
    if (at == NULL || !ASN1_TIME_to_tm(at, &tm) || tm.tm_mon < 0 ||
        tm.tm_mon > 11)
        return;
    snprintf(out, size, "%s %2d %02d:%02d:%02d %d GMT", mon[tm.tm_mon],
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_year + 1900);
}

/* "DNS:localhost, IP Address:127.0.0.1", Node's subjectaltname. IPv6 is
 * printed as Node does, eight upper-case groups without "::". */
static void format_san(X509 *cert, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    GENERAL_NAMES *names =
        X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        ERR_clear_error();
        return;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        const char *sep = len ? ", " : "";
        const ASN1_STRING *s = NULL;
        const char *label = NULL;
        switch (g->type) {
        case GEN_DNS:
            s = g->d.dNSName, label = "DNS";
            break;
        case GEN_EMAIL:
            s = g->d.rfc822Name, label = "email";
            break;
        case GEN_URI:
            s = g->d.uniformResourceIdentifier, label = "URI";
            break;
        case GEN_IPADD: {
            const unsigned char *b = g->d.iPAddress->data;
            int n = g->d.iPAddress->length;
            if (n == 4) {
                append(out, size, &len, "%sIP Address:%d.%d.%d.%d", sep, b[0],
                       b[1], b[2], b[3]);
            } else if (n == 16) {
                append(out, size, &len, "%sIP Address:", sep);
                for (int j = 0; j < 8; j++)
                    append(out, size, &len, j ? ":%X" : "%X",
                           (unsigned)(b[2 * j] << 8 | b[2 * j + 1]));
            } else {
                append(out, size, &len, "%sIP Address:<invalid>", sep);
            }
            continue;
        }
        default:
            continue; /* othername, DirName...: not shown, as for Node's
                         common cases */
        }
        append(out, size, &len, "%s%s:%.*s", sep, label, ASN1_STRING_length(s),
               (const char *)ASN1_STRING_get0_data(s));
    }
    GENERAL_NAMES_free(names);
}

void weft__cert_format(X509 *x, weft_certificate *out)
{
    memset(out, 0, sizeof(*out));
    format_name(X509_get_subject_name(x), out->subject, sizeof(out->subject));
    format_name(X509_get_issuer_name(x), out->issuer, sizeof(out->issuer));
    format_time(X509_get0_notBefore(x), out->valid_from,
                sizeof(out->valid_from));
    format_time(X509_get0_notAfter(x), out->valid_to, sizeof(out->valid_to));

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n)) {
        size_t len = 0;
        for (unsigned i = 0; i < n; i++)
            append(out->fingerprint256, sizeof(out->fingerprint256), &len,
                   i ? ":%02X" : "%02X", md[i]);
    }
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex != NULL)
        snprintf(out->serial_number, sizeof(out->serial_number), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    format_san(x, out->subjectaltname, sizeof(out->subjectaltname));
    ERR_clear_error();
}

int weft__tls_peer_certificate(weft__tls *t, weft_certificate *out)
{
    memset(out, 0, sizeof(*out));
    if (t == NULL || !t->done)
        return WEFT_ESTATE;
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (x == NULL)
        return WEFT_ENOENT;
    weft__cert_format(x, out);
    return 0;
}

const char *weft__tls_alpn(weft__tls *t)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    if (t == NULL || !t->done)
        return NULL;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (p == NULL || n == 0 || n >= sizeof(t->alpn))
        return NULL;
    memcpy(t->alpn, p, n);
    t->alpn[n] = '\0';
    return t->alpn;
}

const char *weft__tls_version(weft__tls *t)
{
    return t != NULL && t->done ? SSL_get_version(t->ssl) : NULL;
}
