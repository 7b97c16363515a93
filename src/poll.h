/*
 * poll.h - the poller interface: what a backend (poll_epoll.c; io_uring
 * later) provides to loop.c. The watcher type and its calls are declared
 * in internal.h (weft__io, weft__io_set, weft__io_close, weft__poll).
 *
 * Contract:
 *   - weft__io_set() changes interest only when it differs from what is
 *     registered, so callers may call it freely on every state change.
 *   - Readiness is level-triggered: a watcher that leaves data unread is
 *     reported again next turn. This keeps pause/resume and fairness
 *     budgets simple (no re-arming after a partial read).
 *   - An event fetched in a batch for a watcher closed earlier in the same
 *     batch is dropped (the watcher's fd is -1; its memory lives until the
 *     close phase).
 */
#ifndef WEFT_POLL_H
#define WEFT_POLL_H
#include "internal.h"
#endif
