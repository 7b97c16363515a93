/*
 * fuzz_decode_utf8.c - the utf8 decoder, chunk by chunk. The input is a
 * list of chunks, each one length byte then that many bytes (the length
 * is taken modulo 32, so most inputs split into many short chunks). Each
 * write() must give exactly what the model of Node's StringDecoder in
 * reference.h gives for the same chunk, and end() likewise: not only the
 * same text in total, but the same text per 'data' event.
 */
#include "encoding.h"
#include "reference.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    weft__decoder d;
    struct ref_node_utf8 model = {{0}, 0, 0};
    size_t pos = 0, n, m, max;
    char *got, *want;

    weft__decoder_init(&d, WEFT__ENC_UTF8);
    while (pos < size) {
        size_t len = data[pos++] % 32;
        if (len > size - pos)
            len = size - pos;
        max = weft__decode_max(&d, len);
        got = malloc(max ? max : 1); /* exactly the promised room */
        want = malloc(4 * len + 16);
        n = weft__decode(&d, data + pos, len, got);
        m = ref_node_utf8_write(&model, data + pos, len, want);
        if (n > max || n != m || memcmp(got, want, n) != 0)
            abort();
        if (!ref_utf8_valid((const uint8_t *)got, n))
            abort();
        free(got);
        free(want);
        pos += len;
    }
    max = weft__decode_max(&d, 0);
    got = malloc(max ? max : 1);
    want = malloc(16);
    n = weft__decode_end(&d, got);
    m = ref_node_utf8_end(&model, want);
    if (n > max || n != m || memcmp(got, want, n) != 0)
        abort();
    free(got);
    free(want);
    return 0;
}
