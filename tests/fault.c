/*
 * fault.c - see fault.h. The real functions are found with
 * dlsym(RTLD_NEXT); under ASan that is its interceptor, which then calls
 * libc, so sanitizers keep working.
 */
#include "fault.h"

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct {
    atomic_int countdown; /* calls left before the first failure; 0 off */
    atomic_int left;      /* failures still to inject */
    int err;
    atomic_int injected;
} fault;

static fault faults[FAULT_NCALLS];
static atomic_long calls[FAULT_NCALLS];

long fault_calls(enum fault_call call)
{
    return atomic_load(&calls[call]);
}

void fault_arm(enum fault_call call, int nth, int times, int err)
{
    faults[call].err = err;
    atomic_store(&faults[call].injected, 0);
    atomic_store(&faults[call].left, times);
    atomic_store(&faults[call].countdown, nth);
}

void fault_disarm_all(void)
{
    for (int i = 0; i < FAULT_NCALLS; i++) {
        atomic_store(&faults[i].countdown, 0);
        atomic_store(&faults[i].left, 0);
    }
}

int fault_injected(enum fault_call call)
{
    return atomic_load(&faults[call].injected);
}

const char *fault_call_name(enum fault_call call)
{
    static const char *names[] = {"accept4", "connect", "read",
                                  "send",    "socket",  "setsockopt",
                                  "shutdown", "epoll_ctl", "getaddrinfo",
                                  "recvmmsg", "sendmmsg"};
    return names[call];
}

/* Returns the error to inject, or 0 to call through. */
static int hit(enum fault_call call)
{
    fault *f = &faults[call];
    atomic_fetch_add(&calls[call], 1);
    if (atomic_load(&f->left) <= 0)
        return 0;
    int c = atomic_load(&f->countdown);
    if (c > 1) {
        atomic_fetch_sub(&f->countdown, 1);
        return 0;
    }
    if (c <= 0)
        return 0;
    if (atomic_fetch_sub(&f->left, 1) <= 0)
        return 0;
    atomic_fetch_add(&f->injected, 1);
    return f->err;
}

static int is_socket(int fd)
{
    int type;
    socklen_t len = sizeof(type);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

#define REAL(name, type) ((type)dlsym(RTLD_NEXT, #name))

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int e = hit(FAULT_ACCEPT4);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(accept4, int (*)(int, struct sockaddr *, socklen_t *, int))(
        fd, addr, len, flags);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int e = hit(FAULT_CONNECT);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(connect, int (*)(int, const struct sockaddr *, socklen_t))(
        fd, addr, len);
}

ssize_t read(int fd, void *buf, size_t n)
{
    int e = is_socket(fd) ? hit(FAULT_READ) : 0;
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(read, ssize_t (*)(int, void *, size_t))(fd, buf, n);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    int e = hit(FAULT_SEND);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(send, ssize_t (*)(int, const void *, size_t, int))(fd, buf,
                                                                   n, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    int e = hit(FAULT_SEND);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(sendmsg, ssize_t (*)(int, const struct msghdr *, int))(
        fd, msg, flags);
}

int socket(int domain, int type, int protocol)
{
    int e = hit(FAULT_SOCKET);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(socket, int (*)(int, int, int))(domain, type, protocol);
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    int e = hit(FAULT_SETSOCKOPT);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(setsockopt,
                int (*)(int, int, int, const void *, socklen_t))(fd, level,
                                                                 name, val,
                                                                 len);
}

int shutdown(int fd, int how)
{
    int e = hit(FAULT_SHUTDOWN);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(shutdown, int (*)(int, int))(fd, how);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int e = hit(FAULT_EPOLL_CTL);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(epoll_ctl, int (*)(int, int, int, struct epoll_event *))(
        epfd, op, fd, ev);
}

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
    int e = hit(FAULT_GETADDRINFO);
    if (e)
        return e;
    return REAL(getaddrinfo,
                int (*)(const char *, const char *, const struct addrinfo *,
                        struct addrinfo **))(node, service, hints, res);
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
             struct timespec *timeout)
{
    int e = hit(FAULT_RECVMMSG);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(recvmmsg, int (*)(int, struct mmsghdr *, unsigned int, int,
                                  struct timespec *))(fd, vec, vlen, flags,
                                                      timeout);
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    int e = hit(FAULT_SENDMMSG);
    if (e) {
        errno = e;
        return -1;
    }
    return REAL(sendmmsg, int (*)(int, struct mmsghdr *, unsigned int, int))(
        fd, vec, vlen, flags);
}
