/*
 * The spool's writer thread: group commit. Operations queued from the loop
 * are written by one thread, everything pending in one RocksDB write batch
 * with one WAL fsync; results come back to the loop through an eventfd.
 * Private to queue/.
 */
#ifndef MXSPOOL_COMMIT_H
#define MXSPOOL_COMMIT_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "queue/qid.h"

struct spool;
struct commit;
struct commit_op;

enum commit_kind {
	COMMIT_SUBMIT, /* meta + body of a new message, and edits: synced */
	COMMIT_UPDATE, /* meta after an attempt, and edits: not synced */
	COMMIT_DELETE, /* a finished message, and edits: not synced */
	COMMIT_EDIT,   /* edits alone: not synced */
	COMMIT_READ,   /* op->read, after the batch it came with is written */
};

/* One key of a family (spool.h) to put, or to delete when val is NULL. */
struct commit_edit {
	int aux;         /* enum spool_aux */
	char *key, *val; /* owned */
	size_t klen, len;
};

/* Runs on the loop with op->status set; it owns op from then on. */
typedef void commit_done_cb(struct commit_op *op);

struct commit_op {
	TAILQ_ENTRY(commit_op) entry;
	enum commit_kind kind;
	char qid[QID_SIZE];
	char *meta; /* owned: the envelope record */
	size_t metalen;
	char *body; /* owned: to write (SUBMIT) or as read */
	size_t bodylen;
	/* SUBMIT: another message's record, written in the same batch (a
	 * notification and the original's record that says it was sent);
	 * such a submit is not held to min_free. */
	char also_qid[QID_SIZE];
	char *also_meta; /* owned, or NULL */
	size_t also_metalen;
	struct commit_edit *edits; /* owned, with their keys and values */
	size_t nedits;
	/* READ: runs on the writer thread; it reads what it needs (never on
	 * the loop) into ctx, and sets status and err. It sees every write
	 * queued before it. */
	void (*read)(struct spool *sp, struct commit_op *op);
	void *ctx;
	bool alone;    /* READ: in a batch of its own, before what follows */
	int status;    /* a queue_status (READ: its own codes too) */
	char err[200]; /* why, when status is not QUEUE_OK */
	int64_t queued_ns; /* monotonic, for commit latency */
	commit_done_cb *done;
	void *arg;
};

/* Adds an edit to op; takes ownership of key and val. */
void commit_op_edit(struct commit_op *op, int aux, char *key, size_t klen,
    char *val, size_t len);
/* Frees op, its meta, body and edits (not ctx). */
void commit_op_free(struct commit_op *op);

TAILQ_HEAD(commit_list, commit_op);

/*
 * Takes ownership of sp; dir is its directory, whose file system must keep
 * min_free bytes free after each new message.
 */
struct commit *commit_new(struct event_base *base, struct spool *sp,
    const char *dir, uint64_t min_free);
/*
 * Whether the spool refuses writes since one failed (until the writer
 * reopens it, once the disk has room again); if so, why in one line
 * ("spool refuses writes: <RocksDB's error>"). Any thread.
 */
bool commit_refusing(struct commit *c, char *why, size_t n);
/* spool_min_free after a reload, bytes. */
void commit_set_min_free(struct commit *c, uint64_t min_free);
/* Queues op; its done callback runs on the loop later. */
void commit_push(struct commit *c, struct commit_op *op);
/* Writes what is pending, runs the callbacks, stops the thread. */
void commit_free(struct commit *c);
int64_t commit_now_ns(void);

#endif
