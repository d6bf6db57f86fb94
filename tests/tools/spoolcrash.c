/*
 * The spool's crash test tool (tests/integration/test_spool_crash.py).
 *
 *   spoolcrash submit DIR SUBMITTERS SEED [MIN_FREE]
 *     Submits messages from SUBMITTERS concurrent submitters through the
 *     real queue (group commit and all) until killed, printing
 *     "ACK <qid> <sha256 of body> <length>" the moment each submission is
 *     reported durable: exactly when mxspoold would answer 250.
 *     A refused submission prints "NACK <qid> <reason>" and the submitter
 *     tries again a little later.
 *   spoolcrash verify DIR [strict] < acks
 *     Opens the spool as mxspoold does at start (recovery included, with
 *     spool_recovery = salvage, or strict when asked) and
 *     checks that every acknowledged id is there with a byte-identical
 *     body, and audits the index and counters against a full scan of the
 *     envelopes. Exits 0 when all is well, 1 (listing the failures)
 *     otherwise.
 *   spoolcrash corrupt DIR
 *     Writes two meta records that cannot be decoded, for the quarantine
 *     test.
 */
#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/xmem.h"
#include "queue/queue.h"
#include "queue/spool.h"

#define RUN_LIMIT 120 /* seconds: the tool stops by itself in any case */

static bool recovery_strict; /* spool_recovery = strict */

struct tool {
	struct event_base *base;
	struct queue *q;
	uint64_t rng;
	long outstanding;
	long bad;
};

static uint64_t
rnd(struct tool *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

static void
sha256_hex(const char *p, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* One submitter: its next message, submitted when the last is durable. */
struct submitter {
	struct tool *t;
	char hash[65];
	size_t len;
};

static void submit_next(struct submitter *s);

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	submit_next(arg);
}

static void
on_submitted(void *arg, int status, const char *qid)
{
	struct submitter *s = arg;
	struct timeval pause = {0, 20000};
	char line[128];
	int n;

	if (status == QUEUE_OK)
		n = snprintf(line, sizeof(line), "ACK %s %s %zu\n", qid,
		    s->hash, s->len);
	else
		n = snprintf(line, sizeof(line), "NACK %s %s\n", qid,
		    queue_status_str(status));
	/* One write(2) per line: a kill never leaves half a line. */
	if (write(1, line, (size_t)n) != n)
		exit(3);
	if (status == QUEUE_OK)
		submit_next(s);
	else
		event_base_once(
		    s->t->base, -1, EV_TIMEOUT, on_retry, s, &pause);
}

static void
submit_next(struct submitter *s)
{
	struct tool *t = s->t;
	struct envelope *env = envelope_new();
	size_t len = 200 + rnd(t) % 8000;
	char *body = xmalloc(len);

	for (size_t i = 0; i < len; i++)
		body[i] = (char)(' ' + rnd(t) % 90);
	queue_new_qid(t->q, 0, env->qid);
	env->sender = xstrdup("crash@test.example");
	env->client_addr = xstrdup("127.0.0.1");
	env->arrival = qid_time(env->qid);
	envelope_add_rcpt(env, "rcpt@example.com", NULL, 0);
	sha256_hex(body, len, s->hash);
	s->len = len;
	queue_submit(t->q, env, body, len, on_submitted, s);
}

static void
open_queue(struct tool *t, const char *dir, uint64_t min_free)
{
	static struct conf cf;
	char err[1024];

	cf.spool_dir = (char *)(uintptr_t)dir;
	cf.spool_min_free = min_free;
	cf.spool_recovery_strict = recovery_strict;
	t->base = event_base_new();
	if (queue_open(&t->q, &cf, t->base, err, sizeof(err)) < 0) {
		fprintf(stderr, "spoolcrash: %s\n", err);
		exit(1);
	}
}

static int
run_submit(const char *dir, int nsub, uint64_t seed, uint64_t min_free)
{
	struct tool t = {.rng = seed | 1};
	struct submitter *subs = xcalloc((size_t)nsub, sizeof(*subs));
	struct timeval limit = {RUN_LIMIT, 0};

	open_queue(&t, dir, min_free);
	for (int i = 0; i < nsub; i++) {
		subs[i].t = &t;
		submit_next(&subs[i]);
	}
	event_base_loopexit(t.base, &limit);
	event_base_dispatch(t.base);
	return 0;
}

/*
 * The audit: every message read through (the whole meta family, in
 * slices, as mxspoold would), its index entries and counters worked out
 * from its envelope, and compared with the counters the spool keeps and
 * with the index entries it holds. A crash at any moment must leave them
 * equal (DESIGN.md, contract 7).
 */
struct audit {
	struct tool *t;
	struct hmap *lanes; /* lane -> struct lane_count, as counted */
	struct lane_count total;
	char after[QID_SIZE];
	char (*names)[LANE_SIZE]; /* lanes whose index is counted */
	size_t nnames, ni;
	uint64_t entries;
	bool done;
};

static struct lane_count *
audit_lane(struct audit *a, const char *lane)
{
	struct lane_count *c = hmap_get(a->lanes, lane);

	if (c == NULL) {
		char *k = xstrdup(lane);

		c = xcalloc(1, sizeof(*c));
		hmap_put(a->lanes, k, c);
	}
	return c;
}

static void
audit_compare(struct audit *a, const char *lane, const struct lane_count *kept,
    const struct lane_count *counted)
{
	if (kept->messages == counted->messages &&
	    kept->bytes == counted->bytes && kept->held == counted->held)
		return;
	printf("counters of lane '%s': kept %" PRIu64 "/%" PRIu64 "/%" PRIu64
	       " messages/bytes/held, counted %" PRIu64 "/%" PRIu64 "/%" PRIu64
	       "\n",
	    lane, kept->messages, kept->bytes, kept->held, counted->messages,
	    counted->bytes, counted->held);
	a->t->bad++;
}

static void
audit_on_kept(
    void *arg, const char *lane, const struct lane_count *c, int64_t oldest)
{
	struct audit *a = arg;
	static const struct lane_count zero;
	const struct lane_count *counted = hmap_get(a->lanes, lane);

	(void)oldest;
	audit_compare(a, lane, c, counted != NULL ? counted : &zero);
	a->names = xrealloc(a->names, (a->nnames + 1) * LANE_SIZE);
	snprintf(a->names[a->nnames++], LANE_SIZE, "%s", lane);
}

static void audit_next(struct audit *a);

static void
audit_on_entries(void *arg, struct queue_page *pg)
{
	struct audit *a = arg;

	a->entries += pg->n;
	if (pg->last[0] != '\0')
		memcpy(a->after, pg->last, QID_SIZE);
	if (pg->end || pg->status != QUEUE_OK) {
		struct lane_count c, *counted;
		int64_t oldest;

		queue_lane_count(a->t->q, a->names[a->ni], &c, &oldest);
		counted = hmap_get(a->lanes, a->names[a->ni]);
		if (a->entries != c.messages ||
		    (counted != NULL && counted->messages != a->entries)) {
			printf("index of lane '%s': %" PRIu64
			       " entries, %" PRIu64 " messages kept\n",
			    a->names[a->ni], a->entries, c.messages);
			a->t->bad++;
		}
		a->entries = 0;
		a->after[0] = '\0';
		a->ni++;
	}
	audit_next(a);
}

static void
audit_on_page(void *arg, struct queue_page *pg)
{
	struct audit *a = arg;

	for (size_t i = 0; i < pg->n; i++) {
		struct qindex qi;

		qindex_of(pg->envs[i], &qi);
		for (size_t k = 0; k < qi.nlanes; k++)
			qindex_count_add(audit_lane(a, qi.lanes[k]), &qi, 1);
		qindex_count_add(&a->total, &qi, 1);
		qindex_fini(&qi);
	}
	if (pg->last[0] != '\0')
		memcpy(a->after, pg->last, QID_SIZE);
	if (pg->status != QUEUE_OK) {
		printf("the audit's scan failed\n");
		a->t->bad++;
		a->done = true;
	} else if (pg->end) {
		struct lane_count total;
		int64_t oldest;

		a->done = true;
		queue_totals(a->t->q, &total, &oldest);
		audit_compare(a, "(the whole spool)", &total, &a->total);
		queue_foreach_lane(a->t->q, audit_on_kept, a);
		a->after[0] = '\0';
	}
	audit_next(a);
}

static void
audit_next(struct audit *a)
{
	struct queue_scan sc = {.pick = QPICK_ALL, .limit = 256};

	memcpy(sc.after, a->after, QID_SIZE);
	if (!a->done) {
		queue_scan(a->t->q, &sc, audit_on_page, a);
		return;
	}
	if (a->ni < a->nnames) {
		sc.lane = a->names[a->ni];
		sc.keys_only = true;
		sc.limit = 4096;
		queue_scan(a->t->q, &sc, audit_on_entries, a);
		return;
	}
	event_base_loopbreak(a->t->base);
}

static void
audit_start(void *arg)
{
	audit_next(arg);
}

/* Runs the audit; returns when it is over. */
static void
run_audit(struct tool *t)
{
	struct audit a = {.t = t, .lanes = hmap_new()};
	size_t pos = 0;
	const char *key;
	void *val;

	queue_set_ready_cb(t->q, audit_start, &a);
	event_base_dispatch(t->base);
	while (hmap_next(a.lanes, &pos, &key, &val)) {
		free((char *)(uintptr_t)key);
		free(val);
	}
	hmap_free(a.lanes);
	free(a.names);
}

struct check {
	struct tool *t;
	char qid[QID_SIZE];
	char hash[65];
	size_t len;
};

static void
on_body(void *arg, int status, char *body, size_t len)
{
	struct check *c = arg;
	struct tool *t = c->t;
	char hash[65];

	t->outstanding--;
	if (status != QUEUE_OK) {
		printf("missing body %s\n", c->qid);
		c->t->bad++;
	} else {
		sha256_hex(body, len, hash);
		if (len != c->len || strcmp(hash, c->hash) != 0) {
			printf("different body %s\n", c->qid);
			c->t->bad++;
		}
	}
	free(body);
	free(c);
	if (t->outstanding == 0)
		event_base_loopbreak(t->base);
}

static void
on_envelope(void *arg, struct envelope *env)
{
	struct check *c = arg;

	if (env == NULL) {
		printf("missing envelope %s\n", c->qid);
		c->t->bad++;
	}
	envelope_free(env);
	queue_read_body(c->t->q, c->qid, on_body, c);
}

static int
run_verify(const char *dir)
{
	struct tool t = {0};
	char line[256];
	long nack = 0;

	open_queue(&t, dir, 0);
	run_audit(&t);
	while (fgets(line, sizeof(line), stdin) != NULL) {
		struct check *c = xcalloc(1, sizeof(*c));

		if (sscanf(line, "ACK %12s %64s %zu", c->qid, c->hash,
			&c->len) != 3) {
			free(c);
			continue;
		}
		nack++;
		c->t = &t;
		t.outstanding++;
		queue_get(t.q, c->qid, false, on_envelope, c);
	}
	if (t.outstanding > 0)
		event_base_dispatch(t.base);
	printf("verified %ld acknowledged messages; spool holds %zu; %ld bad\n",
	    nack, queue_count(t.q), t.bad);
	queue_close(t.q);
	event_base_free(t.base);
	return t.bad == 0 ? 0 : 1;
}

static int
run_corrupt(const char *dir)
{
	struct spool_batch *b = spool_batch_new();
	struct spool *sp;
	char err[1024];

	if (spool_open(&sp, dir, false, NULL, err, sizeof(err)) != QUEUE_OK) {
		fprintf(stderr, "spoolcrash: %s\n", err);
		return 1;
	}
	spool_batch_put_meta(b, "0000000000ZZ", "garbage", 7);
	spool_batch_put_meta(b, "not-a-queue-id", "E\001", 2);
	if (spool_write(sp, b, true, err, sizeof(err)) != QUEUE_OK) {
		fprintf(stderr, "spoolcrash: %s\n", err);
		return 1;
	}
	spool_batch_free(b);
	spool_close(sp);
	return 0;
}

int
main(int argc, char **argv)
{
	log_open("spoolcrash", NULL, LOG_TO_STDERR, LOG_LV_WARN);
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "submit") == 0)
		return run_submit(argv[2], atoi(argv[3]),
		    strtoull(argv[4], NULL, 10),
		    argc == 6 ? strtoull(argv[5], NULL, 10) : 0);
	if ((argc == 3 || (argc == 4 && strcmp(argv[3], "strict") == 0)) &&
	    strcmp(argv[1], "verify") == 0) {
		recovery_strict = argc == 4;
		return run_verify(argv[2]);
	}
	if (argc == 3 && strcmp(argv[1], "corrupt") == 0)
		return run_corrupt(argv[2]);
	fprintf(stderr,
	    "usage: spoolcrash submit DIR SUBMITTERS SEED [MIN_FREE]\n"
	    "       spoolcrash verify DIR [strict] < acks\n"
	    "       spoolcrash corrupt DIR\n");
	return 2;
}
