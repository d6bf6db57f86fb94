/*
 * queue/dsn: delivery status notifications (RFC 3464, RFC 3461, RFC 6533
 * where SMTPUTF8 applies) built as message text, ready to be queued from
 * the null sender to the original sender. Pure: no I/O, no libevent, no
 * RocksDB, so the text can be checked against golden files.
 */
#ifndef MXSPOOL_DSN_H
#define MXSPOOL_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

enum dsn_action {
	DSN_FAILED,    /* 5xx, or max_age reached: returned to sender */
	DSN_DELAYED,   /* warn_after passed: still trying */
	DSN_DELIVERED, /* NOTIFY=SUCCESS and final delivery (LMTP) */
	DSN_RELAYED,   /* NOTIFY=SUCCESS, next hop does not speak DSN */
};

/* What is reported about one recipient. */
struct dsn_rcpt {
	size_t idx;         /* index into env->rcpts */
	const char *status; /* enhanced status, e.g. "5.1.1", "4.4.1" */
	const char
	    *remote_mta; /* the relay as logged, "mx.example.com[192.0.2.1]:25"
			    or a unix socket's path; or NULL when no
			    remote MTA was reached */
	const char *diagnostic; /* the remote reply ("550 5.1.1 No such
				   user"), or our own words, optionally ending
				   in ": " and the reply that caused them; or
				   NULL */
};

struct dsn_info {
	const char *reporting_mta; /* our hostname */
	const struct envelope *env;
	const char *body; /* the original message as stored */
	size_t len;
	enum dsn_action action;
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
	int64_t now; /* unix seconds: Date and, for delays, Last-Attempt */
	int64_t will_retry_until; /* DSN_DELAYED: unix seconds, or 0 */
	const char
	    *msgid_domain; /* for Message-ID; the reporting MTA if NULL */
};

/*
 * Whether recipient r asked for (or by default gets) a notice of action:
 * NOTIFY=NEVER never; FAILURE and DELAY by default; SUCCESS only when
 * asked. Never for a message from the null sender.
 */
bool dsn_wanted(const struct envelope *env, const struct env_rcpt *r,
    enum dsn_action action);

/*
 * The whole notification message (header and body, CRLF lines), malloc'd,
 * *len bytes: multipart/report; report-type=delivery-status with a human
 * part, a message/delivery-status part (Reporting-MTA, Original-Envelope-Id
 * from ENVID, Arrival-Date, then per recipient Original-Recipient from
 * ORCPT, Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
 * Last-Attempt-Date, Will-Retry-Until), and the original message
 * (message/rfc822) or only its header (text/rfc822-headers) per RET
 * (RFC 3461 4.3: failures carry the full message unless RET=HDRS; success
 * notices only with RET=FULL; delays, and originals over 1 MiB, only the
 * header, said so in the human part).
 */
char *dsn_build(const struct dsn_info *info, size_t *len);

const char *dsn_action_str(enum dsn_action a);

/*
 * Whether a notice to env's sender needs SMTPUTF8 (RFC 6531, 6533): only
 * when the sender's address is not ASCII. Whatever the original was, a
 * notice to an ASCII address is built so that it does not.
 */
bool dsn_needs_smtputf8(const struct envelope *env);

/* The BODY a notice's text needs (RFC 6152, 3030): 7BIT when it is ASCII
 * lines, BINARYMIME with NUL, bare CR or LF or a line over 998 octets,
 * else 8BITMIME. */
enum body_type dsn_body_type(const char *text, size_t len);

/*
 * The remote server's reply in a diagnostic text (see struct dsn_rcpt):
 * the text itself when it starts with a reply code, the part after the
 * first ": " that does, or NULL when the remote said nothing (a refused
 * connection, a timeout, a limit of ours). Points into text. It goes
 * under Diagnostic-Code type "smtp" (RFC 3464 2.3.6); our words without
 * a reply go under "X-mxspool".
 */
const char *dsn_diag_reply(const char *text);

/*
 * The remote MTA's name for Remote-MTA (RFC 3464 2.3.5, type "dns"):
 * relay without its "[address]" and ":port", malloc'd; NULL for a unix
 * socket's path or an empty relay (no name to give).
 */
char *dsn_mta_name(const char *relay);

#endif
