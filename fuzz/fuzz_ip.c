/*
 * fuzz_ip.c - weft_is_ip / is_ipv4 / is_ipv6 on arbitrary strings (the
 * input up to its first NUL). Checks, each an independent opinion:
 *   - the regex-shaped model of Node's grammar in reference.h agrees;
 *   - the three functions agree with each other;
 *   - without a zone, glibc's inet_pton agrees: it is as strict as Node
 *     about IPv4 (no leading zeros, exactly four parts) and IPv6 groups.
 */
#include "weft.h"
#include "reference.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    unsigned char addr[16];
    int got, want;

    memcpy(s, data, size);
    s[size] = '\0';
    got = weft_is_ip(s);
    want = ref_is_ip(s);
    if (got != want)
        abort();
    if (weft_is_ipv4(s) != (got == 4) || weft_is_ipv6(s) != (got == 6))
        abort();
    if (strchr(s, '%') == NULL) {
        if ((inet_pton(AF_INET, s, addr) == 1) != (got == 4))
            abort();
        if ((inet_pton(AF_INET6, s, addr) == 1) != (got == 6))
            abort();
    }
    free(s);
    return 0;
}
