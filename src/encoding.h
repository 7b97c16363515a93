/*
 * encoding.h - string encodings for setEncoding() and write(string):
 * pure functions, no I/O, no allocation.
 *
 * Naming follows Node: a *decoder* turns received bytes into text (Node's
 * StringDecoder), an *encoder* turns a caller's string into bytes to send
 * (Buffer.from(string, encoding)). Text is produced as UTF-8 bytes: the
 * utf8 decoder passes valid input through and replaces each invalid
 * sequence by U+FFFD (EF BF BD) exactly where Node's StringDecoder does.
 */
#ifndef WEFT_ENCODING_H
#define WEFT_ENCODING_H

#include <stddef.h>
#include <stdint.h>

enum weft__enc {
    WEFT__ENC_RAW = 0, /* bytes as they are: no decoder */
    WEFT__ENC_UTF8,
    WEFT__ENC_ASCII,
    WEFT__ENC_LATIN1,
    WEFT__ENC_BASE64,
    WEFT__ENC_HEX,
    /*
     * Added for Node's "base64url": the decoder writes the URL-safe
     * alphabet without padding; the encoder is the base64 one (Node's
     * accepts both alphabets for either name).
     */
    WEFT__ENC_BASE64URL,
};

/*
 * The encoding named `name` (Node's names, case-insensitive: "utf8",
 * "utf-8", "ascii", "latin1", "binary", "base64", "hex"); WEFT__ENC_RAW for
 * NULL; WEFT_EENCODING (negative) for anything else.
 */
int weft__enc_parse(const char *name);
/* Also accepted: "base64url". Node's utf16 names give WEFT_EENCODING. */

/* Incremental decoder state; lives inside each stream, so keep it small. */
typedef struct weft__decoder {
    uint8_t enc;     /* enum weft__enc */
    uint8_t have;    /* bytes held in `part` */
    uint8_t need;    /* utf8: total length of the held sequence */
    uint8_t part[4]; /* an incomplete utf8 sequence or base64 group */
} weft__decoder;

void weft__decoder_init(weft__decoder *d, int enc);

/*
 * Largest output weft__decode() plus weft__decode_end() can produce for
 * `len` more input bytes given the state held in `d`.
 */
size_t weft__decode_max(const weft__decoder *d, size_t len);

/*
 * Decodes `len` bytes of `in` into `out` (room: weft__decode_max()),
 * holding back an incomplete sequence/group for the next call. Returns
 * the number of bytes written to `out`. Does not NUL-terminate.
 */
size_t weft__decode(weft__decoder *d, const uint8_t *in, size_t len,
                    char *out);

/* End of stream: flushes what is held (U+FFFD, padded base64). */
size_t weft__decode_end(weft__decoder *d, char *out);

/* Largest output of weft__encode() for `len` input chars. */
size_t weft__encode_max(int enc, size_t len);

/*
 * Encodes the string `in` of `len` chars into bytes in `out`, as Node's
 * Buffer.from(string, enc) would for the same JS string (utf8, ascii,
 * latin1: the bytes as they are; base64: decoded, lenient as Node is; hex:
 * decoded pairs up to the first invalid one). Returns bytes written.
 */
size_t weft__encode(int enc, const char *in, size_t len, uint8_t *out);

#endif
