#define LOG_ROLE "qmgr"
/*
 * Delivery sessions for the scheduler: finding where a destination's mail
 * goes (dns/), opening sessions (relay/client) within its limits, handing
 * them ready jobs whose bodies were read ahead, and acting on the result
 * for each recipient.
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

/* Bodies are read ahead of the sessions that need them. */
struct body_req {
	struct sched_call call;
	struct dest *d;
	char qid[QID_SIZE];
};

static void
sched_on_loaded(void *arg, int status, char *body, size_t len, int64_t *known)
{
	struct body_req *br = arg;
	struct sched *s = sched_call_end(&br->call);
	struct smsg *m = s != NULL ? hmap_get(s->msgs, br->qid) : NULL;

	if (s == NULL) {
		free(body);
		free(known);
		free(br);
		return;
	}
	br->d->loading--;
	if (m != NULL) {
		m->loading = false;
		if (status == QUEUE_OK && m->body == NULL) {
			m->body = body;
			m->len = len;
			body = NULL;
			free(m->known);
			m->known = known; /* as many as env->nrcpts */
			known = NULL;
		} else if (status != QUEUE_OK) {
			/* Unreadable now: try it later, not in a loop. */
			for (size_t k = 0; k < m->njobs; k++)
				if (!m->jobs[k]->in_flight)
					job_defer(m->jobs[k],
					    sched_now_ms() +
						retry_backoff_ms(
						    dest_retry(br->d),
						    m->env->attempts + 1,
						    sched_rand(s)));
			free(body);
			free(known);
			free(br);
			return;
		}
	}
	free(body);
	free(known);
	dest_wake(br->d);
	free(br);
}

/* Wakes the idle sessions of d: there may be work for them now. */
void
dest_wake(struct dest *d)
{
	struct sess *ss;

	TAILQ_FOREACH(ss, &d->sessions, link)
	if (ss->idle) {
		ss->idle = false;
		d->s->ops->wake(ss->cs);
	}
}

static void
sched_load(struct sched *s, struct dest *d, struct smsg *m)
{
	struct body_req *br = xcalloc(1, sizeof(*br));

	sched_call_begin(s, &br->call);
	br->d = d;
	memcpy(br->qid, m->qid, QID_SIZE);
	const char **addrs = xcalloc(m->env->nrcpts, sizeof(*addrs));

	for (size_t i = 0; i < m->env->nrcpts; i++)
		addrs[i] = m->env->rcpts[i].addr;
	m->loading = true;
	d->loading++;
	/* With the body, what the spool knows of its recipients, for the
	 * rejection guard (sched_guard.c). */
	queue_load(s->q, m->qid, addrs, m->env->nrcpts, sched_on_loaded, br);
	free(addrs);
}

/* Session callbacks. */
static struct client_msg *
sched_next(void *arg, struct client_session *cs)
{
	struct sess *ss = arg;
	struct dest *d = ss->d;
	struct job *j;
	int scanned = 0;

	if (d->paused) {
		/* Paused meanwhile: no more mail on it. */
		d->s->ops->quit(cs);
		return NULL;
	}
	if (ss->greeting_probe) {
		/* It greets: that is all a refusing store's probe asks. */
		d->s->ops->quit(cs);
		return NULL;
	}
	if (d->pol.state != DEST_UP && ss->nmsgs > 0) {
		/* A probe that did not succeed carries no more mail. */
		d->s->ops->quit(ss->cs);
		return NULL;
	}
	TAILQ_FOREACH(j, &d->ready, link)
	{
		struct smsg *m = j->m;

		if (m->body != NULL)
			break;
		if (!m->loading && m->body == NULL && d->loading < SCHED_LOADS)
			sched_load(d->s, d, m);
		if (++scanned >= SCHED_SCAN) {
			j = NULL;
			break;
		}
	}
	if (j == NULL) {
		ss->idle = true;
		return NULL;
	}
	job_unready(j);
	j->in_flight = true;
	j->m->in_flight++;
	ss->nmsgs++;
	memset(&j->cm, 0, sizeof(j->cm));
	j->cm.qid = j->m->qid;
	j->cm.sender = j->m->env->sender;
	j->cm.body = j->m->env->body;
	j->cm.smtputf8 = (j->m->env->flags & ENV_SMTPUTF8) != 0;
	j->cm.ret = j->m->env->ret;
	j->cm.envid = j->m->env->envid;
	j->cm.rcpts = xcalloc(j->nridx, sizeof(*j->cm.rcpts));
	j->cm.nrcpts = j->nridx;
	for (size_t i = 0; i < j->nridx; i++) {
		const struct env_rcpt *r = &j->m->env->rcpts[j->ridx[i]];

		j->cm.rcpts[i].addr = r->addr;
		j->cm.rcpts[i].orcpt = r->orcpt;
		j->cm.rcpts[i].notify = r->notify;
	}
	j->cm.data = j->m->body;
	j->cm.len = j->m->len;
	j->cm.owner = j;
	return &j->cm;
}

/*
 * The session's connection was found closed before the message's MAIL
 * was answered: it was not tried. Back to the ready queue, no attempt
 * counted, for the next session (the destination opens a new one).
 */
static void
sched_untried(struct sched *s, struct job *j)
{
	struct smsg *m = j->m;
	struct dest *d = j->d;

	for (size_t k = 0; k < j->cm.nrcpts; k++)
		free(j->cm.rcpts[k].text);
	free(j->cm.rcpts);
	j->cm.rcpts = NULL;
	j->in_flight = false;
	m->in_flight--;
	if (m->env->flags & ENV_HELD)
		job_free(j); /* held meanwhile: release plans it again */
	else
		job_ready(j);
	if (m->doom != DOOM_NONE)
		sched_apply_doom(s, m);
	else if (m->njobs == 0)
		sched_settle(s, m);
	dest_dispatch(d);
}

/*
 * A message's transaction is over. Each recipient's reply gets a verdict
 * (queue/verdict.c); together they say whether the destination answered
 * (an outage is over), is slowing down, or is failing: a protocol error,
 * or a temporary failure that no recipient escaped, is the store's own
 * trouble and puts the destination into probing, like a refused
 * connection (DESIGN.md, contract 2).
 */
static void
sched_done(void *arg, struct client_session *cs, struct client_msg *cm)
{
	struct sess *ss = arg;
	struct job *j = cm->owner;
	struct smsg *m = j->m;
	struct dest *d = j->d;
	struct sched *s = d->s;
	struct envelope *env = m->env;
	const char *relay = s->ops->relay(cs);
	struct dsn_rcpt *failed, *sent;
	enum verdict *v;
	bool *retried;
	struct verdict_sum sum;
	size_t nfailed = 0, nsent = 0, keep = 0;
	bool temp = false, suspect = false, trusted = false;
	const char *why = NULL;
	int64_t now = sched_now_ms();

	if (cm->untried) {
		sched_untried(s, j);
		return;
	}
	failed = xcalloc(cm->nrcpts, sizeof(*failed));
	sent = xcalloc(cm->nrcpts, sizeof(*sent));
	v = xcalloc(cm->nrcpts, sizeof(*v));
	retried = xcalloc(cm->nrcpts, sizeof(*retried));
	/*
	 * The 2xx first: one for a recipient the store had accepted or
	 * rejected before ends a suspect state, and the 5xx beside it in
	 * the same transaction are then judged as from a trusted store.
	 */
	for (size_t k = 0; k < cm->nrcpts; k++) {
		struct client_rcpt *cr = &cm->rcpts[k];
		size_t idx = j->ridx[k];

		v[k] = verdict_of(
		    cr->stage, cr->code, cr->dsn[0] ? cr->dsn : NULL);
		if (v[k] == VERDICT_SENT &&
		    dest_note_2xx(
			d, m, idx, rcpt_held_as_suspect(&env->rcpts[idx]), now))
			trusted = true;
	}
	if (trusted)
		dest_suspect_end(
		    d, "a recipient it had rejected or known was accepted");
	for (size_t k = 0; k < cm->nrcpts; k++) {
		struct client_rcpt *cr = &cm->rcpts[k];
		size_t idx = j->ridx[k];
		struct env_rcpt *r = &env->rcpts[idx];
		char dsn[16];
		struct rcpt_result res = {
		    .outcome = OUTCOME_DEFERRED,
		    .relay = relay,
		    .dsn = dsn,
		    .reply = cr->text ? cr->text : "no reply",
		    .role = dest_role(d),
		    .dest = d->key,
		};

		retried[k] = r->last_error != NULL;
		snprintf(
		    dsn, sizeof(dsn), "%s", cr->dsn[0] ? cr->dsn : "4.0.0");
		switch (v[k]) {
		case VERDICT_SENT:
			res.outcome = OUTCOME_SENT;
			break;
		case VERDICT_FAIL:
			switch (dest_judge_5xx(d, m, idx, now)) {
			case FATE_BOUNCE:
				res.outcome = OUTCOME_BOUNCED;
				break;
			case FATE_SUSPECT:
				/* Held with the store's words (5.x.x kept):
				 * bounce-suspect can still return it. */
				suspect = true;
				v[k] = VERDICT_DEFER;
				res.note = "suspect 5xx, held: ";
				break;
			case FATE_SOFT:
				dsn[0] = '4';
				v[k] = VERDICT_DEFER;
				res.note = "soft_bounce: ";
				break;
			}
			break;
		case VERDICT_STORE:
			/* Whatever its code, the recipient only waits. */
			snprintf(dsn, sizeof(dsn), "4.3.0");
			break;
		case VERDICT_DEFER:
		case VERDICT_TRANSIENT:
			break;
		}
		queue_record(env, idx, &res);
		switch (res.outcome) {
		case OUTCOME_SENT:
			sent[nsent].idx = idx;
			sent[nsent].status = r->dsn_status;
			sent[nsent].remote_mta = relay;
			sent[nsent].diagnostic = res.reply;
			nsent++;
			break;
		case OUTCOME_BOUNCED:
		case OUTCOME_EXPIRED:
			failed[nfailed].idx = idx;
			failed[nfailed].status = r->dsn_status;
			failed[nfailed].remote_mta = relay;
			failed[nfailed].diagnostic = r->last_error;
			nfailed++;
			break;
		case OUTCOME_DEFERRED:
			temp = true;
			if (why == NULL)
				why = r->last_error;
			j->ridx[keep++] = idx;
			break;
		}
	}
	sum = verdict_sum(v, retried, cm->nrcpts,
	    now - d->last_healthy >= dest_retry(d)->probe_interval * 1000);
	free(v);
	free(retried);
	if (sum.healthy)
		d->last_healthy = now;
	j->nridx = keep;
	j->in_flight = false;
	m->in_flight--;
	env->attempts++;
	env->last_attempt = now / 1000;
	free(env->last_error);
	env->last_error = why ? xstrdup(why) : NULL;

	if (suspect) {
		/* A store that rejects users it had is down: probe it. */
		if (!d->guard.suspect)
			dest_suspect_begin(d, why);
		if (d->pol.state != DEST_BACKOFF)
			dest_failed(d, why);
	} else if (sum.failing ||
		   (d->pol.state == DEST_PROBING && !sum.healthy)) {
		/* Other sessions may have failed the destination already. */
		if (d->pol.state != DEST_BACKOFF)
			dest_failed(d, why);
	} else {
		if (sum.healthy && !d->guard.suspect &&
		    retry_dest_succeeded(&d->pol, dest_retry(d), now))
			dest_release(d);
		if (sum.trouble) {
			retry_dest_trouble(&d->pol, now);
			dest_set_error(d, why);
		}
	}
	if (nfailed > 0)
		sched_notify(s, m, DSN_FAILED, failed, nfailed);
	/* RFC 3461 5.2: a next hop that took NOTIFY now owns the success
	 * notice; without it we give one, "delivered" for a final delivery
	 * (LMTP) and "relayed" for a hop that does not speak DSN. */
	if (nsent > 0 && !cm->dsn_passed)
		sched_notify(s, m,
		    ss->target.lmtp ? DSN_DELIVERED : DSN_RELAYED, sent, nsent);
	for (size_t k = 0; k < cm->nrcpts; k++)
		free(cm->rcpts[k].text);
	free(cm->rcpts);
	free(failed);
	free(sent);

	if (j->nridx == 0 || (env->flags & ENV_HELD))
		job_free(j); /* held meanwhile: release plans it again */
	else {
		int64_t due = now + retry_backoff_ms(dest_retry(d),
					env->attempts, sched_rand(s));
		env->next_attempt = due / 1000;
		job_defer(j, due);
	}
	if (m->in_flight == 0 && !m->loading && m->dsn_pending == 0) {
		free(m->body);
		m->body = NULL;
	}
	metrics_attempt(temp ? "deferred" : nfailed > 0 ? "failed" : "sent");
	if (m->doom != DOOM_NONE)
		sched_apply_doom(s, m);
	else
		sched_settle(s, m);
	dest_dispatch(d);
}

/*
 * A session that never reached the point of sending mail: the oldest
 * message waiting for the destination counts as attempted (logged, its
 * reason stored), as the probe's message; the others wait untouched.
 */
static void
sched_note_failure(struct dest *d, const char *dsn, const char *why)
{
	struct job *j = TAILQ_FIRST(&d->ready);
	struct envelope *env;

	if (j == NULL)
		return;
	env = j->m->env;
	for (size_t i = 0; i < j->nridx; i++) {
		/* A probe's failure is dest_failed's line. */
		struct rcpt_result res = {.outcome = OUTCOME_DEFERRED,
		    .dsn = dsn[0] ? dsn : "4.4.1",
		    .reply = why,
		    .role = dest_role(d),
		    .dest = d->key,
		    .quiet = d->pol.state == DEST_PROBING};

		queue_record(env, j->ridx[i], &res);
	}
	env->attempts++;
	env->last_attempt = sched_now_ms() / 1000;
	free(env->last_error);
	env->last_error = xstrdup(why);
	metrics_attempt("error");
	queue_update(d->s->q, j->m->qid);
}

static void
sched_closed(void *arg, struct client_session *cs, const struct client_end *end)
{
	struct sess *ss = arg;
	struct dest *d = ss->d;
	struct sched *s = d->s;

	TAILQ_REMOVE(&d->sessions, ss, link);
	d->nsessions--;
	s->nsessions--;
	/*
	 * A session that carried no mail and did not end in a normal QUIT
	 * (no connection, greeting or EHLO refused, TLS required but not to
	 * be had) is a failure of the destination: back off, rather than
	 * reconnect at once in a loop.
	 */
	const char *why = end->text[0] ? end->text : "session ended early";

	if (d->paused) {
		/* Paused meanwhile: whatever became of it tells nothing; it
		 * is tried afresh on resume. */
	} else if (ss->greeting_probe) {
		if (end->connected) {
			if (retry_dest_succeeded(
				&d->pol, dest_retry(d), sched_now_ms()))
				dest_release(d);
		} else if (end->refused)
			dest_refused(d, why);
		else
			dest_failed(d, why);
	} else if (d->pol.state != DEST_BACKOFF &&
		   (!end->connected || d->pol.state == DEST_PROBING ||
		       (ss->nmsgs == 0 && end->dsn[0] != '2'))) {
		if (ss->nmsgs == 0)
			sched_note_failure(d, end->dsn, why);
		/* A suspect destination is probed with mail: on its
		 * backoff, even while it refuses connections. */
		if (!end->connected && end->refused && !d->guard.suspect)
			dest_refused(d, why);
		else
			dest_failed(d, why);
	}
	s->ops->close(cs);
	dns_answer_free(ss->ans);
	free(ss);
	dest_dispatch(d);
}

static const struct client_cbs sched_cbs = {
    .next = sched_next,
    .done = sched_done,
    .closed = sched_closed,
};

static void
sess_start(struct dest *d, const struct dns_answer *ans)
{
	struct sched *s = d->s;
	const struct conf *cf = s->cf;
	struct sess *ss = xcalloc(1, sizeof(*ss));

	ss->d = d;
	ss->ans = dns_answer_dup(ans);
	ss->target.ans = ss->ans;
	ss->target.lmtp =
	    ans->kind == ROUTE_LMTP || ans->kind == ROUTE_LMTP_UNIX;
	ss->target.tls = conf_tls_for(cf, d->domain);
	ss->target.tls_ca_file = cf->tls_ca_file;
	ss->target.helo_name = cf->hostname;
	ss->target.max_msgs = dest_retry(d)->max_msgs_per_connection;
	ss->target.connect_timeout = cf->connect_timeout;
	ss->target.command_timeout = cf->client_command_timeout;
	ss->target.data_timeout = cf->client_data_timeout;
	ss->target.final_timeout = cf->client_final_timeout;
	ss->target.idle_timeout = SCHED_IDLE;
	/*
	 * A destination that refused connections is probed every second
	 * with a connection and a greeting only, quietly; one that is
	 * suspect is probed with held mail, as the greeting proves nothing.
	 */
	ss->greeting_probe =
	    d->pol.state == DEST_PROBING && d->pol.refused && !d->guard.suspect;
	/* A probe's outcome is one line of the scheduler's (dest_failed). */
	ss->target.quiet = d->pol.state == DEST_PROBING;
	TAILQ_INSERT_TAIL(&d->sessions, ss, link);
	d->nsessions++;
	s->nsessions++;
	/* Its slow start widens a step each probe_interval. */
	if (d->pol.state == DEST_UP)
		sched_wake_at(s,
		    d->pol.last_change + dest_retry(d)->probe_interval * 1000);
	ss->cs = s->ops->open(s->base, &ss->target, &sched_cbs, ss);
}

/* DNS said the destination does not exist: its recipients fail. */
static void
dest_permfail(struct dest *d, const struct dns_answer *ans)
{
	struct sched *s = d->s;
	struct job *j, *next;

	for (j = TAILQ_FIRST(&d->ready); j != NULL; j = next) {
		struct smsg *m = j->m;
		struct dsn_rcpt *list = xcalloc(j->nridx, sizeof(*list));
		size_t n = j->nridx;

		next = TAILQ_NEXT(j, link);
		for (size_t i = 0; i < n; i++) {
			struct rcpt_result res = {.outcome = OUTCOME_BOUNCED,
			    .dsn = ans->dsn,
			    .reply = ans->reason,
			    .role = dest_role(d),
			    .dest = d->key};

			queue_record(m->env, j->ridx[i], &res);
			list[i].idx = j->ridx[i];
			list[i].status = ans->dsn;
			list[i].diagnostic = ans->reason;
		}
		job_free(j);
		sched_notify(s, m, DSN_FAILED, list, n);
		free(list);
		sched_settle(s, m);
	}
}

static void
dest_on_dns(void *arg, const struct dns_answer *ans)
{
	struct dest *d = arg;

	d->dns_id = 0;
	if (d->paused)
		return; /* paused meanwhile: asked again on resume */
	switch (ans->status) {
	case DNS_OK:
		break;
	case DNS_TEMPFAIL:
		if (ans->loop)
			log_warn("%s: %s", d->key, ans->reason);
		sched_note_failure(d, ans->dsn, ans->reason);
		dest_failed(d, ans->reason);
		return;
	case DNS_PERMFAIL:
		dest_permfail(d, ans);
		return;
	}
	/* One session now; more follow as the first ones prove the way. */
	sess_start(d, ans);
	dest_dispatch(d);
}

void
sched_set_drain_only(struct sched *s)
{
	s->drain_only = true;
}

void
dest_dispatch(struct dest *d)
{
	struct sched *s = d->s;
	unsigned slots = retry_dest_slots(&d->pol);
	size_t want = d->nready;
	struct sess *ss;

	if (d->paused || s->drain_only)
		return;
	dest_refill(d);
	/*
	 * Ready jobs go first to idle sessions, then to sessions still
	 * connecting (they will ask soon); only what is left opens new
	 * connections, up to the destination's and the global limits.
	 */
	TAILQ_FOREACH(ss, &d->sessions, link)
	{
		if (want == 0)
			break;
		if (ss->idle) {
			ss->idle = false;
			s->ops->wake(ss->cs);
			want--;
		} else if (ss->nmsgs == 0)
			want--;
	}
	if (want == 0 || d->dns_id != 0 || d->nsessions >= slots ||
	    s->nsessions >= s->cf->max_outbound_connections)
		return;
	if (!TAILQ_EMPTY(&d->sessions)) {
		/* Reuse the answer a running session got. */
		sess_start(d, TAILQ_FIRST(&d->sessions)->ans);
		dest_dispatch(d);
		return;
	}
	d->dns_id = dns_route_via(s->dns, d->domain, &d->route, dest_on_dns, d);
}
