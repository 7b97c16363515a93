/*
 * fuzz_encode.c - every encoder (write(string, encoding)), one target:
 * the first byte picks the encoding, the rest is the string, handed over
 * in a buffer of exactly its length with no NUL after it, so ASan sees
 * any overread. Checks: output within weft__encode_max() (again a buffer
 * of exactly that size), and equal to the reference model's.
 */
#include "encoding.h"
#include "reference.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int encodings[] = {
    WEFT__ENC_RAW, WEFT__ENC_UTF8,   WEFT__ENC_ASCII,     WEFT__ENC_LATIN1,
    WEFT__ENC_HEX, WEFT__ENC_BASE64, WEFT__ENC_BASE64URL,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int enc;
    size_t len, max, n, want_len;
    char *in;
    uint8_t *out, *want;

    if (size < 1)
        return 0;
    enc = encodings[data[0] % (sizeof(encodings) / sizeof(encodings[0]))];
    len = size - 1;
    in = malloc(len ? len : 1);
    memcpy(in, data + 1, len);
    max = weft__encode_max(enc, len);
    out = malloc(max ? max : 1);
    want = malloc(len + 1);
    n = weft__encode(enc, in, len, out);
    switch (enc) {
    case WEFT__ENC_BASE64:
    case WEFT__ENC_BASE64URL:
        want_len = ref_base64_bytes((const uint8_t *)in, len, want);
        break;
    case WEFT__ENC_HEX:
        want_len = ref_hex_bytes((const uint8_t *)in, len, want);
        break;
    default: /* utf8, ascii, latin1, raw: the bytes as they are */
        memcpy(want, in, len);
        want_len = len;
        break;
    }
    if (n > max || n != want_len || memcmp(out, want, n) != 0)
        abort();
    free(in);
    free(out);
    free(want);
    return 0;
}
