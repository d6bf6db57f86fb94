/*
 * queue/window: the scheduler's decisions about the active window, as
 * pure functions (no I/O, no clock: callers pass the time in unix ms), so
 * each rule is unit-tested. Which messages live in memory: a destination's
 * ready jobs, read from its lanes in the spool a page at a time; what is
 * deferred or waits for a probe goes back to the spool (DESIGN.md,
 * contract 7).
 */
#ifndef MXSPOOL_WINDOW_H
#define MXSPOOL_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/retry.h"

#define WINDOW_PAGE 256   /* messages read from the spool at once */
#define WINDOW_READY 2048 /* a destination reads more below half this */

/* What a destination has, for deciding what to read for it. */
struct window_dest {
	enum dest_state state;
	size_t nready;         /* its jobs ready now */
	size_t in_memory;      /* messages in the window, all destinations */
	size_t limit;          /* active_limit */
	int64_t now;           /* unix ms */
	int64_t probe_read_at; /* no probe message read before (unix ms) */
};

enum window_read {
	WINDOW_NONE,  /* nothing to read now */
	WINDOW_PROBE, /* one message, due or not, for a probe */
	WINDOW_FILL,  /* *n messages, to top up its ready jobs */
};

/*
 * How much of a destination's spooled mail to read now. A destination
 * backing off reads nothing (its probe will); one probing reads one
 * message when it has none ready; one that is up reads a page while it
 * has fewer than WINDOW_READY / 2 ready jobs, within the window's limit,
 * though one message when the window is full and it has none ready (no
 * destination starves). So it holds about a thousand ready jobs: enough
 * for max_connections sessions to never wait for the spool.
 */
enum window_read window_refill(const struct window_dest *d, size_t *n);

/* A lane's reading state: a cursor (the caller's) over its messages in
 * arrival order, and when to start over. */
struct window_lane {
	bool more;       /* entries after the cursor may be wanted */
	bool all;        /* this pass takes every message, due or not */
	int64_t wrap_at; /* unix ms: start over from the first; INT64_MAX no */
};

/* Everything is to be read again, due or not: at start, when the
 * destination comes back (contract 3), on a flush. */
void window_lane_reread(struct window_lane *l);
/* Whether the lane has reading to do now. True with *restart when a new
 * pass begins (the caller moves its cursor to the start). */
bool window_lane_due(struct window_lane *l, int64_t now, bool *restart);
/* A page was read: end says nothing is after it; next_due is the
 * earliest due of the messages it passed over as not yet due (each
 * page's counts: the lane starts over at the earliest). */
void window_lane_page(struct window_lane *l, bool end, int64_t next_due);
/* A message of the lane went back to the spool deferred until due. */
void window_lane_later(struct window_lane *l, int64_t due);
/* A message arrived while the window was full: it is read in its turn
 * (its id is after every id read so far). */
void window_lane_arrived(struct window_lane *l);

#endif
