/*
 * The queue: the spool on disk (through the writer thread) and its index
 * in memory, rebuilt from the spool's meta records at start.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/xmem.h"
#include "queue/commit.h"
#include "queue/queue.h"
#include "queue/spool.h"

struct queue {
	struct event_base *base;
	const struct conf *cf;
	struct commit *commit;
	struct qid_gen gen;
	struct hmap *msgs; /* queue id -> struct envelope, owned */
	void (*on_arrival)(void *arg, struct envelope *env);
	void *arrival_arg;
	struct spool *sp;	   /* the writer thread's; only for atomics */
	char **dest_keys, **dest_vals; /* the dest family, read at open */
	size_t ndests, capdests;
};

/* What an asynchronous call needs when its answer comes back. */
struct queue_call {
	struct queue *q;
	struct envelope *env;
	queue_done_cb *done;
	queue_body_cb *body;
	queue_load_cb *load;
	void *arg;
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

/* Recovery: each meta record either joins the index or is quarantined. */
struct queue_scan {
	struct queue *q;
	struct spool_batch *quarantine;
	char **keep; /* copies the quarantine batch borrows */
	size_t nkeep, capkeep;
	char last[QID_SIZE];
};

static void
queue_on_scanned(void *arg, const char *key, size_t klen, const char *meta,
    size_t len)
{
	struct queue_scan *st = arg;
	struct envelope *env = NULL;
	char why[160] = "", qid[QID_SIZE];
	char *k, *v;

	snprintf(qid, sizeof(qid), "%.*s", (int)(klen < QID_LEN ? klen : QID_LEN),
	    key);
	if (klen != QID_LEN || !qid_valid(qid)) {
		snprintf(why, sizeof(why), "key is not a queue id");
	} else {
		env = envelope_decode(meta, len, why, sizeof(why));
		if (env != NULL && strcmp(env->qid, qid) != 0) {
			snprintf(why, sizeof(why), "record holds id %s",
			    env->qid);
			envelope_free(env);
			env = NULL;
		}
	}
	if (env != NULL) {
		hmap_put(st->q->msgs, env->qid, env);
		memcpy(st->last, env->qid, QID_SIZE);
		return;
	}
	/* Like Postfix's corrupt queue: set aside, never dropped. */
	log_err("%.*s: spool record does not decode (%s): moved to quarantine",
	    (int)(klen > 64 ? 64 : klen), key, why);
	k = xstrndup(key, klen);
	v = xmalloc(len ? len : 1);
	memcpy(v, meta, len);
	spool_batch_quarantine(st->quarantine, k, klen, v, len);
	st->keep = xgrow(st->keep, &st->capkeep, st->nkeep + 2, sizeof(char *));
	st->keep[st->nkeep++] = k;
	st->keep[st->nkeep++] = v;
}

static int
queue_recover(struct queue *q, struct spool *sp, char *err, size_t errlen)
{
	struct queue_scan st = {.q = q, .quarantine = spool_batch_new()};
	int64_t t0 = commit_now_ns();
	size_t nbad;
	int rc;

	rc = spool_scan(sp, queue_on_scanned, &st, err, errlen);
	nbad = st.nkeep / 2;
	if (rc == QUEUE_OK && nbad > 0)
		rc = spool_write(sp, st.quarantine, true, err, errlen);
	for (size_t i = 0; i < st.nkeep; i++)
		free(st.keep[i]);
	free(st.keep);
	spool_batch_free(st.quarantine);
	if (rc != QUEUE_OK)
		return rc;
	qid_gen_init(&q->gen, st.last[0] ? st.last : NULL);
	log_info("spool %s: recovered %zu messages in %.3fs%s",
	    q->cf->spool_dir, hmap_count(q->msgs),
	    (double)(commit_now_ns() - t0) / 1e9,
	    nbad ? " (some quarantined, see above)" : "");
	return QUEUE_OK;
}

static void
queue_on_written(struct commit_op *op)
{
	if (op->status != QUEUE_OK)
		log_err("%s%s: spool update failed: %s", op->qid,
		    op->key != NULL ? op->key : "", op->err);
	free(op->key);
	free(op->meta);
	free(op);
}

/* The dest family is small (one record per destination with a state to
 * keep): read whole at open, for the scheduler to pick up. */
static void
queue_on_dest(void *arg, const char *key, size_t klen, const char *val,
    size_t len)
{
	struct queue *q = arg;

	q->dest_keys = xgrow(q->dest_keys, &q->capdests, q->ndests + 1,
	    sizeof(char *));
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
 * case (RFC 5321 2.4: only the domain is case-insensitive). */
static char *
queue_known_key(const char *addr)
{
	char *k = xstrdup(addr), *at = strrchr(k, '@');

	for (char *p = at; p != NULL && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return k;
}

int
queue_open(struct queue **qp, const struct conf *cf, struct event_base *base,
    char *err, size_t errlen)
{
	struct queue *q;
	struct spool *sp;

	*qp = NULL;
	if (spool_open(&sp, cf->spool_dir, err, errlen) != QUEUE_OK)
		return -1;
	q = xcalloc(1, sizeof(*q));
	q->base = base;
	q->cf = cf;
	q->msgs = hmap_new();
	if (queue_recover(q, sp, err, errlen) != QUEUE_OK) {
		spool_close(sp);
		hmap_free(q->msgs);
		free(q);
		return -1;
	}
	if (spool_scan_aux(sp, SPOOL_DEST, queue_on_dest, q, err, errlen) !=
	    QUEUE_OK) {
		spool_close(sp);
		queue_free_dests(q);
		hmap_free(q->msgs);
		free(q);
		return -1;
	}
	q->sp = sp;
	spool_set_known_max_age(sp, cf->known_recipients_max_age);
	q->commit = commit_new(base, sp, cf->spool_dir, cf->spool_min_free);
	*qp = q;
	return 0;
}

void
queue_set_conf(struct queue *q, const struct conf *cf)
{
	spool_set_known_max_age(q->sp, cf->known_recipients_max_age);
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
queue_push_aux(struct queue *q, enum spool_aux aux, char *key, char *val,
    size_t len)
{
	struct commit_op *op = xcalloc(1, sizeof(*op));

	op->kind = COMMIT_AUX;
	op->aux = aux;
	op->key = key;
	op->keylen = strlen(key);
	op->meta = val;
	op->metalen = len;
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
	size_t pos = 0;
	const char *key;
	void *val;

	if (q == NULL)
		return;
	commit_free(q->commit);
	queue_free_dests(q);
	while (hmap_next(q->msgs, &pos, &key, &val))
		envelope_free(val);
	hmap_free(q->msgs);
	free(q);
}

void
queue_new_qid(struct queue *q, char out[QID_SIZE])
{
	qid_next(&q->gen, out);
}

static void
queue_on_submitted(struct commit_op *op)
{
	struct queue_call *call = op->arg;
	char qid[QID_SIZE];

	memcpy(qid, op->qid, QID_SIZE);
	if (op->status == QUEUE_OK) {
		hmap_put(call->q->msgs, call->env->qid, call->env);
	} else {
		log_err("%s: not queued: %s: %s", qid,
		    queue_status_str(op->status), op->err);
		envelope_free(call->env);
	}
	call->done(call->arg, op->status, qid);
	/* Looked up again: the submitter's callback may have changed it. */
	if (op->status == QUEUE_OK && call->q->on_arrival != NULL) {
		struct envelope *env = hmap_get(call->q->msgs, qid);
		if (env != NULL)
			call->q->on_arrival(call->q->arrival_arg, env);
	}
	free(op->meta);
	free(op->body);
	free(op);
	free(call);
}

void
queue_submit(struct queue *q, struct envelope *env, char *body, size_t len,
    queue_done_cb *cb, void *arg)
{
	struct commit_op *op = xcalloc(1, sizeof(*op));
	struct queue_call *call = xcalloc(1, sizeof(*call));

	call->q = q;
	call->env = env;
	call->done = cb;
	call->arg = arg;
	env->size = len;
	op->kind = COMMIT_SUBMIT;
	memcpy(op->qid, env->qid, QID_SIZE);
	op->meta = envelope_encode(env, &op->metalen);
	op->body = body;
	op->bodylen = len;
	op->done = queue_on_submitted;
	op->arg = call;
	commit_push(q->commit, op);
}

static void
queue_on_body(struct commit_op *op)
{
	struct queue_call *call = op->arg;

	if (op->status == 1) {
		log_err("%s: body missing from the spool", op->qid);
		op->status = QUEUE_EIO;
	} else if (op->status != QUEUE_OK)
		log_err("%s: cannot read body: %s", op->qid, op->err);
	if (call->load != NULL) {
		call->load(call->arg, op->status,
		    op->status == QUEUE_OK ? op->body : NULL, op->bodylen,
		    op->known);
		op->known = NULL;
	} else
		call->body(call->arg, op->status,
		    op->status == QUEUE_OK ? op->body : NULL, op->bodylen);
	if (op->status != QUEUE_OK)
		free(op->body);
	for (size_t i = 0; i < op->naddrs; i++)
		free(op->addrs[i]);
	free(op->addrs);
	free(op->known);
	free(op);
	free(call);
}

/* A body read, with or without what is known of addrs; one of body_cb
 * and load_cb is set. */
static void
queue_read(struct queue *q, const char *qid, const char *const *addrs,
    size_t naddrs, queue_body_cb *body_cb, queue_load_cb *load_cb, void *arg)
{
	struct commit_op *op = xcalloc(1, sizeof(*op));
	struct queue_call *call = xcalloc(1, sizeof(*call));

	call->q = q;
	call->body = body_cb;
	call->load = load_cb;
	call->arg = arg;
	op->kind = COMMIT_READ_BODY;
	snprintf(op->qid, sizeof(op->qid), "%s", qid);
	op->addrs = naddrs > 0 ? xcalloc(naddrs, sizeof(char *)) : NULL;
	for (size_t i = 0; i < naddrs; i++)
		op->addrs[i] = queue_known_key(addrs[i]);
	op->naddrs = naddrs;
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
queue_read_body(struct queue *q, const char *qid, queue_body_cb *cb,
    void *arg)
{
	queue_read(q, qid, NULL, 0, cb, NULL, arg);
}

struct envelope *
queue_find(const struct queue *q, const char *qid)
{
	return hmap_get(q->msgs, qid);
}


static void
queue_push(struct queue *q, enum commit_kind kind, const char *qid,
    const struct envelope *env)
{
	struct commit_op *op = xcalloc(1, sizeof(*op));

	op->kind = kind;
	snprintf(op->qid, sizeof(op->qid), "%s", qid);
	if (env != NULL)
		op->meta = envelope_encode(env, &op->metalen);
	op->done = queue_on_written;
	commit_push(q->commit, op);
}

void
queue_update(struct queue *q, const char *qid)
{
	struct envelope *env = hmap_get(q->msgs, qid);

	if (env != NULL)
		queue_push(q, COMMIT_UPDATE, qid, env);
}

void
queue_remove(struct queue *q, const char *qid)
{
	struct envelope *env = hmap_del(q->msgs, qid);

	if (env == NULL)
		return;
	queue_push(q, COMMIT_DELETE, env->qid, NULL);
	envelope_free(env);
}

void
queue_foreach(const struct queue *q,
    void (*cb)(void *arg, struct envelope *env), void *arg)
{
	size_t pos = 0;
	const char *key;
	void *val;

	while (hmap_next(q->msgs, &pos, &key, &val))
		cb(arg, val);
}

void
queue_set_arrival_cb(struct queue *q,
    void (*cb)(void *arg, struct envelope *env), void *arg)
{
	q->on_arrival = cb;
	q->arrival_arg = arg;
}

size_t
queue_count(const struct queue *q)
{
	return hmap_count(q->msgs);
}
