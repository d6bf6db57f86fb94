/*
 * queue/guard: the rejection guard's arithmetic (see guard.h). The window
 * is ten slots of a tenth of reject_storm_window each, reused round robin,
 * so counting costs O(1) memory per destination however busy it is.
 */
#include "queue/guard.h"

static int64_t
guard_slot_ms(const struct conf_retry *r)
{
	int64_t w = r->reject_storm_window * 1000 / GUARD_SLOTS;

	return w > 0 ? w : 1;
}

void
guard_note(
    struct guard *g, const struct conf_retry *r, int64_t now, bool rejected)
{
	int64_t w = guard_slot_ms(r), start = now - now % w;
	int i = (int)((now / w) % GUARD_SLOTS);

	if (g->slot_start[i] != start) {
		g->slot_start[i] = start;
		g->total[i] = g->rejected[i] = 0;
	}
	g->total[i]++;
	if (rejected)
		g->rejected[i]++;
}

void
guard_counts(const struct guard *g, const struct conf_retry *r, int64_t now,
    unsigned *total, unsigned *rejected)
{
	int64_t w = guard_slot_ms(r),
		oldest = now - now % w - (GUARD_SLOTS - 1) * w;

	*total = *rejected = 0;
	for (int i = 0; i < GUARD_SLOTS; i++) {
		if (g->total[i] == 0 || g->slot_start[i] < oldest ||
		    g->slot_start[i] > now)
			continue;
		*total += g->total[i];
		*rejected += g->rejected[i];
	}
}

bool
guard_storm(const struct guard *g, const struct conf_retry *r, int64_t now)
{
	unsigned total, rejected;

	guard_counts(g, r, now, &total, &rejected);
	return total > 0 && total >= r->reject_storm_min &&
	       (double)rejected >= r->reject_storm_ratio * (double)total;
}

bool
guard_suspect(
    const struct guard *g, const struct conf_retry *r, int64_t now, bool known)
{
	unsigned total, rejected;

	if (!r->rejection_guard || now < g->trust_until)
		return false;
	if (known || g->suspect)
		return true;
	guard_counts(g, r, now, &total, &rejected);
	if (rejected >= total)
		return true; /* no 2xx lately: no sign the store is healthy */
	return guard_storm(g, r, now);
}

void
guard_trust(struct guard *g, const struct conf_retry *r, int64_t now)
{
	g->suspect = false;
	g->held = 0;
	g->trust_until = now + r->reject_storm_window * 1000;
}

bool
guard_trusts(const struct guard *g, const struct conf_retry *r, int64_t now,
    bool known_or_held)
{
	return known_or_held || !guard_storm(g, r, now);
}
