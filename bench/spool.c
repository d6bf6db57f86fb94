/*
 * bench/spool: the spool's commit rate and latency against the physical
 * limit of one synced stream on the same file system, and recovery time.
 *
 *   spool fsync DIR SECONDS            write+fdatasync of 10 KiB records
 *   spool commit DIR SUBMITTERS COUNT  10 KiB messages through the queue
 *   spool fill DIR COUNT [unindexed]   a spool of COUNT small messages
 *                                      (unindexed: as before the index)
 *   spool recover DIR                  time to open and index it
 *
 * Each prints one line of key=value figures; bench/spool.sh runs them
 * several times and prints medians and ratios.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/xmem.h"
#include "queue/commit.h"
#include "queue/queue.h"
#include "queue/spool.h"

#define BODY_SIZE 10240

static double
now_s(void)
{
	return (double)commit_now_ns() / 1e9;
}

static int
bench_fsync(const char *dir, double secs)
{
	char *path = xasprintf("%s/fsync-bench.dat", dir), buf[BODY_SIZE];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	double t0 = now_s(), t;
	long n = 0;

	if (fd < 0) {
		perror(path);
		return 1;
	}
	memset(buf, 'x', sizeof(buf));
	do {
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
		    fdatasync(fd) < 0) {
			perror("write/fdatasync");
			return 1;
		}
		n++;
		t = now_s();
	} while (t - t0 < secs);
	printf("fsync_rate=%.0f\n", (double)n / (t - t0));
	close(fd);
	unlink(path);
	free(path);
	return 0;
}

struct run {
	struct event_base *base;
	struct queue *q;
	long left, done, total;
	double *lat;
	char *body;
};

struct sub {
	struct run *r;
	double t0;
};

static void sub_next(struct sub *s);

static void
on_done(void *arg, int status, const char *qid)
{
	struct sub *s = arg;
	struct run *r = s->r;

	(void)qid;
	if (status != QUEUE_OK) {
		fprintf(stderr, "bench: %s\n", queue_status_str(status));
		exit(1);
	}
	r->lat[r->done++] = now_s() - s->t0;
	if (r->done == r->total)
		event_base_loopbreak(r->base);
	else
		sub_next(s);
}

static void
sub_next(struct sub *s)
{
	struct run *r = s->r;
	struct envelope *env;
	char *body;

	if (r->left == 0)
		return;
	r->left--;
	env = envelope_new();
	queue_new_qid(r->q, 0, env->qid);
	env->sender = xstrdup("bench@sender.example");
	env->client_addr = xstrdup("127.0.0.1");
	env->arrival = qid_time(env->qid);
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	body = xmalloc(BODY_SIZE);
	memcpy(body, r->body, BODY_SIZE);
	s->t0 = now_s();
	queue_submit(r->q, env, body, BODY_SIZE, on_done, s);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
open_queue(struct run *r, const char *dir)
{
	static struct conf cf;
	char err[256];

	cf.spool_dir = (char *)(uintptr_t)dir;
	r->base = event_base_new();
	if (queue_open(&r->q, &cf, r->base, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
}

static int
bench_commit(const char *dir, int nsub, long count)
{
	struct run r = {.left = count, .total = count};
	struct sub *subs = xcalloc((size_t)nsub, sizeof(*subs));
	double t0, t1;

	open_queue(&r, dir);
	r.lat = xcalloc((size_t)count, sizeof(double));
	r.body = xmalloc(BODY_SIZE);
	/* Text-like bytes, so compression does what it would on mail. */
	for (int i = 0; i < BODY_SIZE; i++)
		r.body[i] =
		    (char)(i % 78 == 77 ? '\n' : 'a' + (i * 7 + i / 13) % 26);
	t0 = now_s();
	for (int i = 0; i < nsub; i++) {
		subs[i].r = &r;
		sub_next(&subs[i]);
	}
	event_base_dispatch(r.base);
	t1 = now_s();
	qsort(r.lat, (size_t)count, sizeof(double), cmp_double);
	printf("rate=%.0f p50_ms=%.2f p99_ms=%.2f\n", (double)count / (t1 - t0),
	    r.lat[count / 2] * 1e3, r.lat[count * 99 / 100] * 1e3);
	queue_close(r.q);
	event_base_free(r.base);
	return 0;
}

/* Writes count small messages straight into the spool, in large batches,
 * with their index entries and counters as the queue would have, or
 * without (a spool from before the index). */
static int
bench_fill(const char *dir, long count, bool indexed)
{
	struct spool *sp;
	struct qid_gen g;
	struct lane_count lane = {0};
	char err[256], key[LANE_SIZE + QID_SIZE], val[QINDEX_VAL];
	char cnt[QINDEX_COUNT];
	struct spool_batch *b;

	if (spool_open(&sp, dir, false, NULL, err, sizeof(err)) != QUEUE_OK) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	qid_gen_init(&g, NULL);
	for (long i = 0; i < count;) {
		char **keep = xcalloc(10000, sizeof(char *));
		int n = 0;

		b = spool_batch_new();
		for (; n < 10000 && i < count; n++, i++) {
			struct envelope *env = envelope_new();
			struct qindex qi;
			size_t len, klen;

			qid_next(&g, env->qid);
			env->sender = xstrdup("bench@sender.example");
			env->client_addr = xstrdup("192.0.2.1");
			env->arrival = qid_time(env->qid);
			env->size = 18;
			envelope_add_rcpt(env, "user@example.com", NULL, 0);
			keep[n] = envelope_encode(env, &len);
			spool_batch_put_meta(b, env->qid, keep[n], len);
			spool_batch_put_body(
			    b, env->qid, "Subject: x\r\n\r\nhi\r\n", 18);
			qindex_of(env, &qi);
			klen = qindex_key(qi.lanes[0], env->qid, key);
			qindex_val_encode(&qi, val); /* the same for all */
			if (indexed)
				spool_batch_put_aux(
				    b, SPOOL_INDEX, key, klen, val, QINDEX_VAL);
			qindex_count_add(&lane, &qi, 1);
			qindex_fini(&qi);
			envelope_free(env);
		}
		if (spool_write(sp, b, false, err, sizeof(err)) != QUEUE_OK) {
			fprintf(stderr, "bench: %s\n", err);
			return 1;
		}
		for (int k = 0; k < n; k++)
			free(keep[k]);
		free(keep);
		spool_batch_free(b);
	}
	if (!indexed) {
		spool_close(sp);
		return 0;
	}
	b = spool_batch_new();
	qindex_count_encode(&lane, cnt);
	spool_batch_put_aux(
	    b, SPOOL_LANES, "example.com", 11, cnt, QINDEX_COUNT);
	spool_batch_put_aux(b, SPOOL_LANES, "", 0, cnt, QINDEX_COUNT);
	spool_batch_mark_indexed(b);
	if (spool_write(sp, b, true, err, sizeof(err)) != QUEUE_OK) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	spool_batch_free(b);
	spool_close(sp);
	return 0;
}

static int
bench_recover(const char *dir)
{
	struct run r = {0};
	double t0 = now_s(), t;

	open_queue(&r, dir);
	t = now_s() - t0;
	printf("recover_s=%.2f messages=%zu\n", t, queue_count(r.q));
	queue_close(r.q);
	event_base_free(r.base);
	return 0;
}

int
main(int argc, char **argv)
{
	log_open("bench-spool", NULL, LOG_TO_STDERR, LOG_LV_WARN);
	/* A spool mxspoold will take (spool_dir_check): for it alone. */
	umask(077);
	if (argc == 4 && strcmp(argv[1], "fsync") == 0)
		return bench_fsync(argv[2], atof(argv[3]));
	if (argc == 5 && strcmp(argv[1], "commit") == 0)
		return bench_commit(argv[2], atoi(argv[3]), atol(argv[4]));
	if ((argc == 4 || (argc == 5 && strcmp(argv[4], "unindexed") == 0)) &&
	    strcmp(argv[1], "fill") == 0)
		return bench_fill(argv[2], atol(argv[3]), argc == 4);
	if (argc == 3 && strcmp(argv[1], "recover") == 0)
		return bench_recover(argv[2]);
	fprintf(stderr,
	    "usage: spool fsync DIR SECONDS | commit DIR SUBMITTERS "
	    "COUNT | fill DIR COUNT [unindexed] | recover DIR\n");
	return 2;
}
