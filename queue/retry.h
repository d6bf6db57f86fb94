/*
 * queue/retry: the retry and drain policy as pure functions: backoff
 * intervals, and the state of one destination (up, backing off, probing)
 * with its slow-start concurrency. No I/O, no clock: callers pass the time
 * (milliseconds) and a random number, so every rule is unit-tested.
 */
#ifndef MXSPOOL_RETRY_H
#define MXSPOOL_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/conf.h"

enum dest_state {
	DEST_UP,      /* delivering, at `concurrency` connections */
	DEST_BACKOFF, /* failing: nothing is tried until `next_probe` */
	DEST_PROBING, /* one probe connection is testing it */
};

struct dest_policy {
	enum dest_state state;
	unsigned concurrency; /* connections allowed now (UP) */
	unsigned failures;    /* consecutive failed probes */
	int64_t interval_ms;  /* the current backoff */
	int64_t next_probe;   /* BACKOFF: when to probe, ms */
	int64_t last_change;  /* when concurrency last changed, ms */
	bool trouble;         /* a 4xx or timeout since last_change */
	bool refused;         /* the last failure was a refused connection:
				 probe every second, with a greeting only */
};

/* A refused connection costs the store nothing: such a destination is
 * probed this often (ms), whatever its backoff. */
#define RETRY_REFUSED_PROBE_MS 1000

/* A backoff after `failures` (>= 1) failures: initial * multiplier^(n-1),
 * capped at max_interval, varied by +-jitter (rand01 in [0, 1)). */
int64_t retry_backoff_ms(
    const struct conf_retry *r, unsigned failures, double rand01);

/* This node's share of a connection budget split between `nodes` nodes
 * (retry { cluster_nodes }): ceil(total / nodes), at least 1. */
unsigned retry_share(unsigned total, unsigned nodes);

/* A destination seen for the first time (or after a restart): up, at the
 * recovery concurrency. */
void retry_dest_init(
    struct dest_policy *p, const struct conf_retry *r, int64_t now);
/* A connection could not be made, or the destination answered nothing
 * but temporary failures: back off (another probe later). */
void retry_dest_failed(struct dest_policy *p, const struct conf_retry *r,
    int64_t now, double rand01);
/* Every address refused the connection (nothing listens): probe again in
 * RETRY_REFUSED_PROBE_MS with a connection and greeting only; the backoff
 * of other failures is kept for when the store answers but is sick. */
void retry_dest_refused(struct dest_policy *p, int64_t now);
/* A delivery got a definite answer (2xx or 5xx). Returns true when this
 * ends an outage: every message held for the destination is due now. */
bool retry_dest_succeeded(
    struct dest_policy *p, const struct conf_retry *r, int64_t now);
/* A 4xx answer or a timeout while up: halve the concurrency (min 1). */
void retry_dest_trouble(struct dest_policy *p, int64_t now);
/* Time passes: slow start doubles the concurrency every probe_interval
 * without trouble; a backoff that is over turns into a probe. A clock
 * stepped back never pushes a probe or a step further than its interval.
 * Returns true when the state or concurrency changed. */
bool retry_dest_tick(
    struct dest_policy *p, const struct conf_retry *r, int64_t now);
/* Connections the destination may use now. */
unsigned retry_dest_slots(const struct dest_policy *p);
const char *retry_dest_state_str(enum dest_state st);

#endif
