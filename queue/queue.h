/*
 * queue/: everything other modules may use of the durable spool. Storage
 * runs on a writer thread; every callback here runs on the event loop.
 */
#ifndef MXSPOOL_QUEUE_H
#define MXSPOOL_QUEUE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "queue/envelope.h"
#include "queue/qindex.h"

struct queue;

enum queue_status {
	QUEUE_OK = 0,
	QUEUE_EIO = -1,    /* the spool could not take it: 451 4.3.0 */
	QUEUE_ENOSPC = -2, /* out of disk space: 452 4.3.1 */
};

/* status is a queue_status; qid is the message's id. */
typedef void queue_done_cb(void *arg, int status, const char *qid);

/*
 * Opens (or creates) the spool at cf->spool_dir and reads its counters
 * (not its messages: a start takes the same time at any spool size).
 * Blocks: call it before the loop runs. On failure returns -1 with one
 * line in err (e.g. "spool DIR is in use by another process").
 */
int queue_open(struct queue **qp, const struct conf *cf,
    struct event_base *base, char *err, size_t errlen);
/* Finishes pending writes, then closes. NULL is a no-op. */
void queue_close(struct queue *q);

/*
 * A fresh queue id, for the Received header before the body is complete.
 * arrival_us: 0 for a message arriving now, else the unix microseconds of
 * its first arrival on another node (ARRIVAL=), which the id carries for
 * warn_after and max_age (queue/qid.h).
 */
void queue_new_qid(struct queue *q, int64_t arrival_us, char out[QID_SIZE]);

/*
 * Stores env (whose qid came from queue_new_qid) and its body durably:
 * cb runs once both are in the write-ahead log with fsync, or with the
 * error. Takes ownership of env and body, even on failure.
 */
void queue_submit(struct queue *q, struct envelope *env, char *body, size_t len,
    queue_done_cb *cb, void *arg);

/*
 * A notification about message `about` (DSN, RFC 3464): queues env and
 * body as queue_submit does and, in the same synced write batch, about's
 * record as it is now in the window (its recipients marked failed, or
 * ENV_DELAY_SENT set, by the caller first). A crash leaves both or
 * neither, so the sender never gets a notice twice for one event nor the
 * record a mark without the notice. Not held to spool_min_free: that
 * floor keeps room for exactly this. If cb gets an error, about's record
 * was not written: the caller puts its envelope back and calls
 * queue_update.
 */
void queue_submit_notice(struct queue *q, struct envelope *env, char *body,
    size_t len, const char *about, queue_done_cb *cb, void *arg);

/*
 * Reads a message's body for delivery. cb gets QUEUE_OK and the body (which
 * it then owns and frees), or an error status and NULL.
 */
typedef void queue_body_cb(void *arg, int status, char *body, size_t len);
void queue_read_body(
    struct queue *q, const char *qid, queue_body_cb *cb, void *arg);

/*
 * Reads a message's body for delivery, and when the store last accepted
 * each of addrs (unix seconds; 0: never, as far as the spool knows). cb
 * owns body and known (naddrs entries, or NULL) from then on.
 */
typedef void queue_load_cb(
    void *arg, int status, char *body, size_t len, int64_t *known);
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
void queue_put_dest_state(struct queue *q, const char *key, const char *state);
void queue_foreach_dest_state(const struct queue *q,
    void (*cb)(void *arg, const char *key, const char *state), void *arg);
/* After a reload. */
void queue_set_conf(struct queue *q, const struct conf *cf);

/*
 * The active window: the messages held in memory, because the scheduler
 * is delivering them or is about to. Every other message is only in the
 * spool, reached through its index (queue/qindex.h) by queue_scan and
 * queue_get. Memory grows with the window, never with the spool.
 */

/* The envelope of a message in the window, or NULL. Borrowed: valid
 * until the message leaves the window. */
struct envelope *queue_find(const struct queue *q, const char *qid);
/* Like queue_find, and the message stays in the window: a queue_park
 * of it still pending is forgotten. For the scheduler. */
struct envelope *queue_take(struct queue *q, const char *qid);
/*
 * Stores the new state of a message in the window (recipients done,
 * attempts, errors, flags), with its index entries and counters, in one
 * batch. Not synced on its own: losing it in a power cut only means a
 * message is delivered again.
 */
void queue_update(struct queue *q, const char *qid);
/* Deletes a finished message from the spool, the index and the window. */
void queue_remove(struct queue *q, const char *qid);
/* What became of a recipient after an attempt, or an operator's word. */
enum rcpt_outcome {
	OUTCOME_SENT,     /* accepted: the recipient is delivered */
	OUTCOME_DEFERRED, /* it waits, and is tried again */
	OUTCOME_BOUNCED,  /* returned to the sender (settled once the DSN
			     is queued) */
	OUTCOME_EXPIRED,  /* returned: max_age reached */
};

struct rcpt_result {
	enum rcpt_outcome outcome;
	const char *relay; /* "host[addr]:port"; NULL: none */
	const char *dsn;   /* its enhanced status now; NULL keeps the last */
	const char *reply; /* the reply or why, kept; NULL keeps the last */
	const char *note;  /* logged before the reply: "soft_bounce: " */
	const char *says;  /* logged instead of the reply (the operator) */
	const char *role;  /* who logs it: "smtp", "lmtp"; NULL: qmgr */
	const char *dest;  /* the destination that answered, for its
			      counters; NULL: none (the operator, max_age) */
	bool quiet;        /* recorded, not logged: a failed probe's message */
};

/*
 * Logs a recipient's result in the Postfix shape (ID: to=<..>, relay=..,
 * delay=.., dsn=.., status=..) as res->role, without recording it (a
 * message held behind a failing destination, said once).
 */
void queue_log_rcpt(
    const struct envelope *env, size_t idx, const struct rcpt_result *res);
/*
 * Records a recipient's result in the envelope of a message in the
 * window (state, enhanced status, last reply), logs it in the Postfix
 * shape (ID: to=<..>, relay=.., delay=.., dsn=.., status=..) and counts
 * it. The one place a recipient's result is written; it reaches the spool
 * with the message's next queue_update, in that batch.
 */
void queue_record(
    struct envelope *env, size_t idx, const struct rcpt_result *res);
/* The message leaves the window once every write of it queued so far is
 * done (so a scan can never bring back a state older than the spool's).
 * Its state must have been stored (queue_update). */
void queue_park(struct queue *q, const char *qid);
/* Messages in the window now. */
size_t queue_window(const struct queue *q);
/* cb runs for each message once it is durably queued (after the submit
 * callback), in the window; the scheduler takes it or parks it. */
void queue_set_arrival_cb(
    struct queue *q, void (*cb)(void *arg, struct envelope *env), void *arg);

/* What queue_scan picks from a lane. */
enum queue_pick {
	QPICK_DUE,  /* not held, due now */
	QPICK_ANY,  /* not held */
	QPICK_AGED, /* not held, past expire_before, or past warn_before
		       without its delay notice */
	QPICK_ALL,  /* everything, held too */
};

struct queue_scan {
	const char *lane;     /* NULL: every message, in arrival order */
	char after[QID_SIZE]; /* start after this id; "" at the start */
	enum queue_pick pick;
	size_t limit;                       /* messages returned at most */
	int64_t now_ms;                     /* QPICK_DUE */
	int64_t warn_before, expire_before; /* QPICK_AGED: unix us */
	bool admit;     /* they join the window (else: copies) */
	bool keys_only; /* ids only (page.qids), no envelopes read */
};

struct queue_page {
	int status;             /* a queue_status */
	struct envelope **envs; /* admit: in the window, borrowed; else
				   copies, freed after the callback */
	char (*qids)[QID_SIZE]; /* keys_only: the ids picked */
	size_t n;               /* envelopes, or ids */
	char last[QID_SIZE];    /* the last id looked at: go on after it */
	bool end;               /* nothing after last */
	int64_t next_due;       /* QPICK_DUE: the earliest due passed over
				   (unix ms), INT64_MAX if none */
};

/*
 * Reads the next messages of a lane (or of the whole spool) from the
 * spool, in arrival order, on the writer thread, a bounded slice at a
 * time (at most limit messages, and a few thousand index entries looked
 * at): the loop never walks the spool. cb gets the page, which is freed
 * when it returns. A record that does not decode is moved to quarantine
 * and logged, never dropped.
 */
typedef void queue_page_cb(void *arg, struct queue_page *page);
void queue_scan(
    struct queue *q, const struct queue_scan *sc, queue_page_cb *cb, void *arg);
/* One message by id: env is NULL if it is not queued. With admit, it
 * joins the window (env borrowed); else env is a copy the callback owns. */
typedef void queue_get_cb(void *arg, struct envelope *env);
void queue_get(
    struct queue *q, const char *qid, bool admit, queue_get_cb *cb, void *arg);

/*
 * The counters, kept as the spool changes and stored with it, so they are
 * read in O(lanes), never by walking messages. oldest is the arrival of
 * the lane's oldest message (unix us; 0 if not known yet).
 */
typedef void queue_lane_cb(
    void *arg, const char *lane, const struct lane_count *c, int64_t oldest);
void queue_foreach_lane(const struct queue *q, queue_lane_cb *cb, void *arg);
/* One lane's counters (zero if it has no mail). */
void queue_lane_count(const struct queue *q, const char *lane,
    struct lane_count *c, int64_t *oldest);
/* The whole spool: each message once. */
void queue_totals(const struct queue *q, struct lane_count *c, int64_t *oldest);
/* cb runs once the counters are complete: at once for a spool that keeps
 * them, after the background indexing of an older one. */
void queue_set_ready_cb(struct queue *q, void (*cb)(void *arg), void *arg);

/* Messages in the spool now. */
size_t queue_count(const struct queue *q);
/* A spool from before the index is being indexed: the counters show only
 * what has arrived since the start. */
bool queue_indexing(const struct queue *q);

/*
 * Whether the spool takes new mail now. If not, why in one line: "spool
 * refuses writes: <error>" after a failed write (until the writer thread
 * reopens it, queue/commit.c), or "spool free space 12 MiB under
 * spool_min_free 16 MiB" (new mail gets 452 4.3.1 then). For /healthz.
 */
bool queue_writable(const struct queue *q, char *why, size_t n);
/* Bytes free for mxspoold on the spool's file system (statvfs f_bavail),
 * or -1 when statvfs fails. */
int64_t queue_free_bytes(const struct queue *q);

const char *queue_status_str(int status);

#endif
