#define LOG_ROLE "bounce"
/*
 * Telling senders: delivery status notifications queued from the null
 * sender before a failed recipient is settled, delay notices after
 * warn_after, and returns after max_age.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "queue/sched_int.h"

/* Notifications. */
struct dsn_req {
	struct sched_call call;
	char qid[QID_SIZE];
	enum dsn_action action;
	struct dsn_rcpt *rcpts; /* status etc. copied */
	size_t nrcpts;
};

static void
dsn_req_free(struct dsn_req *r)
{
	for (size_t i = 0; i < r->nrcpts; i++) {
		free((char *)(uintptr_t)r->rcpts[i].status);
		free((char *)(uintptr_t)r->rcpts[i].remote_mta);
		free((char *)(uintptr_t)r->rcpts[i].diagnostic);
	}
	free(r->rcpts);
	free(r);
}

/*
 * What the original's record says once its notice is queued: the failed
 * recipients settled, or the delay notice sent. on: set it (before the
 * notice is queued, which writes it in the same batch), or take it back.
 */
static void
sched_mark_notified(struct smsg *m, const struct dsn_req *r, bool on)
{
	if (r->action == DSN_DELAYED) {
		if (on)
			m->env->flags |= ENV_DELAY_SENT;
		else
			m->env->flags &= ~(uint32_t)ENV_DELAY_SENT;
	} else if (r->action == DSN_FAILED)
		for (size_t i = 0; i < r->nrcpts; i++)
			m->env->rcpts[r->rcpts[i].idx].state =
			    on ? RCPT_FAILED : RCPT_PENDING;
}

static void
sched_on_dsn_queued(void *arg, int status, const char *dsnqid)
{
	struct dsn_req *r = arg;
	struct sched *s = sched_call_end(&r->call);
	struct smsg *m = s != NULL ? hmap_get(s->msgs, r->qid) : NULL;

	if (m == NULL) {
		dsn_req_free(r);
		return;
	}
	m->dsn_pending--;
	if (r->action == DSN_FAILED)
		for (size_t i = 0; i < r->nrcpts; i++)
			m->notifying[r->rcpts[i].idx] = false;
	if (status == QUEUE_OK) {
		/* Postfix's words, which operators grep for. */
		log_event(r->qid, "sender %s notification: %s",
		    r->action == DSN_FAILED    ? "non-delivery"
		    : r->action == DSN_DELAYED ? "delay"
					       : "delivery status",
		    dsnqid);
	} else {
		/* Neither the notice nor the mark was written: the mark is
		 * taken back (sched_settle stores that), and the recipients
		 * stay pending and are tried again, so the sender still hears
		 * of them later. */
		log_warn("%s: cannot queue a notification: %s", r->qid,
		    queue_status_str(status));
		sched_mark_notified(m, r, false);
		if (r->action == DSN_FAILED)
			sched_plan(s, m, sched_now_ms() + 60000);
	}
	dsn_req_free(r);
	sched_settle(s, m);
}

static void
sched_send_dsn(struct sched *s, struct smsg *m, struct dsn_req *r)
{
	struct envelope *env = m->env, *n;
	struct dsn_info info = {
	    .reporting_mta = s->cf->hostname,
	    .env = env,
	    .body = m->body,
	    .len = m->len,
	    .action = r->action,
	    .rcpts = r->rcpts,
	    .nrcpts = r->nrcpts,
	    .now = sched_now_ms() / 1000,
	};
	size_t len;
	char *text;

	if (r->action == DSN_DELAYED) {
		const struct conf_retry *rp = conf_retry_for(
		    s->cf, sched_rcpt_domain(env->rcpts[0].addr));
		if (rp->max_age > 0)
			info.will_retry_until =
			    env->arrival / 1000000 + rp->max_age;
	}
	text = dsn_build(&info, &len);
	n = envelope_new();
	queue_new_qid(s->q, 0, n->qid);
	n->arrival = (int64_t)sched_now_ms() * 1000;
	n->client_addr = xstrdup("127.0.0.1");
	n->helo = xstrdup(s->cf->hostname);
	n->sender = xstrdup("");
	n->body = dsn_body_type(text, len);
	n->flags = ENV_DSN | (dsn_needs_smtputf8(env) ? ENV_SMTPUTF8 : 0);
	envelope_add_rcpt(n, env->sender, NULL, NOTIFY_NEVER);
	m->dsn_pending++;
	sched_mark_notified(m, r, true);
	sched_call_begin(s, &r->call);
	queue_submit_notice(s->q, n, text, len, m->qid, sched_on_dsn_queued, r);
}

static void
sched_on_dsn_body(void *arg, int status, char *body, size_t len)
{
	struct dsn_req *r = arg;
	struct sched *s = sched_call_end(&r->call);
	struct smsg *m = s != NULL ? hmap_get(s->msgs, r->qid) : NULL;

	if (m == NULL) {
		free(body);
		dsn_req_free(r);
		return;
	}
	m->dsn_pending--;
	if (status != QUEUE_OK) {
		/* Without the original, say what is known. */
		body = NULL;
		len = 0;
	}
	if (m->body == NULL && body != NULL) {
		m->body = body;
		m->len = len;
		body = NULL;
	}
	sched_send_dsn(s, m, r);
	if (m->in_flight == 0 && !m->loading) {
		free(m->body);
		m->body = NULL;
	}
	free(body);
}

/*
 * Tells the sender about recipients (indices in `list` with their status,
 * remote MTA and reply). Recipients whose NOTIFY says not to are settled at
 * once; the others once the notification is durably queued.
 */
void
sched_notify(struct sched *s, struct smsg *m, enum dsn_action action,
    const struct dsn_rcpt *list, size_t n)
{
	struct dsn_req *r = xcalloc(1, sizeof(*r));

	memcpy(r->qid, m->qid, QID_SIZE);
	r->action = action;
	r->rcpts = xcalloc(n ? n : 1, sizeof(*r->rcpts));
	for (size_t i = 0; i < n; i++) {
		const struct env_rcpt *rc = &m->env->rcpts[list[i].idx];

		if (!dsn_wanted(m->env, rc, action)) {
			if (action == DSN_FAILED)
				m->env->rcpts[list[i].idx].state = RCPT_FAILED;
			continue;
		}
		if (action == DSN_FAILED) {
			if (m->notifying == NULL)
				m->notifying = xcalloc(
				    m->env->nrcpts, sizeof(*m->notifying));
			m->notifying[list[i].idx] = true;
		}
		r->rcpts[r->nrcpts].idx = list[i].idx;
		r->rcpts[r->nrcpts].status =
		    xstrdup(list[i].status ? list[i].status : "5.0.0");
		r->rcpts[r->nrcpts].remote_mta =
		    list[i].remote_mta ? xstrdup(list[i].remote_mta) : NULL;
		r->rcpts[r->nrcpts].diagnostic =
		    list[i].diagnostic ? xstrdup(list[i].diagnostic) : NULL;
		r->nrcpts++;
	}
	if (r->nrcpts == 0) {
		dsn_req_free(r);
		if (action == DSN_DELAYED)
			m->env->flags |= ENV_DELAY_SENT;
		return;
	}
	if (m->body != NULL) {
		sched_send_dsn(s, m, r);
		return;
	}
	m->dsn_pending++;
	sched_call_begin(s, &r->call);
	queue_read_body(s->q, m->qid, sched_on_dsn_body, r);
}

/*
 * When recipient r of a message born at `born` (ms) passes warn_after
 * (*warn) and max_age (*expire), in ms; INT64_MAX for never.
 */
static void
age_limits(const struct sched *s, const struct envelope *env,
    const struct env_rcpt *r, int64_t *warn, int64_t *expire)
{
	const struct conf_retry *rp =
	    conf_retry_for(s->cf, sched_rcpt_domain(r->addr));
	int64_t born = env->arrival / 1000;

	*expire = rp->max_age > 0 ? born + rp->max_age * 1000 : INT64_MAX;
	*warn = rp->warn_after > 0 && !(env->flags & ENV_DELAY_SENT)
		    ? born + rp->warn_after * 1000
		    : INT64_MAX;
}

int64_t
sched_age_next(const struct sched *s, const struct envelope *env)
{
	int64_t next = INT64_MAX, warn, expire;

	for (size_t i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != RCPT_PENDING)
			continue;
		age_limits(s, env, &env->rcpts[i], &warn, &expire);
		if (warn < next)
			next = warn;
		if (expire < next)
			next = expire;
	}
	return next;
}

static void
age_entry(struct dsn_rcpt *list, size_t *n, size_t idx,
    const struct env_rcpt *r, bool delayed)
{
	list[*n].idx = idx;
	list[*n].status = r->dsn_status ? r->dsn_status : "4.4.7";
	/* A recipient the rejection guard holds kept the store's 5.x.x;
	 * while it waits, its status is temporary (RFC 3464 2.3.4). */
	if (delayed && rcpt_held_as_suspect(r))
		list[*n].status = "4.0.0";
	list[*n].diagnostic = r->last_error;
	(*n)++;
}

/* Returns m's expired recipients and sends its notices. */
static void
sched_age_msg(struct sched *s, struct smsg *m, int64_t now)
{
	struct envelope *env = m->env;
	struct dsn_rcpt *expired = xcalloc(env->nrcpts, sizeof(*expired));
	struct dsn_rcpt *late = xcalloc(env->nrcpts, sizeof(*late));
	size_t nexp = 0, nlate = 0;
	int64_t warn, expire;

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];

		if (r->state != RCPT_PENDING ||
		    (m->notifying != NULL && m->notifying[i]))
			continue;
		age_limits(s, env, r, &warn, &expire);
		if (now >= expire)
			age_entry(expired, &nexp, i, r, false);
		else if (now >= warn)
			age_entry(late, &nlate, i, r, true);
	}
	for (size_t i = 0; i < nexp; i++) {
		/* Its status as it is (the DSN's entry points to it), or
		 * 4.4.7 if it had none. */
		queue_record(env, expired[i].idx,
		    &(struct rcpt_result){.outcome = OUTCOME_EXPIRED,
			.dsn = env->rcpts[expired[i].idx].dsn_status == NULL
				   ? expired[i].status
				   : NULL,
			.says = "returned to sender: max_age reached"});
		job_drop_rcpt(m, expired[i].idx);
	}
	if (nexp > 0)
		sched_notify(s, m, DSN_FAILED, expired, nexp);
	else if (nlate > 0)
		sched_notify(s, m, DSN_DELAYED, late, nlate);
	if (nexp > 0 || nlate > 0)
		sched_settle(s, m);
	free(expired);
	free(late);
}

/* Reading a lane for max_age and warn_after: expired mail from its
 * start, late mail from where the last sweep stopped. */
struct age_req {
	struct sched_call call;
	char lane[LANE_SIZE];
	bool expire; /* the expire pass; else the warn pass */
	int64_t now; /* ms */
};

static void lane_age(
    struct sched *s, struct slane *l, bool expire, int64_t now);

static void
sched_on_aged(void *arg, struct queue_page *pg)
{
	struct age_req *r = arg;
	struct sched *s = sched_call_end(&r->call);
	struct slane *l;

	if (s == NULL) {
		free(r);
		return;
	}
	l = hmap_get(s->lanes, r->lane);
	for (size_t i = 0; i < pg->n; i++) {
		struct smsg *m = sched_track(s, pg->envs[i]);
		char qid[QID_SIZE];

		memcpy(qid, m->qid, QID_SIZE);
		if (m->in_flight == 0 && m->dsn_pending == 0)
			sched_age_msg(s, m, r->now);
		if ((m = hmap_get(s->msgs, qid)) != NULL)
			smsg_park_if_idle(s, m);
	}
	if (!r->expire && pg->last[0] != '\0')
		memcpy(l->aged, pg->last, QID_SIZE);
	if (pg->status == QUEUE_OK && !pg->end)
		lane_age(s, l, r->expire, r->now); /* the next slice */
	else if (r->expire)
		lane_age(s, l, false, r->now);
	else
		l->aging = false;
	free(r);
}

static void
lane_age(struct sched *s, struct slane *l, bool expire, int64_t now)
{
	bool notices;
	const struct conf_retry *rp =
	    conf_retry_for(s->cf, qindex_lane_domain(l->name, &notices));
	struct queue_scan sc = {
	    .lane = l->name,
	    .pick = QPICK_AGED,
	    .limit = WINDOW_PAGE,
	    .admit = true,
	};
	struct age_req *r = xcalloc(1, sizeof(*r));

	if (expire && rp->max_age > 0)
		sc.expire_before = (now - rp->max_age * 1000) * 1000;
	if (!expire && rp->warn_after > 0) {
		sc.warn_before = (now - rp->warn_after * 1000) * 1000;
		memcpy(sc.after, l->aged, QID_SIZE);
	}
	l->aging = true;
	memcpy(r->lane, l->name, LANE_SIZE);
	r->expire = expire;
	r->now = now;
	sched_call_begin(s, &r->call);
	queue_scan(s->q, &sc, sched_on_aged, r);
}

void
sched_sweep(struct sched *s, int64_t now)
{
	char(*qids)[QID_SIZE] = xcalloc(hmap_count(s->msgs) + 1, QID_SIZE);
	size_t n = 0, pos = 0;
	int64_t next = now + SCHED_SWEEP_MS;
	const char *key;
	void *val;

	/* Ids first: notices may change the map. */
	while (hmap_next(s->msgs, &pos, &key, &val))
		memcpy(qids[n++], key, QID_SIZE);
	for (size_t k = 0; k < n; k++) {
		struct smsg *m = hmap_get(s->msgs, qids[k]);
		int64_t t;

		if (m == NULL || (m->env->flags & ENV_HELD))
			continue;
		/* Not while a notice about it is being queued: no twins. */
		if (m->in_flight == 0 && m->dsn_pending == 0)
			sched_age_msg(s, m, now);
		m = hmap_get(s->msgs, qids[k]);
		if (m != NULL && (t = sched_age_next(s, m->env)) < next)
			next = t > now ? t : now + 1000;
	}
	free(qids);
	/* And the mail in the spool, lane by lane, in slices. */
	pos = 0;
	while (s->ready && hmap_next(s->lanes, &pos, &key, &val)) {
		struct slane *l = val;
		struct lane_count c;
		int64_t oldest;

		bool notices;
		const struct conf_retry *rp = conf_retry_for(
		    s->cf, qindex_lane_domain(l->name, &notices));
		int64_t t;

		queue_lane_count(s->q, l->name, &c, &oldest);
		if (c.messages == c.held)
			continue;
		if (!l->aging)
			lane_age(s, l, true, now);
		/* The lane's oldest reaches a limit: a sweep then. */
		oldest /= 1000;
		if (rp->max_age > 0 &&
		    (t = oldest + rp->max_age * 1000) > now && t < next)
			next = t;
		if (rp->warn_after > 0 &&
		    (t = oldest + rp->warn_after * 1000) > now && t < next)
			next = t;
	}
	s->next_sweep = next;
}
