/*
 * fault.h - syscall fault injection for tests, by interposition: the test
 * binary that links tests/fault.c defines accept4, connect, read, send,
 * sendmsg, socket, setsockopt, shutdown, epoll_ctl, getaddrinfo, recvmmsg
 * and sendmmsg itself; weft (linked statically into it) calls these,
 * which forward to the real ones unless a fault is armed. Nothing in weft
 * changes.
 */
#ifndef WEFT_TEST_FAULT_H
#define WEFT_TEST_FAULT_H

enum fault_call {
    FAULT_ACCEPT4,
    FAULT_CONNECT,
    FAULT_READ,
    FAULT_SEND,    /* send() and sendmsg() */
    FAULT_SOCKET,
    FAULT_SETSOCKOPT,
    FAULT_SHUTDOWN,
    FAULT_EPOLL_CTL,
    FAULT_GETADDRINFO, /* err is an EAI_* code */
    FAULT_RECVMMSG,
    FAULT_SENDMMSG,
    FAULT_NCALLS
};

/*
 * From now, the `nth` call (1 = the next) of `call` and the `times - 1`
 * after it fail with `err` (an errno, or EAI_* for getaddrinfo). Reads,
 * sends and shutdowns count only on sockets, so the test framework's own
 * pipes are never hit.
 */
void fault_arm(enum fault_call call, int nth, int times, int err);
void fault_disarm_all(void);
/* Calls failed so far by the armed fault of `call`. */
int fault_injected(enum fault_call call);
const char *fault_call_name(enum fault_call call);
/* Calls of `call` so far, failed or not (reads, sends and shutdowns on
 * sockets only): what the economy test counts. */
long fault_calls(enum fault_call call);

#endif
