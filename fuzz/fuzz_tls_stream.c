/*
 * fuzz_tls_stream.c - weft's TLS glue (its socket BIO, the handshake
 * driving, pending records, write retries, error mapping) against a peer
 * whose records the fuzzer cuts, corrupts, drops and reorders.
 *
 * One end of a socketpair is a weft stream with setSecure(server
 * credentials); the other is driven by the harness: an OpenSSL client on
 * memory BIOs, whose output the harness moves to the socket in chunks of
 * the fuzzer's choosing (some bytes flipped, some chunks dropped, two
 * swapped), and whose input is whatever weft sent. The peer writes
 * application data, sends close_notify, a TLS 1.3 KeyUpdate, or vanishes
 * without close_notify; the API side writes, ends, destroys, pauses.
 *
 * Invariants (abort() on a breach):
 *   - plaintext weft delivers is a prefix of what the peer's SSL_write
 *     sent: TLS's integrity means no tampering can change what is
 *     delivered, only cut it short with an 'error';
 *   - the peer decrypts only a prefix of what weft's write() accepted;
 *   - 'secure' at most once and before any 'data'; 'close' exactly once
 *     and last; 'error' only right before it; no 'data' while paused;
 *   - the loop ends in a bounded number of turns once the peer is gone;
 *     no fd leaks (ASan checks memory).
 * The key and certificate are made once at start-up, in memory.
 */
#include "harness.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static weft_credentials *server_creds;
static SSL_CTX *client_ctx;

/* A self-signed P-256 certificate for "localhost", as PEM text. */
static void make_cert(char **key_pem, char **cert_pem)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    CHECK(pkey != NULL);
    X509 *x = X509_new();
    CHECK(x != NULL);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    CHECK(X509_sign(x, pkey, EVP_sha256()) > 0);
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL);
    PEM_write_bio_X509(cb, x);
    char *p;
    long n = BIO_get_mem_data(kb, &p);
    *key_pem = strndup(p, (size_t)n);
    n = BIO_get_mem_data(cb, &p);
    *cert_pem = strndup(p, (size_t)n);
    BIO_free(kb);
    BIO_free(cb);
    X509_free(x);
    EVP_PKEY_free(pkey);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *key, *cert;
    make_cert(&key, &cert);
    weft_credentials_options o = {0};
    o.key_pem = key;
    o.cert_pem = cert;
    int err;
    char eb[256];
    server_creds = weft_credentials_new(&o, true, &err, eb, sizeof(eb));
    if (server_creds == NULL) {
        fprintf(stderr, "fuzz_tls_stream: credentials: %s\n", eb);
        abort();
    }
    free(key);
    free(cert);
    client_ctx = SSL_CTX_new(TLS_client_method());
    CHECK(client_ctx != NULL);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(client_ctx, TLS1_2_VERSION);
    return 0;
}

typedef struct state {
    weft_stream *s;
    int sock; /* the peer's end; -1 once gone */
    SSL *ssl;
    BIO *rbio, *wbio; /* the peer's: network bytes in / out */
    uint8_t held[2048]; /* a chunk held back, to be sent late */
    size_t held_n;
    uint64_t peer_sent, weft_got;     /* plaintext peer -> weft */
    uint64_t weft_accepted, peer_got; /* plaintext weft -> peer */
    bool secure, paused, closed, errored, destroyed, ended;
    bool tls12;
} state;

static state st;

static void on_secure(weft_stream *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->secure && !x->closed && x->weft_got == 0);
    x->secure = true;
}

static void on_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && x->secure && !x->closed && !x->errored && !x->paused);
    for (size_t i = 0; i < n; i++)
        CHECK((uint8_t)d[i] == peer_byte(x->weft_got + i));
    x->weft_got += n;
    CHECK(x->weft_got <= x->peer_sent);
}

static void on_end(weft_stream *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed && !x->paused);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed && !x->errored && err < 0 && msg != NULL);
    x->errored = true;
}

static void on_close(weft_stream *s, bool had_error, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed && had_error == x->errored);
    x->closed = true;
}

/* Peer -> socket: up to `n` bytes of the peer's TLS output, maybe with
 * one byte flipped, maybe dropped, maybe held back to go after the next
 * chunk (a reordering). */
static void move_out(state *x, size_t n, uint8_t how, uint8_t where)
{
    if (x->sock < 0)
        return;
    uint8_t buf[2048];
    if (n == 0 || n > sizeof(buf))
        n = sizeof(buf);
    int got = BIO_read(x->wbio, buf, (int)n);
    if (got <= 0)
        return;
    n = (size_t)got;
    switch (how % 8) {
    case 5: /* corrupt one byte */
        buf[where % n] ^= (uint8_t)(1u << (how >> 5));
        break;
    case 6: /* lost */
        return;
    case 7: /* held, to follow the next chunk */
        if (x->held_n == 0) {
            memcpy(x->held, buf, n);
            x->held_n = n;
            return;
        }
        break;
    default:
        break;
    }
    ssize_t w = send(x->sock, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w; /* a full socket drops the chunk: a loss like any other */
    if (x->held_n > 0 && how % 8 != 7) {
        w = send(x->sock, x->held, x->held_n, MSG_DONTWAIT | MSG_NOSIGNAL);
        x->held_n = 0;
    }
}

/* Socket -> peer, and the peer reads any plaintext it can. */
static void move_in(state *x)
{
    if (x->sock < 0)
        return;
    uint8_t buf[16384];
    ssize_t r;
    while ((r = recv(x->sock, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        BIO_write(x->rbio, buf, (int)r);
    int n;
    while ((n = SSL_read(x->ssl, buf, sizeof(buf))) > 0) {
        for (int i = 0; i < n; i++)
            CHECK(buf[i] == weft_byte(x->peer_got + (uint64_t)i));
        x->peer_got += (uint64_t)n;
        CHECK(x->peer_got <= x->weft_accepted);
    }
    ERR_clear_error();
}

static void peer_write(state *x, size_t n)
{
    uint8_t buf[4096];
    if (n == 0 || n > sizeof(buf))
        n = n == 0 ? 1 : sizeof(buf);
    if (!SSL_is_init_finished(x->ssl)) {
        SSL_do_handshake(x->ssl);
        ERR_clear_error();
        return;
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = peer_byte(x->peer_sent + i);
    int w = SSL_write(x->ssl, buf, (int)n);
    if (w > 0)
        x->peer_sent += (uint64_t)w;
    ERR_clear_error();
}

static void weft_write(state *x, size_t n)
{
    uint8_t buf[4096];
    if (n > sizeof(buf))
        n = sizeof(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = weft_byte(x->weft_accepted + i);
    int r = weft_stream_write(x->s, buf, n);
    if (r >= 0)
        x->weft_accepted += n;
    else
        CHECK(r == WEFT_ESTATE || r == WEFT_EWRITEAFTEREND);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds_at_start = fd_count();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return 0;
    weft_set_unhandled_error_handler(unhandled_is_a_bug, NULL);
    weft_loop *loop = weft_loop_new();
    CHECK(loop != NULL);
    memset(&st, 0, sizeof(st));
    st.sock = sv[1];
    st.ssl = SSL_new(client_ctx);
    st.rbio = BIO_new(BIO_s_mem());
    st.wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(st.ssl, st.rbio, st.wbio);
    SSL_set_connect_state(st.ssl);
    SSL_set_tlsext_host_name(st.ssl, "localhost");
    if (size > 0 && (data[0] & 1)) {
        SSL_set_max_proto_version(st.ssl, TLS1_2_VERSION);
        st.tls12 = true;
    }
    CHECK(weft_stream_open(loop, sv[0], &st.s) == 0);
    CHECK(weft_stream_set_secure(st.s, server_creds) == 0);
    weft_stream_on_secure(st.s, on_secure, &st);
    weft_stream_on_data(st.s, on_data, &st);
    weft_stream_on_end(st.s, on_end, &st);
    weft_stream_on_error(st.s, on_error, &st);
    weft_stream_on_close(st.s, on_close, &st);
    SSL_do_handshake(st.ssl); /* the ClientHello waits in wbio */
    ERR_clear_error();

    size_t i = size > 0 ? 1 : 0;
#define ARG() (i < size ? data[i++] : 0)
    while (i < size && !st.closed) {
        uint8_t op = data[i++];
        switch (op % 16) {
        case 0:
        case 1:
        case 2: {
            size_t n = (size_t)ARG() * 8;
            uint8_t how = ARG();
            move_out(&st, n, how, ARG());
            break;
        }
        case 3:
        case 4:
            move_in(&st);
            break;
        case 5:
        case 6:
            peer_write(&st, (size_t)ARG() * 16);
            break;
        case 7:
            SSL_shutdown(st.ssl); /* close_notify */
            ERR_clear_error();
            break;
        case 8:
            if (!st.tls12 && SSL_is_init_finished(st.ssl))
                SSL_key_update(st.ssl, ARG() & 1 ? SSL_KEY_UPDATE_REQUESTED
                                                 : SSL_KEY_UPDATE_NOT_REQUESTED);
            break;
        case 9:
            /* Truncation: gone without close_notify. */
            if (st.sock >= 0) {
                close(st.sock);
                st.sock = -1;
            }
            break;
        case 10:
            weft_write(&st, (size_t)ARG() * 16);
            break;
        case 11: {
            int r = weft_stream_end(st.s, NULL, 0);
            CHECK(r == 0 || r == WEFT_ESTATE);
            break;
        }
        case 12:
            weft_stream_destroy(st.s);
            st.destroyed = true;
            break;
        case 13:
            if (ARG() & 1) {
                weft_stream_pause(st.s);
                st.paused = true;
            } else {
                weft_stream_resume(st.s);
                st.paused = false;
            }
            break;
        default: /* 14, 15 */
            weft_loop_run_mode(loop, WEFT_RUN_NOWAIT);
            break;
        }
        if (op & 0x80)
            weft_loop_run_mode(loop, WEFT_RUN_NOWAIT);
    }
#undef ARG

    weft_loop_run_mode(loop, WEFT_RUN_NOWAIT);
    move_in(&st);
    if (getenv("FUZZ_TLS_TRACE") != NULL) /* to check what seeds reach */
        fprintf(stderr, "secure=%d weft_got=%llu peer_got=%llu error=%d\n",
                st.secure, (unsigned long long)st.weft_got,
                (unsigned long long)st.peer_got, st.errored);
    if (st.sock >= 0)
        close(st.sock);
    if (!st.closed)
        weft_stream_destroy(st.s);
    wind_down(loop, &st.closed);
    SSL_free(st.ssl); /* frees both BIOs */
    ERR_clear_error();
    CHECK(fd_count() == fds_at_start);
    return 0;
}
