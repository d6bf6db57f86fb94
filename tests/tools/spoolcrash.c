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
 *   spoolcrash verify DIR < acks
 *     Opens the spool as mxspoold does at start (recovery included) and
 *     checks that every acknowledged id is there with a byte-identical
 *     body. Exits 0 when all are, 1 (listing the failures) otherwise.
 *   spoolcrash corrupt DIR
 *     Writes two meta records that cannot be decoded, for the quarantine
 *     test.
 */
#include <errno.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/xmem.h"
#include "queue/queue.h"
#include "queue/spool.h"

#define RUN_LIMIT 120 /* seconds: the tool stops by itself in any case */

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
		event_base_once(s->t->base, -1, EV_TIMEOUT, on_retry, s, &pause);
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
	queue_new_qid(t->q, env->qid);
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
	char err[256];

	cf.spool_dir = (char *)(uintptr_t)dir;
	cf.spool_min_free = min_free;
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

static int
run_verify(const char *dir)
{
	struct tool t = {0};
	char line[256];
	long nack = 0;

	open_queue(&t, dir, 0);
	while (fgets(line, sizeof(line), stdin) != NULL) {
		struct check *c = xcalloc(1, sizeof(*c));

		if (sscanf(line, "ACK %12s %64s %zu", c->qid, c->hash, &c->len) !=
		    3) {
			free(c);
			continue;
		}
		nack++;
		c->t = &t;
		if (queue_find(t.q, c->qid) == NULL) {
			printf("missing envelope %s\n", c->qid);
			t.bad++;
		}
		t.outstanding++;
		queue_read_body(t.q, c->qid, on_body, c);
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
	char err[256];

	if (spool_open(&sp, dir, err, sizeof(err)) != QUEUE_OK) {
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
	log_open("spoolcrash", LOG_TO_STDERR, LOG_LV_WARN);
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "submit") == 0)
		return run_submit(argv[2], atoi(argv[3]),
		    strtoull(argv[4], NULL, 10),
		    argc == 6 ? strtoull(argv[5], NULL, 10) : 0);
	if (argc == 3 && strcmp(argv[1], "verify") == 0)
		return run_verify(argv[2]);
	if (argc == 3 && strcmp(argv[1], "corrupt") == 0)
		return run_corrupt(argv[2]);
	fprintf(stderr, "usage: spoolcrash submit DIR SUBMITTERS SEED [MIN_FREE]\n"
			"       spoolcrash verify DIR < acks\n"
			"       spoolcrash corrupt DIR\n");
	return 2;
}
