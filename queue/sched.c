#define LOG_ROLE "qmgr"
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
#include <ctype.h>
#include <inttypes.h>
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

int64_t
sched_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
sched_rand(struct sched *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return (double)(s->rng >> 11) / (double)(1ULL << 53);
}

const char *
sched_rcpt_domain(const char *addr)
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

void
job_unready(struct job *j)
{
	if (j->ready) {
		TAILQ_REMOVE(&j->d->ready, j, link);
		j->d->nready--;
		j->ready = false;
	}
}

const char *
dest_role(const struct dest *d)
{
	return d->route.kind == ROUTE_LMTP || d->route.kind == ROUTE_LMTP_UNIX
		   ? "lmtp"
		   : "smtp";
}

/*
 * A message held behind a failing destination is logged as deferred when
 * it is first held (while its recipients have no result yet), so that log
 * tools count it: "ID: to=<..>, relay=none, delay=.., dsn=4.4.1,
 * status=deferred (delivery temporarily suspended: WHY)", as Postfix
 * says of mail for a destination it has marked dead; "(delivery paused
 * by operator)" behind a paused one.
 */
static void
job_say_held(const struct job *j)
{
	const struct dest *d = j->d;
	const struct envelope *env = j->m->env;
	char why[1024];

	if (d->paused)
		snprintf(why, sizeof(why), "delivery paused by operator");
	else
		snprintf(why, sizeof(why), "delivery temporarily suspended: %s",
		    d->last_error != NULL ? d->last_error
					  : "destination failing");
	for (size_t i = 0; i < j->nridx; i++) {
		const struct env_rcpt *r = &env->rcpts[j->ridx[i]];
		struct rcpt_result res = {.outcome = OUTCOME_DEFERRED,
		    .dsn = d->pol.refused ? "4.4.1" : "4.3.0",
		    .reply = why,
		    .role = dest_role(d)};

		if (r->state == RCPT_PENDING && r->last_error == NULL)
			queue_log_rcpt(env, j->ridx[i], &res);
	}
}

void
job_ready(struct job *j)
{
	heap_remove(j->d->s, j);
	if (!j->ready && !j->in_flight) {
		TAILQ_INSERT_TAIL(&j->d->ready, j, link);
		j->d->nready++;
		j->ready = true;
	}
}

void
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
	sched_wake_at(s, due);
}

void
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
void
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

const char *
sched_lane_dest_key(
    const struct conf *cf, const char *lane, char *buf, size_t len)
{
	bool notices;
	const char *domain = qindex_lane_domain(lane, &notices);
	/* Notifications go by bounce_route, unless it says to go by MX:
	 * then as any mail for the domain. */
	const struct conf_route *rt =
	    notices && cf->bounce_route.kind != ROUTE_MX
		? &cf->bounce_route
		: conf_route_for(cf, domain);

	/* Lanes are in lower case already. */
	snprintf(buf, len, "%s", rt->kind != ROUTE_MX ? rt->text : domain);
	return buf;
}

const char *
sched_dest_key(const struct conf *cf, const struct envelope *env,
    const char *rcpt, char *buf, size_t len)
{
	char lane[LANE_SIZE];

	return sched_lane_dest_key(cf, qindex_lane(env, rcpt, lane), buf, len);
}

/* The destination a lane's mail goes to, made if it is new. */
static struct dest *
dest_for_lane(struct sched *s, const char *lane)
{
	bool notices;
	const char *domain = qindex_lane_domain(lane, &notices);
	char key[512];
	struct dest *d;

	sched_lane_dest_key(s->cf, lane, key, sizeof(key));
	d = hmap_get(s->dests, key);
	if (d != NULL)
		return d;
	d = xcalloc(1, sizeof(*d));
	d->s = s;
	d->key = xstrdup(key);
	/* Its own copy: a reload must not change where its jobs go. */
	if (conf_parse_route(notices && s->cf->bounce_route.kind != ROUTE_MX
				 ? s->cf->bounce_route.text
				 : conf_route_for(s->cf, domain)->text,
		&d->route) < 0)
		PANIC("a configured route does not parse");
	d->domain = xstrdup(domain);
	TAILQ_INIT(&d->ready);
	TAILQ_INIT(&d->sessions);
	TAILQ_INIT(&d->lanes);
	retry_dest_init(&d->pol, conf_retry_for(s->cf, domain), sched_now_ms());
	hmap_put(s->dests, d->key, d);
	dest_state_restore(d);
	return d;
}

struct slane *
sched_lane(struct sched *s, const char *lane)
{
	struct slane *l = hmap_get(s->lanes, lane);

	if (l != NULL)
		return l;
	l = xcalloc(1, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", lane);
	l->w.wrap_at = INT64_MAX;
	l->d = dest_for_lane(s, lane);
	TAILQ_INSERT_TAIL(&l->d->lanes, l, link);
	hmap_put(s->lanes, l->name, l);
	return l;
}

static struct dest *
dest_get(struct sched *s, const struct envelope *env, const char *rcpt)
{
	char lane[LANE_SIZE];

	return sched_lane(s, qindex_lane(env, rcpt, lane))->d;
}

uint64_t
dest_queued(const struct dest *d)
{
	const struct slane *l;
	uint64_t n = 0;

	TAILQ_FOREACH(l, &d->lanes, link)
	{
		struct lane_count c;
		int64_t oldest;

		queue_lane_count(d->s->q, l->name, &c, &oldest);
		n += c.messages;
	}
	return n;
}

const struct conf_retry *
dest_retry(const struct dest *d)
{
	return conf_retry_for(d->s->cf, d->domain);
}

void
dest_set_error(struct dest *d, const char *why)
{
	free(d->last_error);
	d->last_error = why ? xstrdup(why) : NULL;
}

/*
 * A destination that fails keeps one ready job in memory, for its probe
 * (a paused one none): the rest of its mail goes back to the spool, to be
 * read again when it is back, so an outage costs no memory (DESIGN.md,
 * contract 7).
 */
void
dest_park(struct dest *d, size_t keep)
{
	struct sched *s = d->s;
	struct smsg **out;
	struct job *j;
	size_t n = 0, k = 0;

	if (d->nready <= keep)
		return;
	out = xcalloc(d->nready, sizeof(*out));
	TAILQ_FOREACH(j, &d->ready, link)
	if (k++ >= keep) {
		job_say_held(j);
		out[n++] = j->m;
	}
	for (size_t i = 0; i < n; i++) {
		/* A message may have two jobs here: parked with the first. */
		if (hmap_get(s->msgs, out[i]->qid) == out[i])
			smsg_park_if_idle(s, out[i]);
	}
	free(out);
}

void
dest_failed(struct dest *d, const char *why)
{
	bool news = d->pol.state == DEST_UP;

	dest_set_error(d, why);
	retry_dest_failed(
	    &d->pol, dest_retry(d), sched_now_ms(), sched_rand(d->s));
	/* One line when it starts failing, and one per failed probe. */
	log_info("%s: %s (%s): %" PRIu64 " message%s held, next probe in "
		 "%llds",
	    d->key, news ? "destination failing" : "probe failed", why,
	    dest_queued(d), dest_queued(d) == 1 ? "" : "s",
	    (long long)(d->pol.interval_ms / 1000));
	dest_park(d, 1);
	sched_wake_at(d->s, d->pol.next_probe);
}

void
dest_refused(struct dest *d, const char *why)
{
	bool news = d->pol.state == DEST_UP || !d->pol.refused;

	dest_set_error(d, why);
	retry_dest_refused(&d->pol, sched_now_ms());
	/* Said once; the probes every second after it only at debug. */
	if (news)
		log_info("%s: destination failing: not reachable (%s): "
			 "%" PRIu64 " message%s held, probing every second",
		    d->key, why, dest_queued(d),
		    dest_queued(d) == 1 ? "" : "s");
	else
		log_debug("%s: still refused (%s)", d->key, why);
	dest_park(d, 1);
	sched_wake_at(d->s, d->pol.next_probe);
}

/* Its lanes are read again from the start, due or not. */
static void
dest_reread(struct dest *d)
{
	struct slane *l;

	TAILQ_FOREACH(l, &d->lanes, link)
	{
		l->cursor[0] = '\0';
		l->gen++;
		window_lane_reread(&l->w);
	}
}

/* Everything held for d is due now, in memory and in the spool,
 * streamed through the window. */
void
dest_due_now(struct dest *d)
{
	struct sched *s = d->s;

	for (size_t i = 0; i < s->nheap;) {
		struct job *j = s->heap[i];

		if (j->d == d)
			job_ready(j); /* takes j out of the heap */
		else
			i++;
	}
	dest_reread(d);
}

void
dest_release(struct dest *d)
{
	dest_due_now(d);
	log_info("%s: destination is back: releasing %" PRIu64 " messages",
	    d->key, dest_queued(d));
	dest_set_error(d, NULL);
}

/* A page of a lane's mail being read for its destination. */
struct lane_req {
	struct sched_call call;
	struct dest *d;
	char lane[LANE_SIZE];
	unsigned gen; /* the lane's, when asked */
	bool probe;   /* one message for a probe */
};

static void
sched_on_page(void *arg, struct queue_page *pg)
{
	struct lane_req *r = arg;
	struct sched *s = sched_call_end(&r->call);
	struct slane *l;

	if (s == NULL) {
		free(r);
		return;
	}
	r->d->fetching = false;
	l = hmap_get(s->lanes, r->lane);
	l->fetching = false;
	if (r->gen != l->gen) {
		/* Read again from the start meanwhile (the destination came
		 * back, a flush, a reload): this page's place is void. */
	} else if (pg->status != QUEUE_OK) {
		/* Read again a second later; what came before the error is
		 * taken below all the same. */
		if (r->probe)
			r->d->probe_read_at = sched_now_ms() + 1000;
		else {
			l->w.more = false; /* not at once, in a loop */
			window_lane_later(&l->w, sched_now_ms() + 1000);
		}
		sched_wake_at(s, sched_now_ms() + 1000);
	} else if (r->probe) {
		/* Probes take the lane's messages in turn: each is tried. */
		if (pg->n > 0)
			memcpy(l->cursor, pg->last, QID_SIZE);
		else if (l->cursor[0] != '\0')
			l->cursor[0] = '\0'; /* from the start, at once */
		else {
			r->d->probe_read_at = sched_now_ms() + 1000;
			sched_wake_at(s, r->d->probe_read_at);
		}
	} else {
		if (pg->last[0] != '\0')
			memcpy(l->cursor, pg->last, QID_SIZE);
		window_lane_page(&l->w, pg->end, pg->next_due);
		sched_wake_at(s, l->w.wrap_at);
	}
	for (size_t i = 0; i < pg->n; i++) {
		struct smsg *m = sched_track(s, pg->envs[i]);

		if (m->in_flight == 0)
			sched_plan(s, m, 0);
		if (!smsg_park_if_idle(s, m))
			for (size_t k = 0; k < m->njobs; k++)
				if (m->jobs[k]->d != r->d)
					dest_dispatch(m->jobs[k]->d);
	}
	free(r);
	dest_dispatch(l->d);
}

/* The lane of d to read next, or NULL: round robin over those with
 * reading to do. */
static struct slane *
dest_next_lane(struct dest *d, int64_t now)
{
	struct slane *l;
	bool restart;

	TAILQ_FOREACH(l, &d->lanes, link)
	{
		if (!window_lane_due(&l->w, now, &restart))
			continue;
		if (restart)
			l->cursor[0] = '\0';
		/* To the back of the line: the others go first next. */
		TAILQ_REMOVE(&d->lanes, l, link);
		TAILQ_INSERT_TAIL(&d->lanes, l, link);
		return l;
	}
	return NULL;
}

/* A lane of d that has mail, for a probe's message. */
static struct slane *
dest_any_lane(struct dest *d)
{
	struct slane *l;

	TAILQ_FOREACH(l, &d->lanes, link)
	{
		struct lane_count c;
		int64_t oldest;

		queue_lane_count(d->s->q, l->name, &c, &oldest);
		if (c.messages > c.held)
			return l;
	}
	return NULL;
}

/*
 * Keeps d's ready jobs topped up from the spool, a page at a time, within
 * the active window (active_limit messages in memory in all). A
 * destination backing off reads nothing; one probing reads one message,
 * for the probe.
 */
void
dest_refill(struct dest *d)
{
	struct sched *s = d->s;
	struct window_dest wd = {
	    .state = d->pol.state,
	    .nready = d->nready,
	    .in_memory = queue_window(s->q),
	    .limit = s->cf->active_limit,
	    .now = sched_now_ms(),
	    .probe_read_at = d->probe_read_at,
	};
	struct queue_scan sc = {.now_ms = wd.now, .admit = true};
	struct lane_req *r;
	struct slane *l = NULL;
	size_t want;

	if (d->fetching || !s->ready || d->paused)
		return;
	switch (window_refill(&wd, &want)) {
	case WINDOW_NONE:
		return;
	case WINDOW_PROBE:
		if ((l = dest_any_lane(d)) == NULL)
			return;
		sc.pick = QPICK_ANY;
		break;
	case WINDOW_FILL:
		if ((l = dest_next_lane(d, wd.now)) == NULL)
			return;
		sc.pick = l->w.all ? QPICK_ANY : QPICK_DUE;
		break;
	}
	r = xcalloc(1, sizeof(*r));
	r->d = d;
	r->probe = sc.pick == QPICK_ANY && d->pol.state == DEST_PROBING;
	r->gen = l->gen;
	memcpy(r->lane, l->name, LANE_SIZE);
	memcpy(sc.after, l->cursor, QID_SIZE);
	sc.lane = l->name;
	sc.limit = want;
	d->fetching = l->fetching = true;
	sched_call_begin(s, &r->call);
	queue_scan(s->q, &sc, sched_on_page, r);
}

/* Adds the recipients of m that are pending and not yet in a job. */
void
sched_plan(struct sched *s, struct smsg *m, int64_t due)
{
	struct envelope *env = m->env;
	size_t made = m->njobs;

	if (env->flags & ENV_HELD)
		return;
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct dest *d;
		struct job *j = NULL;
		bool covered = false;

		if (env->rcpts[i].state != RCPT_PENDING ||
		    (m->notifying != NULL && m->notifying[i]))
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
			if (due <= sched_now_ms())
				job_ready(j);
			else
				job_defer(j, due);
		}
		j->ridx = xrealloc(j->ridx, (j->nridx + 1) * sizeof(size_t));
		j->ridx[j->nridx++] = i;
	}
	/* The jobs made now, for a destination that is down or paused:
	 * held. */
	for (size_t k = made; k < m->njobs; k++)
		if (m->jobs[k]->ready &&
		    (m->jobs[k]->d->pol.state == DEST_BACKOFF ||
			m->jobs[k]->d->paused))
			job_say_held(m->jobs[k]);
}

struct smsg *
sched_track(struct sched *s, struct envelope *env)
{
	struct smsg *m = hmap_get(s->msgs, env->qid);

	queue_take(s->q, env->qid); /* no longer parked */
	if (m != NULL)
		return m;
	m = xcalloc(1, sizeof(*m));
	memcpy(m->qid, env->qid, QID_SIZE);
	m->env = env;
	hmap_put(s->msgs, m->qid, m);
	return m;
}

void
smsg_free(struct sched *s, struct smsg *m)
{
	while (m->njobs > 0)
		job_free(m->jobs[0]);
	hmap_del(s->msgs, m->qid);
	free(m->jobs);
	free(m->body);
	free(m->doom_why);
	free(m->notifying);
	free(m->known);
	free(m);
}

/*
 * Whether m can leave memory: nothing in flight or being read or queued
 * for it, and no job that a session could take now (a job deferred, or
 * waiting for a destination backing off, is read again from the spool).
 */
static bool
smsg_idle(const struct smsg *m)
{
	if (m->in_flight > 0 || m->loading || m->dsn_pending > 0 ||
	    m->doom != DOOM_NONE)
		return false;
	for (size_t k = 0; k < m->njobs; k++) {
		const struct job *j = m->jobs[k];

		if (j->ready && j->d->pol.state != DEST_BACKOFF &&
		    !j->d->paused)
			return false;
	}
	return true;
}

bool
smsg_park_if_idle(struct sched *s, struct smsg *m)
{
	char qid[QID_SIZE];
	struct slane *l;

	if (!smsg_idle(m))
		return false;
	/* A deferred job's lanes are read again from the start when it is
	 * due; a job waiting for its destination's probe, when it is back. */
	for (size_t k = 0; k < m->njobs; k++) {
		const struct job *j = m->jobs[k];

		if (j->hpos == NO_POS)
			continue;
		TAILQ_FOREACH(l, &j->d->lanes, link)
		window_lane_later(&l->w, j->due);
		sched_wake_at(s, j->due);
	}
	memcpy(qid, m->qid, QID_SIZE);
	smsg_free(s, m);
	queue_park(s->q, qid);
	return true;
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

/* A new message: delivered at once if the window has room, else read
 * in with the rest of its lanes' mail. */
static void
sched_on_arrival(void *arg, struct envelope *env)
{
	struct sched *s = arg;
	struct smsg *m;
	int64_t due = sched_age_next(s, env);

	/* Bring the next max_age / warn_after check forward for it. */
	if (due < s->next_sweep) {
		s->next_sweep = due;
		sched_wake_at(s, due);
	}
	if (queue_window(s->q) >= s->cf->active_limit) {
		for (size_t i = 0; i < env->nrcpts; i++) {
			char lane[LANE_SIZE];

			window_lane_arrived(&sched_lane(
			    s, qindex_lane(env, env->rcpts[i].addr, lane))
						 ->w);
		}
		queue_park(s->q, env->qid);
		return;
	}
	m = sched_track(s, env);
	sched_plan(s, m, 0);
	for (size_t k = 0; k < m->njobs; k++)
		dest_dispatch(m->jobs[k]->d);
	smsg_park_if_idle(s, m);
}

static void
sched_on_lane(
    void *arg, const char *lane, const struct lane_count *c, int64_t oldest)
{
	struct slane *l = sched_lane(arg, lane);

	(void)c, (void)oldest;
	/* At start everything is due: mail that was in flight at a crash,
	 * and mail whose backoff ran while mxspoold was down. */
	window_lane_reread(&l->w);
}

/* The queue's counters are complete: its lanes are read from now on. */
static void
sched_on_ready(void *arg)
{
	struct sched *s = arg;

	s->ready = true;
	queue_foreach_lane(s->q, sched_on_lane, s);
	sched_dispatch_all(s);
}

/* A message's state changed: store it, or remove it when all is done. */
void
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
	smsg_park_if_idle(s, m);
}

/*
 * The timer sleeps until the next thing to do: a deferred job, a probe, a
 * lane to read again, a step of a destination's slow start, the next age
 * check. Nothing to do, no wake-up.
 */
static void
sched_arm(struct sched *s, int64_t now)
{
	int64_t when = s->next_sweep;
	size_t pos = 0;
	const char *key;
	void *val;

	if (s->nheap > 0 && s->heap[0]->due < when)
		when = s->heap[0]->due;
	while (hmap_next(s->dests, &pos, &key, &val)) {
		const struct dest *d = val;
		const struct slane *l;

		if (d->pol.state == DEST_BACKOFF && d->pol.next_probe < when)
			when = d->pol.next_probe;
		if (d->pol.state == DEST_UP && d->nsessions > 0 &&
		    d->pol.last_change + dest_retry(d)->probe_interval * 1000 <
			when)
			when = d->pol.last_change +
			       dest_retry(d)->probe_interval * 1000;
		TAILQ_FOREACH(l, &d->lanes, link)
		if (l->w.wrap_at < when)
			when = l->w.wrap_at;
	}
	s->armed_at = INT64_MAX;
	sched_wake_at(
	    s, when < now + SCHED_SWEEP_MS ? when : now + SCHED_SWEEP_MS);
}

void
sched_wake_at(struct sched *s, int64_t when)
{
	int64_t now = sched_now_ms();
	struct timeval tv;

	if (when >= s->armed_at)
		return;
	if (when < now + 10)
		when = now + 10;
	s->armed_at = when;
	tv.tv_sec = (when - now) / 1000;
	tv.tv_usec = ((when - now) % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

static void
sched_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	int64_t now = sched_now_ms();
	size_t pos = 0;
	const char *key;
	void *val;

	(void)fd;
	(void)what;
	while (s->nheap > 0 && s->heap[0]->due <= now) {
		struct job *j = s->heap[0];

		/* A job of a destination that is down waits for its probe;
		 * one of a paused destination, in the spool. */
		heap_remove(s, j);
		job_ready(j);
		if (j->d->paused)
			smsg_park_if_idle(s, j->m);
	}
	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;

		/* The probe's outcome is what is logged (dest_failed). */
		if (retry_dest_tick(&d->pol, dest_retry(d), now) &&
		    d->pol.state == DEST_PROBING)
			log_debug("%s: probing (%" PRIu64 " messages held)",
			    d->key, dest_queued(d));
	}
	if (now >= s->next_sweep)
		sched_sweep(s, now);
	sched_dispatch_all(s);
	sched_arm(s, sched_now_ms());
}

struct sched *
sched_new(struct event_base *base, const struct conf *cf, struct queue *q,
    struct dns *dns, const struct deliver_ops *ops)
{
	struct sched *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->ops = ops;
	s->cf = cf;
	s->q = q;
	s->dns = dns;
	s->dests = hmap_new();
	s->msgs = hmap_new();
	s->lanes = hmap_new();
	s->rng =
	    (uint64_t)sched_now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b9;
	s->timer = evtimer_new(base, sched_on_timer, s);
	s->armed_at = INT64_MAX;
	LIST_INIT(&s->calls);
	sched_state_load(s);
	queue_set_arrival_cb(q, sched_on_arrival, s);
	s->next_sweep = 0;
	queue_set_ready_cb(q, sched_on_ready, s);
	sched_arm(s, sched_now_ms());
	return s;
}

/*
 * Frees every message in one pass: taken first, freed after, as
 * smsg_free changes the map. (Restarting the walk from slot 0 for each
 * message was quadratic: a million held messages never shut down.)
 */
static void
sched_free_msgs(struct sched *s)
{
	struct smsg **all = xcalloc(hmap_count(s->msgs) + 1, sizeof(*all));
	size_t n = 0, pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->msgs, &pos, &key, &val))
		all[n++] = val;
	for (size_t i = 0; i < n; i++)
		smsg_free(s, all[i]);
	free(all);
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
	queue_set_ready_cb(s->q, NULL, NULL);
	while (!LIST_EMPTY(&s->calls)) {
		struct sched_call *c = LIST_FIRST(&s->calls);

		LIST_REMOVE(c, link);
		c->s = NULL;
	}
	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;
		struct sess *ss;

		dns_cancel(s->dns, d->dns_id);
		while ((ss = TAILQ_FIRST(&d->sessions)) != NULL) {
			TAILQ_REMOVE(&d->sessions, ss, link);
			s->ops->close(ss->cs);
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
				for (size_t i = 0; i < m->jobs[k]->cm.nrcpts;
				     i++)
					free(m->jobs[k]->cm.rcpts[i].text);
				free(m->jobs[k]->cm.rcpts);
			}
	}
	sched_free_msgs(s);
	pos = 0;
	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct dest *d = val;

		free(d->key);
		free(d->domain);
		conf_route_fini(&d->route);
		free(d->last_error);
		free(d);
	}
	hmap_free(s->dests);
	hmap_free(s->msgs);
	pos = 0;
	while (hmap_next(s->lanes, &pos, &key, &val))
		free(val);
	hmap_free(s->lanes);
	sched_state_free(s);
	free(s->heap);
	event_free(s->timer);
	free(s);
}

void
sched_set_conf(struct sched *s, const struct conf *cf)
{
	size_t n = 0, pos = 0;
	const char *key;
	void *val;
	char(*qids)[QID_SIZE] = xcalloc(hmap_count(s->msgs) + 1, QID_SIZE);

	s->cf = cf;
	/* Lanes follow their routes to their destinations now. */
	while (hmap_next(s->lanes, &pos, &key, &val)) {
		struct slane *l = val;
		struct dest *d = dest_for_lane(s, l->name);

		if (d == l->d)
			continue;
		TAILQ_REMOVE(&l->d->lanes, l, link);
		l->d = d;
		TAILQ_INSERT_TAIL(&d->lanes, l, link);
		l->cursor[0] = '\0';
		l->gen++;
		window_lane_reread(&l->w);
	}
	pos = 0;
	/*
	 * Routes may have changed: every job not in flight is planned again,
	 * so that it joins the destination its recipients now belong to.
	 * Destinations keep their state, so a store that is down is not
	 * hammered because of a reload.
	 */
	while (hmap_next(s->msgs, &pos, &key, &val))
		memcpy(qids[n++], key, QID_SIZE);
	for (size_t k = 0; k < n; k++) {
		struct smsg *m = hmap_get(s->msgs, qids[k]);

		for (size_t j = 0; j < m->njobs;)
			if (m->jobs[j]->in_flight)
				j++;
			else
				job_free(m->jobs[j]);
		sched_plan(s, m, 0);
	}
	free(qids);
	sched_dispatch_all(s);
}

void
sched_call_begin(struct sched *s, struct sched_call *c)
{
	c->s = s;
	LIST_INSERT_HEAD(&s->calls, c, link);
}

struct sched *
sched_call_end(struct sched_call *c)
{
	struct sched *s = c->s;

	if (s != NULL)
		LIST_REMOVE(c, link);
	c->s = NULL;
	return s;
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
		    .suspect = d->guard.suspect,
		    .paused = d->paused,
		    .messages = (size_t)dest_queued(d),
		    .connections = d->nsessions,
		    .concurrency = retry_dest_slots(&d->pol),
		    .next_probe =
			d->pol.state == DEST_BACKOFF ? d->pol.next_probe : 0,
		    .last_error = d->last_error,
		};

		if (in.messages > 0 || d->njobs > 0 || d->nsessions > 0 ||
		    d->paused)
			cb(arg, &in);
	}
	sched_foreach_saved_pause(s, cb, arg);
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
			d->pol.next_probe = sched_now_ms();
		for (size_t i = 0; i < s->nheap;) {
			if (s->heap[i]->d == d)
				job_ready(s->heap[i]);
			else
				i++;
		}
		dest_reread(d);
		n += (size_t)dest_queued(d);
	}
	sched_on_timer(-1, 0, s);
	return n;
}

int64_t
sched_rcpt_next(struct sched *s, const struct envelope *env, size_t idx,
    const char **state, const char **why)
{
	const struct env_rcpt *r = &env->rcpts[idx];
	const struct smsg *m = hmap_get(s->msgs, env->qid);
	int64_t now = sched_now_ms() / 1000, due = env->next_attempt;
	char key[512];
	struct dest *d = hmap_get(
	    s->dests, sched_dest_key(s->cf, env, r->addr, key, sizeof(key)));

	*state = retry_dest_state_str(d != NULL ? d->pol.state : DEST_UP);
	*why = d != NULL ? d->last_error : NULL;
	if ((d != NULL && d->paused) ||
	    (d == NULL && sched_saved_paused(s, key)))
		*state = "paused";
	if (r->state != RCPT_PENDING || (env->flags & ENV_HELD) ||
	    strcmp(*state, "paused") == 0)
		return 0;
	if (d != NULL && d->pol.state == DEST_BACKOFF)
		return d->pol.next_probe / 1000 > now ? d->pol.next_probe / 1000
						      : now;
	if (d != NULL && d->pol.state == DEST_PROBING)
		return now;
	/* Up: its job's due time while in memory, else the spool's. */
	for (size_t k = 0; m != NULL && k < m->njobs; k++)
		for (size_t i = 0; i < m->jobs[k]->nridx; i++)
			if (m->jobs[k]->ridx[i] == idx)
				due = m->jobs[k]->hpos != NO_POS
					  ? m->jobs[k]->due / 1000
					  : now;
	return due > now ? due : now;
}

bool
sched_in_flight(struct sched *s, const char *qid)
{
	const struct smsg *m = hmap_get(s->msgs, qid);

	return m != NULL && m->in_flight > 0;
}

/* A message of the window, tracked; NULL if it is not in the window. */
static struct smsg *
sched_msg(struct sched *s, const char *qid)
{
	struct envelope *env = queue_take(s->q, qid);

	return env != NULL ? sched_track(s, env) : NULL;
}

void
sched_tidy(struct sched *s, const char *qid)
{
	struct smsg *m = hmap_get(s->msgs, qid);

	if (m != NULL)
		smsg_park_if_idle(s, m);
	else
		queue_park(s->q, qid);
}

int
sched_flush_msg(struct sched *s, const char *qid)
{
	struct smsg *m = sched_msg(s, qid);

	if (m == NULL)
		return -1;
	if (!(m->env->flags & ENV_HELD))
		sched_plan(s, m, 0);
	for (size_t k = 0; k < m->njobs; k++) {
		struct dest *d = m->jobs[k]->d;

		if (d->pol.state == DEST_BACKOFF)
			d->pol.next_probe = sched_now_ms();
		job_ready(m->jobs[k]);
	}
	sched_on_timer(-1, 0, s);
	return 0;
}

int
sched_hold(struct sched *s, const char *qid, bool hold)
{
	struct smsg *m = sched_msg(s, qid);
	struct envelope *env;

	if (m == NULL)
		return -1;
	env = m->env;
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
	smsg_park_if_idle(s, m);
	return 0;
}

static void
sched_delete_now(struct sched *s, struct smsg *m)
{
	char qid[QID_SIZE];

	memcpy(qid, m->qid, QID_SIZE);
	smsg_free(s, m);
	log_event(qid, "removed by the operator");
	queue_remove(s->q, qid);
}

static void
sched_bounce_now(struct sched *s, struct smsg *m, const char *why)
{
	struct envelope *env = m->env;
	struct dsn_rcpt *list = xcalloc(env->nrcpts, sizeof(*list));
	size_t n = 0;

	for (size_t i = 0; i < env->nrcpts; i++) {
		struct env_rcpt *r = &env->rcpts[i];

		if (r->state != RCPT_PENDING ||
		    (m->notifying != NULL && m->notifying[i]))
			continue;
		job_drop_rcpt(m, i);
		queue_record(env, i,
		    &(struct rcpt_result){.outcome = OUTCOME_BOUNCED,
			.dsn = "5.0.0",
			.reply = why});
		list[n].idx = i;
		list[n].status = r->dsn_status;
		list[n].diagnostic = r->last_error;
		n++;
	}
	if (n > 0)
		sched_notify(s, m, DSN_FAILED, list, n);
	free(list);
	sched_settle(s, m);
}

void
sched_apply_doom(struct sched *s, struct smsg *m)
{
	if (m->in_flight > 0 || m->doom == DOOM_NONE)
		return;
	if (m->doom == DOOM_DELETE)
		sched_delete_now(s, m);
	else {
		char *why = m->doom_why;

		m->doom = DOOM_NONE;
		m->doom_why = NULL;
		sched_bounce_now(s, m, why);
		free(why);
	}
}

static int
sched_doom(struct sched *s, const char *qid, int doom, const char *why)
{
	struct smsg *m = sched_msg(s, qid);

	if (m == NULL)
		return -1;
	m->doom = doom;
	free(m->doom_why);
	m->doom_why = why ? xstrdup(why) : NULL;
	sched_apply_doom(s, m);
	return 0;
}

int
sched_delete(struct sched *s, const char *qid)
{
	return sched_doom(s, qid, DOOM_DELETE, NULL);
}

int
sched_bounce(struct sched *s, const char *qid, const char *why)
{
	return sched_doom(s, qid, DOOM_BOUNCE,
	    why && *why ? why : "returned to sender by the operator");
}
