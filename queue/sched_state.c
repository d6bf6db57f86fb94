/*
 * What the scheduler keeps of a destination across restarts, and the
 * operator's pause. A destination's stored state is one line in the
 * spool (queue_put_dest_state): "suspect since=MS held=N" while the
 * rejection guard holds its 5xx (queue/sched_guard.c), "paused" while an
 * operator has stopped delivery to it, or both, space-separated. It is
 * read at start and waits, parsed, until the destination exists (its
 * first mail is read), and is written again at each change.
 *
 * A paused destination gets no delivery attempt: no session opens, a
 * session open ends after its transaction, and its mail, queued or new,
 * waits in the spool without costing memory, as a destination backing off
 * (DESIGN.md, contract 7). Only its recipients wait: a message's
 * recipients at other destinations are delivered. resume makes all of it
 * due at once, as a destination back from an outage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/hmap.h"
#include "common/idn.h"
#include "common/log.h"
#include "common/xmem.h"
#include "queue/sched_int.h"

/* A destination's stored state, waiting for the destination to exist. */
struct saved_state {
	char *key;
	bool suspect;
	int64_t since; /* suspect: unix ms */
	unsigned held; /* suspect: 5xx held */
	bool paused;
};

/* The line stored for a state; false when there is nothing to store. */
static bool
state_line(bool suspect, int64_t since, unsigned held, bool paused, char *buf,
    size_t len)
{
	int n = 0;

	buf[0] = '\0';
	if (suspect)
		n = snprintf(buf, len, "suspect since=%lld held=%u",
		    (long long)since, held);
	if (paused)
		snprintf(
		    buf + n, len - (size_t)n, "%spaused", n > 0 ? " " : "");
	return suspect || paused;
}

static void
sched_on_saved(void *arg, const char *key, const char *state)
{
	struct sched *s = arg;
	struct saved_state *st = xcalloc(1, sizeof(*st)), *old;
	long long since;
	unsigned held;
	const char *p = state;

	if (sscanf(p, "suspect since=%lld held=%u", &since, &held) == 2) {
		st->suspect = true;
		st->since = since;
		st->held = held;
		p = strstr(p, "held=") + strcspn(strstr(p, "held="), " ");
		p += strspn(p, " ");
	}
	if (strcmp(p, "paused") == 0) {
		st->paused = true;
		p += 6;
	}
	if (*p != '\0' || (!st->suspect && !st->paused)) {
		log_warn("%s: unknown stored destination state '%s': ignored",
		    key, state);
		free(st);
		return;
	}
	st->key = xstrdup(key);
	if ((old = hmap_put(s->saved, st->key, st)) != NULL) {
		free(old->key);
		free(old);
	}
}

void
sched_state_load(struct sched *s)
{
	s->saved = hmap_new();
	queue_foreach_dest_state(s->q, sched_on_saved, s);
}

void
sched_state_free(struct sched *s)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->saved, &pos, &key, &val)) {
		struct saved_state *st = val;

		free(st->key);
		free(st);
	}
	hmap_free(s->saved);
}

void
dest_state_restore(struct dest *d)
{
	struct saved_state *st = hmap_del(d->s->saved, d->key);

	if (st == NULL)
		return;
	if (st->suspect) {
		d->guard.suspect = true;
		d->guard.since = st->since;
		d->guard.held = st->held;
		/* Probe it at once, with held mail, as before the restart. */
		retry_dest_failed(
		    &d->pol, dest_retry(d), sched_now_ms(), sched_rand(d->s));
		d->pol.next_probe = sched_now_ms();
		sched_wake_at(d->s, d->pol.next_probe);
		log_info("%s: destination still suspect since before the "
			 "restart: %u suspect 5xx held",
		    d->key, st->held);
	}
	if (st->paused) {
		d->paused = true;
		log_info("%s: still paused by operator", d->key);
	}
	free(st->key);
	free(st);
}

void
dest_state_save(struct dest *d)
{
	char buf[128];

	queue_put_dest_state(d->s->q, d->key,
	    state_line(d->guard.suspect, d->guard.since, d->guard.held,
		d->paused, buf, sizeof(buf))
		? buf
		: NULL);
}

bool
sched_saved_paused(struct sched *s, const char *key)
{
	const struct saved_state *st = hmap_get(s->saved, key);

	return st != NULL && st->paused;
}

void
sched_foreach_saved_pause(struct sched *s,
    void (*cb)(void *arg, const struct sched_dest_info *info), void *arg)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->saved, &pos, &key, &val)) {
		const struct saved_state *st = val;
		struct sched_dest_info in = {
		    .name = st->key,
		    .state = retry_dest_state_str(DEST_UP),
		    .suspect = st->suspect,
		    .paused = true,
		};

		if (st->paused)
			cb(arg, &in);
	}
}

/*
 * The destination a name given to pause stands for, into key: a
 * destination that exists, a route as configured (any case), or the
 * destination of a domain's mail (a relay domain, or one with mail
 * queued). Returns -1 for anything else.
 */
static int
sched_dest_named(struct sched *s, const char *name, char *key, size_t len)
{
	const struct conf *cf = s->cf;
	char ace[IDN_NAME_SIZE], lane[LANE_SIZE];
	size_t pos = 0;
	const char *k;
	void *val;

	while (hmap_next(s->dests, &pos, &k, &val))
		if (strcasecmp(k, name) == 0) {
			snprintf(key, len, "%s", k);
			return 0;
		}
	for (size_t i = 0; i < cf->ndomains; i++)
		if (cf->domains[i].route.kind != ROUTE_MX &&
		    strcasecmp(cf->domains[i].route.text, name) == 0) {
			snprintf(key, len, "%s", cf->domains[i].route.text);
			return 0;
		}
	if (cf->bounce_route.kind != ROUTE_MX &&
	    strcasecmp(cf->bounce_route.text, name) == 0) {
		snprintf(key, len, "%s", cf->bounce_route.text);
		return 0;
	}
	if (idn_to_ascii(name, ace, sizeof(ace), NULL, 0) < 0)
		return -1;
	snprintf(lane, sizeof(lane), "%s", ace);
	for (char *p = lane; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!conf_is_relay_domain(cf, lane) && !hmap_get(s->lanes, lane))
		return -1;
	sched_lane_dest_key(cf, lane, key, len);
	return 0;
}

int
sched_pause(struct sched *s, const char *name, bool pause, char *key,
    size_t len, uint64_t *messages)
{
	struct dest *d;
	struct saved_state *st;
	char buf[128];

	*messages = 0;
	if (sched_dest_named(s, name, key, len) < 0)
		return SCHED_NO_DEST;
	d = hmap_get(s->dests, key);
	if (d == NULL) {
		/* No mail for it yet: the state waits for the first. */
		st = hmap_get(s->saved, key);
		if (!!(st != NULL && st->paused) == pause)
			return pause ? SCHED_SAME : SCHED_NOT_PAUSED;
		if (st == NULL) {
			st = xcalloc(1, sizeof(*st));
			st->key = xstrdup(key);
			hmap_put(s->saved, st->key, st);
		}
		st->paused = pause;
		queue_put_dest_state(s->q, key,
		    state_line(st->suspect, st->since, st->held, st->paused,
			buf, sizeof(buf))
			? buf
			: NULL);
		if (!st->suspect && !st->paused) {
			hmap_del(s->saved, key);
			free(st->key);
			free(st);
		}
		log_info(
		    "%s: %s by operator", key, pause ? "paused" : "resumed");
		return 0;
	}
	if (d->paused == pause)
		return pause ? SCHED_SAME : SCHED_NOT_PAUSED;
	d->paused = pause;
	dest_state_save(d);
	*messages = dest_queued(d);
	if (pause) {
		log_info("%s: paused by operator: %" PRIu64 " message%s",
		    d->key, *messages, *messages == 1 ? " waits" : "s wait");
		dest_park(d, 0);
		return 0;
	}
	/* As after an outage: everything is due now, a backoff ends. */
	log_info("%s: resumed by operator: %" PRIu64 " message%s due now",
	    d->key, *messages, *messages == 1 ? "" : "s");
	if (d->pol.state == DEST_BACKOFF)
		d->pol.next_probe = sched_now_ms();
	dest_due_now(d);
	sched_wake_at(s, sched_now_ms());
	dest_dispatch(d);
	return 0;
}
