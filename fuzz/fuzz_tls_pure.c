/*
 * fuzz_tls_pure.c - what a TLS peer's bytes reach in weft's own code
 * besides the record layer: certificate formatting (any client
 * certificate reaches it through getPeerCertificate()), SNI name
 * matching and ALPN selection (any ClientHello reaches them).
 *
 * The first input byte picks the part, the rest is its input:
 *   0  a DER certificate: weft__cert_format() must fill every field
 *      NUL-terminated inside its array, the fingerprint must be 32
 *      upper-case hex pairs, dates empty or "Mon DD HH:MM:SS YYYY GMT";
 *   1  "pattern\0name": weft__sni_match() against a model written
 *      apart (split at the first dot, compare case-insensitively);
 *   2  a server protocol list and a client offer: weft__alpn_select()
 *      against a model, the answer inside the client's bytes.
 */
#include "tls.h"

#include <ctype.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void terminated(const char *field, size_t size)
{
    if (memchr(field, '\0', size) == NULL)
        abort();
}

static void check_date(const char *d)
{
    static const char *const mon = "JanFebMarAprMayJunJulAugSepOctNovDec";
    size_t n = strlen(d);
    if (n == 0)
        return;
    /* "Nov 25 13:00:00 2026 GMT"; the year may have more digits */
    if (n < 24 || memcmp(d + n - 4, " GMT", 4) != 0)
        abort();
    bool month = false;
    for (int m = 0; m < 12; m++)
        month |= memcmp(d, mon + 3 * m, 3) == 0;
    if (!month || d[3] != ' ' || d[9] != ':' || d[12] != ':')
        abort();
}

static void fuzz_cert(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    X509 *x = d2i_X509(NULL, &p, (long)size);
    if (x == NULL)
        return;
    weft_certificate c;
    memset(&c, 0xa5, sizeof(c)); /* every field must be rewritten */
    weft__cert_format(x, &c);
    terminated(c.subject, sizeof(c.subject));
    terminated(c.issuer, sizeof(c.issuer));
    terminated(c.valid_from, sizeof(c.valid_from));
    terminated(c.valid_to, sizeof(c.valid_to));
    terminated(c.fingerprint256, sizeof(c.fingerprint256));
    terminated(c.serial_number, sizeof(c.serial_number));
    terminated(c.subjectaltname, sizeof(c.subjectaltname));
    check_date(c.valid_from);
    check_date(c.valid_to);
    size_t f = strlen(c.fingerprint256);
    if (f != 0 && f != 32 * 3 - 1)
        abort();
    for (size_t i = 0; i < f; i++)
        if (i % 3 == 2 ? c.fingerprint256[i] != ':'
                       : !isxdigit((unsigned char)c.fingerprint256[i]) ||
                             islower((unsigned char)c.fingerprint256[i]))
            abort();
    X509_free(x);
}

/* The model: an exact pattern matches case-insensitively; "*.rest"
 * matches a name whose first label is non-empty and whose remainder,
 * from its first dot, equals ".rest". */
static bool model_sni(const char *pattern, const char *name)
{
    if (pattern[0] != '*') {
        size_t a = strlen(pattern), b = strlen(name);
        if (a != b)
            return false;
        for (size_t i = 0; i < a; i++)
            if (tolower((unsigned char)pattern[i]) !=
                tolower((unsigned char)name[i]))
                return false;
        return true;
    }
    size_t first = 0;
    while (name[first] != '\0' && name[first] != '.')
        first++;
    if (name[first] != '.' || first == 0)
        return false;
    return strcasecmp(name + first, pattern + 1) == 0;
}

static void fuzz_sni(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 2);
    memcpy(buf, data, size);
    buf[size] = '\0';
    buf[size + 1] = '\0';
    const char *pattern = buf;
    const char *name = buf + strlen(buf) + 1;
    if (weft__sni_match(pattern, name) != model_sni(pattern, name))
        abort();
    free(buf);
}

static void fuzz_alpn(const uint8_t *data, size_t size)
{
    /* Server list: up to 4 well-formed entries taken from the input (as
     * parse_alpn would have made them); the rest is the client's offer,
     * as it came, malformed or not. */
    if (size < 1)
        return;
    unsigned char mine[4 * 256];
    size_t mine_len = 0, i = 1;
    unsigned count = data[0] % 5;
    for (unsigned k = 0; k < count && i < size; k++) {
        size_t len = data[i++] % 8 + 1;
        if (i + len > size)
            break;
        mine[mine_len++] = (unsigned char)len;
        memcpy(mine + mine_len, data + i, len);
        mine_len += len;
        i += len;
    }
    const unsigned char *in = data + i;
    unsigned inlen = (unsigned)(size - i);
    const unsigned char *out = NULL;
    unsigned char outlen = 0;
    bool got = weft__alpn_select(mine, mine_len, in, inlen, &out, &outlen);

    /* The model: the client's well-formed entries (up to the first that
     * overruns), then the server's first preference among them. */
    const unsigned char *want = NULL;
    unsigned char want_len = 0;
    for (size_t s = 0; s < mine_len && want == NULL; s += 1u + mine[s]) {
        for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
            if ((size_t)j + 1 + in[j] > inlen)
                break;
            if (in[j] == mine[s] && memcmp(in + j + 1, mine + s + 1, in[j]) == 0) {
                want = in + j + 1;
                want_len = in[j];
                break;
            }
        }
    }
    if (got != (want != NULL))
        abort();
    if (got && (out != want || outlen != want_len || out < in ||
                out + outlen > in + inlen))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_cert(data + 1, size - 1);
        break;
    case 1:
        fuzz_sni(data + 1, size - 1);
        break;
    default:
        fuzz_alpn(data + 1, size - 1);
        break;
    }
    return 0;
}
