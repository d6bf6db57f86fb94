#define LOG_ROLE "smtpd"
/*
 * DATA and BDAT: reading the message, checking it, and handing it to the
 * spool. The 250 goes out only from the spool's callback, after the
 * group commit has the message in the write-ahead log (DESIGN.md,
 * contract 1).
 *
 * A message with a bare CR or LF is refused as a whole after its end
 * (550 5.6.0), as Postfix's smtpd_forbid_bare_newline does: only CRLF "."
 * CRLF ends DATA, so a sequence such as LF "." LF can never smuggle a
 * second message past us nor past a server we relay to. Text lines longer
 * than 1000 octets are kept unchanged (and counted in the log), as Postfix
 * keeps them: refusing them would bounce real mail from sloppy senders.
 *
 * Message data held in memory is bounded for the whole server by
 * data_memory_limit: the body buffers of every session, counted by their
 * capacity, and the messages handed to the spool until it answers. A new
 * DATA or first BDAT chunk that finds no room gets 452 4.3.1 (RFC 3463:
 * insufficient system storage). A message whose buffer would have to grow
 * past the limit is read on to its end but its bytes are dropped as they
 * arrive, and its end gets 452 4.3.1: one session is stopped so that the
 * others, and the server, keep their memory. A message alone in memory
 * may always grow to message_size_limit, so that a limit below that size
 * slows mail down but never refuses the largest message forever.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "relay/server_int.h"

/* A pending spool answer: names its session by id, never by pointer. */
struct smtp_ticket {
	TAILQ_ENTRY(smtp_ticket) entry;
	struct server *srv; /* NULL once the server is gone */
	uint64_t sid;
	int64_t start_us;
	size_t charged; /* bytes of the message counted in data_bytes */
};

#define SMTP_NOMEM_REPLY "452 4.3.1 Insufficient system storage"

static int64_t
now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

void
smtp_data_account(struct smtp_sess *s)
{
	struct server *srv = s->srv;

	srv->data_bytes -= s->data_charged;
	s->data_charged = s->data.cap;
	srv->data_bytes += s->data_charged;
}

/*
 * Whether s's body buffer may have cap bytes: the rest of the server's
 * message data and cap fit in data_memory_limit, or s would be alone.
 */
static bool
smtp_data_room(const struct smtp_sess *s, size_t cap)
{
	const struct server *srv = s->srv;
	uint64_t others = srv->data_bytes - s->data_charged;

	return others == 0 || others + cap <= srv->cf->data_memory_limit;
}

/* A message may start if its first buffer fits. */
static bool
smtp_data_may_start(struct smtp_sess *s, const char *verb)
{
	struct parse_data d = {.limit = smtp_size_limit(s->srv->cf) + 1};

	if (smtp_data_room(s, parse_data_grown_cap(&d, 1)))
		return true;
	log_event(smtp_logid(s),
	    "reject: %s from %s: data_memory_limit reached (%llu bytes of "
	    "message data held)",
	    verb, s->peer, (unsigned long long)s->srv->data_bytes);
	metrics_reject("data_memory");
	return false;
}

/*
 * The buffer would grow past data_memory_limit: free it and read the rest
 * of the message only to find its end. A BDAT transaction's chunks get
 * 452 from now on; DATA gets it at the end of data.
 */
static void
smtp_data_nomem(struct smtp_sess *s, size_t cap)
{
	log_event(smtp_logid(s),
	    "reject: message from %s over data_memory_limit (%llu bytes of "
	    "message data held, %zu more needed): dropping its data",
	    s->peer, (unsigned long long)s->srv->data_bytes, cap - s->data.cap);
	metrics_reject("data_memory");
	s->data_nomem = true;
	parse_data_drop(&s->data);
	smtp_data_account(s);
	if (s->state == SMTP_ST_BDAT && s->bdat_err[0] == '\0')
		snprintf(s->bdat_err, sizeof(s->bdat_err), SMTP_NOMEM_REPLY);
}

/* Checks that a message may start now; replies and returns -1 if not. */
static int
smtp_data_check(struct smtp_sess *s, const char *verb)
{
	switch (s->state) {
	case SMTP_ST_GREET:
	case SMTP_ST_READY:
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return -1;
	case SMTP_ST_MAIL:
		smtp_reply(s, "554 5.5.1 Error: no valid recipients");
		return -1;
	case SMTP_ST_RCPT:
		return 0;
	case SMTP_ST_CHUNKING:
		if (strcmp(verb, "BDAT") == 0)
			return 0;
		smtp_reply(
		    s, "503 5.5.1 Error: DATA inside a BDAT transaction");
		return -1;
	case SMTP_ST_PROXY:
	case SMTP_ST_DATA:
	case SMTP_ST_BDAT:
	case SMTP_ST_QUEUING:
	case SMTP_ST_TLS:
		break;
	}
	smtp_reply(s, "503 5.5.1 Error: bad sequence of commands");
	return -1;
}

int
smtp_cmd_data(struct smtp_sess *s, char *args)
{
	if (*args != '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		return -1;
	}
	if (smtp_data_check(s, "DATA") < 0)
		return -1;
	if (!smtp_data_may_start(s, "DATA")) {
		smtp_reply(s, SMTP_NOMEM_REPLY);
		return -1;
	}
	/* One byte over the limit is enough to know it is too big. */
	parse_data_init(&s->data, smtp_size_limit(s->srv->cf) + 1);
	smtp_set_state(s, SMTP_ST_DATA);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	return 0;
}

/*
 * BDAT (RFC 3030 2). The chunk is read even when it is refused: its bytes
 * must not be taken for commands. A chunk that cannot be read past (no
 * size, or one no message may have) gets its refusal and then 421 before
 * the connection closes (RFC 5321 3.8), never a silent close. A chunk of
 * known size with a bad word after it is read and dropped, and ends the
 * transaction, since whether it was the last one is unknown.
 */
int
smtp_cmd_bdat(struct smtp_sess *s, char *args)
{
	const struct conf *cf = s->srv->cf;
	char reply[PARSE_REPLY_SIZE];
	uint64_t size;
	bool last;
	int rc = parse_bdat(args, &size, &last, reply, sizeof(reply));

	if (rc == PARSE_BDAT_NOSIZE) {
		log_event(smtp_logid(s), "reject: BDAT without a size from %s",
		    s->peer);
		smtp_reply(s, "%s", reply);
		smtp_reply(s,
		    "421 4.5.0 %s Error: BDAT chunk size unknown; closing "
		    "connection",
		    cf->hostname);
		smtp_close_after(s);
		return -1;
	}
	if (size > smtp_size_limit(cf)) {
		log_event(smtp_logid(s),
		    "reject: BDAT chunk from %s too big (%llu bytes)", s->peer,
		    (unsigned long long)size);
		metrics_reject("size");
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		smtp_reply(s,
		    "421 4.5.0 %s Error: BDAT chunk too big to skip; closing "
		    "connection",
		    cf->hostname);
		smtp_close_after(s);
		return -1;
	}
	if (rc == PARSE_BDAT_BADARG) {
		snprintf(s->bdat_err, sizeof(s->bdat_err), "%s", reply);
		last = true;
	}
	/* bdat_err holds the reply to give once the chunk is read. */
	if (s->state != SMTP_ST_CHUNKING) {
		if (s->state == SMTP_ST_RCPT) {
			parse_data_init(&s->data, smtp_size_limit(cf) + 1);
			if (s->bdat_err[0] == '\0' &&
			    !smtp_data_may_start(s, "BDAT"))
				snprintf(s->bdat_err, sizeof(s->bdat_err),
				    SMTP_NOMEM_REPLY);
		} else if (s->bdat_err[0] == '\0') {
			const char *why = "";

			switch (s->state) {
			case SMTP_ST_MAIL:
				why = "554 5.5.1 Error: no valid recipients";
				break;
			case SMTP_ST_PROXY:
			case SMTP_ST_GREET:
			case SMTP_ST_READY:
			case SMTP_ST_RCPT:
			case SMTP_ST_DATA:
			case SMTP_ST_BDAT:
			case SMTP_ST_CHUNKING:
			case SMTP_ST_QUEUING:
			case SMTP_ST_TLS:
				why = "503 5.5.1 Error: need MAIL and RCPT "
				      "commands";
				break;
			}
			snprintf(s->bdat_err, sizeof(s->bdat_err), "%s", why);
		}
	}
	s->bdat_left = size;
	s->bdat_last = last;
	smtp_set_state(s, SMTP_ST_BDAT);
	if (size == 0)
		(void)smtp_data_feed(s, "", 0);
	return 0;
}

static void smtp_on_queued(void *arg, int status, const char *qid);

/* The whole message is in: check it and hand it to the spool. */
static void
smtp_message_end(struct smtp_sess *s)
{
	const struct conf *cf = s->srv->cf;
	struct parse_data *d = &s->data;
	struct parse_trace t = {0};
	struct smtp_ticket *tk;
	struct envelope *env;
	char *body, *hdr, *msg;
	char msgid[256];
	size_t blen, hlen;
	unsigned hops, max_hops = cf->max_hops;

	if (d->bare_cr + d->bare_lf > 0) {
		log_event(smtp_logid(s),
		    "reject: bare CR or LF from %s (%u CR, %u LF)", s->peer,
		    d->bare_cr, d->bare_lf);
		metrics_reject("bare_lf");
		smtp_reply(s, "550 5.6.0 Message contains bare CR or LF "
			      "(RFC 5321 2.3.8)");
		smtp_reset_txn(s);
		return;
	}
	if (d->total > smtp_size_limit(cf)) {
		log_event(smtp_logid(s),
		    "reject: message from %s too big (%llu bytes)", s->peer,
		    (unsigned long long)d->total);
		metrics_reject("size");
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		smtp_reset_txn(s);
		return;
	}
	if (s->data_nomem) { /* logged and counted when it was dropped */
		smtp_reply(s, SMTP_NOMEM_REPLY);
		smtp_reset_txn(s);
		return;
	}
	body = parse_data_take(d, &blen);
	hops = parse_count_received(body, blen);
	if (hops > max_hops) {
		log_event(smtp_logid(s),
		    "reject: mail loop from %s (%u Received headers)", s->peer,
		    hops);
		free(body);
		metrics_reject("hops");
		smtp_reply(s, "554 5.4.6 Too many hops");
		smtp_reset_txn(s);
		return;
	}
	if (d->long_lines > 0)
		log_event(smtp_logid(s), "warning: %u lines over 1000 octets",
		    d->long_lines);
	if (parse_message_id(body, blen, msgid, sizeof(msgid)))
		log_event(s->qid, "message-id=%s", msgid);

	env = s->env;
	s->env = NULL;
	t.helo = s->helo[0] != '\0' ? s->helo : NULL;
	t.addr = s->addr;
	t.name = s->name[0] != '\0' ? s->name : NULL;
	t.by = cf->hostname;
	t.node = cf->node_id;
	if (env->flags & ENV_SMTPUTF8)
		t.protocol = s->tls ? "UTF8SMTPS" : "UTF8SMTP";
	else if (s->esmtp)
		t.protocol = s->tls ? "ESMTPS" : "ESMTP";
	else
		t.protocol = s->tls ? "SMTPS" : "SMTP";
	t.qid = s->qid;
	t.tls = s->tls ? s->tls_info : NULL;
	t.rcpt = env->nrcpts == 1 ? env->rcpts[0].addr : NULL;
	t.when = time(NULL);
	hdr = parse_received(&t, &hlen);
	msg = xmalloc(hlen + blen);
	memcpy(msg, hdr, hlen);
	if (blen > 0)
		memcpy(msg + hlen, body, blen);
	free(hdr);
	free(body);
	tk = xcalloc(1, sizeof(*tk));
	tk->start_us = now_us();
	/* A message a peer hands over keeps its first arrival (ARRIVAL=),
	 * so that max_age and warn_after count from it. */
	if (env->arrival == 0)
		env->arrival = tk->start_us;
	env->size = hlen + blen;

	tk->srv = s->srv;
	tk->sid = s->sid;
	/* The message's bytes stay counted until the spool answers. */
	tk->charged = hlen + blen;
	s->srv->data_bytes += tk->charged;
	smtp_data_account(s);
	TAILQ_INSERT_TAIL(&s->srv->tickets, tk, entry);
	/* The queue manager's line in Postfix, where log tools look. */
	log_event_as("qmgr", s->qid,
	    "from=<%s>, size=%llu, nrcpt=%zu, proto=%s, node=%s", env->sender,
	    (unsigned long long)env->size, env->nrcpts, t.protocol,
	    cf->node_id);
	smtp_set_state(s, SMTP_ST_QUEUING);
	queue_submit(s->srv->q, env, msg, hlen + blen, smtp_on_queued, tk);
}

static void
smtp_on_queued(void *arg, int status, const char *qid)
{
	struct smtp_ticket *tk = arg;
	struct server *srv = tk->srv;
	struct smtp_sess *s;

	if (srv == NULL) { /* the server is gone; the message is safe */
		free(tk);
		return;
	}
	TAILQ_REMOVE(&srv->tickets, tk, entry);
	srv->data_bytes -= tk->charged;
	s = smtp_sess_find(srv, tk->sid);
	if (s == NULL || s->state != SMTP_ST_QUEUING) {
		log_event(qid, "client left before the reply: %s",
		    queue_status_str(status));
		free(tk);
		return;
	}
	switch (status) {
	case QUEUE_OK:
		s->nmsgs++;
		metrics_inc(M_ACCEPTED);
		log_event(qid, "queued in %.3fs",
		    (double)(now_us() - tk->start_us) / 1e6);
		smtp_reply(s, "250 2.0.0 Ok: queued as %s", qid);
		break;
	case QUEUE_ENOSPC:
		log_event(qid, "spool full: 452 to %s", s->peer);
		metrics_reject("spool_full");
		smtp_reply(s, "452 4.3.1 Insufficient system storage");
		break;
	default:
		log_event(qid, "spool error: 451 to %s", s->peer);
		metrics_reject("spool_error");
		smtp_reply(s, "451 4.3.0 Error: queue file write error");
		break;
	}
	free(tk);
	smtp_set_state(s, SMTP_ST_READY);
	smtp_reset_txn(s);
	/* Commands pipelined behind the message wait in the input buffer. */
	smtp_process(s);
}

/* The last byte of a BDAT chunk is in. */
static void
smtp_chunk_end(struct smtp_sess *s)
{
	if (s->bdat_err[0] != '\0') {
		smtp_reply(s, "%s", s->bdat_err);
		if (s->env == NULL) {
			/* Refused outside any transaction: back to where it
			 * was, with or without HELO. */
			smtp_reset_txn(s);
			smtp_set_state(s,
			    s->helo[0] != '\0' ? SMTP_ST_READY : SMTP_ST_GREET);
		} else if (s->bdat_last) {
			smtp_reset_txn(s);
		} else {
			smtp_set_state(s, SMTP_ST_CHUNKING);
		}
		return;
	}
	if (s->data.total > smtp_size_limit(s->srv->cf)) {
		metrics_reject("size");
		snprintf(s->bdat_err, sizeof(s->bdat_err),
		    "552 5.3.4 Message size exceeds fixed limit");
		smtp_chunk_end(s);
		return;
	}
	if (!s->bdat_last) {
		smtp_set_state(s, SMTP_ST_CHUNKING);
		smtp_reply(s, "250 2.0.0 %llu octets received",
		    (unsigned long long)s->data.total);
		return;
	}
	smtp_message_end(s);
}

/*
 * Before storing up to n more bytes: makes room for them in the buffer
 * within data_memory_limit, or drops the message's data.
 */
static void
smtp_data_reserve(struct smtp_sess *s, size_t n)
{
	size_t cap;

	if (s->data_nomem)
		return;
	cap = parse_data_grown_cap(&s->data, n);
	if (cap > s->data.cap && !smtp_data_room(s, cap))
		smtp_data_nomem(s, cap);
}

size_t
smtp_data_feed(struct smtp_sess *s, const char *in, size_t len)
{
	size_t n;
	bool done;

	if (s->state == SMTP_ST_DATA) {
		smtp_data_reserve(s, len);
		n = parse_data_feed(&s->data, in, len, &done);
		smtp_data_account(s);
		if (done)
			smtp_message_end(s);
		return n;
	}
	n = len < s->bdat_left ? len : (size_t)s->bdat_left;
	if (s->bdat_err[0] == '\0')
		smtp_data_reserve(s, n);
	if (s->bdat_err[0] == '\0') {
		parse_data_raw(
		    &s->data, in, n, s->bdat_last && n == s->bdat_left);
		smtp_data_account(s);
	}
	s->bdat_left -= n;
	if (s->bdat_left == 0)
		smtp_chunk_end(s);
	return n;
}

void
smtp_tickets_orphan(struct server *srv)
{
	struct smtp_ticket *tk;

	while ((tk = TAILQ_FIRST(&srv->tickets)) != NULL) {
		TAILQ_REMOVE(&srv->tickets, tk, entry);
		tk->srv = NULL; /* freed by smtp_on_queued */
	}
}
