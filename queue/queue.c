#define LOG_ROLE "qmgr"
/*
 * The queue: the spool on disk (through the writer thread), its index and
 * counters (queue/qindex.h), and the active window of messages in memory.
 * The queue is the only writer of message state: every change to an
 * envelope goes out with the index entries and counters that follow from
 * it, in one batch.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "common/hmap.h"
#include "common/idn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "queue/commit.h"
#include "queue/queue.h"
#include "queue/spool.h"

#define SCAN_LOOK 4096     /* index entries a scan looks at, at most */
#define REBUILD_BATCH 4096 /* index entries per batch when indexing */

/*
 * A message in the window. A removed one stays as a tombstone (gone, no
 * envelope) until its delete is written: a scan that read it before then
 * must not bring it back.
 */
struct qmsg {
	char qid[QID_SIZE];
	struct envelope *env;
	struct qindex idx; /* as last written */
	uint64_t park;     /* leaves when the op of this number is done */
	bool gone;
};

struct qlane {
	char name[LANE_SIZE];
	struct lane_count c;
	char oldest[QID_SIZE]; /* "" if empty or not known */
	bool stale;            /* oldest left: being asked again */
};

struct queue {
	struct event_base *base;
	const struct conf *cf;
	/* The spool_dir it opened: a reload's new one is for the next start. */
	char *dir;
	struct commit *commit;
	struct qid_gen gen;
	struct hmap *window; /* queue id -> struct qmsg */
	struct hmap *lanes;  /* lane -> struct qlane */
	struct lane_count total;
	bool indexing; /* the spool is being indexed: counters incomplete */
	uint64_t park_seq;
	void (*on_arrival)(void *arg, struct envelope *env);
	void *arrival_arg;
	void (*on_ready)(void *arg);
	void *ready_arg;
	struct spool *sp; /* the writer thread's; only for atomics */
	char **dest_keys, **dest_vals; /* the dest family, read at open */
	size_t ndests, capdests;
};

/* What an asynchronous call needs when its answer comes back. */
struct queue_call {
	struct queue *q;
	struct envelope *env;
	struct qindex idx;
	queue_done_cb *done;
	queue_body_cb *body;
	queue_load_cb *load;
	queue_page_cb *page;
	queue_get_cb *get;
	void *arg;
	uint64_t park;
	bool admit;
};

const char *
queue_status_str(int status)
{
	switch (status) {
	case QUEUE_OK:
		return "ok";
	case QUEUE_EIO:
		return "spool write error";
	case QUEUE_ENOSPC:
		return "spool out of space";
	}
	return "spool error";
}

static struct commit_op *
op_new(enum commit_kind kind, const char *qid)
{
	struct commit_op *op = xcalloc(1, sizeof(*op));

	op->kind = kind;
	if (qid != NULL)
		snprintf(op->qid, sizeof(op->qid), "%s", qid);
	return op;
}

static void
queue_on_written(struct commit_op *op)
{
	if (op->status != QUEUE_OK)
		log_err("%s: spool update failed: %s",
		    op->qid[0] ? op->qid : "index", op->err);
	commit_op_free(op);
}

/* Counters. */

static struct qlane *
lane_get(struct queue *q, const char *name)
{
	struct qlane *l = hmap_get(q->lanes, name);

	if (l == NULL) {
		l = xcalloc(1, sizeof(*l));
		snprintf(l->name, sizeof(l->name), "%s", name);
		hmap_put(q->lanes, l->name, l);
	}
	return l;
}

static void
edit_count(struct commit_op *op, const char *name, const struct lane_count *c)
{
	char *v = NULL;

	if (c->messages > 0) {
		v = xmalloc(QINDEX_COUNT);
		qindex_count_encode(c, v);
	}
	commit_op_edit(op, SPOOL_LANES, xstrdup(name), strlen(name), v,
	    v != NULL ? QINDEX_COUNT : 0);
}

static void queue_ask_oldest(struct queue *q, struct qlane *l);

static bool
idx_has(const struct qindex *qi, const char *lane)
{
	for (size_t i = 0; i < qi->nlanes; i++)
		if (strcmp(qi->lanes[i], lane) == 0)
			return true;
	return false;
}

/*
 * Adds to op what turns the index entries old (NULL: none) of qid into
 * new (NULL: none), and the counters that follow, with the new counters
 * written whole: ops are written in order, so the last one wins.
 */
static void
queue_reindex(struct queue *q, struct commit_op *op, const char *qid,
    const struct qindex *old, const struct qindex *new)
{
	static const struct qindex none;
	char key[LANE_SIZE + QID_SIZE];
	size_t klen;

	old = old != NULL ? old : &none;
	new = new != NULL ? new : &none;
	for (size_t i = 0; i < old->nlanes; i++) {
		struct qlane *l = lane_get(q, old->lanes[i]);

		qindex_count_add(&l->c, old, -1);
		if (idx_has(new, l->name))
			continue;
		klen = qindex_key(l->name, qid, key);
		commit_op_edit(
		    op, SPOOL_INDEX, xmemdup(key, klen), klen, NULL, 0);
		if (l->c.messages == 0) {
			l->oldest[0] = '\0';
			l->stale = false;
		} else if (strcmp(l->oldest, qid) == 0)
			queue_ask_oldest(q, l);
		if (!q->indexing)
			edit_count(op, l->name, &l->c);
	}
	for (size_t i = 0; i < new->nlanes; i++) {
		struct qlane *l = lane_get(q, new->lanes[i]);
		char *v = xmalloc(QINDEX_VAL);

		if (!idx_has(old, l->name) && !l->stale &&
		    (l->oldest[0] == '\0' || strcmp(qid, l->oldest) < 0))
			memcpy(l->oldest, qid, QID_SIZE);
		qindex_count_add(&l->c, new, 1);
		klen = qindex_key(l->name, qid, key);
		qindex_val_encode(new, v);
		commit_op_edit(
		    op, SPOOL_INDEX, xmemdup(key, klen), klen, v, QINDEX_VAL);
		if (!q->indexing)
			edit_count(op, l->name, &l->c);
	}
	if (old != &none)
		qindex_count_add(&q->total, old, -1);
	if (new != &none)
		qindex_count_add(&q->total, new, 1);
	if (!q->indexing)
		edit_count(op, "", &q->total);
}

/* The oldest message of a lane left it: the first key is asked again. */
struct first_ctx {
	char lane[LANE_SIZE];
	char qid[QID_SIZE];
};

static int
first_on_key(
    void *arg, const char *key, size_t klen, const char *val, size_t len)
{
	struct first_ctx *fc = arg;
	char lane[LANE_SIZE];

	(void)val, (void)len;
	if (qindex_key_split(key, klen, lane, fc->qid) &&
	    strcmp(lane, fc->lane) != 0)
		fc->qid[0] = '\0';
	return 1;
}

static void
first_read(struct spool *sp, struct commit_op *op)
{
	struct first_ctx *fc = op->ctx;
	size_t n = strlen(fc->lane);

	/* The lane's keys start with the lane and a NUL. */
	op->status = spool_iterate(sp, SPOOL_INDEX, fc->lane, n + 1,
	    first_on_key, fc, op->err, sizeof(op->err));
}

static void
queue_on_first(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct first_ctx *fc = op->ctx;
	struct qlane *l = hmap_get(call->q->lanes, fc->lane);

	if (l != NULL && l->stale) {
		memcpy(l->oldest, fc->qid, QID_SIZE);
		l->stale = false;
	}
	free(fc);
	free(call);
	commit_op_free(op);
}

static void
queue_ask_oldest(struct queue *q, struct qlane *l)
{
	struct commit_op *op;
	struct queue_call *call;
	struct first_ctx *fc;

	if (l->stale)
		return;
	l->stale = true;
	l->oldest[0] = '\0';
	op = op_new(COMMIT_READ, NULL);
	call = xcalloc(1, sizeof(*call));
	fc = xcalloc(1, sizeof(*fc));
	call->q = q;
	memcpy(fc->lane, l->name, LANE_SIZE);
	op->read = first_read;
	op->ctx = fc;
	op->done = queue_on_first;
	op->arg = call;
	commit_push(q->commit, op);
}

/* Opening: the counters, and the index of a spool from before it. */

static void
queue_on_lane(
    void *arg, const char *key, size_t klen, const char *val, size_t len)
{
	struct queue *q = arg;
	struct lane_count c;
	char name[LANE_SIZE];

	if (!qindex_count_decode(val, len, &c) || klen >= LANE_SIZE) {
		log_warn("spool: a lane's counters do not decode; ignored");
		return;
	}
	memcpy(name, key, klen);
	name[klen] = '\0';
	if (klen == 0)
		q->total = c;
	else
		lane_get(q, name)->c = c;
}

/* Copies of the keys and values a batch borrows until it is written. */
struct keep {
	char **v;
	size_t n, cap;
};

static char *
keep_copy(struct keep *k, const char *p, size_t n)
{
	char *c = xmemdup(p, n);

	k->v = xgrow(k->v, &k->cap, k->n + 1, sizeof(char *));
	k->v[k->n++] = c;
	return c;
}

/* Frees the copies; the array stays for more. */
static void
keep_clear(struct keep *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	k->n = 0;
}

struct rebuild_ctx {
	struct spool_batch *b;
	struct keep keep;
	struct hmap *lanes; /* lane -> struct qlane, counted */
	struct lane_count total;
	size_t messages, bad;
	int status;
	char err[200];
	struct spool *sp;
};

static void
rebuild_flush(struct rebuild_ctx *rc)
{
	if (spool_batch_count(rc->b) > 0 && rc->status == QUEUE_OK)
		rc->status =
		    spool_write(rc->sp, rc->b, false, rc->err, sizeof(rc->err));
	spool_batch_free(rc->b);
	rc->b = spool_batch_new();
	keep_clear(&rc->keep);
}

/*
 * A meta record that does not decode: logged and moved aside (like
 * Postfix's corrupt queue), never dropped. Returns the envelope if it
 * decodes.
 */
static struct envelope *
decode_or_quarantine(struct spool_batch *b, const char *key, size_t klen,
    const char *meta, size_t len, char **why_out)
{
	struct envelope *env = NULL;
	char why[160] = "", qid[QID_SIZE];

	snprintf(qid, sizeof(qid), "%.*s",
	    (int)(klen < QID_LEN ? klen : QID_LEN), key);
	if (klen != QID_LEN || !qid_valid(qid)) {
		snprintf(why, sizeof(why), "key is not a queue id");
	} else {
		env = envelope_decode(meta, len, why, sizeof(why));
		if (env != NULL && strcmp(env->qid, qid) != 0) {
			snprintf(
			    why, sizeof(why), "record holds id %s", env->qid);
			envelope_free(env);
			env = NULL;
		}
	}
	if (env != NULL)
		return env;
	spool_batch_quarantine(b, key, klen, meta, len);
	*why_out = xasprintf("%.*s: spool record does not decode (%s): moved "
			     "to quarantine",
	    (int)(klen > 64 ? 64 : klen), key, why);
	return NULL;
}

static void
rebuild_on_meta(
    void *arg, const char *key, size_t klen, const char *meta, size_t len)
{
	struct rebuild_ctx *rc = arg;
	char *why = NULL, k[LANE_SIZE + QID_SIZE];
	struct envelope *env;
	struct qindex qi;

	env = decode_or_quarantine(rc->b, keep_copy(&rc->keep, key, klen), klen,
	    keep_copy(&rc->keep, meta, len), len, &why);
	if (env == NULL) {
		/* Logged from this thread: the loop does not wait for it. */
		log_err("%s", why);
		free(why);
		rc->bad++;
		return;
	}
	qindex_of(env, &qi);
	for (size_t i = 0; i < qi.nlanes; i++) {
		struct qlane *l = hmap_get(rc->lanes, qi.lanes[i]);
		size_t n = qindex_key(qi.lanes[i], env->qid, k);
		char v[QINDEX_VAL];

		if (l == NULL) {
			l = xcalloc(1, sizeof(*l));
			memcpy(l->name, qi.lanes[i], LANE_SIZE);
			memcpy(l->oldest, env->qid, QID_SIZE);
			hmap_put(rc->lanes, l->name, l);
		}
		qindex_count_add(&l->c, &qi, 1);
		qindex_val_encode(&qi, v);
		spool_batch_put_aux(rc->b, SPOOL_INDEX, k, n,
		    keep_copy(&rc->keep, v, QINDEX_VAL), QINDEX_VAL);
	}
	qindex_count_add(&rc->total, &qi, 1);
	rc->messages++;
	qindex_fini(&qi);
	envelope_free(env);
	if (spool_batch_count(rc->b) >= REBUILD_BATCH)
		rebuild_flush(rc);
}

static void
rebuild_read(struct spool *sp, struct commit_op *op)
{
	struct rebuild_ctx *rc = op->ctx;

	rc->sp = sp;
	rc->b = spool_batch_new();
	rc->status =
	    spool_scan(sp, rebuild_on_meta, rc, rc->err, sizeof(rc->err));
	rebuild_flush(rc);
	spool_batch_free(rc->b);
	free(rc->keep.v);
	op->status = rc->status;
	snprintf(op->err, sizeof(op->err), "%s", rc->err);
}

static void
mark_read(struct spool *sp, struct commit_op *op)
{
	struct spool_batch *b = spool_batch_new();

	spool_batch_mark_indexed(b);
	op->status = spool_write(sp, b, true, op->err, sizeof(op->err));
	spool_batch_free(b);
}

static void
queue_on_rebuilt(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct queue *q = call->q;
	struct rebuild_ctx *rc = op->ctx;
	struct commit_op *w = op_new(COMMIT_EDIT, NULL);
	size_t pos = 0;
	const char *key;
	void *val;

	if (op->status != QUEUE_OK)
		fatal("spool %s: cannot index it: %s", q->dir, op->err);
	/* What arrived meanwhile was counted on the loop: add the two. */
	while (hmap_next(rc->lanes, &pos, &key, &val)) {
		struct qlane *r = val, *l = lane_get(q, r->name);

		l->c.messages += r->c.messages;
		l->c.bytes += r->c.bytes;
		l->c.held += r->c.held;
		if (!l->stale && r->oldest[0] != '\0' &&
		    (l->oldest[0] == '\0' || strcmp(r->oldest, l->oldest) < 0))
			memcpy(l->oldest, r->oldest, QID_SIZE);
		free(r);
	}
	hmap_free(rc->lanes);
	q->total.messages += rc->total.messages;
	q->total.bytes += rc->total.bytes;
	q->total.held += rc->total.held;
	q->indexing = false;
	pos = 0;
	while (hmap_next(q->lanes, &pos, &key, &val))
		edit_count(w, key, &((struct qlane *)val)->c);
	edit_count(w, "", &q->total);
	w->done = queue_on_written;
	commit_push(q->commit, w);
	/* The mark goes last: a crash before it indexes again. */
	w = op_new(COMMIT_READ, NULL);
	w->read = mark_read;
	w->done = queue_on_written;
	commit_push(q->commit, w);
	log_info("spool %s: indexed %zu messages%s", q->dir, rc->messages,
	    rc->bad ? " (some quarantined, see above)" : "");
	free(rc);
	free(call);
	commit_op_free(op);
	if (q->on_ready != NULL)
		q->on_ready(q->ready_arg);
}

/* The dest family is small (one record per destination with a state to
 * keep): read whole at open, for the scheduler to pick up. */
static void
queue_on_dest(
    void *arg, const char *key, size_t klen, const char *val, size_t len)
{
	struct queue *q = arg;

	q->dest_keys =
	    xgrow(q->dest_keys, &q->capdests, q->ndests + 1, sizeof(char *));
	q->dest_vals = xrealloc(q->dest_vals, q->capdests * sizeof(char *));
	q->dest_keys[q->ndests] = xstrndup(key, klen);
	q->dest_vals[q->ndests] = xstrndup(val, len);
	q->ndests++;
}

static void
queue_free_dests(struct queue *q)
{
	for (size_t i = 0; i < q->ndests; i++) {
		free(q->dest_keys[i]);
		free(q->dest_vals[i]);
	}
	free(q->dest_keys);
	free(q->dest_vals);
}

/* The known family's key: the local part as given, the domain in lower
 * case (RFC 5321 2.4: only the domain is case-insensitive), as A-labels
 * when it has another form (RFC 5890). */
static char *
queue_known_key(const char *addr)
{
	char *k = xstrdup(addr), *at = strrchr(k, '@');
	char ace[IDN_NAME_SIZE];

	if (at != NULL &&
	    idn_to_ascii(at + 1, ace, sizeof(ace), NULL, 0) == 0) {
		*at = '\0';
		char *n = xasprintf("%s@%s", k, ace);
		free(k);
		return n;
	}
	for (char *p = at; p != NULL && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return k;
}

static void
queue_free_maps(struct queue *q)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(q->window, &pos, &key, &val)) {
		struct qmsg *qm = val;

		envelope_free(qm->env);
		qindex_fini(&qm->idx);
		free(qm);
	}
	hmap_free(q->window);
	pos = 0;
	while (hmap_next(q->lanes, &pos, &key, &val))
		free(val);
	hmap_free(q->lanes);
}

int
queue_open(struct queue **qp, const struct conf *cf, struct event_base *base,
    char *err, size_t errlen)
{
	struct queue *q;
	struct spool *sp;
	struct spool_recovery rec;
	char last[QID_SIZE + 1];
	int64_t t0 = commit_now_ns();
	bool indexed;
	size_t pos = 0;
	const char *key;
	void *val;

	*qp = NULL;
	if (spool_open(&sp, cf->spool_dir, !cf->spool_recovery_strict, &rec,
		err, errlen) != QUEUE_OK)
		return -1;
	if (rec.salvaged) {
		metrics_add(M_WAL_DAMAGED_BYTES, rec.lost_bytes);
		metrics_add(M_WAL_LOST_UPDATES, rec.lost_updates);
		metrics_add(M_WAL_SALVAGED, rec.kept_batches);
	}
	q = xcalloc(1, sizeof(*q));
	q->base = base;
	q->cf = cf;
	q->dir = xstrdup(cf->spool_dir);
	q->window = hmap_new();
	q->lanes = hmap_new();
	indexed = spool_indexed(sp);
	if ((indexed && spool_scan_aux(sp, SPOOL_LANES, queue_on_lane, q, err,
			    errlen) != QUEUE_OK) ||
	    spool_scan_aux(sp, SPOOL_DEST, queue_on_dest, q, err, errlen) !=
		QUEUE_OK) {
		spool_close(sp);
		queue_free_dests(q);
		queue_free_maps(q);
		free(q->dir);
		free(q);
		return -1;
	}
	/* Ids stay above every id in the spool, whatever the clock did. */
	if (!spool_last_key(sp, SPOOL_META, last, sizeof(last)))
		last[0] = '\0';
	qid_gen_init(&q->gen, strlen(last) == QID_LEN ? last : NULL);
	if (!indexed && last[0] == '\0') {
		/* A new spool: nothing to index. */
		struct spool_batch *b = spool_batch_new();

		spool_batch_mark_indexed(b);
		if (spool_write(sp, b, true, err, errlen) != QUEUE_OK) {
			spool_batch_free(b);
			spool_close(sp);
			queue_free_dests(q);
			queue_free_maps(q);
			free(q->dir);
			free(q);
			return -1;
		}
		spool_batch_free(b);
		indexed = true;
	}
	q->sp = sp;
	spool_set_known_max_age(sp, cf->known_recipients_max_age);
	q->commit = commit_new(base, sp, cf->spool_dir, cf->spool_min_free);
	if (!indexed) {
		/* A spool from before the index (or a new one): indexed by
		 * one scan on the writer thread, while mail is served. */
		struct commit_op *op = op_new(COMMIT_READ, NULL);
		struct queue_call *call = xcalloc(1, sizeof(*call));
		struct rebuild_ctx *rc = xcalloc(1, sizeof(*rc));

		rc->lanes = hmap_new();
		call->q = q;
		op->read = rebuild_read;
		op->ctx = rc;
		op->alone = true; /* it sees the spool as it was at open */
		op->done = queue_on_rebuilt;
		op->arg = call;
		q->indexing = true;
		commit_push(q->commit, op);
	}
	while (hmap_next(q->lanes, &pos, &key, &val))
		queue_ask_oldest(q, val);
	log_info("spool %s: %" PRIu64 " messages (%" PRIu64
		 " held) in %zu lanes, opened in %.3fs%s",
	    cf->spool_dir, q->total.messages, q->total.held,
	    hmap_count(q->lanes), (double)(commit_now_ns() - t0) / 1e9,
	    indexed ? "" : "; indexing it in the background");
	*qp = q;
	return 0;
}

void
queue_set_conf(struct queue *q, const struct conf *cf)
{
	q->cf = cf;
	spool_set_known_max_age(q->sp, cf->known_recipients_max_age);
	commit_set_min_free(q->commit, cf->spool_min_free);
}

int64_t
queue_free_bytes(const struct queue *q)
{
	struct statvfs sv;

	if (statvfs(q->dir, &sv) < 0)
		return -1;
	return (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize);
}

bool
queue_writable(const struct queue *q, char *why, size_t n)
{
	int64_t avail;

	if (commit_refusing(q->commit, why, n))
		return false;
	avail = queue_free_bytes(q);
	if (avail >= 0 && (uint64_t)avail < q->cf->spool_min_free) {
		snprintf(why, n,
		    "spool free space %" PRId64 " MiB under spool_min_free "
		    "%" PRIu64 " MiB",
		    avail >> 20, q->cf->spool_min_free >> 20);
		return false;
	}
	return true;
}

void
queue_foreach_dest_state(const struct queue *q,
    void (*cb)(void *arg, const char *key, const char *state), void *arg)
{
	for (size_t i = 0; i < q->ndests; i++)
		cb(arg, q->dest_keys[i], q->dest_vals[i]);
}

/* Puts key (val NULL: deletes it) in an aux family, unsynced. Takes
 * ownership of key and val. */
static void
queue_push_aux(
    struct queue *q, enum spool_aux aux, char *key, char *val, size_t len)
{
	struct commit_op *op = op_new(COMMIT_EDIT, NULL);

	commit_op_edit(op, aux, key, strlen(key), val, len);
	op->done = queue_on_written;
	commit_push(q->commit, op);
}

void
queue_put_dest_state(struct queue *q, const char *key, const char *state)
{
	queue_push_aux(q, SPOOL_DEST, xstrdup(key),
	    state != NULL ? xstrdup(state) : NULL,
	    state != NULL ? strlen(state) : 0);
}

void
queue_learn_recipient(struct queue *q, const char *addr, int64_t when)
{
	char *v = xmalloc(8);

	spool_time_encode(when, v);
	queue_push_aux(q, SPOOL_KNOWN, queue_known_key(addr), v, 8);
}

void
queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	commit_free(q->commit);
	queue_free_dests(q);
	queue_free_maps(q);
	free(q->dir);
	free(q);
}

void
queue_new_qid(struct queue *q, int64_t arrival_us, char out[QID_SIZE])
{
	if (arrival_us > 0)
		qid_at(&q->gen, arrival_us, out);
	else
		qid_next(&q->gen, out);
}

static struct qmsg *
window_add(struct queue *q, struct envelope *env)
{
	struct qmsg *qm = xcalloc(1, sizeof(*qm));

	memcpy(qm->qid, env->qid, QID_SIZE);
	qm->env = env;
	qindex_of(env, &qm->idx);
	hmap_put(q->window, qm->qid, qm);
	return qm;
}

static void
window_drop(struct queue *q, struct qmsg *qm)
{
	hmap_del(q->window, qm->qid);
	envelope_free(qm->env);
	qindex_fini(&qm->idx);
	free(qm);
}

static void
queue_on_submitted(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct queue *q = call->q;
	char qid[QID_SIZE];

	memcpy(qid, op->qid, QID_SIZE);
	if (op->status == QUEUE_OK) {
		window_add(q, call->env);
	} else {
		/* Counted when it was queued: counted out again. */
		struct commit_op *undo = op_new(COMMIT_EDIT, NULL);

		log_err("%s: not queued: %s: %s", qid,
		    queue_status_str(op->status), op->err);
		queue_reindex(q, undo, qid, &call->idx, NULL);
		undo->done = queue_on_written;
		commit_push(q->commit, undo);
		envelope_free(call->env);
	}
	qindex_fini(&call->idx);
	call->done(call->arg, op->status, qid);
	/* Looked up again: the submitter's callback may have changed it. */
	if (op->status == QUEUE_OK && q->on_arrival != NULL) {
		struct envelope *env = queue_find(q, qid);
		if (env != NULL)
			q->on_arrival(q->arrival_arg, env);
	}
	commit_op_free(op);
	free(call);
}

/* The submit of env and body, with its index edits; not yet pushed. */
static struct commit_op *
submit_op(struct queue *q, struct envelope *env, char *body, size_t len,
    queue_done_cb *cb, void *arg)
{
	struct commit_op *op = op_new(COMMIT_SUBMIT, env->qid);
	struct queue_call *call = xcalloc(1, sizeof(*call));

	call->q = q;
	call->env = env;
	call->done = cb;
	call->arg = arg;
	env->size = len;
	op->meta = envelope_encode(env, &op->metalen);
	op->body = body;
	op->bodylen = len;
	qindex_of(env, &call->idx);
	queue_reindex(q, op, env->qid, NULL, &call->idx);
	op->done = queue_on_submitted;
	op->arg = call;
	return op;
}

void
queue_submit(struct queue *q, struct envelope *env, char *body, size_t len,
    queue_done_cb *cb, void *arg)
{
	commit_push(q->commit, submit_op(q, env, body, len, cb, arg));
}

/* Puts qm's record as it is now, and its index edits, into op. */
static void
record_into(struct queue *q, struct qmsg *qm, struct commit_op *op, char **meta,
    size_t *metalen)
{
	struct qindex idx;

	*meta = envelope_encode(qm->env, metalen);
	qindex_of(qm->env, &idx);
	queue_reindex(q, op, qm->qid, &qm->idx, &idx);
	qindex_fini(&qm->idx);
	qm->idx = idx;
}

void
queue_submit_notice(struct queue *q, struct envelope *env, char *body,
    size_t len, const char *about, queue_done_cb *cb, void *arg)
{
	struct commit_op *op = submit_op(q, env, body, len, cb, arg);
	struct qmsg *qm = hmap_get(q->window, about);

	if (qm != NULL && !qm->gone) {
		memcpy(op->also_qid, qm->qid, QID_SIZE);
		record_into(q, qm, op, &op->also_meta, &op->also_metalen);
	}
	commit_push(q->commit, op);
}

/* Bodies, and what is known of their recipients. */
struct body_ctx {
	char **addrs; /* keys of the known family */
	size_t naddrs;
	int64_t *known;
};

static void
body_read(struct spool *sp, struct commit_op *op)
{
	struct body_ctx *bc = op->ctx;
	char err[200];

	op->status = spool_get_body(
	    sp, op->qid, &op->body, &op->bodylen, op->err, sizeof(op->err));
	if (bc->naddrs == 0)
		return;
	/* An error here only means "not known". */
	bc->known = xcalloc(bc->naddrs, sizeof(*bc->known));
	for (size_t i = 0; i < bc->naddrs; i++) {
		char *v;
		size_t len;

		if (spool_get_aux(sp, SPOOL_KNOWN, bc->addrs[i],
			strlen(bc->addrs[i]), &v, &len, err,
			sizeof(err)) == QUEUE_OK) {
			bc->known[i] = spool_time_decode(v, len);
			free(v);
		}
	}
}

static void
queue_on_body(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct body_ctx *bc = op->ctx;

	if (op->status == 1) {
		log_err("%s: body missing from the spool", op->qid);
		op->status = QUEUE_EIO;
	} else if (op->status != QUEUE_OK)
		log_err("%s: cannot read body: %s", op->qid, op->err);
	if (op->status != QUEUE_OK) {
		free(op->body);
		op->body = NULL;
	}
	if (call->load != NULL) {
		call->load(
		    call->arg, op->status, op->body, op->bodylen, bc->known);
		bc->known = NULL;
	} else
		call->body(call->arg, op->status, op->body, op->bodylen);
	op->body = NULL; /* the callback's now */
	for (size_t i = 0; i < bc->naddrs; i++)
		free(bc->addrs[i]);
	free(bc->addrs);
	free(bc->known);
	free(bc);
	commit_op_free(op);
	free(call);
}

/* A body read, with or without what is known of addrs; one of body_cb
 * and load_cb is set. */
static void
queue_read(struct queue *q, const char *qid, const char *const *addrs,
    size_t naddrs, queue_body_cb *body_cb, queue_load_cb *load_cb, void *arg)
{
	struct commit_op *op = op_new(COMMIT_READ, qid);
	struct queue_call *call = xcalloc(1, sizeof(*call));
	struct body_ctx *bc = xcalloc(1, sizeof(*bc));

	call->q = q;
	call->body = body_cb;
	call->load = load_cb;
	call->arg = arg;
	bc->addrs = naddrs > 0 ? xcalloc(naddrs, sizeof(char *)) : NULL;
	for (size_t i = 0; i < naddrs; i++)
		bc->addrs[i] = queue_known_key(addrs[i]);
	bc->naddrs = naddrs;
	op->read = body_read;
	op->ctx = bc;
	op->done = queue_on_body;
	op->arg = call;
	commit_push(q->commit, op);
}

void
queue_load(struct queue *q, const char *qid, const char *const *addrs,
    size_t naddrs, queue_load_cb *cb, void *arg)
{
	queue_read(q, qid, addrs, naddrs, NULL, cb, arg);
}

void
queue_read_body(struct queue *q, const char *qid, queue_body_cb *cb, void *arg)
{
	queue_read(q, qid, NULL, 0, cb, NULL, arg);
}

/* The window. */

struct envelope *
queue_find(const struct queue *q, const char *qid)
{
	struct qmsg *qm = hmap_get(q->window, qid);

	return qm != NULL && !qm->gone ? qm->env : NULL;
}

struct envelope *
queue_take(struct queue *q, const char *qid)
{
	struct qmsg *qm = hmap_get(q->window, qid);

	if (qm == NULL || qm->gone)
		return NULL;
	qm->park = 0;
	return qm->env;
}

size_t
queue_window(const struct queue *q)
{
	return hmap_count(q->window);
}

void
queue_update(struct queue *q, const char *qid)
{
	struct qmsg *qm = hmap_get(q->window, qid);
	struct commit_op *op;

	if (qm == NULL || qm->gone)
		return;
	op = op_new(COMMIT_UPDATE, qid);
	record_into(q, qm, op, &op->meta, &op->metalen);
	op->done = queue_on_written;
	commit_push(q->commit, op);
}

static void
queue_on_removed(struct commit_op *op)
{
	struct queue *q = op->arg;
	struct qmsg *qm = hmap_get(q->window, op->qid);

	if (qm != NULL && qm->gone)
		window_drop(q, qm);
	queue_on_written(op);
}

void
queue_remove(struct queue *q, const char *qid)
{
	struct qmsg *qm = hmap_get(q->window, qid);
	struct commit_op *op;

	if (qm == NULL || qm->gone)
		return;
	op = op_new(COMMIT_DELETE, qid);
	queue_reindex(q, op, qid, &qm->idx, NULL);
	op->done = queue_on_removed;
	op->arg = q;
	commit_push(q->commit, op);
	qm->gone = true;
	envelope_free(qm->env);
	qm->env = NULL;
	qindex_fini(&qm->idx);
}

void
queue_log_rcpt(
    const struct envelope *env, size_t idx, const struct rcpt_result *res)
{
	static const char *const status[] = {
	    [OUTCOME_SENT] = "sent",
	    [OUTCOME_DEFERRED] = "deferred",
	    [OUTCOME_BOUNCED] = "bounced",
	    [OUTCOME_EXPIRED] = "expired",
	};
	const struct env_rcpt *r = &env->rcpts[idx];
	const char *dsn = res->dsn != NULL ? res->dsn : r->dsn_status;
	struct timespec ts;
	double delay;

	clock_gettime(CLOCK_REALTIME, &ts);
	delay = (double)ts.tv_sec + ts.tv_nsec / 1e9 - env->arrival / 1e6;
	log_event_as(res->role != NULL ? res->role : LOG_ROLE, env->qid,
	    "to=<%s>, relay=%s, delay=%.1f, dsn=%s, status=%s (%s%s)", r->addr,
	    res->relay != NULL ? res->relay : "none", delay < 0 ? 0 : delay,
	    dsn != NULL ? dsn : "4.0.0", status[res->outcome],
	    res->note != NULL ? res->note : "",
	    res->says != NULL    ? res->says
	    : res->reply != NULL ? res->reply
				 : "");
}

void
queue_record(struct envelope *env, size_t idx, const struct rcpt_result *res)
{
	static const enum metric counter[] = {
	    [OUTCOME_SENT] = M_DELIVERED,
	    [OUTCOME_DEFERRED] = M_DEFERRED,
	    [OUTCOME_BOUNCED] = M_BOUNCED,
	    [OUTCOME_EXPIRED] = M_BOUNCED,
	};
	struct env_rcpt *r = &env->rcpts[idx];

	/* Copied first: res may point into r. */
	if (res->dsn != NULL) {
		char *d = xstrdup(res->dsn);

		free(r->dsn_status);
		r->dsn_status = d;
	}
	if (res->outcome == OUTCOME_SENT) {
		r->state = RCPT_DELIVERED;
		free(r->last_error);
		r->last_error = NULL;
	} else if (res->reply != NULL) {
		char *t = xstrdup(res->reply);

		free(r->last_error);
		r->last_error = t;
	}
	if (!res->quiet)
		queue_log_rcpt(env, idx, res);
	metrics_inc(counter[res->outcome]);
	if (res->dest != NULL && res->outcome != OUTCOME_EXPIRED)
		metrics_dest_count(res->dest,
		    res->outcome == OUTCOME_SENT       ? MD_DELIVERED
		    : res->outcome == OUTCOME_DEFERRED ? MD_DEFERRED
						       : MD_BOUNCED);
}

static void
nothing_to_read(struct spool *sp, struct commit_op *op)
{
	(void)sp;
	op->status = QUEUE_OK;
}

static void
queue_on_parked(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct qmsg *qm = hmap_get(call->q->window, op->qid);

	/* Not if it was taken back meanwhile. */
	if (qm != NULL && !qm->gone && qm->park == call->park)
		window_drop(call->q, qm);
	free(call);
	commit_op_free(op);
}

void
queue_park(struct queue *q, const char *qid)
{
	struct qmsg *qm = hmap_get(q->window, qid);
	struct commit_op *op;
	struct queue_call *call;

	if (qm == NULL || qm->gone || qm->park != 0)
		return;
	/* Ops finish in order: when this one does, so have its writes. */
	op = op_new(COMMIT_READ, qid);
	call = xcalloc(1, sizeof(*call));
	call->q = q;
	call->park = qm->park = ++q->park_seq;
	op->read = nothing_to_read;
	op->done = queue_on_parked;
	op->arg = call;
	commit_push(q->commit, op);
}

void
queue_set_arrival_cb(
    struct queue *q, void (*cb)(void *arg, struct envelope *env), void *arg)
{
	q->on_arrival = cb;
	q->arrival_arg = arg;
}

/* Scans. */
struct bad_rec {
	char lane[LANE_SIZE]; /* "" from a scan of every message */
	char qid[QID_SIZE];
	struct qindex idx; /* its index value, for the counters */
	char *why;         /* the log line */
};

struct scan_ctx {
	struct queue_scan sc;
	char lane[LANE_SIZE];
	struct queue_page page;
	size_t cap, looked;
	struct bad_rec *bad;
	size_t nbad, capbad;
	struct spool *sp;
	struct spool_batch *qb; /* quarantine and dangling entries */
	struct keep keep;
};

static void
scan_add(struct scan_ctx *x, struct envelope *env)
{
	x->page.envs =
	    xgrow(x->page.envs, &x->cap, x->page.n + 1, sizeof(*x->page.envs));
	x->page.envs[x->page.n++] = env;
}

static struct bad_rec *
scan_bad(struct scan_ctx *x, const char *qid, char *why)
{
	struct bad_rec *b;

	x->bad = xgrow(x->bad, &x->capbad, x->nbad + 1, sizeof(*x->bad));
	b = &x->bad[x->nbad++];
	memset(b, 0, sizeof(*b));
	snprintf(b->qid, sizeof(b->qid), "%s", qid);
	b->why = why;
	return b;
}

/* A meta record read by a scan: its envelope, or quarantined. */
static struct envelope *
scan_decode(struct scan_ctx *x, const char *key, size_t klen, const char *meta,
    size_t len)
{
	char *why = NULL;
	struct envelope *env =
	    decode_or_quarantine(x->qb, keep_copy(&x->keep, key, klen), klen,
		keep_copy(&x->keep, meta, len), len, &why);

	if (env == NULL)
		scan_bad(x, "", why);
	return env;
}

static int
scan_on_meta(
    void *arg, const char *key, size_t klen, const char *meta, size_t len)
{
	struct scan_ctx *x = arg;
	struct envelope *env;

	if (klen == QID_LEN && memcmp(key, x->sc.after, QID_LEN) == 0)
		return 0;
	if (x->page.n >= x->sc.limit || x->looked >= SCAN_LOOK)
		return 1;
	x->looked++;
	snprintf(x->page.last, sizeof(x->page.last), "%.*s",
	    (int)(klen < QID_LEN ? klen : QID_LEN), key);
	if ((env = scan_decode(x, key, klen, meta, len)) != NULL)
		scan_add(x, env);
	return 0;
}

static bool
scan_wants(struct scan_ctx *x, const char *qid, int64_t due, uint8_t flags)
{
	bool held = (flags & QI_HELD) != 0;
	int64_t t;

	switch (x->sc.pick) {
	case QPICK_DUE:
		if (held)
			return false;
		if (due > x->sc.now_ms) {
			if (due < x->page.next_due)
				x->page.next_due = due;
			return false;
		}
		return true;
	case QPICK_ANY:
		return !held;
	case QPICK_AGED:
		t = qid_time(qid);
		return !held &&
		       (t < x->sc.expire_before ||
			   (!(flags & QI_DELAY_SENT) && t < x->sc.warn_before));
	case QPICK_ALL:
		return true;
	}
	return false;
}

static int
scan_on_index(
    void *arg, const char *key, size_t klen, const char *val, size_t len)
{
	struct scan_ctx *x = arg;
	char lane[LANE_SIZE], qid[QID_SIZE], why[200], *meta;
	size_t mlen;
	int64_t due;
	uint64_t size;
	uint8_t flags;
	struct envelope *env;
	int st;

	if (!qindex_key_split(key, klen, lane, qid) ||
	    strcmp(lane, x->lane) != 0) {
		x->page.end = true;
		return 1;
	}
	if (strcmp(qid, x->sc.after) == 0)
		return 0;
	if (x->page.n >= x->sc.limit || x->looked >= SCAN_LOOK)
		return 1;
	/* Past every message old enough: nothing further can be. */
	if (x->sc.pick == QPICK_AGED &&
	    qid_time(qid) >= (x->sc.expire_before > x->sc.warn_before
				     ? x->sc.expire_before
				     : x->sc.warn_before)) {
		x->page.end = true;
		return 1;
	}
	x->looked++;
	memcpy(x->page.last, qid, QID_SIZE);
	if (!qindex_val_decode(val, len, &due, &size, &flags))
		due = 0, size = 0, flags = 0;
	if (!scan_wants(x, qid, due, flags))
		return 0;
	if (x->sc.keys_only) {
		x->page.qids = xgrow(x->page.qids, &x->cap, x->page.n + 1,
		    sizeof(*x->page.qids));
		memcpy(x->page.qids[x->page.n++], qid, QID_SIZE);
		return 0;
	}
	st = spool_get_meta(x->sp, qid, &meta, &mlen, why, sizeof(why));
	if (st == 1) {
		/* An entry whose message is gone: dropped, and counted out. */
		struct bad_rec *b = scan_bad(x, qid,
		    xasprintf("%s: index entry in %s without a message: "
			      "dropped",
			qid, lane));

		memcpy(b->lane, lane, LANE_SIZE);
		b->idx.size = size;
		b->idx.flags = flags;
		spool_batch_put_aux(x->qb, SPOOL_INDEX,
		    keep_copy(&x->keep, key, klen), klen, NULL, 0);
		return 0;
	}
	if (st != QUEUE_OK) {
		x->page.status = st;
		return 1;
	}
	env = scan_decode(x, qid, QID_LEN, meta, mlen);
	free(meta);
	if (env != NULL)
		scan_add(x, env);
	else {
		struct bad_rec *b = &x->bad[x->nbad - 1];

		memcpy(b->lane, lane, LANE_SIZE);
		memcpy(b->qid, qid, QID_SIZE);
		b->idx.size = size;
		b->idx.flags = flags;
		spool_batch_put_aux(x->qb, SPOOL_INDEX,
		    keep_copy(&x->keep, key, klen), klen, NULL, 0);
	}
	return 0;
}

static void
scan_read(struct spool *sp, struct commit_op *op)
{
	struct scan_ctx *x = op->ctx;
	char from[LANE_SIZE + QID_SIZE];
	size_t n;
	int st;

	x->sp = sp;
	x->qb = spool_batch_new();
	x->page.next_due = INT64_MAX;
	if (x->sc.lane == NULL) {
		st = spool_iterate(sp, SPOOL_META, x->sc.after,
		    strlen(x->sc.after), scan_on_meta, x, op->err,
		    sizeof(op->err));
		if (st == QUEUE_OK && x->page.n < x->sc.limit &&
		    x->looked < SCAN_LOOK)
			x->page.end = true;
	} else {
		n = strlen(x->lane);
		memcpy(from, x->lane, n + 1);
		memcpy(from + n + 1, x->sc.after, strlen(x->sc.after));
		st = spool_iterate(sp, SPOOL_INDEX, from,
		    n + 1 + strlen(x->sc.after), scan_on_index, x, op->err,
		    sizeof(op->err));
		if (st == QUEUE_OK && x->page.n < x->sc.limit &&
		    x->looked < SCAN_LOOK && x->page.status == QUEUE_OK)
			x->page.end = true;
	}
	if (st == QUEUE_OK && spool_batch_count(x->qb) > 0)
		st = spool_write(sp, x->qb, false, op->err, sizeof(op->err));
	spool_batch_free(x->qb);
	keep_clear(&x->keep);
	free(x->keep.v);
	if (x->page.status == QUEUE_OK)
		x->page.status = st;
	op->status = x->page.status;
}

/* A message read from the spool joins the window, unless it is there
 * already (then the window's is the one: it is newer or the same), or was
 * removed after it was read (NULL). */
static struct envelope *
queue_admit(struct queue *q, struct envelope *env)
{
	struct qmsg *qm = hmap_get(q->window, env->qid);

	if (qm != NULL) {
		envelope_free(env);
		if (qm->gone)
			return NULL;
		qm->park = 0;
		return qm->env;
	}
	return window_add(q, env)->env;
}

static void
queue_on_bad(struct queue *q, struct bad_rec *b)
{
	log_err("%s", b->why);
	free(b->why);
	if (b->lane[0] != '\0') {
		struct commit_op *op = op_new(COMMIT_EDIT, NULL);
		struct qlane *l = lane_get(q, b->lane);

		qindex_count_add(&l->c, &b->idx, -1);
		qindex_count_add(&q->total, &b->idx, -1);
		if (!q->indexing) {
			edit_count(op, l->name, &l->c);
			edit_count(op, "", &q->total);
		}
		if (strcmp(l->oldest, b->qid) == 0)
			queue_ask_oldest(q, l);
		op->done = queue_on_written;
		commit_push(q->commit, op);
	}
}

static void
queue_on_page(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct scan_ctx *x = op->ctx;
	struct queue *q = call->q;

	if (x->page.status != QUEUE_OK)
		log_err("spool scan failed: %s", op->err);
	for (size_t i = 0; i < x->nbad; i++)
		queue_on_bad(q, &x->bad[i]);
	free(x->bad);
	if (x->sc.admit && !x->sc.keys_only) {
		size_t n = 0;

		for (size_t i = 0; i < x->page.n; i++)
			if ((x->page.envs[n] = queue_admit(q, x->page.envs[i])))
				n++;
		x->page.n = n;
	}
	call->page(call->arg, &x->page);
	if (!x->sc.admit && !x->sc.keys_only)
		for (size_t i = 0; i < x->page.n; i++)
			envelope_free(x->page.envs[i]);
	free(x->page.envs);
	free(x->page.qids);
	free(x);
	free(call);
	commit_op_free(op);
}

void
queue_scan(
    struct queue *q, const struct queue_scan *sc, queue_page_cb *cb, void *arg)
{
	struct commit_op *op = op_new(COMMIT_READ, NULL);
	struct queue_call *call = xcalloc(1, sizeof(*call));
	struct scan_ctx *x = xcalloc(1, sizeof(*x));

	x->sc = *sc;
	if (sc->lane != NULL) {
		snprintf(x->lane, sizeof(x->lane), "%s", sc->lane);
		x->sc.lane = x->lane;
	}
	if (x->sc.limit == 0)
		x->sc.limit = 1;
	call->q = q;
	call->page = cb;
	call->arg = arg;
	op->read = scan_read;
	op->ctx = x;
	op->done = queue_on_page;
	op->arg = call;
	commit_push(q->commit, op);
}

/* One message by id. */
struct get_ctx {
	struct envelope *env;
	char *why; /* it did not decode */
};

static void
get_read(struct spool *sp, struct commit_op *op)
{
	struct get_ctx *g = op->ctx;
	struct spool_batch *b;
	char *meta;
	size_t len;

	op->status =
	    spool_get_meta(sp, op->qid, &meta, &len, op->err, sizeof(op->err));
	if (op->status != QUEUE_OK)
		return;
	b = spool_batch_new();
	g->env = decode_or_quarantine(b, op->qid, QID_LEN, meta, len, &g->why);
	if (g->env == NULL)
		op->status =
		    spool_write(sp, b, false, op->err, sizeof(op->err));
	spool_batch_free(b);
	free(meta);
}

static void
queue_on_get(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	struct get_ctx *g = op->ctx;
	struct envelope *env = g->env;

	if (g->why != NULL) {
		log_err("%s", g->why);
		free(g->why);
	}
	if (op->status != QUEUE_OK && op->status != 1)
		log_err("%s: cannot read its envelope: %s", op->qid, op->err);
	/* In the window it is newer than in the spool. */
	if (env != NULL && call->admit)
		env = queue_admit(call->q, env);
	else if (env == NULL && call->admit)
		env = queue_take(call->q, op->qid);
	call->get(call->arg, env);
	free(g);
	free(call);
	commit_op_free(op);
}

void
queue_get(
    struct queue *q, const char *qid, bool admit, queue_get_cb *cb, void *arg)
{
	struct commit_op *op = op_new(COMMIT_READ, qid);
	struct queue_call *call = xcalloc(1, sizeof(*call));

	call->q = q;
	call->get = cb;
	call->arg = arg;
	call->admit = admit;
	op->read = get_read;
	op->ctx = xcalloc(1, sizeof(struct get_ctx));
	op->done = queue_on_get;
	op->arg = call;
	commit_push(q->commit, op);
}

/* Counters. */

void
queue_foreach_lane(const struct queue *q, queue_lane_cb *cb, void *arg)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(q->lanes, &pos, &key, &val)) {
		const struct qlane *l = val;

		if (l->c.messages > 0)
			cb(arg, l->name, &l->c,
			    l->oldest[0] ? qid_time(l->oldest) : 0);
	}
}

void
queue_lane_count(const struct queue *q, const char *lane, struct lane_count *c,
    int64_t *oldest)
{
	const struct qlane *l = hmap_get(q->lanes, lane);

	memset(c, 0, sizeof(*c));
	*oldest = 0;
	if (l != NULL) {
		*c = l->c;
		*oldest = l->oldest[0] ? qid_time(l->oldest) : 0;
	}
}

void
queue_totals(const struct queue *q, struct lane_count *c, int64_t *oldest)
{
	size_t pos = 0;
	const char *key;
	void *val;

	*c = q->total;
	*oldest = 0;
	while (hmap_next(q->lanes, &pos, &key, &val)) {
		const struct qlane *l = val;
		int64_t t;

		if (l->c.messages == 0 || l->oldest[0] == '\0')
			continue;
		t = qid_time(l->oldest);
		if (*oldest == 0 || t < *oldest)
			*oldest = t;
	}
}

void
queue_set_ready_cb(struct queue *q, void (*cb)(void *arg), void *arg)
{
	q->on_ready = cb;
	q->ready_arg = arg;
	if (!q->indexing && cb != NULL)
		cb(arg);
}

size_t
queue_count(const struct queue *q)
{
	return (size_t)q->total.messages;
}

bool
queue_indexing(const struct queue *q)
{
	return q->indexing;
}
