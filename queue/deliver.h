/*
 * queue/deliver: the interface between the scheduler and what carries
 * mail on the wire (relay/client.c implements it). The scheduler hands a
 * session one message at a time and gets a result for every recipient;
 * it reaches the sessions only through the functions in struct
 * deliver_ops, given to sched_new, so queue/ includes nothing of relay/.
 */
#ifndef MXSPOOL_DELIVER_H
#define MXSPOOL_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "dns/dns.h"
#include "queue/envelope.h"
#include "queue/verdict.h"

struct event_base;
struct client_session;

/* One recipient of a delivery: the request, then the answer about it. */
struct client_rcpt {
	const char *addr;  /* in: borrowed */
	const char *orcpt; /* in: RFC 3461 ORCPT as stored, or NULL */
	unsigned notify;   /* in: NOTIFY_* bits, 0 if not given */
	int code;          /* out: reply code (250, 451, 550...); 0: none */
	enum reply_stage stage; /* out: the command `code` answered */
	char dsn[12]; /* out: enhanced status, e.g. "2.0.0", "4.4.1" */
	char *text;   /* out: reply or failure text, or NULL; malloc'd: the
			 client frees an old value when it sets a new one, the
			 owner frees the last */
};

/* One message to deliver over a session. Everything "in" is borrowed
 * until `done` runs for it. */
struct client_msg {
	const char *qid;
	const char *sender; /* "" for the null sender */
	enum body_type body;
	bool smtputf8;
	enum dsn_ret ret;
	const char *envid; /* or NULL */
	struct client_rcpt *rcpts;
	size_t nrcpts;
	const char *data; /* the message as stored: CRLF lines, not stuffed */
	size_t len;
	void *owner; /* the caller's own pointer, untouched */
	/* A hand-over to a peer (mxspoolctl xfer): the first arrival, unix
	 * seconds, sent as ARRIVAL=; a hop that does not offer
	 * XMXSPOOL-ARRIVAL (no peer_listen) refuses the message. 0: none. */
	int64_t arrival;
	bool dsn_passed; /* out: the next hop offered DSN (RFC 3461), so
			    NOTIFY, ORCPT, RET and ENVID went on with the
			    message and success notices are the hop's job */
	bool untried;    /* out: a reused connection turned out closed (421
			    or end of file) before MAIL was answered: nothing
			    was attempted, the results mean nothing, and the
			    message goes on a new connection at once */
};

/* How to reach a destination and how to talk to it. */
struct client_target {
	const struct dns_answer *ans; /* hosts to try, or a unix socket path */
	bool lmtp;                    /* LMTP (RFC 2033) instead of SMTP */
	enum tls_policy tls;
	const char *tls_ca_file; /* for TLS_VERIFY; NULL: system store */
	const char *helo_name;   /* our name in EHLO/LHLO */
	unsigned max_msgs;       /* messages per connection, then QUIT */
	int64_t connect_timeout; /* seconds, per address tried */
	int64_t command_timeout; /* greeting, EHLO, MAIL, RCPT, QUIT */
	int64_t data_timeout;    /* DATA reply and each write */
	int64_t final_timeout;   /* reply(ies) to the end of data */
	int64_t idle_timeout;    /* an idle session waits this long for work */
	bool quiet; /* a probe: session failures at debug level only */
};

/* Why a session ended. */
struct client_end {
	bool connected; /* a greeting was accepted at some point */
	bool refused;   /* never connected: every address refused it */
	unsigned delivered_msgs;
	int code;       /* the last reply code that ended it, or 0 */
	char dsn[12];   /* "4.4.1" (no answer), "4.7.5" (TLS), ... */
	char text[256]; /* e.g. "connect to mx.example[192.0.2.1]:25:
			   Connection refused" */
};

struct client_cbs {
	/*
	 * The session is ready for a message: return one, or NULL to leave
	 * the session idle (it then waits idle_timeout for
	 * deliver_ops.wake, and QUITs after that).
	 */
	struct client_msg *(*next)(void *arg, struct client_session *cs);
	/*
	 * A message's transaction ended: every rcpt has code/dsn/text set.
	 * A failure of the whole transaction (MAIL refused, DATA refused, the
	 * connection lost) is reported on each recipient it concerns.
	 */
	void (*done)(
	    void *arg, struct client_session *cs, struct client_msg *msg);
	/* The session is over; the owner frees it with deliver_ops.close.
	 * Any message in progress was reported through `done` first. */
	void (*closed)(
	    void *arg, struct client_session *cs, const struct client_end *end);
};

/* Sessions, as relay/client.h describes them. */
struct deliver_ops {
	/* Starts a session: connects, greets, then calls next(). target
	 * and its answer are borrowed until `closed` runs. Never fails
	 * synchronously: a session that cannot start says so in `closed`. */
	struct client_session *(*open)(struct event_base *base,
	    const struct client_target *target, const struct client_cbs *cbs,
	    void *arg);
	/* An idle session: there is work now, call next() again. */
	void (*wake)(struct client_session *cs);
	/* Finish the message in progress, then QUIT and close. */
	void (*quit)(struct client_session *cs);
	/* Closes at once, without callbacks. NULL is a no-op. */
	void (*close)(struct client_session *cs);
	/* "mx.example.com[192.0.2.1]:25", for the log line. */
	const char *(*relay)(const struct client_session *cs);
};

#endif
