/*
 * queue/verdict: what a reply about a recipient means for the recipient
 * and for its destination. One table tells a store that rejects a bad
 * address from a store that is sick: a 5xx that speaks about the recipient
 * or the message fails it, while a protocol error, or a temporary failure
 * that no recipient of the transaction escaped, says the store itself is
 * in trouble (DESIGN.md, contract 2). Pure: no I/O.
 */
#ifndef MXSPOOL_VERDICT_H
#define MXSPOOL_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

/* The command a reply answered (RFC 5321 4.1.1). */
enum reply_stage {
	STAGE_NONE, /* none: greeting, EHLO, connection lost, or our own */
	STAGE_MAIL, /* MAIL FROM */
	STAGE_RCPT, /* RCPT TO */
	STAGE_DATA, /* DATA, before any content */
	STAGE_DOT,  /* the end of data or BDAT LAST; LMTP: per recipient */
};

enum verdict {
	VERDICT_SENT,      /* 2xx: delivered */
	VERDICT_DEFER,     /* 4xx about this address (X.1.x, X.2.1, X.2.2:
			      a full mailbox): defer it alone */
	VERDICT_TRANSIENT, /* any other 4xx, or no reply: defer; when no
			      recipient of the transaction fared better,
			      the destination is failing */
	VERDICT_STORE,     /* a 5xx about the session, not the recipient
			      (500-504, X.5.x, 5xx to MAIL or DATA without a
			      recipient or message status): the store is
			      confused; defer, and the destination is failing */
	VERDICT_FAIL,      /* a 5xx about the recipient or the message:
			      return it to the sender */
};

/*
 * The verdict on one recipient's reply: `code` the reply code (0: no reply
 * came), `dsn` its enhanced status code (RFC 3463) or NULL, `stage` the
 * command it answered. Permanent by enhanced status: X.1.x (address),
 * X.2.x (mailbox), X.3.4 (too big), X.6.x (content), X.7.x (policy); by
 * code: 550-554 to RCPT or to the end of data. The rest of 5xx is
 * VERDICT_STORE.
 */
enum verdict verdict_of(enum reply_stage stage, int code, const char *dsn);

/*
 * What the replies of one transaction say about its destination. A
 * transaction in which every recipient got a transient failure fails the
 * destination when it proves something: a recipient was tried for the
 * first time (`retried[i]` false: it was never deferred before), or the
 * destination has given no healthy answer lately (`quiet`). A recipient
 * deferred again while the store serves others (a user's own trouble)
 * proves nothing about the store. retried may be NULL (all first tries).
 */
struct verdict_sum {
	bool healthy; /* the store answered about an address (2xx, DEFER or
			 FAIL): it is up */
	bool failing; /* a VERDICT_STORE, or only TRANSIENT replies that
			 prove the store is failing */
	bool trouble; /* TRANSIENT replies that do not: slow down */
};
struct verdict_sum verdict_sum(
    const enum verdict *v, const bool *retried, size_t n, bool quiet);

const char *verdict_str(enum verdict v);
const char *reply_stage_str(enum reply_stage st);

#endif
