/*
 * queue/: everything other modules may use of the durable spool. Storage
 * runs on a writer thread; every callback here runs on the event loop.
 */
#ifndef MXSPOOL_QUEUE_H
#define MXSPOOL_QUEUE_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "queue/envelope.h"

struct queue;

enum queue_status {
	QUEUE_OK = 0,
	QUEUE_EIO = -1,	   /* the spool could not take it: 451 4.3.0 */
	QUEUE_ENOSPC = -2, /* out of disk space: 452 4.3.1 */
};

/* status is a queue_status; qid is the message's id. */
typedef void queue_done_cb(void *arg, int status, const char *qid);

/*
 * Opens (or creates) the spool at cf->spool_dir and rebuilds the in-memory
 * index from it. Blocks: call it before the loop runs. On failure returns
 * -1 with one line in err (e.g. "spool DIR is in use by another process").
 */
int queue_open(struct queue **qp, const struct conf *cf,
    struct event_base *base, char *err, size_t errlen);
/* Finishes pending writes, then closes. NULL is a no-op. */
void queue_close(struct queue *q);

/* A fresh queue id, for the Received header before the body is complete. */
void queue_new_qid(struct queue *q, char out[QID_SIZE]);

/*
 * Stores env (whose qid came from queue_new_qid) and its body durably:
 * cb runs once both are in the write-ahead log with fsync, or with the
 * error. Takes ownership of env and body, even on failure.
 */
void queue_submit(struct queue *q, struct envelope *env, char *body,
    size_t len, queue_done_cb *cb, void *arg);

/*
 * Reads a message's body for delivery. cb gets QUEUE_OK and the body (which
 * it then owns and frees), or an error status and NULL.
 */
typedef void queue_body_cb(void *arg, int status, char *body, size_t len);
void queue_read_body(struct queue *q, const char *qid, queue_body_cb *cb,
    void *arg);

/*
 * Reads a message's body for delivery, and when the store last accepted
 * each of addrs (unix seconds; 0: never, as far as the spool knows). cb
 * owns body and known (naddrs entries, or NULL) from then on.
 */
typedef void queue_load_cb(void *arg, int status, char *body, size_t len,
    int64_t *known);
void queue_load(struct queue *q, const char *qid, const char *const *addrs,
    size_t naddrs, queue_load_cb *cb, void *arg);
/* Remembers that the store accepted addr (a 2xx to RCPT, or to the data
 * over LMTP) at `when`, unix seconds; kept known_recipients_max_age. */
void queue_learn_recipient(struct queue *q, const char *addr, int64_t when);
/*
 * A destination's state that must survive a restart (the rejection
 * guard's), as one line of text; NULL forgets it. Not synced. The states
 * stored are read at queue_open: queue_foreach_dest_state gives them.
 */
void queue_put_dest_state(struct queue *q, const char *key,
    const char *state);
void queue_foreach_dest_state(const struct queue *q,
    void (*cb)(void *arg, const char *key, const char *state), void *arg);
/* After a reload. */
void queue_set_conf(struct queue *q, const struct conf *cf);
/* The envelope of a queued message, or NULL. Borrowed: valid until the
 * message leaves the queue. The scheduler changes its delivery state and
 * then calls queue_update() to store it. */
struct envelope *queue_find(const struct queue *q, const char *qid);
/*
 * Stores the envelope's new state (recipients done, attempts, errors).
 * Not synced on its own: losing it in a power cut only means a message is
 * delivered again.
 */
void queue_update(struct queue *q, const char *qid);
/* Deletes a finished message from the spool and the index. */
void queue_remove(struct queue *q, const char *qid);
/* Calls cb for every queued message (in no particular order). */
void queue_foreach(const struct queue *q,
    void (*cb)(void *arg, struct envelope *env), void *arg);
/* cb runs for each message once it is durably queued (after the submit
 * callback), so the scheduler can pick it up. */
void queue_set_arrival_cb(struct queue *q,
    void (*cb)(void *arg, struct envelope *env), void *arg);

/* Messages in the spool now. */
size_t queue_count(const struct queue *q);

const char *queue_status_str(int status);

#endif
