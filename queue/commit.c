#define LOG_ROLE "qmgr"
/*
 * Group commit. The loop thread appends operations to `pending` under a
 * mutex and signals the writer. The writer takes everything pending at
 * once, writes it as one batch (synced when it holds a new message, so
 * one fsync covers every message that arrived meanwhile), and hands the
 * batch back on `done`, waking the loop with an eventfd. No RocksDB call
 * ever happens on the loop thread.
 *
 * Which writes are synced: new messages always (a 250 depends on them).
 * Status updates and deletes after delivery are not: losing one in a
 * power cut only means the message is delivered again (at-least-once),
 * and they ride on the next synced batch anyway.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "queue/commit.h"
#include "queue/qid.h"
#include "queue/queue.h"
#include "queue/spool.h"

/* A batch stops growing past this many bytes; the rest waits its turn. */
#define COMMIT_BATCH_BYTES (32u << 20)
/* After a failed write, how often the writer looks whether the spool can
 * be reopened: at the next write, or this often while none comes. */
#define COMMIT_RETRY_NS 1000000000LL

struct commit {
	struct spool *sp;
	char *dir;
	_Atomic uint64_t min_free; /* bytes the disk keeps free */
	/* The writer thread's own: */
	bool broken;   /* a write failed: no more until reopened */
	bool down;     /* a reopen failed: sp has no database */
	int broken_st; /* the failed write's queue_status */
	int64_t broken_ns, retry_ns; /* when it broke; the next reopen */
	bool reopen_logged;          /* a failed reopen was logged */
	/* Under lock, for the loop (commit_refusing): */
	char why[256]; /* "" while writes are taken */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct commit_list pending, done;
	bool stop;
	int efd;
	struct event *ev;
};

int64_t
commit_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Whether the spool's file system has room for bytes more and still keeps
 * min_free for RocksDB's own flushes and compactions. Like Postfix's
 * queue_minfree: mail is refused (452 4.3.1) before the disk is full,
 * because RocksDB must never run out of space in the middle of a write.
 */
static bool
commit_has_room(struct commit *c, uint64_t bytes)
{
	struct statvfs sv;

	if (statvfs(c->dir, &sv) < 0)
		return true; /* let the write itself tell */
	return (uint64_t)sv.f_bavail * sv.f_frsize >=
	       atomic_load(&c->min_free) + bytes;
}

/* What the loop reads: why writes are refused, "" when they are not. */
static void
commit_set_why(struct commit *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	snprintf(c->why, sizeof(c->why), "%s", why);
	pthread_mutex_unlock(&c->lock);
}

/*
 * After a failed write: once the disk has spool_min_free back and a
 * margin over it (a tenth of it, 1 MiB at least, so that a disk at the
 * edge does not flip between the two), the spool is closed and opened
 * again on this thread, which clears RocksDB's error state (the C API of
 * RocksDB 7.8 has no Resume) and keeps every write that reached the WAL.
 * At most once per COMMIT_RETRY_NS. Returns whether writes go on.
 */
static bool
commit_recover(struct commit *c)
{
	uint64_t min_free = atomic_load(&c->min_free);
	uint64_t margin = min_free / 10 > (1u << 20) ? min_free / 10 : 1u << 20;
	int64_t now = commit_now_ns();
	char err[200];

	if (now < c->retry_ns)
		return false;
	c->retry_ns = now + COMMIT_RETRY_NS;
	if (!commit_has_room(c, margin))
		return false;
	if (spool_reopen(c->sp, err, sizeof(err)) != QUEUE_OK) {
		if (!c->reopen_logged)
			log_err("spool %s: cannot reopen it, trying again "
				"every second: %s",
			    c->dir, err);
		c->reopen_logged = true;
		c->down = true;
		return false;
	}
	log_info("spool %s: reopened after %.1fs; writes resumed", c->dir,
	    (double)(now - c->broken_ns) / 1e9);
	c->broken = c->down = c->reopen_logged = false;
	commit_set_why(c, "");
	return true;
}

bool
commit_refusing(struct commit *c, char *why, size_t n)
{
	bool refusing;

	pthread_mutex_lock(&c->lock);
	refusing = c->why[0] != '\0';
	if (refusing)
		snprintf(why, n, "%s", c->why);
	pthread_mutex_unlock(&c->lock);
	return refusing;
}

void
commit_set_min_free(struct commit *c, uint64_t min_free)
{
	atomic_store(&c->min_free, min_free);
}

void
commit_op_edit(struct commit_op *op, int aux, char *key, size_t klen, char *val,
    size_t len)
{
	struct commit_edit *e;

	op->edits = xrealloc(op->edits, (op->nedits + 1) * sizeof(*op->edits));
	e = &op->edits[op->nedits++];
	e->aux = aux;
	e->key = key;
	e->klen = klen;
	e->val = val;
	e->len = len;
}

void
commit_op_free(struct commit_op *op)
{
	for (size_t i = 0; i < op->nedits; i++) {
		free(op->edits[i].key);
		free(op->edits[i].val);
	}
	free(op->edits);
	free(op->also_meta);
	free(op->meta);
	free(op->body);
	free(op);
}

static void
commit_add_edits(struct spool_batch *b, const struct commit_op *op)
{
	for (size_t i = 0; i < op->nedits; i++) {
		const struct commit_edit *e = &op->edits[i];

		spool_batch_put_aux(
		    b, (enum spool_aux)e->aux, e->key, e->klen, e->val, e->len);
	}
}

/*
 * A handed-over message's id (qid_at) could repeat one a previous run
 * made: it is never stored over a message already there. The peer gets
 * 451 and sends it again, under a new id.
 */
static bool
commit_id_taken(struct commit *c, struct commit_op *op)
{
	char *meta = NULL;
	size_t len;
	int st;

	if (!qid_handed_over(op->qid))
		return false;
	st = spool_get_meta(
	    c->sp, op->qid, &meta, &len, op->err, sizeof(op->err));
	free(meta);
	if (st == 1)
		return false;
	op->status = QUEUE_EIO;
	if (st == 0)
		snprintf(op->err, sizeof(op->err),
		    "queue id %s is taken by a stored message", op->qid);
	return true;
}

static void
commit_write(struct commit *c, struct commit_list *ops)
{
	struct spool_batch *b = spool_batch_new();
	struct commit_op *op;
	size_t batch_bytes = 0;
	bool sync = false;
	char err[200];
	int st;

	if (c->broken)
		commit_recover(c);
	TAILQ_FOREACH(op, ops, entry)
	{
		op->status = QUEUE_OK;
		if (op->kind == COMMIT_READ)
			continue; /* after the writes, below */
		if (c->broken) {
			op->status = c->broken_st;
			snprintf(op->err, sizeof(op->err),
			    "the spool refuses writes since one failed");
			continue;
		}
		switch (op->kind) {
		case COMMIT_SUBMIT:
			if (commit_id_taken(c, op))
				continue;
			/* Room for this and the rest of the batch; a
			 * notification may use the reserve. */
			batch_bytes += op->metalen + op->bodylen;
			if (op->also_meta == NULL &&
			    !commit_has_room(c, batch_bytes)) {
				batch_bytes -= op->metalen + op->bodylen;
				op->status = QUEUE_ENOSPC;
				snprintf(op->err, sizeof(op->err),
				    "less than spool_min_free left on %s",
				    c->dir);
				continue;
			}
			spool_batch_put_meta(b, op->qid, op->meta, op->metalen);
			spool_batch_put_body(b, op->qid, op->body, op->bodylen);
			if (op->also_meta != NULL)
				spool_batch_put_meta(b, op->also_qid,
				    op->also_meta, op->also_metalen);
			sync = true;
			break;
		case COMMIT_UPDATE:
			spool_batch_put_meta(b, op->qid, op->meta, op->metalen);
			break;
		case COMMIT_DELETE:
			spool_batch_delete(b, op->qid);
			break;
		case COMMIT_EDIT:
		case COMMIT_READ:
			break;
		}
		commit_add_edits(b, op);
	}
	if (spool_batch_count(b) > 0) {
		int64_t t0 = commit_now_ns();

		st = spool_write(c->sp, b, sync, err, sizeof(err));
		if (sync && st == QUEUE_OK)
			metrics_observe_commit((commit_now_ns() - t0) / 1e9);
		if (st != QUEUE_OK) {
			/*
			 * RocksDB keeps the error (a full disk during a WAL
			 * append or a flush) and fails every later write, so
			 * the spool takes none (mail gets 452 or 451, reads go
			 * on) until commit_recover reopens it.
			 */
			char why[sizeof(c->why)];

			log_err("spool %s: write failed, refusing writes until "
				"it can be reopened: %s",
			    c->dir, err);
			TAILQ_FOREACH(op, ops, entry)
			if (op->kind != COMMIT_READ && op->status == QUEUE_OK) {
				op->status = st;
				snprintf(op->err, sizeof(op->err), "%s", err);
			}
			c->broken = true;
			c->broken_st = st;
			c->broken_ns = commit_now_ns();
			c->retry_ns = c->broken_ns + COMMIT_RETRY_NS;
			snprintf(
			    why, sizeof(why), "spool refuses writes: %s", err);
			commit_set_why(c, why);
		}
	}
	spool_batch_free(b);
	/* Reads see every write queued before them, this batch's too. */
	TAILQ_FOREACH(op, ops, entry)
	if (op->kind == COMMIT_READ) {
		if (c->down) { /* no database to read */
			op->status = QUEUE_EIO;
			snprintf(op->err, sizeof(op->err),
			    "the spool is closed until it can be reopened");
			continue;
		}
		op->read(c->sp, op);
	}
}

static void
commit_hand_back(struct commit *c, struct commit_list *ops)
{
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	TAILQ_CONCAT(&c->done, ops, entry);
	pthread_mutex_unlock(&c->lock);
	if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err("commit: cannot wake the loop: %s", strerror(errno));
}

#ifdef COMMIT_MUTANT_ACK_EARLY
/*
 * A deliberately broken writer, built only into the crash test's mutant
 * tool (tests/integration/test_spool_crash.py): it reports success before
 * the write, as a relay would that says 250 before fsync. The crash test
 * must catch it losing acknowledged mail. (The mutation `sync = false`
 * is not caught by SIGKILL alone: the kernel keeps unsynced data of a
 * killed process; only a power cut would lose it.)
 */
static void
commit_mutant_ack_early(struct commit *c, struct commit_list *ops)
{
	struct commit_list shadow = TAILQ_HEAD_INITIALIZER(shadow);
	struct commit_op *op, *copy;

	TAILQ_FOREACH(op, ops, entry)
	{
		if (op->kind == COMMIT_READ) {
			op->read(c->sp, op);
			continue;
		}
		copy = xcalloc(1, sizeof(*copy));
		*copy = *op;
		copy->edits = NULL;
		copy->nedits = 0;
		for (size_t i = 0; i < op->nedits; i++) {
			const struct commit_edit *e = &op->edits[i];

			commit_op_edit(copy, e->aux, xmemdup(e->key, e->klen),
			    e->klen,
			    e->val != NULL ? xmemdup(e->val, e->len) : NULL,
			    e->len);
		}
		copy->meta = xmalloc(op->metalen + 1);
		memcpy(copy->meta, op->meta, op->metalen);
		copy->body = xmalloc(op->bodylen + 1);
		memcpy(copy->body, op->body, op->bodylen);
		if (op->also_meta != NULL)
			copy->also_meta =
			    xmemdup(op->also_meta, op->also_metalen);
		TAILQ_INSERT_TAIL(&shadow, copy, entry);
		op->status = QUEUE_OK;
	}
	commit_hand_back(c, ops);
	usleep(2000); /* the loop acknowledges meanwhile */
	commit_write(c, &shadow);
	while ((copy = TAILQ_FIRST(&shadow)) != NULL) {
		TAILQ_REMOVE(&shadow, copy, entry);
		commit_op_free(copy);
	}
}
#endif

static void *
commit_main(void *arg)
{
	struct commit *c = arg;

	for (;;) {
		struct commit_list batch = TAILQ_HEAD_INITIALIZER(batch);
		struct commit_op *op;
		size_t bytes = 0;

		pthread_mutex_lock(&c->lock);
		while (TAILQ_EMPTY(&c->pending) && !c->stop) {
			struct timespec ts;

			if (!c->broken) {
				pthread_cond_wait(&c->wake, &c->lock);
				continue;
			}
			/* Broken and idle: look again every second. */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			if (pthread_cond_timedwait(&c->wake, &c->lock, &ts) ==
				ETIMEDOUT &&
			    TAILQ_EMPTY(&c->pending)) {
				pthread_mutex_unlock(&c->lock);
				commit_recover(c);
				pthread_mutex_lock(&c->lock);
			}
		}
		if (TAILQ_EMPTY(&c->pending)) {
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		while ((op = TAILQ_FIRST(&c->pending)) != NULL &&
		       (bytes == 0 || bytes < COMMIT_BATCH_BYTES) &&
		       (!op->alone || bytes == 0)) {
			TAILQ_REMOVE(&c->pending, op, entry);
			TAILQ_INSERT_TAIL(&batch, op, entry);
			bytes += op->metalen + op->bodylen + 1;
			if (op->alone)
				break;
		}
		pthread_mutex_unlock(&c->lock);
#ifdef COMMIT_MUTANT_ACK_EARLY
		commit_mutant_ack_early(c, &batch);
		continue;
#endif
		commit_write(c, &batch);
		commit_hand_back(c, &batch);
	}
}

static void
commit_run_done(struct commit *c)
{
	struct commit_list done = TAILQ_HEAD_INITIALIZER(done);
	struct commit_op *op;

	pthread_mutex_lock(&c->lock);
	TAILQ_CONCAT(&done, &c->done, entry);
	pthread_mutex_unlock(&c->lock);
	while ((op = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, op, entry);
		op->done(op);
	}
}

static void
commit_on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct commit *c = arg;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_err("commit: eventfd: %s", strerror(errno));
	commit_run_done(c);
}

struct commit *
commit_new(struct event_base *base, struct spool *sp, const char *dir,
    uint64_t min_free)
{
	struct commit *c = xcalloc(1, sizeof(*c));
	pthread_condattr_t ca;
	int rc;

	c->sp = sp;
	c->min_free = min_free;
	c->dir = xstrdup(dir);
	TAILQ_INIT(&c->pending);
	TAILQ_INIT(&c->done);
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0)
		fatal("eventfd: %s", strerror(errno));
	c->ev =
	    event_new(base, c->efd, EV_READ | EV_PERSIST, commit_on_wake, c);
	event_add(c->ev, NULL);
	rc = pthread_create(&c->thread, NULL, commit_main, c);
	if (rc != 0)
		fatal("cannot start the spool writer thread: %s", strerror(rc));
	return c;
}

void
commit_push(struct commit *c, struct commit_op *op)
{
	op->queued_ns = commit_now_ns();
	pthread_mutex_lock(&c->lock);
	TAILQ_INSERT_TAIL(&c->pending, op, entry);
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

void
commit_free(struct commit *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	commit_run_done(c);
	event_free(c->ev);
	close(c->efd);
	spool_close(c->sp);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->wake);
	free(c->dir);
	free(c);
}
