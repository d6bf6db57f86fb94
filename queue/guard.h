/*
 * queue/guard: the rejection guard. A store whose storage is broken may
 * answer "550 recipient rejected" for users it served yesterday; a backup
 * MX that believed it would bounce the mail it exists to keep. A 5xx for a
 * recipient is *suspect*, and held instead of bounced, when the recipient
 * is known (the store accepted it before, or a recipients file lists it),
 * when its destination is already suspect, or when it comes in a storm:
 * of at least reject_storm_min recipient verdicts of the destination in
 * the last reject_storm_window, reject_storm_ratio or more were 5xx. With
 * no 2xx at all in the window there is no sign the store is healthy, and
 * a 5xx is suspect too. Pure: no I/O, no clock (times in ms).
 */
#ifndef MXSPOOL_GUARD_H
#define MXSPOOL_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/conf.h"

#define GUARD_SLOTS 10 /* the window, in tenths */

/* A destination's recent recipient verdicts and its suspect state. */
struct guard {
	int64_t slot_start[GUARD_SLOTS]; /* ms; the tenth a slot counts */
	unsigned total[GUARD_SLOTS];     /* 2xx and 5xx verdicts */
	unsigned rejected[GUARD_SLOTS];  /* of which 5xx */
	bool suspect;
	int64_t since;       /* ms: when it became suspect */
	unsigned held;       /* suspect 5xx held since then */
	int64_t trust_until; /* ms: the operator trusts its 5xx until then */
};

/* Counts one recipient verdict: a 2xx, or a 5xx (rejected). */
void guard_note(
    struct guard *g, const struct conf_retry *r, int64_t now, bool rejected);
/* Verdicts and 5xx in the window now. */
void guard_counts(const struct guard *g, const struct conf_retry *r,
    int64_t now, unsigned *total, unsigned *rejected);
/* Whether the window is a storm: enough verdicts, mostly 5xx. */
bool guard_storm(
    const struct guard *g, const struct conf_retry *r, int64_t now);
/* Whether a 5xx for a recipient (known or not), already noted, is
 * suspect. Always false with rejection_guard off, and for one window
 * after the operator trusted the destination (guard_trust). */
bool guard_suspect(
    const struct guard *g, const struct conf_retry *r, int64_t now, bool known);
/* The operator says the store's 5xx are true: end the suspect state and
 * believe its 5xx for one reject_storm_window. */
void guard_trust(struct guard *g, const struct conf_retry *r, int64_t now);
/* Whether a 2xx, already noted, ends the suspect state: it is for a
 * recipient the store had accepted or rejected before (known_or_held), or
 * the window is no longer a storm. */
bool guard_trusts(const struct guard *g, const struct conf_retry *r,
    int64_t now, bool known_or_held);

#endif
