/*
 * The delivery scheduler (see sched.h).
 *
 * A message becomes one job per destination its pending recipients go to.
 * A job is ready (on its destination's ready list), deferred (in the heap
 * until its due time, after a 4xx for it while the destination is up), or
 * in flight on a session. Sessions pull ready jobs; a job's body is read
 * from the spool before a session may take it, a few at a time per
 * destination, and freed once no job of the message is in flight.
 *
 * Results: 2xx marks a recipient delivered; 5xx, a permanent DNS answer or
 * max_age fails it once a DSN to the sender is durably queued (never for
 * the null sender); anything else defers it. A message whose recipients
 * are all done leaves the spool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/xmem.h"
#include "dns/dns.h"
#include "queue/dsn.h"
#include "queue/queue.h"
#include "queue/retry.h"
#include "queue/sched.h"
#include "relay/client.h"

#define SCHED_LOADS 8		/* bodies read at once per destination */
#define SCHED_SCAN 64		/* ready jobs a session looks through */
#define SCHED_IDLE 5		/* seconds an idle connection waits */
#define SCHED_TICK_MS 1000	/* the longest the timer sleeps */
#define SCHED_SWEEP_MS 60000	/* max_age / warn_after checks, at most */
#define NO_POS ((size_t)-1)

struct dest;
struct smsg;

struct job {
	struct smsg *m;
	struct dest *d;
	size_t *ridx; /* indices of env->rcpts this job delivers */
	size_t nridx;
	int64_t due;  /* unix ms */
	size_t hpos;  /* place in the deferred heap, or NO_POS */
	bool ready;   /* on d->ready */
	bool in_flight;
	TAILQ_ENTRY(job) link;
	struct client_msg cm; /* while in flight */
};
TAILQ_HEAD(job_list, job);

struct smsg {
	char qid[QID_SIZE];
	struct envelope *env; /* the queue's; valid while the message is */
	struct job **jobs;
	size_t njobs, capjobs;
	char *body;
	size_t len;
	bool loading;
	struct dest *load_dest;
	unsigned in_flight;
	unsigned dsn_pending; /* notifications being queued */
};

struct sess {
	TAILQ_ENTRY(sess) link;
	struct dest *d;
	struct client_session *cs;
	struct dns_answer *ans;
	struct client_target target;
	bool idle;
	unsigned nmsgs;
};

struct dest {
	struct sched *s;
	char *key;    /* the route text, or the domain */
	char *domain; /* a domain routed here, for dns/ */
	bool bounce;  /* along cf->bounce_route */
	struct dest_policy pol;
	struct job_list ready;
	size_t nready, njobs;
	TAILQ_HEAD(, sess) sessions;
	unsigned nsessions;
	uint64_t dns_id;
	unsigned loading;
	char *last_error;
};

struct sched {
	struct event_base *base;
	const struct conf *cf;
	struct queue *q;
	struct dns *dns;
	struct hmap *dests; /* key -> struct dest */
	struct hmap *msgs;  /* qid -> struct smsg */
	struct job **heap;  /* deferred jobs, earliest first */
	size_t nheap, capheap;
	unsigned nsessions;
	struct event *timer;
	int64_t next_sweep;
	uint64_t rng;
};

static void dest_dispatch(struct dest *d);
static void dest_wake(struct dest *d);
static void sched_note_failure(struct dest *d, const char *dsn,
    const char *why);
static void sched_settle(struct sched *s, struct smsg *m);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
sched_rand(struct sched *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return (double)(s->rng >> 11) / (double)(1ULL << 53);
}

static const char *
rcpt_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : addr;
}

/* The deferred heap, ordered by due time. */
static void
heap_swap(struct sched *s, size_t a, size_t b)
{
	struct job *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->hpos = a;
	s->heap[b]->hpos = b;
}

static void
heap_up(struct sched *s, size_t i)
{
	while (i > 0 && s->heap[(i - 1) / 2]->due > s->heap[i]->due) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
heap_down(struct sched *s, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->nheap && s->heap[l]->due < s->heap[m]->due)
			m = l;
		if (r < s->nheap && s->heap[r]->due < s->heap[m]->due)
			m = r;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

static void
heap_remove(struct sched *s, struct job *j)
{
	size_t i = j->hpos;

	if (i == NO_POS)
		return;
	j->hpos = NO_POS;
	if (i != --s->nheap) {
		s->heap[i] = s->heap[s->nheap];
		s->heap[i]->hpos = i;
		heap_down(s, i);
		heap_up(s, i);
	}
}

static void
job_unready(struct job *j)
{
	if (j->ready) {
		TAILQ_REMOVE(&j->d->ready, j, link);
		j->d->nready--;
		j->ready = false;
	}
}

static void
job_ready(struct job *j)
{
	heap_remove(j->d->s, j);
	if (!j->ready && !j->in_flight) {
		TAILQ_INSERT_TAIL(&j->d->ready, j, link);
		j->d->nready++;
		j->ready = true;
	}
}

static void
job_defer(struct job *j, int64_t due)
{
	struct sched *s = j->d->s;

	job_unready(j);
	heap_remove(s, j);
	j->due = due;
	s->heap = xgrow(s->heap, &s->capheap, s->nheap + 1, sizeof(*s->heap));
	j->hpos = s->nheap;
	s->heap[s->nheap++] = j;
	heap_up(s, j->hpos);
}

static void
job_free(struct job *j)
{
	struct smsg *m = j->m;

	job_unready(j);
	heap_remove(j->d->s, j);
	j->d->njobs--;
	for (size_t i = 0; i < m->njobs; i++)
		if (m->jobs[i] == j) {
			m->jobs[i] = m->jobs[--m->njobs];
			break;
		}
	free(j->ridx);
	free(j);
}

/* Drops recipient idx from whichever job holds it (not in flight). */
static void
job_drop_rcpt(struct smsg *m, size_t idx)
{
	for (size_t k = 0; k < m->njobs; k++) {
		struct job *j = m->jobs[k];

		for (size_t i = 0; i < j->nridx; i++)
			if (j->ridx[i] == idx) {
				j->ridx[i] = j->ridx[--j->nridx];
				if (j->nridx == 0 && !j->in_flight)
					job_free(j);
				return;
			}
	}
}

static struct dest *
dest_get(struct sched *s, const struct envelope *env, const char *rcpt)
{
	const char *domain = rcpt_domain(rcpt);
	bool bounce = (env->flags & ENV_DSN) &&
	    s->cf->bounce_route.kind != ROUTE_MX;
	const struct conf_route *rt =
	    bounce ? &s->cf->bounce_route : conf_route_for(s->cf, domain);
	char *key;
	struct dest *d;

	if (rt->kind != ROUTE_MX)
		key = xstrdup(rt->text);
	else {
		key = xstrdup(domain);
		for (char *p = key; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	}
	d = hmap_get(s->dests, key);
	if (d != NULL) {
		free(key);
		return d;
	}
	d = xcalloc(1, sizeof(*d));
	d->s = s;
	d->key = key;
	d->domain = xstrdup(domain);
	d->bounce = bounce;
	TAILQ_INIT(&d->ready);
	TAILQ_INIT(&d->sessions);
	retry_dest_init(&d->pol, conf_retry_for(s->cf, domain), now_ms());
	hmap_put(s->dests, d->key, d);
	return d;
}

static const struct conf_retry *
dest_retry(const struct dest *d)
{
	return conf_retry_for(d->s->cf, d->domain);
}

static void
dest_set_error(struct dest *d, const char *why)
{
	free(d->last_error);
	d->last_error = why ? xstrdup(why) : NULL;
}

static void
dest_failed(struct dest *d, const char *why)
{
	dest_set_error(d, why);
	retry_dest_failed(&d->pol, dest_retry(d), now_ms(), sched_rand(d->s));
	log_info("%s: destination not reachable (%s): %zu messages held, "
		 "next probe in %llds",
	    d->key, why, d->njobs, (long long)(d->pol.interval_ms / 1000));
}

/* After an outage: everything held for d is due now. */
static void
dest_release(struct dest *d)
{
	struct sched *s = d->s;

	for (size_t i = 0; i < s->nheap;) {
		struct job *j = s->heap[i];

		if (j->d == d)
			job_ready(j); /* takes j out of the heap */
		else
			i++;
	}
	log_info("%s: destination is back: releasing %zu messages", d->key,
	    d->njobs);
	dest_set_error(d, NULL);
}

/* Adds the recipients of m that are pending and not yet in a job. */
static void
sched_plan(struct sched *s, struct smsg *m, int64_t due)
{
	struct envelope *env = m->env;

	if (env->flags & ENV_HELD)
		return;
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct dest *d;
		struct job *j = NULL;
		bool covered = false;

		if (env->rcpts[i].state != RCPT_PENDING)
			continue;
		for (size_t k = 0; k < m->njobs && !covered; k++)
			for (size_t r = 0; r < m->jobs[k]->nridx; r++)
				if (m->jobs[k]->ridx[r] == i)
					covered = true;
		if (covered)
			continue;
		d = dest_get(s, env, env->rcpts[i].addr);
		for (size_t k = 0; k < m->njobs; k++)
			if (m->jobs[k]->d == d && !m->jobs[k]->in_flight)
				j = m->jobs[k];
		if (j == NULL) {
			j = xcalloc(1, sizeof(*j));
			j->m = m;
			j->d = d;
			j->hpos = NO_POS;
			d->njobs++;
			m->jobs = xgrow(m->jobs, &m->capjobs, m->njobs + 1,
			    sizeof(*m->jobs));
			m->jobs[m->njobs++] = j;
			if (due <= now_ms())
				job_ready(j);
			else
				job_defer(j, due);
		}
		j->ridx = xrealloc(j->ridx, (j->nridx + 1) * sizeof(size_t));
		j->ridx[j->nridx++] = i;
	}
}

static struct smsg *
sched_track(struct sched *s, struct envelope *env)
{
	struct smsg *m = hmap_get(s->msgs, env->qid);

	if (m != NULL)
		return m;
	m = xcalloc(1, sizeof(*m));
	memcpy(m->qid, env->qid, QID_SIZE);
	m->env = env;
	hmap_put(s->msgs, m->qid, m);
	return m;
}

static void
smsg_free(struct sched *s, struct smsg *m)
{
	while (m->njobs > 0)
		job_free(m->jobs[0]);
	hmap_del(s->msgs, m->qid);
	free(m->jobs);
	free(m->body);
	free(m);
}

static void
sched_dispatch_all(struct sched *s)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->dests, &pos, &key, &val))
		dest_dispatch(val);
}

/* Brings the next max_age / warn_after check forward for a new message. */
static void
sched_watch_age(struct sched *s, const struct envelope *env)
{
	int64_t born = env->arrival / 1000;

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct conf_retry *rp =
		    conf_retry_for(s->cf, rcpt_domain(env->rcpts[i].addr));

		if (rp->max_age > 0 && born + rp->max_age * 1000 < s->next_sweep)
			s->next_sweep = born + rp->max_age * 1000;
		if (rp->warn_after > 0 && !(env->flags & ENV_DELAY_SENT) &&
		    born + rp->warn_after * 1000 < s->next_sweep)
			s->next_sweep = born + rp->warn_after * 1000;
	}
}

static void
sched_on_arrival(void *arg, struct envelope *env)
{
	struct sched *s = arg;
	struct smsg *m = sched_track(s, env);

	sched_watch_age(s, env);
	sched_plan(s, m, 0);
	for (size_t k = 0; k < m->njobs; k++)
		dest_dispatch(m->jobs[k]->d);
}

static void
sched_on_existing(void *arg, struct envelope *env)
{
	struct sched *s = arg;

	/* At start everything is due: mail that was in flight at a crash,
	 * and mail whose backoff ran while mxspoold was down. */
	sched_plan(s, sched_track(s, env), 0);
}

/* Logging, Postfix style, one line per recipient and attempt. */
static void
sched_log(const struct smsg *m, const char *rcpt, const char *relay,
    const char *dsn, const char *status, const char *text)
{
	double delay = (double)(now_ms() - m->env->arrival / 1000) / 1000.0;

	log_event(m->qid, "to=<%s>, relay=%s, delay=%.1f, dsn=%s, status=%s (%s)",
	    rcpt, relay, delay < 0 ? 0 : delay, dsn, status, text);
}

/* Notifications. */
struct dsn_req {
	struct sched *s;
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

static void
sched_on_dsn_queued(void *arg, int status, const char *dsnqid)
{
	struct dsn_req *r = arg;
	struct sched *s = r->s;
	struct smsg *m = hmap_get(s->msgs, r->qid);

	if (m == NULL) {
		dsn_req_free(r);
		return;
	}
	m->dsn_pending--;
	if (status == QUEUE_OK) {
		log_event(r->qid, "sender %s notification: %s",
		    dsn_action_str(r->action), dsnqid);
		for (size_t i = 0; i < r->nrcpts; i++)
			if (r->action == DSN_FAILED)
				m->env->rcpts[r->rcpts[i].idx].state =
				    RCPT_FAILED;
		if (r->action == DSN_DELAYED)
			m->env->flags |= ENV_DELAY_SENT;
	} else if (r->action == DSN_FAILED) {
		/* Not returned: the recipients stay pending and are tried
		 * again, so the sender still hears of them later. */
		log_warn("%s: cannot queue a notification: %s", r->qid,
		    queue_status_str(status));
		sched_plan(s, m, now_ms() + 60000);
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
	    .now = now_ms() / 1000,
	};
	size_t len;
	char *text;

	if (r->action == DSN_DELAYED) {
		const struct conf_retry *rp =
		    conf_retry_for(s->cf, rcpt_domain(env->rcpts[0].addr));
		if (rp->max_age > 0)
			info.will_retry_until = env->arrival / 1000000 + rp->max_age;
	}
	text = dsn_build(&info, &len);
	n = envelope_new();
	queue_new_qid(s->q, n->qid);
	n->arrival = (int64_t)now_ms() * 1000;
	n->client_addr = xstrdup("127.0.0.1");
	n->helo = xstrdup(s->cf->hostname);
	n->sender = xstrdup("");
	n->body = env->body == BODY_7BIT ? BODY_7BIT : BODY_8BITMIME;
	n->flags = ENV_DSN | (env->flags & ENV_SMTPUTF8);
	envelope_add_rcpt(n, env->sender, NULL, NOTIFY_NEVER);
	m->dsn_pending++;
	queue_submit(s->q, n, text, len, sched_on_dsn_queued, r);
}

static void
sched_on_dsn_body(void *arg, int status, char *body, size_t len)
{
	struct dsn_req *r = arg;
	struct smsg *m = hmap_get(r->s->msgs, r->qid);

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
	sched_send_dsn(r->s, m, r);
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
static void
sched_notify(struct sched *s, struct smsg *m, enum dsn_action action,
    const struct dsn_rcpt *list, size_t n)
{
	struct dsn_req *r = xcalloc(1, sizeof(*r));

	r->s = s;
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
	queue_read_body(s->q, m->qid, sched_on_dsn_body, r);
}

/* A message's state changed: store it, or remove it when all is done. */
static void
sched_settle(struct sched *s, struct smsg *m)
{
	struct envelope *env = m->env;
	bool pending = false;

	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == RCPT_PENDING)
			pending = true;
	if (!pending && m->njobs == 0 && m->dsn_pending == 0 &&
	    m->in_flight == 0) {
		char qid[QID_SIZE];

		memcpy(qid, m->qid, QID_SIZE);
		smsg_free(s, m);
		log_event(qid, "removed");
		queue_remove(s->q, qid);
		return;
	}
	queue_update(s->q, m->qid);
}

/* Bodies are read ahead of the sessions that need them. */
struct body_req {
	struct sched *s;
	struct dest *d;
	char qid[QID_SIZE];
};

static void
sched_on_loaded(void *arg, int status, char *body, size_t len)
{
	struct body_req *br = arg;
	struct smsg *m = hmap_get(br->s->msgs, br->qid);

	if (m != NULL) {
		m->loading = false;
		if (status == QUEUE_OK && m->body == NULL) {
			m->body = body;
			m->len = len;
			body = NULL;
		}
	}
	free(body);
	br->d->loading--;
	dest_wake(br->d);
	free(br);
}

/* Wakes the idle sessions of d: there may be work for them now. */
static void
dest_wake(struct dest *d)
{
	struct sess *ss;

	TAILQ_FOREACH(ss, &d->sessions, link)
	if (ss->idle) {
		ss->idle = false;
		client_session_wake(ss->cs);
	}
}

static void
sched_load(struct sched *s, struct dest *d, struct smsg *m)
{
	struct body_req *br = xcalloc(1, sizeof(*br));

	br->s = s;
	br->d = d;
	memcpy(br->qid, m->qid, QID_SIZE);
	m->loading = true;
	d->loading++;
	queue_read_body(s->q, m->qid, sched_on_loaded, br);
}

/* Session callbacks. */
static struct client_msg *
sched_next(void *arg, struct client_session *cs)
{
	struct sess *ss = arg;
	struct dest *d = ss->d;
	struct job *j;
	int scanned = 0;

	(void)cs;
	if (d->pol.state != DEST_UP && ss->nmsgs > 0) {
		/* A probe that did not succeed carries no more mail. */
		client_session_quit(ss->cs);
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

static bool
code_is(int code, int klass)
{
	return code / 100 == klass;
}

static void
sched_done(void *arg, struct client_session *cs, struct client_msg *cm)
{
	struct sess *ss = arg;
	struct job *j = cm->owner;
	struct smsg *m = j->m;
	struct dest *d = j->d;
	struct sched *s = d->s;
	struct envelope *env = m->env;
	const char *relay = client_session_relay(cs);
	struct dsn_rcpt *failed = xcalloc(cm->nrcpts, sizeof(*failed));
	struct dsn_rcpt *sent = xcalloc(cm->nrcpts, sizeof(*sent));
	size_t nfailed = 0, nsent = 0, keep = 0;
	bool definite = false, temp = false;
	const char *why = NULL;
	int64_t now = now_ms();

	for (size_t k = 0; k < cm->nrcpts; k++) {
		struct client_rcpt *cr = &cm->rcpts[k];
		size_t idx = j->ridx[k];
		struct env_rcpt *r = &env->rcpts[idx];
		const char *text = cr->text ? cr->text : "no reply";

		free(r->dsn_status);
		r->dsn_status = xstrdup(cr->dsn[0] ? cr->dsn : "4.0.0");
		if (code_is(cr->code, 2)) {
			definite = true;
			r->state = RCPT_DELIVERED;
			free(r->last_error);
			r->last_error = NULL;
			sched_log(m, r->addr, relay, r->dsn_status, "sent", text);
			sent[nsent].idx = idx;
			sent[nsent].status = r->dsn_status;
			sent[nsent].remote_mta = relay;
			sent[nsent].diagnostic = text;
			nsent++;
		} else if (code_is(cr->code, 5)) {
			definite = true;
			free(r->last_error);
			r->last_error = xstrdup(text);
			sched_log(m, r->addr, relay, r->dsn_status, "bounced", text);
			failed[nfailed].idx = idx;
			failed[nfailed].status = r->dsn_status;
			failed[nfailed].remote_mta = relay;
			failed[nfailed].diagnostic = text;
			nfailed++;
		} else {
			temp = true;
			free(r->last_error);
			r->last_error = xstrdup(text);
			if (why == NULL)
				why = r->last_error;
			sched_log(m, r->addr, relay, r->dsn_status, "deferred", text);
			j->ridx[keep++] = idx;
		}
	}
	j->nridx = keep;
	j->in_flight = false;
	m->in_flight--;
	env->attempts++;
	env->last_attempt = now / 1000;
	free(env->last_error);
	env->last_error = why ? xstrdup(why) : NULL;

	if (definite) {
		if (retry_dest_succeeded(&d->pol, dest_retry(d), now))
			dest_release(d);
	} else if (temp) {
		if (d->pol.state == DEST_PROBING)
			dest_failed(d, why);
		else {
			retry_dest_trouble(&d->pol, now);
			dest_set_error(d, why);
		}
	}
	if (nfailed > 0)
		sched_notify(s, m, DSN_FAILED, failed, nfailed);
	if (nsent > 0)
		sched_notify(s, m, ss->target.lmtp ? DSN_DELIVERED : DSN_RELAYED,
		    sent, nsent);
	for (size_t k = 0; k < cm->nrcpts; k++)
		free(cm->rcpts[k].text);
	free(cm->rcpts);
	free(failed);
	free(sent);

	if (j->nridx == 0)
		job_free(j);
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
		struct env_rcpt *r = &env->rcpts[j->ridx[i]];

		free(r->dsn_status);
		r->dsn_status = xstrdup(dsn[0] ? dsn : "4.4.1");
		free(r->last_error);
		r->last_error = xstrdup(why);
		sched_log(j->m, r->addr, "none", r->dsn_status, "deferred", why);
	}
	env->attempts++;
	env->last_attempt = now_ms() / 1000;
	free(env->last_error);
	env->last_error = xstrdup(why);
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
	if (d->pol.state != DEST_BACKOFF &&
	    (!end->connected || d->pol.state == DEST_PROBING)) {
		if (ss->nmsgs == 0)
			sched_note_failure(d, end->dsn,
			    end->text[0] ? end->text : "session ended early");
		dest_failed(d, end->text[0] ? end->text : "probe ended early");
	}
	client_session_free(cs);
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
	TAILQ_INSERT_TAIL(&d->sessions, ss, link);
	d->nsessions++;
	s->nsessions++;
	ss->cs = client_session_new(s->base, &ss->target, &sched_cbs, ss);
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
			struct env_rcpt *r = &m->env->rcpts[j->ridx[i]];

			free(r->dsn_status);
			r->dsn_status = xstrdup(ans->dsn);
			free(r->last_error);
			r->last_error = xstrdup(ans->reason);
			sched_log(m, r->addr, "none", ans->dsn, "bounced",
			    ans->reason);
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

static void
dest_dispatch(struct dest *d)
{
	struct sched *s = d->s;
	unsigned slots = retry_dest_slots(&d->pol);
	size_t want = d->nready;
	struct sess *ss;

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
			client_session_wake(ss->cs);
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
	d->dns_id = dns_route_via(s->dns, d->domain,
	    d->bounce ? &s->cf->bounce_route : NULL, dest_on_dns, d);
}

/* max_age and warn_after. */
static void
sched_sweep(struct sched *s, int64_t now)
{
	char (*qids)[QID_SIZE] = xcalloc(hmap_count(s->msgs) + 1, QID_SIZE);
	size_t n = 0, pos = 0;
	int64_t next = now + SCHED_SWEEP_MS;
	const char *key;
	void *val;

	while (hmap_next(s->msgs, &pos, &key, &val))
		memcpy(qids[n++], key, QID_SIZE);
	for (size_t k = 0; k < n; k++) {
		struct smsg *m = hmap_get(s->msgs, qids[k]);
		struct envelope *env;
		struct dsn_rcpt *expired, *late;
		size_t nexp = 0, nlate = 0;

		if (m == NULL || m->in_flight > 0 || (m->env->flags & ENV_HELD))
			continue;
		env = m->env;
		expired = xcalloc(env->nrcpts, sizeof(*expired));
		late = xcalloc(env->nrcpts, sizeof(*late));
		for (size_t i = 0; i < env->nrcpts; i++) {
			struct env_rcpt *r = &env->rcpts[i];
			const struct conf_retry *rp =
			    conf_retry_for(s->cf, rcpt_domain(r->addr));
			int64_t born = env->arrival / 1000;

			if (r->state != RCPT_PENDING)
				continue;
			if (rp->max_age > 0 && now >= born + rp->max_age * 1000) {
				expired[nexp].idx = i;
				expired[nexp].status =
				    r->dsn_status ? r->dsn_status : "4.4.7";
				expired[nexp].diagnostic = r->last_error;
				nexp++;
				continue;
			}
			if (rp->max_age > 0 && born + rp->max_age * 1000 < next)
				next = born + rp->max_age * 1000;
			if (rp->warn_after > 0 && !(env->flags & ENV_DELAY_SENT)) {
				if (now >= born + rp->warn_after * 1000) {
					late[nlate].idx = i;
					late[nlate].status = r->dsn_status
					    ? r->dsn_status
					    : "4.4.7";
					late[nlate].diagnostic = r->last_error;
					nlate++;
				} else if (born + rp->warn_after * 1000 < next)
					next = born + rp->warn_after * 1000;
			}
		}
		for (size_t i = 0; i < nexp; i++) {
			struct env_rcpt *r = &env->rcpts[expired[i].idx];

			sched_log(m, r->addr, "none", expired[i].status,
			    "expired", "returned to sender: max_age reached");
			job_drop_rcpt(m, expired[i].idx);
		}
		if (nexp > 0)
			sched_notify(s, m, DSN_FAILED, expired, nexp);
		if (nlate > 0 && nexp == 0)
			sched_notify(s, m, DSN_DELAYED, late, nlate);
		if (nexp > 0 || nlate > 0)
			sched_settle(s, m);
		free(expired);
		free(late);
	}
	free(qids);
	s->next_sweep = next;
}

static void
sched_arm(struct sched *s, int64_t now)
{
	int64_t when = now + SCHED_TICK_MS;
	struct timeval tv;

	size_t pos = 0;
	const char *key;
	void *val;

	if (s->nheap > 0 && s->heap[0]->due < when)
		when = s->heap[0]->due;
	if (s->next_sweep < when)
		when = s->next_sweep;
	while (hmap_next(s->dests, &pos, &key, &val)) {
		const struct dest *d = val;

		if (d->pol.state == DEST_BACKOFF && d->pol.next_probe < when)
			when = d->pol.next_probe;
	}
	if (when < now + 10)
		when = now + 10;
	tv.tv_sec = (when - now) / 1000;
	tv.tv_usec = ((when - now) % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

static void
sched_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	int64_t now = now_ms();
	size_t pos = 0;
	const char *key;
	void *val;

	(void)fd;
	(void)what;
	while (s->nheap > 0 && s->heap[0]->due <= now) {
		struct job *j = s->heap[0];

		/* A job of a destination that is down waits for its probe. */
		heap_remove(s, j);
		job_ready(j);
	}
	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;

		if (retry_dest_tick(&d->pol, dest_retry(d), now) &&
		    d->pol.state == DEST_PROBING)
			log_info("%s: probing (%zu messages held)", d->key,
			    d->njobs);
	}
	if (now >= s->next_sweep)
		sched_sweep(s, now);
	sched_dispatch_all(s);
	sched_arm(s, now_ms());
}

struct sched *
sched_new(struct event_base *base, const struct conf *cf, struct queue *q,
    struct dns *dns)
{
	struct sched *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->cf = cf;
	s->q = q;
	s->dns = dns;
	s->dests = hmap_new();
	s->msgs = hmap_new();
	s->rng = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b9;
	s->timer = evtimer_new(base, sched_on_timer, s);
	queue_foreach(q, sched_on_existing, s);
	queue_set_arrival_cb(q, sched_on_arrival, s);
	s->next_sweep = 0;
	sched_arm(s, now_ms());
	return s;
}

void
sched_free(struct sched *s)
{
	size_t pos = 0;
	const char *key;
	void *val;

	if (s == NULL)
		return;
	queue_set_arrival_cb(s->q, NULL, NULL);
	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;
		struct sess *ss;

		dns_cancel(s->dns, d->dns_id);
		while ((ss = TAILQ_FIRST(&d->sessions)) != NULL) {
			TAILQ_REMOVE(&d->sessions, ss, link);
			client_session_free(ss->cs);
			dns_answer_free(ss->ans);
			free(ss);
		}
	}
	/* Jobs in flight lose their sessions: free their recipient arrays. */
	pos = 0;
	while (hmap_next(s->msgs, &pos, &key, &val)) {
		struct smsg *m = val;

		for (size_t k = 0; k < m->njobs; k++)
			if (m->jobs[k]->in_flight) {
				for (size_t i = 0; i < m->jobs[k]->cm.nrcpts; i++)
					free(m->jobs[k]->cm.rcpts[i].text);
				free(m->jobs[k]->cm.rcpts);
			}
	}
	while (s->msgs != NULL && hmap_count(s->msgs) > 0) {
		pos = 0;
		if (!hmap_next(s->msgs, &pos, &key, &val))
			break;
		smsg_free(s, val);
	}
	pos = 0;
	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;

		free(d->key);
		free(d->domain);
		free(d->last_error);
		free(d);
	}
	hmap_free(s->dests);
	hmap_free(s->msgs);
	free(s->heap);
	event_free(s->timer);
	free(s);
}

void
sched_set_conf(struct sched *s, const struct conf *cf)
{
	s->cf = cf;
}

void
sched_foreach_dest(struct sched *s,
    void (*cb)(void *arg, const struct sched_dest_info *info), void *arg)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;
		struct sched_dest_info in = {
		    .name = d->key,
		    .state = retry_dest_state_str(d->pol.state),
		    .messages = d->njobs,
		    .connections = d->nsessions,
		    .concurrency = retry_dest_slots(&d->pol),
		    .next_probe = d->pol.state == DEST_BACKOFF ? d->pol.next_probe
							       : 0,
		    .last_error = d->last_error,
		};

		if (d->njobs > 0 || d->nsessions > 0)
			cb(arg, &in);
	}
}

static bool
dest_matches(const struct dest *d, const char *domain)
{
	return domain == NULL || strcasecmp(d->domain, domain) == 0 ||
	    strcasecmp(d->key, domain) == 0;
}

size_t
sched_flush(struct sched *s, const char *domain)
{
	size_t n = 0, pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;

		if (!dest_matches(d, domain))
			continue;
		if (d->pol.state == DEST_BACKOFF)
			d->pol.next_probe = now_ms();
		for (size_t i = 0; i < s->nheap;) {
			if (s->heap[i]->d == d)
				job_ready(s->heap[i]);
			else
				i++;
		}
		n += d->njobs;
	}
	sched_on_timer(-1, 0, s);
	return n;
}

int
sched_flush_msg(struct sched *s, const char *qid)
{
	struct smsg *m = hmap_get(s->msgs, qid);

	if (m == NULL)
		return -1;
	for (size_t k = 0; k < m->njobs; k++) {
		struct dest *d = m->jobs[k]->d;

		if (d->pol.state == DEST_BACKOFF)
			d->pol.next_probe = now_ms();
		job_ready(m->jobs[k]);
	}
	sched_on_timer(-1, 0, s);
	return 0;
}

int
sched_hold(struct sched *s, const char *qid, bool hold)
{
	struct envelope *env = queue_find(s->q, qid);
	struct smsg *m;

	if (env == NULL)
		return -1;
	m = sched_track(s, env);
	if (hold) {
		env->flags |= ENV_HELD;
		for (size_t k = 0; k < m->njobs;) {
			if (m->jobs[k]->in_flight)
				k++;
			else
				job_free(m->jobs[k]);
		}
	} else {
		env->flags &= ~(uint32_t)ENV_HELD;
		sched_plan(s, m, 0);
		for (size_t k = 0; k < m->njobs; k++)
			dest_dispatch(m->jobs[k]->d);
	}
	queue_update(s->q, qid);
	return 0;
}
