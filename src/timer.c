/*
 * timer.c - the loop's min-heap of deadlines, and the public timers
 * (setTimeout / setInterval) built on it.
 *
 * Internal timers (idle timeouts) embed a weft__timer; arming and
 * disarming are O(log n), and a stream's idle timeout is re-armed lazily
 * (stream.c) so that activity never touches the heap.
 */
#include "internal.h"

#include <stdlib.h>

static bool before(const weft__timer *a, const weft__timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(weft_loop *loop, uint32_t i, weft__timer *t)
{
    loop->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(weft_loop *loop, uint32_t i)
{
    weft__timer *t = loop->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(t, loop->heap[parent]))
            break;
        place(loop, i, loop->heap[parent]);
        i = parent;
    }
    place(loop, i, t);
}

static void sift_down(weft_loop *loop, uint32_t i)
{
    weft__timer *t = loop->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= loop->heap_n)
            break;
        if (c + 1 < loop->heap_n && before(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!before(loop->heap[c], t))
            break;
        place(loop, i, loop->heap[c]);
        i = c;
    }
    place(loop, i, t);
}

void weft__timer_disarm(weft_loop *loop, weft__timer *t)
{
    if (t->slot == 0)
        return;
    uint32_t i = t->slot - 1;
    t->slot = 0;
    weft__timer *last = loop->heap[--loop->heap_n];
    if (i == loop->heap_n)
        return;
    place(loop, i, last);
    if (i > 0 && before(last, loop->heap[(i - 1) / 2]))
        sift_up(loop, i);
    else
        sift_down(loop, i);
}

/*
 * Arming cannot fail for callers that already hold a slot; the heap grows
 * ahead of need, and a failed growth leaves the timer unarmed (the caller
 * checks weft__timer_armed where it matters).
 */
void weft__timer_arm(weft_loop *loop, weft__timer *t, uint64_t due)
{
    weft__timer_disarm(loop, t);
    if (loop->heap_n == loop->heap_cap) {
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        weft__timer **heap = weft__realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    t->due = due;
    t->seq = loop->timer_seq++;
    place(loop, loop->heap_n++, t);
    sift_up(loop, loop->heap_n - 1);
}

int weft__timers_timeout(weft_loop *loop)
{
    if (loop->heap_n == 0)
        return -1;
    uint64_t due = loop->heap[0]->due;
    if (due <= loop->now)
        return 0;
    uint64_t ms = due - loop->now;
    return ms > 1000000 ? 1000000 : (int)ms;
}

void weft__timers_run(weft_loop *loop)
{
    /* A timer armed by a callback for "now" waits for the next turn. */
    uint64_t limit = loop->timer_seq;
    while (loop->heap_n > 0) {
        weft__timer *t = loop->heap[0];
        if (t->due > loop->now || t->seq >= limit)
            break;
        weft__timer_disarm(loop, t);
        t->fn(t);
    }
}

void weft__timers_free(weft_loop *loop)
{
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_n = loop->heap_cap = 0;
}

/* ---- public timers --------------------------------------------------- */

struct weft_timer {
    weft__handle h;
    weft__timer t;
    weft_timer_cb cb;
    void *ctx;
    uint64_t repeat;
};

static void public_timer_fire(weft__timer *t)
{
    weft_timer *timer = WEFT__CONTAINER_OF(t, weft_timer, t);
    weft_loop *loop = timer->h.loop;
    if (timer->repeat)
        weft__timer_arm(loop, &timer->t, weft__deadline(loop->now, timer->repeat));
    timer->cb(timer, timer->ctx);
    if (!timer->repeat && !(timer->h.flags & WEFT__H_CLOSING))
        weft_clear_timer(timer);
}

static weft_timer *timer_start(weft_loop *loop, uint64_t ms, uint64_t repeat,
                               weft_timer_cb cb, void *ctx)
{
    loop = weft__loop(loop);
    if (loop == NULL || cb == NULL)
        return NULL;
    weft_timer *timer = weft__calloc(1, sizeof(*timer));
    if (timer == NULL)
        return NULL;
    weft__handle_init(loop, &timer->h, WEFT__TIMER);
    timer->t.fn = public_timer_fire;
    timer->cb = cb;
    timer->ctx = ctx;
    timer->repeat = repeat;
    weft__loop_update_time(loop);
    weft__timer_arm(loop, &timer->t, weft__deadline(loop->now, ms));
    if (!weft__timer_armed(&timer->t)) {
        weft__handle_close(&timer->h);
        return NULL;
    }
    weft__handle_start(&timer->h);
    return timer;
}

weft_timer *weft_set_timeout(weft_loop *loop, uint64_t ms, weft_timer_cb cb,
                             void *ctx)
{
    return timer_start(loop, ms, 0, cb, ctx);
}

weft_timer *weft_set_interval(weft_loop *loop, uint64_t ms, weft_timer_cb cb,
                              void *ctx)
{
    if (ms == 0)
        ms = 1;
    return timer_start(loop, ms, ms, cb, ctx);
}

void weft_clear_timer(weft_timer *timer)
{
    if (timer == NULL || (timer->h.flags & WEFT__H_CLOSING))
        return;
    weft__timer_disarm(timer->h.loop, &timer->t);
    weft__handle_stop(&timer->h);
    weft__handle_close(&timer->h);
}

void weft_timer_unref(weft_timer *timer)
{
    if (timer != NULL)
        weft__handle_unref(&timer->h);
}

void weft_timer_ref(weft_timer *timer)
{
    if (timer != NULL)
        weft__handle_ref(&timer->h);
}

void weft__timer_pending(weft__handle *h, unsigned bits)
{
    WEFT__UNUSED(h);
    WEFT__UNUSED(bits);
}

void weft__timer_free(weft__handle *h)
{
    weft_timer *timer = WEFT__CONTAINER_OF(h, weft_timer, h);
    weft__timer_disarm(h->loop, &timer->t);
    free(timer);
}

/* ---- setImmediate ----------------------------------------------------- */

struct weft_immediate {
    weft__handle h;
    weft__qnode node; /* in loop->immediates until run or cleared */
    weft_immediate_cb cb;
    void *ctx;
};

weft_immediate *weft_set_immediate(weft_loop *loop, weft_immediate_cb cb,
                                   void *ctx)
{
    loop = weft__loop(loop);
    if (loop == NULL || cb == NULL)
        return NULL;
    weft_immediate *im = weft__calloc(1, sizeof(*im));
    if (im == NULL)
        return NULL;
    weft__handle_init(loop, &im->h, WEFT__IMMEDIATE);
    im->cb = cb;
    im->ctx = ctx;
    weft__q_push(&loop->immediates, &im->node);
    weft__handle_start(&im->h);
    return im;
}

void weft_clear_immediate(weft_immediate *im)
{
    if (im == NULL || (im->h.flags & WEFT__H_CLOSING))
        return;
    if (weft__q_linked(&im->node))
        weft__q_remove(&im->node);
    weft__handle_close(&im->h);
}

void weft__immediates_run(weft_loop *loop)
{
    if (weft__q_empty(&loop->immediates))
        return;
    /* Only those set before the phase began: the batch moves to a local
     * queue, and an immediate set by a callback waits for the next turn
     * (as Node's). A callback may clear one still in the batch. */
    weft__qnode batch;
    weft__q_take_all(&batch, &loop->immediates);
    while (!weft__q_empty(&batch)) {
        weft_immediate *im =
            WEFT__CONTAINER_OF(batch.next, weft_immediate, node);
        weft__q_remove(&im->node);
        im->cb(im, im->ctx);
        weft__handle_close(&im->h);
    }
}

void weft__immediate_free(weft__handle *h)
{
    weft_immediate *im = WEFT__CONTAINER_OF(h, weft_immediate, h);
    if (weft__q_linked(&im->node))
        weft__q_remove(&im->node);
    free(im);
}
