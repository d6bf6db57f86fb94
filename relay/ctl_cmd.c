/*
 * The control commands (see ctl.h for the protocol, mxspoolctl(8) for what
 * each does). Each is a function of the connection and the request; it
 * answers at once (ctl_reply, ctl_error), later from a callback that finds
 * the connection by id, or through a pump that streams the answer.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "queue/sched.h"
#include "relay/ctl_int.h"
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

/* The messages a request names: ids, or every one matching domain. */
struct sel {
	char (*qids)[QID_SIZE];
	size_t n, cap;
	const struct conf *cf;
	const char *domain;
	int held; /* -1 any, 0 not held, 1 held */
};

static void
sel_add(struct sel *s, const char *qid)
{
	s->qids = xgrow(s->qids, &s->cap, s->n + 1, QID_SIZE);
	memcpy(s->qids[s->n++], qid, QID_SIZE);
}

static void
sel_on_msg(void *arg, struct envelope *env)
{
	struct sel *s = arg;

	if (s->held >= 0 && !!(env->flags & ENV_HELD) != s->held)
		return;
	if (s->domain == NULL || ctl_msg_matches(s->cf, env, s->domain))
		sel_add(s, env->qid);
}

/*
 * Fills s from "ids" or "domain" (or, with all_ok, "all"); answers and
 * returns -1 on a bad request, an unknown id or a domain with no mail.
 */
static int
ctl_select(struct ctl_conn *k, json_t *req, struct sel *s, bool all_ok)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char **ids;
	const char *domain;
	bool all = json_is_true(json_object_get(req, "all"));
	int n;

	memset(s, 0, sizeof(*s));
	s->cf = x->cf;
	s->held = -1;
	if ((n = ctl_get_ids(k, req, &ids)) < 0 ||
	    ctl_get_str(k, req, "domain", &domain) < 0) {
		free(ids);
		return -1;
	}
	if ((n > 0) + (domain != NULL) + all != 1 || (all && !all_ok)) {
		free(ids);
		ctl_error(k, CTL_E_BAD, "give message ids%s or a domain",
		    all_ok ? ", all" : "");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (queue_find(x->deps->q, ids[i]) == NULL) {
			ctl_error(k, CTL_E_NOT_FOUND,
			    "no message %s in the queue", ids[i]);
			free(ids);
			free(s->qids);
			s->qids = NULL;
			return -1;
		}
		sel_add(s, ids[i]);
	}
	free(ids);
	if (domain != NULL) {
		s->domain = domain;
		queue_foreach(x->deps->q, sel_on_msg, s);
		if (s->n == 0) {
			ctl_error(k, CTL_E_NOT_FOUND, "no mail queued for %s",
			    domain);
			return -1;
		}
	}
	return 0;
}

/* summary: per destination, from the queue and the scheduler. */
struct sum_dest {
	char *name;
	size_t messages, held;
	uint64_t bytes;
	int64_t oldest;       /* unix seconds */
	int64_t next_attempt; /* unix seconds; 0 unknown */
	char *last_error;
	int64_t last_error_at;
	uint64_t ages[CTL_AGE_BUCKETS];
	const char *state;
	size_t connections;
};

struct sum {
	const struct conf *cf;
	struct hmap *dests;
	int64_t now;
	size_t messages;
	uint64_t bytes;
	uint64_t ages[CTL_AGE_BUCKETS];
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
sum_on_msg(void *arg, struct envelope *env)
{
	struct sum *s = arg;
	int64_t arrival = env->arrival / 1000000;
	int b = ctl_age_bucket(s->now - arrival);
	char key[512];
	struct sum_dest *seen[16];
	size_t nseen = 0;

	s->messages++;
	s->bytes += env->size;
	s->ages[b]++;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];
		struct sum_dest *d;
		bool dup = false;

		if (r->state != RCPT_PENDING)
			continue;
		d = sum_dest_get(
		    s, sched_dest_key(s->cf, env, r->addr, key, sizeof(key)));
		if (r->last_error != NULL &&
		    env->last_attempt >= d->last_error_at) {
			free(d->last_error);
			d->last_error = xstrdup(r->last_error);
			d->last_error_at = env->last_attempt;
		}
		for (size_t j = 0; j < nseen && !dup; j++)
			dup = seen[j] == d;
		if (dup)
			continue;
		if (nseen < sizeof(seen) / sizeof(seen[0]))
			seen[nseen++] = d;
		d->messages++;
		d->bytes += env->size;
		if (d->oldest == 0 || arrival < d->oldest)
			d->oldest = arrival;
		d->ages[b]++;
		if (env->flags & ENV_HELD)
			d->held++;
		else if (d->next_attempt == 0 ||
			 env->next_attempt < d->next_attempt)
			d->next_attempt =
			    env->next_attempt > 0 ? env->next_attempt : s->now;
	}
}

static void
sum_on_dest(void *arg, const struct sched_dest_info *in)
{
	struct sum *s = arg;
	struct sum_dest *d = hmap_get(s->dests, in->name);

	if (d == NULL)
		return; /* jobs of messages that have just left */
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
cmd_summary(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct sum s = {.cf = x->cf, .dests = hmap_new(), .now = now_s()};
	json_t *res = json_object(), *arr = json_array(), *labels;
	struct sum_dest **v;
	size_t n = 0, pos = 0;
	const char *key;
	void *val;

	(void)req;
	/* XXX: one pass over the whole queue on the loop; fine for the
	 * hundreds of thousands of messages a node holds (tens of ms). */
	queue_foreach(x->deps->q, sum_on_msg, &s);
	sched_foreach_dest(x->deps->sched, sum_on_dest, &s);
	v = xcalloc(hmap_count(s.dests) + 1, sizeof(*v));
	while (hmap_next(s.dests, &pos, &key, &val))
		v[n++] = val;
	qsort(v, n, sizeof(*v), sum_cmp);
	for (size_t i = 0; i < n; i++) {
		struct sum_dest *d = v[i];
		const char *state = d->state;

		if (d->held == d->messages)
			state = "held";
		else if (state == NULL)
			state = "up";
		json_array_append_new(arr,
		    json_pack("{s:o,s:I,s:I,s:I,s:I,s:I,s:s,s:o,s:o,s:I,s:o}",
			"name", ctl_json_str(d->name), "messages",
			(json_int_t)d->messages, "held", (json_int_t)d->held,
			"bytes", (json_int_t)d->bytes, "oldest",
			(json_int_t)d->oldest, "oldest_age",
			(json_int_t)(s.now - d->oldest), "state", state,
			"next_attempt",
			d->held == d->messages || d->next_attempt == 0
			    ? json_null()
			    : json_integer(d->next_attempt),
			"last_error", ctl_json_str(d->last_error),
			"connections", (json_int_t)d->connections, "ages",
			ctl_ages_json(d->ages)));
		free(d->name);
		free(d->last_error);
		free(d);
	}
	free(v);
	hmap_free(s.dests);
	labels = json_array();
	for (int i = 0; i < CTL_AGE_BUCKETS; i++)
		json_array_append_new(
		    labels, json_string(ctl_age_bucket_label(i)));
	json_object_set_new(res, "now", json_integer(s.now));
	json_object_set_new(res, "destinations", arr);
	json_object_set_new(res, "total",
	    json_pack("{s:I,s:I,s:o}", "messages", (json_int_t)s.messages,
		"bytes", (json_int_t)s.bytes, "ages", ctl_ages_json(s.ages)));
	json_object_set_new(res, "age_buckets", labels);
	ctl_reply(k, res);
}

/* list: the matching messages' ids, then each one streamed as it is
 * written, read again from the queue (it may have left meanwhile). */
struct list_state {
	struct sel sel;
	char *domain;
	int64_t before; /* arrival earlier than this (unix s); 0 any */
	size_t next, count, limit;
};

static void
list_free(void *arg)
{
	struct list_state *ls = arg;

	free(ls->sel.qids);
	free(ls->domain);
	free(ls);
}

static void
list_on_msg(void *arg, struct envelope *env)
{
	sel_add(arg, env->qid);
}

static int
list_qid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, QID_SIZE);
}

static int
list_pump(struct ctl_conn *k, void *arg)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct list_state *ls = arg;

	for (int i = 0; i < CTL_BATCH; i++) {
		struct envelope *env;

		if (ls->next >= ls->sel.n ||
		    (ls->limit > 0 && ls->count >= ls->limit)) {
			ctl_reply(k,
			    json_pack("{s:I}", "count", (json_int_t)ls->count));
			return 1;
		}
		env = queue_find(x->deps->q, ls->sel.qids[ls->next++]);
		if (env == NULL)
			continue;
		if (ls->sel.held == 1 && !(env->flags & ENV_HELD))
			continue;
		if (ls->before > 0 && env->arrival / 1000000 >= ls->before)
			continue;
		if (ls->domain != NULL &&
		    !ctl_msg_matches(x->cf, env, ls->domain))
			continue;
		ctl_send(k, "item", ctl_msg_json(x->cf, env));
		ls->count++;
	}
	return 0;
}

static void
cmd_list(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct list_state *ls;
	const char *domain;
	json_t *older = json_object_get(req, "older_than");
	json_t *limit = json_object_get(req, "limit");

	if (ctl_get_str(k, req, "domain", &domain) < 0)
		return;
	if ((older != NULL &&
		(!json_is_integer(older) || json_integer_value(older) < 0)) ||
	    (limit != NULL &&
		(!json_is_integer(limit) || json_integer_value(limit) < 1))) {
		ctl_error(k, CTL_E_BAD,
		    "\"older_than\" (seconds) and \"limit\" "
		    "must be whole numbers");
		return;
	}
	ls = xcalloc(1, sizeof(*ls));
	ls->sel.held = json_is_true(json_object_get(req, "held")) ? 1 : -1;
	ls->domain = domain ? xstrdup(domain) : NULL;
	if (older != NULL)
		ls->before = now_s() - json_integer_value(older) + 1;
	if (limit != NULL)
		ls->limit = (size_t)json_integer_value(limit);
	queue_foreach(x->deps->q, list_on_msg, &ls->sel);
	/* Queue ids sort in arrival order. */
	qsort(ls->sel.qids, ls->sel.n, QID_SIZE, list_qid_cmp);
	ctl_stream(k, list_pump, ls, list_free);
}

/* show: the envelope; with "part", the header or the whole body streamed
 * in chunks, as text when they are UTF-8, else base64. */
struct show_state {
	uint64_t cid;
	struct ctl *c;
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
	text = json_stringn(p, n);
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
	if (ss->off == 1) {
		for (size_t i = 0; i < len; i++)
			if (body[i] == '\n' &&
			    (i + 1 == len || body[i + 1] == '\n' ||
				(body[i + 1] == '\r' && i + 2 < len &&
				    body[i + 2] == '\n'))) {
				ss->len = i + 1;
				break;
			}
		ss->off = 0;
	}
	ctl_stream(k, show_pump, ss, show_free);
}

static void
cmd_show(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *id, *part;
	struct envelope *env;
	struct show_state *ss;

	if (ctl_get_str(k, req, "qid", &id) < 0 ||
	    ctl_get_str(k, req, "part", &part) < 0)
		return;
	if (id == NULL || !qid_valid(id)) {
		ctl_error(k, CTL_E_BAD, "bad queue id '%s'", id ? id : "");
		return;
	}
	if ((env = queue_find(x->deps->q, id)) == NULL) {
		ctl_error(k, CTL_E_NOT_FOUND, "no message %s in the queue", id);
		return;
	}
	if (part == NULL || strcmp(part, "envelope") == 0) {
		ctl_reply(k, ctl_msg_json(x->cf, env));
		return;
	}
	if (strcmp(part, "headers") != 0 && strcmp(part, "body") != 0) {
		ctl_error(
		    k, CTL_E_BAD, "\"part\" is envelope, headers or body");
		return;
	}
	ss = xcalloc(1, sizeof(*ss));
	ss->c = x->c;
	ss->cid = ctl_conn_id(k);
	ss->off =
	    strcmp(part, "headers") == 0; /* a flag until the body comes */
	queue_read_body(x->deps->q, id, show_on_body, ss);
}

static void
cmd_flush(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct sel s;
	size_t n = 0, held = 0;

	if (json_is_true(json_object_get(req, "all"))) {
		n = sched_flush(x->deps->sched, NULL);
		log_info("control: flush of everything (%zu messages)", n);
		ctl_reply(k, json_pack("{s:I}", "flushed", (json_int_t)n));
		return;
	}
	if (ctl_select(k, req, &s, true) < 0)
		return;
	if (s.domain != NULL) {
		/* Also probes a destination named domain backing off. */
		sched_flush(x->deps->sched, s.domain);
	}
	for (size_t i = 0; i < s.n; i++) {
		struct envelope *env = queue_find(x->deps->q, s.qids[i]);

		if (env != NULL && (env->flags & ENV_HELD))
			held++;
		else if (sched_flush_msg(x->deps->sched, s.qids[i]) == 0)
			n++;
	}
	log_info("control: flush of %zu messages%s%s", n,
	    s.domain ? " for " : "", s.domain ? s.domain : "");
	free(s.qids);
	ctl_reply(k, json_pack("{s:I,s:I}", "flushed", (json_int_t)n, "held",
			 (json_int_t)held));
}

static void
ctl_hold(struct ctl_conn *k, json_t *req, bool hold)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct sel s;
	size_t n = 0;

	if (ctl_select(k, req, &s, false) < 0)
		return;
	for (size_t i = 0; i < s.n; i++) {
		struct envelope *env = queue_find(x->deps->q, s.qids[i]);

		if (env == NULL || !!(env->flags & ENV_HELD) == hold)
			continue;
		if (sched_hold(x->deps->sched, s.qids[i], hold) == 0) {
			log_event(s.qids[i], "%s by the operator",
			    hold ? "held" : "released");
			n++;
		}
	}
	free(s.qids);
	ctl_reply(
	    k, json_pack("{s:I}", hold ? "held" : "released", (json_int_t)n));
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
ctl_remove(struct ctl_conn *k, json_t *req, bool bounce)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	struct sel s;
	size_t n = 0;
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
	if (ctl_select(k, req, &s, false) < 0)
		return;
	for (size_t i = 0; i < s.n; i++) {
		int rc = bounce ? sched_bounce(x->deps->sched, s.qids[i],
				      "returned by the postmaster")
				: sched_delete(x->deps->sched, s.qids[i]);

		if (rc == 0) {
			log_event(s.qids[i], "%s by the operator",
			    bounce ? "returned to sender" : "deleted");
			n++;
		}
	}
	free(s.qids);
	ctl_reply(k,
	    json_pack("{s:I}", bounce ? "bounced" : "deleted", (json_int_t)n));
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
	struct route_req *r;

	if (ctl_get_str(k, req, "domain", &domain) < 0)
		return;
	if (domain == NULL || !conf_valid_domain(domain)) {
		ctl_error(
		    k, CTL_E_BAD, "bad domain name '%s'", domain ? domain : "");
		return;
	}
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
		ctl_error(k, CTL_E_BAD, "bad destination '%s'",
		    name ? name : "");
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
		ctl_error(k, CTL_E_NOT_FOUND, "no suspect destination %s", name);
		return;
	}
	log_info("control: %s trusted again by the operator", name);
	ctl_reply(k, json_pack("{s:i}", "trusted", n));
}

static void
cmd_bounce_suspect(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	const char *name = ctl_dest_name(k, req);
	long n;

	if (name == NULL)
		return;
	if (!json_is_true(json_object_get(req, "yes"))) {
		ctl_error(k, CTL_E_CONFIRM,
		    "bounce-suspect cannot be undone: confirm with \"yes\": "
		    "true");
		return;
	}
	n = sched_bounce_suspect(x->deps->sched, name);
	if (n < 0) {
		ctl_error(k, CTL_E_NOT_FOUND, "no destination %s", name);
		return;
	}
	log_info("control: bounce-suspect %s: %ld recipients returned", name,
	    n);
	ctl_reply(k, json_pack("{s:I}", "bounced", (json_int_t)n));
}

static void
stats_on_msg(void *arg, struct envelope *env)
{
	uint64_t *bytes = arg;

	*bytes += env->size;
}

static void
cmd_stats(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	json_t *res = metrics_json();
	uint64_t bytes = 0;

	(void)req;
	queue_foreach(x->deps->q, stats_on_msg, &bytes);
	json_object_set_new(res, "spool",
	    json_pack("{s:I,s:I}", "messages",
		(json_int_t)queue_count(x->deps->q), "bytes",
		(json_int_t)bytes));
	json_object_set_new(res, "connections_open",
	    json_integer((json_int_t)server_nsessions(x->deps->srv)));
	ctl_reply(k, res);
}

static void
cmd_reload(struct ctl_conn *k, json_t *req)
{
	const struct ctl_ctx *x = ctl_conn_ctx(k);
	char *errors = NULL;

	(void)req;
	if (x->reload(x->reload_arg, &errors) < 0) {
		size_t n = errors ? strlen(errors) : 0;

		while (n > 0 && errors[n - 1] == '\n')
			errors[--n] = '\0';
		ctl_error(
		    k, CTL_E_CONFIG, "%s", errors ? errors : "reload failed");
		free(errors);
		return;
	}
	ctl_reply(
	    k, json_pack("{s:b,s:s}", "reloaded", 1, "config",
		   ctl_conn_ctx(k)->cf->path ? ctl_conn_ctx(k)->cf->path : ""));
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
    {"stats", cmd_stats},
    {"reload", cmd_reload},
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
