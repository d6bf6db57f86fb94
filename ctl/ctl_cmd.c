/*
 * The control commands (see ctl.h for the protocol, mxspoolctl(8) for what
 * each does). Each is a function of the connection and the request; it
 * answers at once (ctl_reply, ctl_error), later from a callback that finds
 * the connection by id, or through a pump that streams the answer.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/hmap.h"
#include "common/idn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "ctl/ctl_int.h"
#include "ctl/reload.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "queue/sched.h"
#include "relay/server.h"

#define CTL_CHUNK (16 * 1024) /* bytes of a body per streamed line */
#define CTL_BATCH 64          /* listing items per pump call */

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

/* The request's message ids: the "ids" array of strings, each a queue id
 * in form. Returns how many, -1 after answering an error. */
static int
ctl_get_ids(struct ctl_conn *k, json_t *req, const char ***out)
{
	json_t *ids = json_object_get(req, "ids"), *v;
	size_t i;

	*out = NULL;
	if (ids == NULL)
		return 0;
	if (!json_is_array(ids)) {
		ctl_error(
		    k, CTL_E_BAD, "\"ids\" must be an array of queue ids");
		return -1;
	}
	json_array_foreach(ids, i, v)
	{
		const char *s = json_string_value(v);

		if (s == NULL || !qid_valid(s)) {
			ctl_error(k, CTL_E_BAD,
			    "bad queue id '%s' (12 letters "
			    "and digits, as in the log)",
			    s ? s : "(not a string)");
			return -1;
		}
	}
	*out = xcalloc(json_array_size(ids) + 1, sizeof(char *));
	for (i = 0; i < json_array_size(ids); i++)
		(*out)[i] = json_string_value(json_array_get(ids, i));
	return (int)json_array_size(ids);
}

/* An optional string argument; -1 after answering if it is no string. */
static int
ctl_get_str(struct ctl_conn *k, json_t *req, const char *name, const char **out)
{
	json_t *v = json_object_get(req, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0) {
		ctl_error(
		    k, CTL_E_BAD, "\"%s\" must be a non-empty string", name);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* Whether a lane is mail for domain: its domain, or its destination's
 * name (a route as written). */
static bool
lane_matches(const struct conf *cf, const char *lane, const char *domain)
{
	bool notices;
	char key[512];

	return idn_equal(qindex_lane_domain(lane, &notices), domain) ||
	       strcasecmp(sched_lane_dest_key(cf, lane, key, sizeof(key)),
		   domain) == 0;
}

/*
 * Walking a selection of messages: given ids, or every message of the
 * lanes a domain names, or every message. A page at a time is read from
 * the spool (queue_scan, queue_get), and each message of it handed to
 * `each`; the loop is never held longer than one page takes.
 */
struct walk {
	struct ctl *c;
	uint64_t cid;
	const struct conf *cf;
	struct sched *sched; /* to put back what its client left behind */
	char (*ids)[QID_SIZE];
	size_t nids, next;
	char (*lanes)[LANE_SIZE];
	size_t nlanes, capl, li;
	bool everything; /* every message, in arrival order */
	char after[QID_SIZE];
	bool admit;              /* into the window, to be acted on */
	uint64_t messages, held; /* the lanes' counters */
	/* Per message (env NULL: an id that is not queued); then at the end,
	 * which answers the request. */
	void (*each)(struct walk *w, struct ctl_conn *k, struct envelope *env,
	    const char *qid);
	void (*end)(struct walk *w, struct ctl_conn *k);
	bool fetching, done;
	bool stream;  /* list: paced by the client's reading (ctl_stream) */
	bool orphan;  /* its client left while a page was being read */
	bool in_pump; /* list_pump is running */
	const char *domain; /* while its lanes are picked (walk_on_lane) */
	json_t *reply;      /* a bulk command's answer (count_end) */
	size_t n, nheld, missing;
	struct ctl_filter f; /* only the messages that pass */
	char *sender, *rcpt; /* f's strings */
	size_t limit;        /* list: at most this many */
	size_t total;        /* list: the matches, listed or not */
	size_t counted;      /* list: the matches, as the counters say */
	bool count_rest;     /* list: past limit, counting on */
	bool hold;           /* hold or release */
	bool bounce;         /* bounce or delete */
	/* xfer: the messages picked, what was skipped, and where to. */
	char (*picked)[QID_SIZE];
	size_t npicked, cappicked;
	json_t *skips;
	char *to;
};

static void
walk_free(void *arg)
{
	struct walk *w = arg;

	free(w->ids);
	free(w->lanes);
	free(w->sender);
	free(w->rcpt);
	free(w->picked);
	json_decref(w->skips);
	free(w->to);
	free(w);
}

/*
 * A message with pending recipients in several lanes of a walk is met in
 * each of them: it counts in the first only (as the spool is now).
 */
static bool
walk_met_before(const struct walk *w, const struct envelope *env)
{
	char lane[LANE_SIZE];

	if (w->ids != NULL || w->everything || w->li == 0)
		return false;
	for (size_t i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != RCPT_PENDING)
			continue;
		qindex_lane(env, env->rcpts[i].addr, lane);
		for (size_t j = 0; j < w->li && j < w->nlanes; j++)
			if (strcmp(w->lanes[j], lane) == 0)
				return true;
	}
	return false;
}

/* A streamed walk's client left: freed now, or by the page being read. */
static void
walk_release(void *arg)
{
	struct walk *w = arg;

	if (w->fetching)
		w->orphan = true;
	else
		walk_free(w);
}

/* After a page: a walk that is a stream goes on as the client reads. */
static void walk_next(struct walk *w);

static void
walk_go_on(struct walk *w, struct ctl_conn *k)
{
	if (w->stream)
		ctl_stream_kick(k);
	else
		walk_next(w);
}

static void
walk_on_lane(
    void *arg, const char *lane, const struct lane_count *c, int64_t oldest)
{
	struct walk *w = arg;

	(void)oldest;
	if (!lane_matches(w->cf, lane, w->domain))
		return;
	w->lanes = xgrow(w->lanes, &w->capl, w->nlanes + 1, LANE_SIZE);
	snprintf(w->lanes[w->nlanes++], LANE_SIZE, "%s", lane);
	w->messages += c->messages;
	w->held += c->held;
}

/* Puts back what a page brought into the window and no one kept (not at
 * shutdown: the scheduler is gone then). */
static void
walk_tidy(struct walk *w, const char *qid)
{
	if (ctl_is_live(w->c))
		sched_tidy(w->sched, qid);
}

static void walk_next(struct walk *w);

static struct ctl_conn *
walk_conn(struct walk *w)
{
	return ctl_conn_find(w->c, w->cid);
}

static void
walk_on_get(void *arg, struct envelope *env)
{
	struct walk *w = arg;
	struct ctl_conn *k = walk_conn(w);
	char qid[QID_SIZE];

	memcpy(qid, w->ids[w->next - 1], QID_SIZE);
	w->fetching = false;
	if (k == NULL) {
		if (!w->admit)
			envelope_free(env);
		else if (env != NULL)
			walk_tidy(w, qid);
		if (!w->stream || w->orphan)
			walk_free(w);
		return;
	}
	w->each(w, k, env, qid);
	if (!w->admit)
		envelope_free(env);
	else if (queue_find(ctl_conn_ctx(k)->deps->q, qid) != NULL)
		walk_tidy(w, qid);
	walk_go_on(w, k);
}

static void
walk_on_page(void *arg, struct queue_page *pg)
{
	struct walk *w = arg;
	struct ctl_conn *k = walk_conn(w);

	w->fetching = false;
	for (size_t i = 0; i < pg->n; i++) {
		char qid[QID_SIZE];

		memcpy(qid, pg->envs[i]->qid, QID_SIZE);
		if (k != NULL && !walk_met_before(w, pg->envs[i]))
			w->each(w, k, pg->envs[i], qid);
		if (w->admit &&
		    (k == NULL ||
			queue_find(ctl_conn_ctx(k)->deps->q, qid) != NULL))
			walk_tidy(w, qid);
	}
	if (k == NULL) {
		if (!w->stream || w->orphan)
			walk_free(w);
		return;
	}
	if (pg->last[0] != '\0')
		memcpy(w->after, pg->last, QID_SIZE);
	if (pg->status != QUEUE_OK || pg->end) {
		w->after[0] = '\0';
		w->li++;
		if (w->everything || pg->status != QUEUE_OK)
			w->done = true;
	}
	walk_go_on(w, k);
}

/* Reads the next page, or ends the walk. */
static void
walk_next(struct walk *w)
{
	struct ctl_conn *k = walk_conn(w);
	const struct ctl_ctx *x;
	struct queue_scan sc = {.pick = QPICK_ALL, .limit = 64};

	if (k == NULL) {
		if (!w->stream)
			walk_free(w);
		return;
	}
	x = ctl_conn_ctx(k);
	if (w->limit > 0 && w->n >= w->limit && !w->count_rest)
		w->done = true;
	if (w->ids != NULL && w->next >= w->nids)
		w->done = true;
	if (w->ids == NULL && !w->everything && w->li >= w->nlanes)
		w->done = true;
	if (w->done) {
		w->end(w, k); /* frees w, or leaves it to the stream */
		return;
	}
	w->fetching = true;
	if (w->ids != NULL) {
		queue_get(
		    x->deps->q, w->ids[w->next++], w->admit, walk_on_get, w);
		return;
	}
	sc.lane = w->everything ? NULL : w->lanes[w->li];
	sc.admit = w->admit;
	memcpy(sc.after, w->after, QID_SIZE);
	queue_scan(x->deps->q, &sc, walk_on_page, w);
}

/*
 * The request's filters into w (its strings copied): "sender" ("" the
 * null sender), "rcpt", "older_than" and "younger_than" (seconds), "held".
 * Returns -1 after answering a bad one.
 */
static int
walk_get_filter(struct ctl_conn *k, json_t *req, struct walk *w)
{
	static const char *const ages[] = {"older_than", "younger_than"};
	json_t *sender = json_object_get(req, "sender");
	const char *rcpt;

	w->f.older = w->f.younger = -1;
	w->f.now = now_s();
	w->f.held = json_is_true(json_object_get(req, "held"));
	if (sender != NULL && !json_is_null(sender)) {
		if (!json_is_string(sender)) {
			ctl_error(k, CTL_E_BAD,
			    "\"sender\" must be a string (\"\" for <>)");
			return -1;
		}
		w->f.sender = w->sender = xstrdup(json_string_value(sender));
	}
	if (ctl_get_str(k, req, "rcpt", &rcpt) < 0)
		return -1;
	if (rcpt != NULL)
		w->f.rcpt = w->rcpt = xstrdup(rcpt);
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(req, ages[i]);

		if (v == NULL || json_is_null(v))
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			ctl_error(k, CTL_E_BAD,
			    "\"%s\" must be a whole number of seconds",
			    ages[i]);
			return -1;
		}
		*(i == 0 ? &w->f.older : &w->f.younger) = json_integer_value(v);
	}
	return 0;
}

/*
 * A walk over what the request names: "ids", or "domain" (every message
 * of its lanes), or with all_ok "all"; a domain or all narrowed by the
 * filters (walk_get_filter). Answers and returns NULL on a bad request or
 * a domain with no mail.
 */
static struct walk *
walk_new(struct ctl_conn *k, json_t *req, bool all_ok)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char **ids;
	const char *domain;
	bool all = json_is_true(json_object_get(req, "all"));
	struct walk *w;
	int n;

	if ((n = ctl_get_ids(k, req, &ids)) < 0 ||
	    ctl_get_str(k, req, "domain", &domain) < 0) {
		free(ids);
		return NULL;
	}
	if ((n > 0) + (domain != NULL) + all != 1 || (all && !all_ok)) {
		free(ids);
		ctl_error(k, CTL_E_BAD, "give message ids%s or a domain",
		    all_ok ? ", all" : "");
		return NULL;
	}
	w = xcalloc(1, sizeof(*w));
	if (walk_get_filter(k, req, w) < 0) {
		free(ids);
		walk_free(w);
		return NULL;
	}
	if (n > 0 && ctl_filter_any(&w->f)) {
		ctl_error(
		    k, CTL_E_BAD, "filters narrow a domain or all, not ids");
		free(ids);
		walk_free(w);
		return NULL;
	}
	w->c = x->c;
	w->cid = ctl_conn_id(k);
	w->cf = x->cf;
	w->sched = x->deps->sched;
	w->admit = true;
	if (n > 0) {
		w->ids = xcalloc((size_t)n, QID_SIZE);
		for (int i = 0; i < n; i++)
			memcpy(w->ids[i], ids[i], QID_SIZE);
		w->nids = (size_t)n;
	}
	free(ids);
	if (domain != NULL) {
		w->domain = domain;
		queue_foreach_lane(x->deps->q, walk_on_lane, w);
		w->domain = NULL;
		if (w->messages == 0) {
			ctl_error(k, CTL_E_NOT_FOUND, "no mail queued for %s",
			    domain);
			walk_free(w);
			return NULL;
		}
	}
	w->everything = all;
	return w;
}

/* An id that is not queued fails the whole request, as before any
 * message is touched: the ids are looked up first. */
static void
walk_missing(struct walk *w, struct ctl_conn *k)
{
	ctl_error(k, CTL_E_NOT_FOUND, "no message %s in the queue",
	    w->ids[w->missing - 1]);
	walk_free(w);
}

/* summary: per destination, from the counters and the scheduler. */
struct sum_dest {
	char *name;
	uint64_t messages, held;
	uint64_t bytes;
	int64_t oldest;       /* unix seconds; 0 unknown */
	int64_t next_attempt; /* unix seconds; 0 unknown */
	char *last_error;
	uint64_t ages[CTL_AGE_BUCKETS];
	const char *state;
	size_t connections;
	bool paused;
};

struct sum {
	struct ctl *c;
	uint64_t cid;
	const struct conf *cf;
	struct hmap *dests;
	int64_t now;
	uint64_t ages[CTL_AGE_BUCKETS];
	bool ages_wanted;
	/* --ages: the lanes, each read through (ids only) */
	char (*lanes)[LANE_SIZE];
	size_t nlanes, capl, li;
	char after[QID_SIZE];
};

static struct sum_dest *
sum_dest_get(struct sum *s, const char *name)
{
	struct sum_dest *d = hmap_get(s->dests, name);

	if (d == NULL) {
		d = xcalloc(1, sizeof(*d));
		d->name = xstrdup(name);
		hmap_put(s->dests, d->name, d);
	}
	return d;
}

static void
sum_on_lane(
    void *arg, const char *lane, const struct lane_count *c, int64_t oldest)
{
	struct sum *s = arg;
	char key[512];
	struct sum_dest *d =
	    sum_dest_get(s, sched_lane_dest_key(s->cf, lane, key, sizeof(key)));

	d->messages += c->messages;
	d->held += c->held;
	d->bytes += c->bytes;
	oldest /= 1000000;
	if (oldest > 0 && (d->oldest == 0 || oldest < d->oldest))
		d->oldest = oldest;
	if (s->ages_wanted) {
		s->lanes = xgrow(s->lanes, &s->capl, s->nlanes + 1, LANE_SIZE);
		snprintf(s->lanes[s->nlanes++], LANE_SIZE, "%s", lane);
	}
}

static void
sum_on_dest(void *arg, const struct sched_dest_info *in)
{
	struct sum *s = arg;
	struct sum_dest *d = hmap_get(s->dests, in->name);

	/* Jobs of messages that have just left are not shown; a paused
	 * destination is, mail or not, lest it be forgotten. */
	if (d == NULL && !in->paused)
		return;
	if (d == NULL)
		d = sum_dest_get(s, in->name);
	d->paused = in->paused;
	d->state = in->suspect ? "suspect" : in->state;
	d->connections = in->connections;
	if (in->next_probe > 0)
		d->next_attempt = in->next_probe / 1000;
	if (in->last_error != NULL) {
		free(d->last_error);
		d->last_error = xstrdup(in->last_error);
	}
}

static json_t *
ctl_ages_json(const uint64_t *ages)
{
	json_t *a = json_array();

	for (int i = 0; i < CTL_AGE_BUCKETS; i++)
		json_array_append_new(a, json_integer((json_int_t)ages[i]));
	return a;
}

static int
sum_cmp(const void *a, const void *b)
{
	const struct sum_dest *x = *(struct sum_dest *const *)a;
	const struct sum_dest *y = *(struct sum_dest *const *)b;

	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void
sum_free(struct sum *s)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(s->dests, &pos, &key, &val)) {
		struct sum_dest *d = val;

		free(d->name);
		free(d->last_error);
		free(d);
	}
	hmap_free(s->dests);
	free(s->lanes);
	free(s);
}

static void
sum_reply(struct sum *s, struct ctl_conn *k)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	json_t *res = json_object(), *arr = json_array(), *labels, *tot;
	struct sum_dest **v;
	struct lane_count total;
	int64_t oldest;
	size_t n = 0, pos = 0;
	const char *key;
	void *val;

	sched_foreach_dest(x->deps->sched, sum_on_dest, s);
	v = xcalloc(hmap_count(s->dests) + 1, sizeof(*v));
	while (hmap_next(s->dests, &pos, &key, &val))
		v[n++] = val;
	qsort(v, n, sizeof(*v), sum_cmp);
	for (size_t i = 0; i < n; i++) {
		struct sum_dest *d = v[i];
		const char *state = d->state;
		json_t *o;

		if (d->messages == 0 && !d->paused)
			continue;
		if (d->paused)
			state = "paused";
		else if (d->held == d->messages)
			state = "held";
		else if (state == NULL)
			state = "up";
		if (d->next_attempt == 0 && strcmp(state, "up") == 0)
			d->next_attempt = s->now;
		o = json_pack("{s:o,s:I,s:I,s:I,s:I,s:I,s:s,s:o,s:o,s:I}",
		    "name", ctl_json_str(d->name), "messages",
		    (json_int_t)d->messages, "held", (json_int_t)d->held,
		    "bytes", (json_int_t)d->bytes, "oldest",
		    (json_int_t)d->oldest, "oldest_age",
		    (json_int_t)(d->oldest ? s->now - d->oldest : 0), "state",
		    state, "next_attempt",
		    d->held == d->messages || d->next_attempt == 0 || d->paused
			? json_null()
			: json_integer(d->next_attempt),
		    "last_error", ctl_json_str(d->last_error), "connections",
		    (json_int_t)d->connections);
		json_object_set_new(o, "paused", json_boolean(d->paused));
		if (s->ages_wanted)
			json_object_set_new(o, "ages", ctl_ages_json(d->ages));
		json_array_append_new(arr, o);
	}
	free(v);
	queue_totals(x->deps->q, &total, &oldest);
	json_object_set_new(res, "node", json_string(x->cf->node_id));
	json_object_set_new(res, "now", json_integer(s->now));
	json_object_set_new(res, "destinations", arr);
	tot = json_pack("{s:I,s:I,s:I}", "messages", (json_int_t)total.messages,
	    "held", (json_int_t)total.held, "bytes", (json_int_t)total.bytes);
	if (s->ages_wanted) {
		json_object_set_new(tot, "ages", ctl_ages_json(s->ages));
		labels = json_array();
		for (int i = 0; i < CTL_AGE_BUCKETS; i++)
			json_array_append_new(
			    labels, json_string(ctl_age_bucket_label(i)));
		json_object_set_new(res, "age_buckets", labels);
	}
	json_object_set_new(res, "total", tot);
	if (queue_indexing(x->deps->q))
		json_object_set_new(res, "indexing", json_true());
	ctl_reply(k, res);
	sum_free(s);
}

/* --ages: each lane's ids read through, a slice at a time. */
static void sum_next(struct sum *s);

static void
sum_on_ids(void *arg, struct queue_page *pg)
{
	struct sum *s = arg;
	struct ctl_conn *k = ctl_conn_find(s->c, s->cid);
	char key[512];
	struct sum_dest *d;

	if (k == NULL) {
		sum_free(s);
		return;
	}
	d = sum_dest_get(s, sched_lane_dest_key(ctl_conn_ctx(k)->cf,
				s->lanes[s->li], key, sizeof(key)));
	for (size_t i = 0; i < pg->n; i++) {
		int b =
		    ctl_age_bucket(s->now - qid_time(pg->qids[i]) / 1000000);

		d->ages[b]++;
		s->ages[b]++;
	}
	if (pg->last[0] != '\0')
		memcpy(s->after, pg->last, QID_SIZE);
	if (pg->end || pg->status != QUEUE_OK) {
		s->li++;
		s->after[0] = '\0';
	}
	sum_next(s);
}

static void
sum_next(struct sum *s)
{
	struct ctl_conn *k = ctl_conn_find(s->c, s->cid);
	struct queue_scan sc = {
	    .pick = QPICK_ALL, .limit = 4096, .keys_only = true};

	if (k == NULL) {
		sum_free(s);
		return;
	}
	if (s->li >= s->nlanes) {
		sum_reply(s, k);
		return;
	}
	sc.lane = s->lanes[s->li];
	memcpy(sc.after, s->after, QID_SIZE);
	queue_scan(ctl_conn_ctx(k)->deps->q, &sc, sum_on_ids, s);
}

static void
cmd_summary(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct sum *s = xcalloc(1, sizeof(*s));

	s->c = x->c;
	s->cid = ctl_conn_id(k);
	s->cf = x->cf;
	s->dests = hmap_new();
	s->now = now_s();
	s->ages_wanted = json_is_true(json_object_get(req, "ages"));
	/* From the counters: O(destinations), whatever the spool holds.
	 * The age histogram alone reads the index (ids only). */
	queue_foreach_lane(x->deps->q, sum_on_lane, s);
	if (s->ages_wanted)
		sum_next(s);
	else
		sum_reply(s, k);
}

/*
 * A message as JSON (ctl_msg_json), with what the scheduler plans: each
 * recipient's next attempt and its destination's state and last error,
 * the message's next attempt (the earliest of them; null when none is
 * planned), and whether it is being delivered now (active).
 */
static json_t *
ctl_msg_planned(const struct ctl_ctx *x, const struct envelope *env)
{
	json_t *o = ctl_msg_json(x->cf, env);
	json_t *rcpts = json_object_get(o, "recipients");
	int64_t first = 0;

	for (size_t i = 0; i < env->nrcpts; i++) {
		json_t *r = json_array_get(rcpts, i);
		const char *state, *why;
		int64_t next =
		    sched_rcpt_next(x->deps->sched, env, i, &state, &why);

		json_object_set_new(r, "next_attempt",
		    next > 0 ? json_integer(next) : json_null());
		json_object_set_new(r, "destination_state", json_string(state));
		json_object_set_new(r, "destination_error", ctl_json_str(why));
		if (next > 0 && (first == 0 || next < first))
			first = next;
	}
	json_object_set_new(
	    o, "next_attempt", first > 0 ? json_integer(first) : json_null());
	json_object_set_new(o, "active",
	    json_boolean(sched_in_flight(x->deps->sched, env->qid)));
	return o;
}

/* list: the matching messages streamed, a page at a time, as the client
 * reads them. */
static void
list_each(
    struct walk *w, struct ctl_conn *k, struct envelope *env, const char *qid)
{
	(void)qid;
	if (env == NULL || !ctl_filter_match(&w->f, env))
		return;
	w->total++;
	if (w->limit > 0 && w->n >= w->limit)
		return; /* counted only */
	ctl_send(k, "item", ctl_msg_planned(ctl_conn_ctx(k), env));
	w->n++;
}

static void
list_end(struct walk *w, struct ctl_conn *k)
{
	w->done = true;
	if (!w->in_pump)
		ctl_stream_kick(k); /* the pump answers */
}

static int
list_pump(struct ctl_conn *k, void *arg)
{
	struct walk *w = arg;
	json_t *res;

	if (!w->done && !w->fetching) {
		w->in_pump = true;
		walk_next(w);
		w->in_pump = false;
	}
	if (w->done && !w->fetching) {
		size_t total = w->total; /* what the walk met */

		/* Stopped at the limit: the counters know the rest. */
		if (!w->count_rest && w->n >= w->limit && w->counted > total)
			total = w->counted;
		res = json_pack("{s:I}", "count", (json_int_t)w->n);
		if (w->limit > 0)
			json_object_set_new(
			    res, "total", json_integer((json_int_t)total));
		ctl_reply(k, res);
		return 1;
	}
	return -1;
}

/*
 * With a limit, list says how many match in all. The counters know it for
 * the whole queue or one lane, with no filter but held; anything else is
 * counted by reading on past the limit.
 */
static void
list_total(struct walk *w, const struct queue *q)
{
	struct lane_count c = {0};
	int64_t oldest;

	if (w->f.sender != NULL || w->f.rcpt != NULL || w->f.older >= 0 ||
	    w->f.younger >= 0 || (!w->everything && w->nlanes > 1)) {
		w->count_rest = true;
		return;
	}
	if (w->everything)
		queue_totals(q, &c, &oldest);
	else if (w->nlanes == 1)
		queue_lane_count(q, w->lanes[0], &c, &oldest);
	w->counted = (size_t)(w->f.held ? c.held : c.messages);
}

static void
cmd_list(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct walk *w;
	const char *domain;
	json_t *limit = json_object_get(req, "limit");

	if (ctl_get_str(k, req, "domain", &domain) < 0)
		return;
	if (limit != NULL &&
	    (!json_is_integer(limit) || json_integer_value(limit) < 1)) {
		ctl_error(k, CTL_E_BAD, "\"limit\" must be a whole number");
		return;
	}
	w = xcalloc(1, sizeof(*w));
	if (walk_get_filter(k, req, w) < 0) {
		walk_free(w);
		return;
	}
	w->c = x->c;
	w->cid = ctl_conn_id(k);
	w->cf = x->cf;
	if (limit != NULL)
		w->limit = (size_t)json_integer_value(limit);
	if (domain != NULL) {
		w->domain = domain;
		queue_foreach_lane(x->deps->q, walk_on_lane, w);
		w->domain = NULL;
	} else
		w->everything = true;
	if (w->limit > 0)
		list_total(w, x->deps->q);
	w->each = list_each;
	w->end = list_end;
	w->stream = true;
	/* The walk is the stream's: it is freed when the request ends. */
	ctl_stream(k, list_pump, w, walk_release);
}

/* show: the envelope; with "part", the header or the whole body streamed
 * in chunks, as text when they are UTF-8 without NUL, else base64: any
 * octet goes through. */
struct show_state {
	uint64_t cid;
	struct ctl *c;
	char qid[QID_SIZE];
	int part; /* 0 envelope, 1 headers, 2 body */
	char *body;
	size_t len, off;
};

static void
show_free(void *arg)
{
	struct show_state *ss = arg;

	free(ss->body);
	free(ss);
}

static json_t *
ctl_base64(const char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	const unsigned char *u = (const unsigned char *)p;
	json_t *j;

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)u[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)u[i + 1] << 8;
		if (i + 2 < n)
			v |= u[i + 2];
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	j = json_stringn(out, (size_t)(o - out));
	free(out);
	return j;
}

static int
show_pump(struct ctl_conn *k, void *arg)
{
	struct show_state *ss = arg;
	size_t n = ss->len - ss->off;
	const char *p = ss->body + ss->off;
	json_t *o, *text;

	if (n == 0) {
		ctl_reply(k, json_pack("{s:I}", "bytes", (json_int_t)ss->len));
		return 1;
	}
	if (n > CTL_CHUNK) {
		/* End on a line, so a UTF-8 character is not cut in two. */
		const char *nl = memrchr(p, '\n', CTL_CHUNK);

		n = nl != NULL ? (size_t)(nl - p) + 1 : CTL_CHUNK;
	}
	o = json_object();
	/* NUL is UTF-8 but no JSON reader takes it by default. */
	text = memchr(p, '\0', n) == NULL ? json_stringn(p, n) : NULL;
	if (text != NULL) {
		json_object_set_new(o, "data", text);
		json_object_set_new(o, "encoding", json_string("text"));
	} else {
		json_object_set_new(o, "data", ctl_base64(p, n));
		json_object_set_new(o, "encoding", json_string("base64"));
	}
	ss->off += n;
	ctl_send(k, "chunk", o);
	return 0;
}

static void
show_on_body(void *arg, int status, char *body, size_t len)
{
	struct show_state *ss = arg;
	struct ctl_conn *k = ctl_conn_find(ss->c, ss->cid);

	if (k == NULL) {
		free(body);
		show_free(ss);
		return;
	}
	if (status != QUEUE_OK) {
		free(body);
		show_free(ss);
		ctl_error(k, CTL_E_NOT_FOUND,
		    "the message left the queue, or "
		    "its body could not be read");
		return;
	}
	ss->body = body;
	ss->len = len;
	/* "headers": up to the blank line that ends them. */
	if (ss->part == 1) {
		for (size_t i = 0; i < len; i++)
			if (body[i] == '\n' &&
			    (i + 1 == len || body[i + 1] == '\n' ||
				(body[i + 1] == '\r' && i + 2 < len &&
				    body[i + 2] == '\n'))) {
				ss->len = i + 1;
				break;
			}
	}
	ctl_stream(k, show_pump, ss, show_free);
}

static void
show_on_env(void *arg, struct envelope *env)
{
	struct show_state *ss = arg;
	struct ctl_conn *k = ctl_conn_find(ss->c, ss->cid);
	const struct ctl_ctx *x;
	struct envelope *mem;

	if (k == NULL) {
		envelope_free(env);
		show_free(ss);
		return;
	}
	x = ctl_conn_ctx(k);
	if (env == NULL) {
		ctl_error(
		    k, CTL_E_NOT_FOUND, "no message %s in the queue", ss->qid);
		show_free(ss);
		return;
	}
	if (ss->part == 0) {
		/* In the window it may be newer than in the spool. */
		mem = queue_find(x->deps->q, ss->qid);
		ctl_reply(k, ctl_msg_planned(x, mem != NULL ? mem : env));
		envelope_free(env);
		show_free(ss);
		return;
	}
	envelope_free(env);
	queue_read_body(x->deps->q, ss->qid, show_on_body, ss);
}

static void
cmd_show(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *id, *part;
	struct show_state *ss;

	if (ctl_get_str(k, req, "qid", &id) < 0 ||
	    ctl_get_str(k, req, "part", &part) < 0)
		return;
	if (id == NULL || !qid_valid(id)) {
		ctl_error(k, CTL_E_BAD, "bad queue id '%s'", id ? id : "");
		return;
	}
	if (part != NULL && strcmp(part, "envelope") != 0 &&
	    strcmp(part, "headers") != 0 && strcmp(part, "body") != 0) {
		ctl_error(
		    k, CTL_E_BAD, "\"part\" is envelope, headers or body");
		return;
	}
	ss = xcalloc(1, sizeof(*ss));
	ss->c = x->c;
	ss->cid = ctl_conn_id(k);
	memcpy(ss->qid, id, QID_SIZE);
	ss->part = part == NULL || strcmp(part, "envelope") == 0 ? 0
		   : strcmp(part, "headers") == 0                ? 1
								 : 2;
	queue_get(x->deps->q, id, false, show_on_env, ss);
}

/* The bulk commands: each acts on the messages of its walk as they are
 * read into the window, and answers with how many it changed. */
static void
count_end(struct walk *w, struct ctl_conn *k)
{
	if (w->missing > 0) {
		json_decref(w->reply);
		walk_missing(w, k);
		return;
	}
	ctl_reply(k, w->reply);
	walk_free(w);
}

static void
flush_each(
    struct walk *w, struct ctl_conn *k, struct envelope *env, const char *qid)
{
	if (env == NULL)
		w->missing = w->next;
	else if (!ctl_filter_match(&w->f, env))
		return;
	else if (env->flags & ENV_HELD)
		w->nheld++;
	else if (sched_flush_msg(ctl_conn_ctx(k)->deps->sched, qid) == 0)
		w->n++;
}

static void
flush_end(struct walk *w, struct ctl_conn *k)
{
	log_info("control: flush of %zu messages", w->n);
	w->reply = json_pack("{s:I,s:I}", "flushed", (json_int_t)w->n, "held",
	    (json_int_t)w->nheld);
	count_end(w, k);
}

static void
cmd_flush(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct walk *w;
	const char *domain = json_string_value(json_object_get(req, "domain"));
	struct lane_count total;
	int64_t oldest;

	if ((w = walk_new(k, req, true)) == NULL)
		return;
	if (w->everything && !ctl_filter_any(&w->f)) {
		/* Every destination is probed or read again: no walk. */
		sched_flush(x->deps->sched, NULL);
		queue_totals(x->deps->q, &total, &oldest);
		log_info("control: flush of everything (%" PRIu64 " messages)",
		    total.messages - total.held);
		ctl_reply(k, json_pack("{s:I,s:I}", "flushed",
				 (json_int_t)(total.messages - total.held),
				 "held", (json_int_t)total.held));
		walk_free(w);
		return;
	}
	if (domain != NULL && !ctl_filter_any(&w->f)) {
		/* Its lanes are read again, due or not, and a destination
		 * backing off is probed at once: no walk needed. */
		sched_flush(x->deps->sched, domain);
		log_info("control: flush of %" PRIu64 " messages for %s",
		    w->messages - w->held, domain);
		ctl_reply(k, json_pack("{s:I,s:I}", "flushed",
				 (json_int_t)(w->messages - w->held), "held",
				 (json_int_t)w->held));
		walk_free(w);
		return;
	}
	w->each = flush_each;
	w->end = flush_end;
	walk_next(w);
}

static void
hold_each(
    struct walk *w, struct ctl_conn *k, struct envelope *env, const char *qid)
{
	if (env == NULL) {
		w->missing = w->next;
		return;
	}
	if (!!(env->flags & ENV_HELD) == w->hold ||
	    !ctl_filter_match(&w->f, env))
		return;
	if (sched_hold(ctl_conn_ctx(k)->deps->sched, qid, w->hold) == 0) {
		log_event(
		    qid, "%s by the operator", w->hold ? "held" : "released");
		w->n++;
	}
}

static void
hold_end(struct walk *w, struct ctl_conn *k)
{
	w->reply =
	    json_pack("{s:I}", w->hold ? "held" : "released", (json_int_t)w->n);
	count_end(w, k);
}

static void
ctl_hold(struct ctl_conn *k, json_t *req, bool hold)
{
	struct walk *w = walk_new(k, req, true);

	if (w == NULL)
		return;
	w->hold = hold;
	w->each = hold_each;
	w->end = hold_end;
	walk_next(w);
}

static void
cmd_hold(struct ctl_conn *k, json_t *req)
{
	ctl_hold(k, req, true);
}

static void
cmd_release(struct ctl_conn *k, json_t *req)
{
	ctl_hold(k, req, false);
}

static void
remove_each(
    struct walk *w, struct ctl_conn *k, struct envelope *env, const char *qid)
{
	struct sched *sc = ctl_conn_ctx(k)->deps->sched;
	int rc;

	if (env == NULL) {
		w->missing = w->next;
		return;
	}
	if (!ctl_filter_match(&w->f, env))
		return;
	rc = w->bounce ? sched_bounce(sc, qid, "returned by the postmaster")
		       : sched_delete(sc, qid);
	if (rc == 0) {
		log_event(qid, "%s by the operator",
		    w->bounce ? "returned to sender" : "deleted");
		w->n++;
	}
}

static void
remove_end(struct walk *w, struct ctl_conn *k)
{
	w->reply = json_pack(
	    "{s:I}", w->bounce ? "bounced" : "deleted", (json_int_t)w->n);
	count_end(w, k);
}

static void
ctl_remove(struct ctl_conn *k, json_t *req, bool bounce)
{
	struct walk *w;
	const char *verb = bounce ? "bounce" : "delete";

	if (!json_is_true(json_object_get(req, "yes"))) {
		ctl_error(k, CTL_E_CONFIRM,
		    "%s cannot be undone: confirm with \"yes\": true", verb);
		return;
	}
	if (bounce && json_object_get(req, "domain") != NULL) {
		ctl_error(k, CTL_E_BAD, "bounce takes message ids");
		return;
	}
	if ((w = walk_new(k, req, !bounce)) == NULL)
		return;
	w->bounce = bounce;
	w->each = remove_each;
	w->end = remove_end;
	walk_next(w);
}

static void
cmd_delete(struct ctl_conn *k, json_t *req)
{
	ctl_remove(k, req, false);
}

static void
cmd_bounce(struct ctl_conn *k, json_t *req)
{
	ctl_remove(k, req, true);
}

/*
 * xfer: the messages of the walk are picked (one being delivered now, or
 * held, is skipped and said so), then handed to the peer one at a time
 * (ctl/xfer.c), which answers.
 */
static void
xfer_each(
    struct walk *w, struct ctl_conn *k, struct envelope *env, const char *qid)
{
	const char *why = NULL;

	if (env == NULL) {
		w->missing = w->next;
		return;
	}
	if (!ctl_filter_match(&w->f, env))
		return;
	if (sched_in_flight(ctl_conn_ctx(k)->deps->sched, qid))
		why = "being delivered";
	else if (env->flags & ENV_HELD)
		why = "held";
	if (why != NULL) {
		json_array_append_new(
		    w->skips, json_pack("{s:s,s:s}", "id", qid, "reason", why));
		return;
	}
	w->picked = xgrow(w->picked, &w->cappicked, w->npicked + 1, QID_SIZE);
	memcpy(w->picked[w->npicked++], qid, QID_SIZE);
}

static void
xfer_end(struct walk *w, struct ctl_conn *k)
{
	if (w->missing > 0) {
		walk_missing(w, k);
		return;
	}
	xfer_run(k, w->to, w->picked, w->npicked, w->skips);
	w->picked = NULL;
	w->skips = NULL;
	walk_free(w);
}

static void
cmd_xfer(struct ctl_conn *k, json_t *req)
{
	struct walk *w;
	const char *to;
	struct conf_route r;

	if (ctl_get_str(k, req, "to", &to) < 0)
		return;
	if (to == NULL || conf_parse_route(to, &r) < 0) {
		ctl_error(k, CTL_E_BAD,
		    "give \"to\": a peer's route, smtp:[HOST]:PORT");
		return;
	}
	if (r.kind != ROUTE_SMTP) {
		conf_route_fini(&r);
		ctl_error(k, CTL_E_BAD,
		    "\"to\" must be smtp:[HOST]:PORT (a peer_listen)");
		return;
	}
	conf_route_fini(&r);
	if ((w = walk_new(k, req, true)) == NULL)
		return;
	w->to = xstrdup(to);
	w->skips = json_array();
	w->each = xfer_each;
	w->end = xfer_end;
	walk_next(w);
}

struct route_req {
	struct ctl *c;
	uint64_t cid;
	bool relay;
};

static void
route_on_answer(void *arg, const struct dns_answer *ans)
{
	struct route_req *r = arg;
	struct ctl_conn *k = ctl_conn_find(r->c, r->cid);
	json_t *res;

	if (k != NULL) {
		res = dns_answer_json(ans);
		json_object_set_new(
		    res, "relay_domain", json_boolean(r->relay));
		ctl_reply(k, res);
	}
	free(r);
}

static void
cmd_route(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *domain;
	char ace[IDN_NAME_SIZE], why[128];
	struct route_req *r;

	if (ctl_get_str(k, req, "domain", &domain) < 0)
		return;
	/* Either form; the lookup and the answer use the A-labels. */
	if (domain == NULL ||
	    idn_to_ascii(domain, ace, sizeof(ace), why, sizeof(why)) < 0) {
		ctl_error(k, CTL_E_BAD, "bad domain name '%s': %s",
		    domain ? domain : "", domain ? why : "empty name");
		return;
	}
	domain = ace;
	r = xcalloc(1, sizeof(*r));
	r->c = x->c;
	r->cid = ctl_conn_id(k);
	r->relay = conf_is_relay_domain(x->cf, domain);
	/* XXX: if the client leaves, the lookup still runs to its end and
	 * the answer is dropped: cancelling needs the id kept per conn. */
	dns_route(x->deps->dns, domain, route_on_answer, r);
}

/* The destination a guard command names: a domain or a route's text. */
static const char *
ctl_dest_name(struct ctl_conn *k, json_t *req)
{
	const char *name;

	if (ctl_get_str(k, req, "domain", &name) < 0)
		return NULL;
	if (name == NULL || name[0] == '\0' || strlen(name) > 255 ||
	    strpbrk(name, " \t\r\n") != NULL) {
		ctl_error(
		    k, CTL_E_BAD, "bad destination '%s'", name ? name : "");
		return NULL;
	}
	return name;
}

static void
cmd_trust(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *name = ctl_dest_name(k, req);
	int n;

	if (name == NULL)
		return;
	n = sched_trust(x->deps->sched, name);
	if (n == 0) {
		ctl_error(
		    k, CTL_E_NOT_FOUND, "no suspect destination %s", name);
		return;
	}
	log_info("control: %s trusted again by the operator", name);
	ctl_reply(k, json_pack("{s:i}", "trusted", n));
}

struct bs_req {
	struct ctl *c;
	uint64_t cid;
	char *name;
};

static void
bounce_suspect_done(void *arg, long n)
{
	struct bs_req *r = arg;
	struct ctl_conn *k = ctl_conn_find(r->c, r->cid);

	log_info(
	    "control: bounce-suspect %s: %ld recipients returned", r->name, n);
	if (k != NULL)
		ctl_reply(k, json_pack("{s:I}", "bounced", (json_int_t)n));
	free(r->name);
	free(r);
}

static void
cmd_bounce_suspect(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *name = ctl_dest_name(k, req);
	struct bs_req *r;

	if (name == NULL)
		return;
	if (!json_is_true(json_object_get(req, "yes"))) {
		ctl_error(k, CTL_E_CONFIRM,
		    "bounce-suspect cannot be undone: confirm with \"yes\": "
		    "true");
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->c = x->c;
	r->cid = ctl_conn_id(k);
	r->name = xstrdup(name);
	if (sched_bounce_suspect(x->deps->sched, name, bounce_suspect_done, r) <
	    0) {
		ctl_error(k, CTL_E_NOT_FOUND, "no destination %s", name);
		free(r->name);
		free(r);
	}
}

/* pause and resume: a destination's delivery, stopped and started. */
static void
ctl_pause(struct ctl_conn *k, json_t *req, bool pause)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *name;
	char key[512];
	uint64_t n;
	int rc;

	if (ctl_get_str(k, req, "destination", &name) < 0)
		return;
	if (name == NULL || strlen(name) > 255 ||
	    strpbrk(name, " \t\r\n") != NULL) {
		ctl_error(
		    k, CTL_E_BAD, "bad destination '%s'", name ? name : "");
		return;
	}
	rc = sched_pause(x->deps->sched, name, pause, key, sizeof(key), &n);
	switch ((enum sched_pause_status)rc) {
	case SCHED_NO_DEST:
		ctl_error(k, CTL_E_NOT_FOUND,
		    "no destination %s: give a route as summary shows it, or "
		    "a relay domain",
		    name);
		return;
	case SCHED_NOT_PAUSED:
		ctl_error(k, CTL_E_NOT_FOUND, "%s is not paused", key);
		return;
	case SCHED_SAME:
		ctl_reply(k, json_pack("{s:s,s:I,s:b}", "paused", key,
				 "messages", (json_int_t)n, "already", 1));
		return;
	}
	ctl_reply(k, json_pack("{s:s,s:I}", pause ? "paused" : "resumed", key,
			 "messages", (json_int_t)n));
}

static void
cmd_pause(struct ctl_conn *k, json_t *req)
{
	ctl_pause(k, req, true);
}

static void
cmd_resume(struct ctl_conn *k, json_t *req)
{
	ctl_pause(k, req, false);
}

static void
cmd_stats(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	json_t *res = metrics_json();
	struct lane_count total;
	int64_t oldest;

	(void)req;
	queue_totals(x->deps->q, &total, &oldest);
	json_object_set_new(res, "spool",
	    json_pack("{s:I,s:I,s:I,s:I}", "messages",
		(json_int_t)total.messages, "bytes", (json_int_t)total.bytes,
		"held", (json_int_t)total.held, "in_memory",
		(json_int_t)queue_window(x->deps->q)));
	json_object_set_new(res, "connections_open",
	    json_integer((json_int_t)server_nsessions(x->deps->srv)));
	ctl_reply(k, res);
}

static void
cmd_reload(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct reload_report rep = {0};
	char *errors = NULL;
	json_t *res;

	(void)req;
	if (x->reload(x->reload_arg, &errors, &rep) < 0) {
		size_t n = errors ? strlen(errors) : 0;

		while (n > 0 && errors[n - 1] == '\n')
			errors[--n] = '\0';
		ctl_error(
		    k, CTL_E_CONFIG, "%s", errors ? errors : "reload failed");
		free(errors);
		reload_report_fini(&rep);
		return;
	}
	/* What changed, applied or for the next start, and warnings; the
	 * socket may have moved: the client is told where it is now (still
	 * the old one if the new one could not be opened). */
	res = reload_report_json(&rep);
	reload_report_fini(&rep);
	json_object_set_new(res, "reloaded", json_true());
	json_object_set_new(res, "config",
	    ctl_json_str(
		ctl_conn_ctx(k)->cf->path ? ctl_conn_ctx(k)->cf->path : ""));
	json_object_set_new(
	    res, "control_socket", ctl_json_str(ctl_socket_path(x->c)));
	ctl_reply(k, res);
}

static const struct {
	const char *name;
	void (*run)(struct ctl_conn *k, json_t *req);
} ctl_cmds[] = {
    {"summary", cmd_summary},
    {"list", cmd_list},
    {"show", cmd_show},
    {"flush", cmd_flush},
    {"hold", cmd_hold},
    {"release", cmd_release},
    {"delete", cmd_delete},
    {"bounce", cmd_bounce},
    {"route", cmd_route},
    {"trust", cmd_trust},
    {"bounce-suspect", cmd_bounce_suspect},
    {"pause", cmd_pause},
    {"resume", cmd_resume},
    {"stats", cmd_stats},
    {"reload", cmd_reload},
    {"xfer", cmd_xfer},
};

void
ctl_dispatch(struct ctl_conn *k, const char *cmd, json_t *req)
{
	for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (strcmp(ctl_cmds[i].name, cmd) == 0) {
			ctl_cmds[i].run(k, req);
			return;
		}
	ctl_error(k, CTL_E_UNKNOWN, "unknown command '%.64s'", cmd);
}
