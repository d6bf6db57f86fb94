#define LOG_ROLE "qmgr"
/*
 * The rejection guard in the scheduler (queue/guard.h has the rules):
 * what a 5xx for a recipient becomes, the suspect state of a destination
 * (logged once when it starts and once when it ends, kept in the spool
 * across restarts by queue/sched_state.c), and the operator's way out: trust a
 * destination again, or return its suspect recipients to their senders.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "queue/guard.h"
#include "queue/sched_int.h"

bool
rcpt_held_as_suspect(const struct env_rcpt *r)
{
	return r->state == RCPT_PENDING && r->dsn_status != NULL &&
	       r->dsn_status[0] == '5';
}

/* Whether the store accepted the recipient within known_recipients_max_age,
 * or the domain's recipients file lists it. */
static bool
sched_rcpt_known(const struct sched *s, const struct smsg *m, size_t idx)
{
	const char *addr = m->env->rcpts[idx].addr;
	const char *at = strrchr(addr, '@');
	int64_t max_age = s->cf->known_recipients_max_age;

	if (m->known != NULL && m->known[idx] > 0 &&
	    (max_age == 0 || m->known[idx] >= sched_now_ms() / 1000 - max_age))
		return true;
	if (at == NULL || !conf_has_recipients(s->cf, at + 1))
		return false;
	char local[256];
	snprintf(local, sizeof(local), "%.*s", (int)(at - addr), addr);
	return conf_recipient_known(s->cf, local, at + 1);
}

enum fail_fate
dest_judge_5xx(struct dest *d, struct smsg *m, size_t idx, int64_t now)
{
	const struct conf_retry *rp = dest_retry(d);

	guard_note(&d->guard, rp, now, true);
	if (rp->soft_bounce)
		return FATE_SOFT;
	if (!guard_suspect(&d->guard, rp, now, sched_rcpt_known(d->s, m, idx)))
		return FATE_BOUNCE;
	d->guard.held++;
	metrics_inc(M_SUSPECT);
	return FATE_SUSPECT;
}

bool
dest_note_2xx(
    struct dest *d, struct smsg *m, size_t idx, bool held, int64_t now)
{
	const struct conf_retry *rp = dest_retry(d);

	guard_note(&d->guard, rp, now, false);
	queue_learn_recipient(
	    d->s->q, m->env->rcpts[idx].addr, (int64_t)(now / 1000));
	return d->guard.suspect && guard_trusts(&d->guard, rp, now,
				       held || sched_rcpt_known(d->s, m, idx));
}

void
dest_suspect_begin(struct dest *d, const char *why)
{
	const struct conf_retry *rp = dest_retry(d);
	int64_t now = sched_now_ms();
	unsigned total, rejected;

	guard_counts(&d->guard, rp, now, &total, &rejected);
	d->guard.suspect = true;
	d->guard.since = now;
	log_info("%s: destination is suspect: it rejects recipients it "
		 "accepted before, or most of them (%u of %u verdicts in the "
		 "last %llds were 5xx): holding its mail, not bouncing it "
		 "(%s)",
	    d->key, rejected, total, (long long)rp->reject_storm_window,
	    why != NULL ? why : "");
	dest_state_save(d);
}

void
dest_suspect_end(struct dest *d, const char *why)
{
	if (!d->guard.suspect)
		return;
	log_info("%s: destination is trusted again after %llds (%s): %u "
		 "suspect 5xx were held",
	    d->key, (long long)((sched_now_ms() - d->guard.since) / 1000), why,
	    d->guard.held);
	d->guard.suspect = false;
	d->guard.held = 0;
	dest_state_save(d);
}

static bool
dest_named(const struct dest *d, const char *name)
{
	return strcasecmp(d->domain, name) == 0 ||
	       strcasecmp(d->key, name) == 0;
}

/* The operator's word: d's 5xx are true. Its held mail is due now, at the
 * recovery width, and its 5xx are believed for one window. */
static void
dest_trust(struct dest *d, const char *why)
{
	dest_suspect_end(d, why);
	guard_trust(&d->guard, dest_retry(d), sched_now_ms());
	retry_dest_init(&d->pol, dest_retry(d), sched_now_ms());
	dest_release(d);
	dest_dispatch(d);
}

int
sched_trust(struct sched *s, const char *name)
{
	size_t pos = 0;
	const char *key;
	void *val;
	int n = 0;

	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;

		if (!dest_named(d, name) || !d->guard.suspect)
			continue;
		dest_trust(d, "trusted by the operator");
		n++;
	}
	return n;
}

/* Returns m's recipients for d that were held as suspect. */
static size_t
sched_bounce_suspect_msg(struct sched *s, struct smsg *m, struct dest *d)
{
	struct envelope *env = m->env;
	struct dsn_rcpt *list = xcalloc(env->nrcpts, sizeof(*list));
	char key[512];
	size_t n = 0;

	for (size_t i = 0; i < env->nrcpts; i++) {
		struct env_rcpt *r = &env->rcpts[i];

		if (!rcpt_held_as_suspect(r) ||
		    (m->notifying != NULL && m->notifying[i]) ||
		    strcmp(
			sched_dest_key(s->cf, env, r->addr, key, sizeof(key)),
			d->key) != 0)
			continue;
		job_drop_rcpt(m, i);
		/* Returned with the store's words, as the DSN will say. */
		queue_record(env, i,
		    &(struct rcpt_result){.outcome = OUTCOME_BOUNCED,
			.says = "returned by the operator (bounce-suspect)"});
		list[n].idx = i;
		list[n].status = r->dsn_status;
		list[n].diagnostic = r->last_error;
		n++;
	}
	if (n > 0) {
		sched_notify(s, m, DSN_FAILED, list, n);
		sched_settle(s, m);
	}
	free(list);
	return n;
}

/* bounce-suspect: the destination's lanes read through, a page at a
 * time, and their suspect recipients returned; then it is trusted. */
struct bs_walk {
	struct sched_call call;
	char key[512]; /* the destination */
	char (*lanes)[LANE_SIZE];
	size_t nlanes, li;
	char after[QID_SIZE];
	long returned;
	void (*cb)(void *arg, long returned);
	void *arg;
};

static void bs_next(struct sched *s, struct bs_walk *w);

static void
bs_on_page(void *arg, struct queue_page *pg)
{
	struct bs_walk *w = arg;
	struct sched *s = sched_call_end(&w->call);
	struct dest *d;

	if (s == NULL) {
		free(w->lanes);
		free(w);
		return;
	}
	d = hmap_get(s->dests, w->key);
	for (size_t i = 0; i < pg->n; i++) {
		struct smsg *m = sched_track(s, pg->envs[i]);
		char qid[QID_SIZE];

		memcpy(qid, m->qid, QID_SIZE);
		if (m->in_flight == 0 && m->doom == DOOM_NONE)
			w->returned += (long)sched_bounce_suspect_msg(s, m, d);
		if ((m = hmap_get(s->msgs, qid)) != NULL)
			smsg_park_if_idle(s, m);
	}
	if (pg->last[0] != '\0')
		memcpy(w->after, pg->last, QID_SIZE);
	if (pg->end || pg->status != QUEUE_OK) {
		w->li++;
		w->after[0] = '\0';
	}
	bs_next(s, w);
}

static void
bs_next(struct sched *s, struct bs_walk *w)
{
	struct queue_scan sc = {
	    .pick = QPICK_ANY, .limit = WINDOW_PAGE, .admit = true};
	struct dest *d = hmap_get(s->dests, w->key);

	if (w->li >= w->nlanes) {
		dest_trust(d, "its suspect recipients were returned by the "
			      "operator");
		w->cb(w->arg, w->returned);
		free(w->lanes);
		free(w);
		return;
	}
	sc.lane = w->lanes[w->li];
	memcpy(sc.after, w->after, QID_SIZE);
	sched_call_begin(s, &w->call);
	queue_scan(s->q, &sc, bs_on_page, w);
}

int
sched_bounce_suspect(struct sched *s, const char *name,
    void (*cb)(void *arg, long returned), void *arg)
{
	char(*qids)[QID_SIZE] = xcalloc(hmap_count(s->msgs) + 1, QID_SIZE);
	size_t n = 0, pos = 0;
	const char *key;
	void *val;
	struct dest *d = NULL;
	struct bs_walk *w;
	struct slane *l;

	while (hmap_next(s->dests, &pos, &key, &val))
		if (dest_named(val, name)) {
			d = val;
			break;
		}
	if (d == NULL) {
		free(qids);
		return -1;
	}
	w = xcalloc(1, sizeof(*w));
	snprintf(w->key, sizeof(w->key), "%s", d->key);
	w->cb = cb;
	w->arg = arg;
	/* The window first (ids first: notices change the map); messages in
	 * flight are left for their attempt to end. */
	pos = 0;
	while (hmap_next(s->msgs, &pos, &key, &val))
		memcpy(qids[n++], key, QID_SIZE);
	for (size_t k = 0; k < n; k++) {
		struct smsg *m = hmap_get(s->msgs, qids[k]);

		if (m != NULL && m->in_flight == 0 && m->doom == DOOM_NONE)
			w->returned += (long)sched_bounce_suspect_msg(s, m, d);
	}
	free(qids);
	TAILQ_FOREACH(l, &d->lanes, link)
	{
		w->lanes = xrealloc(w->lanes, (w->nlanes + 1) * LANE_SIZE);
		memcpy(w->lanes[w->nlanes++], l->name, LANE_SIZE);
	}
	bs_next(s, w);
	return 0;
}
