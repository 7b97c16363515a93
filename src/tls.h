/*
 * tls.h - the TLS transport under a stream (OpenSSL 3), as stream.c sees
 * it. tls.c owns the SSL objects and credentials; it does I/O only
 * through OpenSSL's socket BIO on the fd it is given (measured faster
 * than memory BIOs: no extra copy; and the only way to kTLS later).
 *
 * Every call is non-blocking. A call that cannot progress returns
 * WEFT_EAGAIN and sets *want to WEFT__IO_READ and/or WEFT__IO_WRITE: the
 * readiness the stream must wait for before calling again. Note that a
 * read may want WRITE (OpenSSL must send, e.g. a KeyUpdate reply) and a
 * write may want READ; stream.c keeps the read side's and the write
 * side's wants apart and watches their union.
 */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include "internal.h"

#include <sys/types.h>

typedef struct weft__tls weft__tls;

/*
 * A session on connected socket `fd`. `servername` (client only, may be
 * NULL) is sent as SNI and, unless the credentials say otherwise, checked
 * against the certificate. WEFT_EINVAL if the credentials' side does not
 * match `is_server`; WEFT_ENOMEM / WEFT_ETLS otherwise.
 */
int weft__tls_new(weft_credentials *creds, int fd, bool is_server,
                  const char *servername, weft__tls **out);
void weft__tls_free(weft__tls *t);

/*
 * 0 when the handshake is complete (verification included), WEFT_EAGAIN,
 * or WEFT_ETLS / WEFT_ECERT / -errno. When it completes, what the last
 * step wrote (the last flight: tickets, Finished) is held back, and so is
 * everything written after it, until weft__tls_flush(): the stream calls
 * it once its 'secure' listeners have run, so that their first bytes and
 * the last flight leave in one send (no delayed-ACK stall under Nagle).
 */
int weft__tls_handshake(weft__tls *t, unsigned *want);

/* Stops holding and sends what is held: 0 when all of it is out,
 * WEFT_EAGAIN (want WRITE: call again once writable) or -errno. */
int weft__tls_flush(weft__tls *t, unsigned *want);

/* Bytes weft__tls_flush() could not send yet. */
bool weft__tls_flush_pending(const weft__tls *t);

/* Gives OpenSSL's record buffers (~17 KiB each way) back, for an idle
 * connection; false if records still wait in them (try later). The next
 * read or write allocates them again. */
bool weft__tls_free_buffers(weft__tls *t);

/* What the credentials ask of the handshake's duration, in ms; 0: no
 * limit. */
unsigned weft__tls_handshake_timeout(const weft_credentials *c);

/*
 * Plaintext into `buf`. > 0: bytes; 0: the peer sent close_notify (a
 * clean end); WEFT_ETLSTRUNC: the peer closed the TCP stream without
 * close_notify; WEFT_EAGAIN; WEFT_ETLS (a renegotiation attempt is
 * refused this way) or -errno. Fewer bytes than `len` with
 * weft__tls_pending() false means the socket was empty: there is no need
 * to call again before the fd is readable.
 */
ssize_t weft__tls_read(weft__tls *t, char *buf, size_t len, unsigned *want);

/* Writes up to `len` bytes (partial writes allowed): > 0 bytes taken,
 * WEFT_EAGAIN (retry with the same bytes), or an error. */
ssize_t weft__tls_write(weft__tls *t, const char *buf, size_t len,
                        unsigned *want);

/* Sends close_notify (once); does not wait for the peer's. 0, WEFT_EAGAIN
 * (no room for the alert, or it is held until weft__tls_flush(): call
 * again once the socket is writable), or an error. */
int weft__tls_shutdown(weft__tls *t);

/* Records (decrypted or not) or an owed result are buffered inside
 * OpenSSL: the fd may not become readable again, so the stream must read
 * without waiting for it. */
bool weft__tls_pending(const weft__tls *t);

/* The last error's message, with OpenSSL's reason ("certificate has
 * expired", "wrong version number"...). Never NULL. */
const char *weft__tls_error(const weft__tls *t);

/* The public accessors' work; stream.c handles NULL / plain streams. */
bool weft__tls_verify_peer(weft__tls *t);
const char *weft__tls_verify_error(weft__tls *t);
int weft__tls_peer_certificate(weft__tls *t, weft_certificate *out);
const char *weft__tls_alpn(weft__tls *t);
const char *weft__tls_version(weft__tls *t);
bool weft__tls_is_server_creds(const weft_credentials *c);

/* ---- pure pieces, fuzzed on their own (fuzz/fuzz_tls_pure.c) ---------- */

#include <openssl/x509.h>

/* getPeerCertificate()'s fields from `x` (any certificate a peer sends). */
void weft__cert_format(X509 *x, weft_certificate *out);
/* SNI: `name` matches `pattern` ("host.example" case-insensitively, or
 * "*.example.com": exactly one non-empty label before ".example.com"). */
bool weft__sni_match(const char *pattern, const char *name);
/* ALPN: the first of the server's protocols (wire format `mine`) that the
 * client's list `in` offers; false if none. *out points into `in`. */
bool weft__alpn_select(const unsigned char *mine, size_t mine_len,
                       const unsigned char *in, unsigned inlen,
                       const unsigned char **out, unsigned char *outlen);

#endif
