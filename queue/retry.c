/* The retry and drain policy (see retry.h). */

#include "queue/retry.h"

int64_t
retry_backoff_ms(const struct conf_retry *r, unsigned failures, double rand01)
{
	double ms = (double)r->initial * 1000.0;
	double cap = (double)r->max_interval * 1000.0;

	for (unsigned i = 1; i < failures && ms < cap; i++)
		ms *= r->multiplier;
	if (ms > cap)
		ms = cap;
	/* +-jitter, so that many relays do not probe a store in step. */
	ms *= 1.0 + r->jitter * (2.0 * rand01 - 1.0);
	return ms < 1000.0 ? 1000 : (int64_t)ms;
}

/*
 * The store's connection budget is split statically between the nodes
 * in front of it: N nodes with max_connections = 20 would otherwise open
 * 20 x N connections to a store that has just come back. A static split
 * needs nothing shared between nodes (no coordination service that can
 * fail or partition), and is enough: the nodes see the same store, so
 * they recover and slow-start at about the same time, and a node alone
 * (the others down or idle) drains at its share, which is slower but
 * never harder on the store than the whole cluster was allowed to be.
 */
unsigned
retry_share(unsigned total, unsigned nodes)
{
	unsigned share;

	if (nodes <= 1)
		return total > 0 ? total : 1;
	share = total / nodes + (total % nodes != 0);
	return share > 0 ? share : 1;
}

/* This node's ceiling and slow-start width, after the split. */
static unsigned
retry_max_conns(const struct conf_retry *r)
{
	return retry_share(r->max_connections, r->cluster_nodes);
}

void
retry_dest_init(struct dest_policy *p, const struct conf_retry *r, int64_t now)
{
	unsigned max = retry_max_conns(r);

	p->state = DEST_UP;
	p->concurrency = retry_share(r->recovery_connections, r->cluster_nodes);
	if (p->concurrency > max)
		p->concurrency = max;
	p->failures = 0;
	p->interval_ms = 0;
	p->next_probe = 0;
	p->last_change = now;
	p->trouble = false;
	p->refused = false;
}

void
retry_dest_failed(struct dest_policy *p, const struct conf_retry *r,
    int64_t now, double rand01)
{
	p->failures++;
	p->interval_ms = retry_backoff_ms(r, p->failures, rand01);
	p->next_probe = now + p->interval_ms;
	p->state = DEST_BACKOFF;
	p->last_change = now;
	p->refused = false;
}

void
retry_dest_refused(struct dest_policy *p, int64_t now)
{
	p->next_probe = now + RETRY_REFUSED_PROBE_MS;
	p->state = DEST_BACKOFF;
	p->last_change = now;
	p->refused = true;
}

bool
retry_dest_succeeded(
    struct dest_policy *p, const struct conf_retry *r, int64_t now)
{
	bool recovered = p->state != DEST_UP;

	if (recovered) {
		/* Back, but gently: slow start from the recovery width. */
		retry_dest_init(p, r, now);
		return true;
	}
	p->failures = 0;
	return false;
}

void
retry_dest_trouble(struct dest_policy *p, int64_t now)
{
	if (p->state != DEST_UP)
		return;
	p->concurrency = p->concurrency > 1 ? p->concurrency / 2 : 1;
	p->last_change = now;
	p->trouble = true;
}

bool
retry_dest_tick(struct dest_policy *p, const struct conf_retry *r, int64_t now)
{
	switch (p->state) {
	case DEST_BACKOFF:
		/* The clock went back: a probe is never further away than its
		 * interval (the times here are wall-clock ms). */
		if (p->next_probe > now + p->interval_ms)
			p->next_probe = now + p->interval_ms;
		if (p->last_change > now)
			p->last_change = now;
		if (now < p->next_probe)
			return false;
		p->state = DEST_PROBING;
		return true;
	case DEST_PROBING:
		return false;
	case DEST_UP:
		/* A reload may have lowered the ceiling (max_connections,
		 * cluster_nodes): down to it at once. */
		if (p->concurrency > retry_max_conns(r))
			p->concurrency = retry_max_conns(r);
		if (p->last_change > now)
			p->last_change = now; /* the clock went back */
		if (now - p->last_change < r->probe_interval * 1000)
			return false;
		p->last_change = now;
		if (p->trouble) {
			p->trouble = false;
			return false;
		}
		if (p->concurrency >= retry_max_conns(r))
			return false;
		p->concurrency *= 2;
		if (p->concurrency > retry_max_conns(r))
			p->concurrency = retry_max_conns(r);
		return true;
	}
	return false;
}

unsigned
retry_dest_slots(const struct dest_policy *p)
{
	switch (p->state) {
	case DEST_UP:
		return p->concurrency;
	case DEST_PROBING:
		return 1;
	case DEST_BACKOFF:
		return 0;
	}
	return 0;
}

const char *
retry_dest_state_str(enum dest_state st)
{
	switch (st) {
	case DEST_UP:
		return "up";
	case DEST_BACKOFF:
		return "backing off";
	case DEST_PROBING:
		return "probing";
	}
	return "?";
}
