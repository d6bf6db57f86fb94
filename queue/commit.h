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
#include <stdint.h>
#include <sys/queue.h>

#include "queue/qid.h"

struct spool;
struct commit;
struct commit_op;

enum commit_kind {
	COMMIT_SUBMIT,	  /* meta + body of a new message: synced */
	COMMIT_UPDATE,	  /* meta after an attempt: not synced */
	COMMIT_DELETE,	  /* a finished message: not synced */
	COMMIT_READ_BODY, /* a body for delivery, and what is known of its
			     recipients */
	COMMIT_AUX,	  /* a key of an aux family (spool.h): not synced */
};

/* Runs on the loop with op->status set; it owns op from then on. */
typedef void commit_done_cb(struct commit_op *op);

struct commit_op {
	TAILQ_ENTRY(commit_op) entry;
	enum commit_kind kind;
	char qid[QID_SIZE];
	char *meta; /* owned: the envelope record */
	size_t metalen;
	char *body; /* owned: to write (SUBMIT) or as read (READ_BODY) */
	size_t bodylen;
	/* AUX: the family, and the key (owned; meta is the value, NULL to
	 * delete). READ_BODY: addresses to look up in the known family
	 * (owned), and when each was last accepted (owned; 0: never). */
	int aux;
	char *key;
	size_t keylen;
	char **addrs;
	size_t naddrs;
	int64_t *known;
	int status;	/* a queue_status; 1 for READ_BODY of a missing body */
	char err[200];	/* why, when status is not QUEUE_OK */
	int64_t queued_ns; /* monotonic, for commit latency */
	commit_done_cb *done;
	void *arg, *arg2;
};

TAILQ_HEAD(commit_list, commit_op);

/*
 * Takes ownership of sp; dir is its directory, whose file system must keep
 * min_free bytes free after each new message.
 */
struct commit *commit_new(struct event_base *base, struct spool *sp,
    const char *dir, uint64_t min_free);
/* Queues op; its done callback runs on the loop later. */
void commit_push(struct commit *c, struct commit_op *op);
/* Writes what is pending, runs the callbacks, stops the thread. */
void commit_free(struct commit *c);
int64_t commit_now_ns(void);

#endif
