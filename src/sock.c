/*
 * sock.c - socket addresses shared by server.c and stream.c: parsing IP
 * literals and Unix paths, and turning addresses back into text.
 * No I/O and no handles.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

bool weft__parse_ip(const char *host, int port, weft__sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->u.ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        return true;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->u.ss;
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    const char *zone = strchr(host, '%');
    size_t n = zone ? (size_t)(zone - host) : strlen(host);
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
        return false;
    if (zone != NULL) {
        /* A zone names an interface, or is its index in digits. */
        unsigned idx = if_nametoindex(zone + 1);
        if (idx == 0) {
            char *end;
            unsigned long v = strtoul(zone + 1, &end, 10);
            if (zone[1] == '\0' || *end != '\0' || v > UINT32_MAX)
                return false;
            idx = (unsigned)v;
        }
        sin6->sin6_scope_id = idx;
    }
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    out->len = sizeof(*sin6);
    return true;
}

int weft__unix_addr(const char *path, weft__sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->u.ss;
    size_t n = strlen(path);
    if (path[0] == '@' && n > 1) {
        /* "@name": Linux's abstract namespace (Node's '\0name', which a
         * C string cannot carry; "@" as Go, systemd and ss(8) write it).
         * The name is exactly its bytes: no NUL in the length. */
        if (n > sizeof(sun->sun_path))
            return WEFT_ENAMETOOLONG;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path + 1, path + 1, n - 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
    }
    if (n == 0)
        return WEFT_EINVAL;
    /* One byte stays for the NUL: Linux accepts an unterminated path that
     * fills sun_path, but other tools (and getsockname) then misbehave. */
    if (n >= sizeof(sun->sun_path))
        return WEFT_ENAMETOOLONG;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int weft__address_from(const struct sockaddr *sa, socklen_t len,
                       weft_address *out)
{
    memset(out, 0, sizeof(*out));
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const void *)sa;
        out->family = 4;
        out->port = ntohs(sin->sin_port);
        inet_ntop(AF_INET, &sin->sin_addr, out->address,
                  sizeof(out->address));
        return 0;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const void *)sa;
        out->family = 6;
        out->port = ntohs(sin6->sin6_port);
        inet_ntop(AF_INET6, &sin6->sin6_addr, out->address,
                  sizeof(out->address));
        return 0;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const void *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? len - off : 0;
        if (n > sizeof(out->address) - 1)
            n = sizeof(out->address) - 1;
        memcpy(out->address, sun->sun_path, n);
        out->address[n] = '\0';
        if (n > 1 && out->address[0] == '\0')
            out->address[0] = '@'; /* abstract: as it was given */
        return 0;
    }
    }
    return WEFT_EAFNOSUPPORT;
}

void weft__addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    weft_address a;
    socklen_t len = sa->sa_family == AF_UNIX ? sizeof(struct sockaddr_un)
                                             : sizeof(struct sockaddr_storage);
    if (weft__address_from(sa, len, &a) < 0) {
        snprintf(buf, size, "?");
        return;
    }
    /* Node's form, brackets-free for IPv6 too: "::1:8124". */
    if (a.family != 0)
        snprintf(buf, size, "%s:%d", a.address, a.port);
    else
        snprintf(buf, size, "%s", a.address);
}
