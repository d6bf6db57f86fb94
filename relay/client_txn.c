#define LOG_ROLE "smtp"
/*
 * The transaction half of relay/client: what a reply means in each state
 * (client_step), the message's own checks against the server's offer, the
 * MAIL/RCPT/DATA writes and the per-recipient results. client.c owns the
 * connection and the libevent callbacks.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmem.h"
#include "relay/client_int.h"
#include "relay/downgrade.h"

const char *
client_state_str(enum cs_state st)
{
	switch (st) {
	case CS_CONNECT:
		return "connect";
	case CS_GREETING:
		return "greeting";
	case CS_EHLO:
		return "ehlo";
	case CS_HELO:
		return "helo";
	case CS_STARTTLS:
		return "starttls";
	case CS_TLS:
		return "tls";
	case CS_READY:
		return "ready";
	case CS_IDLE:
		return "idle";
	case CS_MAIL:
		return "mail";
	case CS_RCPT:
		return "rcpt";
	case CS_DATA:
		return "data";
	case CS_DOT:
		return "dot";
	case CS_DOT_DISCARD:
		return "dot-discard";
	case CS_RSET:
		return "rset";
	case CS_QUIT:
		return "quit";
	case CS_DONE:
		return "done";
	}
	return "?";
}

/* What the session was doing, for "... timed out while PHASE". */
const char *
client_phase(const struct client_session *cs)
{
	switch (cs->st) {
	case CS_CONNECT:
		return "connecting";
	case CS_GREETING:
		return "receiving the initial server greeting";
	case CS_EHLO:
		return cs->t->lmtp ? "performing the LHLO handshake"
				   : "performing the EHLO handshake";
	case CS_HELO:
		return "performing the HELO handshake";
	case CS_STARTTLS:
		return "sending STARTTLS";
	case CS_TLS:
		return "performing the TLS handshake";
	case CS_READY:
	case CS_IDLE:
		return "idle";
	case CS_MAIL:
		return "sending MAIL FROM";
	case CS_RCPT:
		return "sending RCPT TO";
	case CS_DATA:
		return "sending DATA command";
	case CS_DOT:
		return cs->body_sent ? "sending end of data"
				     : "sending message body";
	case CS_DOT_DISCARD:
		return "sending end of data";
	case CS_RSET:
		return "sending RSET";
	case CS_QUIT:
		return "sending QUIT";
	case CS_DONE:
		return "closing";
	}
	return "?";
}

/* ---- results ---------------------------------------------------------- */

/* The command whose reply is being read, for verdict_of(). */
static enum reply_stage
client_stage(const struct client_session *cs)
{
	switch (cs->st) {
	case CS_MAIL:
		return STAGE_MAIL;
	case CS_RCPT:
		return STAGE_RCPT;
	case CS_DATA:
		return STAGE_DATA;
	case CS_DOT:
	case CS_DOT_DISCARD:
		return STAGE_DOT;
	case CS_CONNECT:
	case CS_GREETING:
	case CS_EHLO:
	case CS_HELO:
	case CS_STARTTLS:
	case CS_TLS:
	case CS_READY:
	case CS_IDLE:
	case CS_RSET:
	case CS_QUIT:
	case CS_DONE:
		break;
	}
	return STAGE_NONE;
}

static void
rcpt_set(struct client_rcpt *r, enum reply_stage stage, int code,
    const char *dsn, const char *text)
{
	r->stage = stage;
	r->code = code;
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	free(r->text);
	r->text = text != NULL ? xstrdup(text) : NULL;
}

static void
rcpt_set_reply(struct client_rcpt *r, enum reply_stage stage,
    const struct client_reply *rep)
{
	char dsn[12];

	client_reply_dsn(rep, dsn, sizeof(dsn));
	r->stage = stage;
	r->code = rep->code;
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	free(r->text);
	r->text = client_reply_text(rep);
}

/* Sets every recipient without a result yet. */
static void
client_set_pending(struct client_session *cs, int code, const char *dsn,
    const char *text, const struct client_reply *rep)
{
	for (size_t i = 0; i < cs->msg->nrcpts; i++) {
		if (cs->final[i])
			continue;
		if (rep != NULL)
			rcpt_set_reply(
			    &cs->msg->rcpts[i], client_stage(cs), rep);
		else
			rcpt_set(&cs->msg->rcpts[i], client_stage(cs), code,
			    dsn, text);
		cs->final[i] = true;
	}
}

/* The transaction is over: hand the message back. */
static void
client_msg_done(struct client_session *cs)
{
	struct client_msg *m = cs->msg;
	bool sent = false;

	for (size_t i = 0; i < m->nrcpts; i++) {
		ASSERT(cs->final[i]);
		if (m->rcpts[i].code >= 200 && m->rcpts[i].code < 300)
			sent = true;
	}
	if (sent)
		cs->end.delivered_msgs++;
	free(cs->accepted);
	free(cs->final);
	cs->accepted = cs->final = NULL;
	client_txn_clear(cs);
	cs->out = NULL;
	cs->out_len = 0;
	cs->msg = NULL;
	cs->in_owner = true;
	cs->cbs.done(cs->arg, cs, m);
	cs->in_owner = false;
}

void
client_set_end(
    struct client_session *cs, int code, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	cs->end.code = code;
	snprintf(cs->end.dsn, sizeof(cs->end.dsn), "%s", dsn);
	va_start(ap, fmt);
	vsnprintf(cs->end.text, sizeof(cs->end.text), fmt, ap);
	va_end(ap);
}

/*
 * The session cannot go on: the message in progress gets code/dsn/text
 * (or the reply) on every recipient still open, and the connection closes
 * without QUIT. Returns CS_DONE for the caller to enter.
 */
enum cs_state
client_abort(struct client_session *cs, int code, const char *dsn,
    const char *text, const struct client_reply *rep)
{
	char rdsn[12];
	char *rtext = NULL;

	if (rep != NULL) {
		client_reply_dsn(rep, rdsn, sizeof(rdsn));
		rtext = client_reply_text(rep);
		code = rep->code;
		dsn = rdsn;
		text = rtext;
	}
	log_info("%s: client %s: %s", client_logid(cs), cs->relay, text);
	client_set_end(cs, code, dsn, "%s", text);
	/* A connection kept open for more mail that the server had closed
	 * (an idle timeout crossing our MAIL): no transaction began. */
	if (cs->msg != NULL && cs->peer_closed && cs->st == CS_MAIL &&
	    cs->nmsgs > 1) {
		cs->msg->untried = true;
		log_info("%s: client %s: the reused connection was closed "
			 "before MAIL: trying again on a new one",
		    client_logid(cs), cs->relay);
	}
	if (cs->msg != NULL) {
		client_set_pending(cs, code, dsn, text, rep);
		client_msg_done(cs);
	}
	free(rtext);
	return CS_DONE;
}

/* ---- the transaction -------------------------------------------------- */

/*
 * RFC 6531 3.4: SMTPUTF8 mail needs no SMTPUTF8 when its header section is
 * ASCII and each address is ASCII or has only its domain in U-labels: the
 * A-labels (RFC 5890) are the same domain. Sets cs->sender7 and
 * cs->rcpt7 to the converted addresses, and says whether it can go;
 * Postfix does the same. ORCPTs do not count: they are stored as xtext,
 * ASCII on the wire, and client_rcpt_cmd gives a hop without SMTPUTF8
 * the RFC 6533 form of any that is not.
 */
static bool
client_utf8_downgrade(struct client_session *cs, const struct client_msg *m)
{
	if (!header_section_ascii(m->data, m->len) ||
	    client_addr_ascii(m->sender, &cs->sender7) != 0)
		return false;
	cs->rcpt7 = xcalloc(m->nrcpts, sizeof(*cs->rcpt7));
	cs->nrcpt7 = m->nrcpts;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (client_addr_ascii(m->rcpts[i].addr, &cs->rcpt7[i]) != 0)
			return false;
	return true;
}

/* Whether a recipient goes in A-labels. */
static bool
client_rcpt7_any(const struct client_session *cs)
{
	for (size_t i = 0; i < cs->nrcpt7; i++)
		if (cs->rcpt7[i] != NULL)
			return true;
	return false;
}

void
client_txn_clear(struct client_session *cs)
{
	free(cs->conv);
	cs->conv = NULL;
	free(cs->sender7);
	cs->sender7 = NULL;
	for (size_t i = 0; i < cs->nrcpt7; i++)
		free(cs->rcpt7[i]);
	free(cs->rcpt7);
	cs->rcpt7 = NULL;
	cs->nrcpt7 = 0;
}

/*
 * RFC 6152 3: 8-bit data goes only to a hop that offers 8BITMIME. For
 * one that does not, BODY=8BITMIME mail that is 7 bit after all goes as
 * it is, other mail is converted (relay/downgrade.h) into cs->conv.
 * Returns NULL, or the RFC 3463 code of why it cannot go, with a text.
 */
static const char *
client_body_fits(struct client_session *cs, const struct client_msg *m,
    char *text, size_t textlen)
{
	char why[160];
	int rc;

	if (m->body != BODY_8BITMIME || (cs->ext & CLIENT_EXT_8BITMIME) ||
	    downgrade_is_7bit(m->data, m->len))
		return NULL;
	rc = downgrade_to_7bit(
	    m->data, m->len, &cs->conv, &cs->out_len, why, sizeof(why));
	if (rc != DOWNGRADE_OK) {
		snprintf(text, textlen,
		    "%s and cannot be converted to 7 bit for host %s, "
		    "which does not offer 8BITMIME",
		    why, cs->name);
		return downgrade_dsn(rc);
	}
	cs->out = cs->conv;
	log_info("%s: converted to 7 bit for host %s, which does not offer "
		 "8BITMIME: %zu octets, %zu after",
	    m->qid, cs->name, m->len, cs->out_len);
	return NULL;
}

/* Checks the message against what the server offers, and sets what will
 * be sent (cs->out, converted if need be); on a mismatch every recipient
 * fails permanently (the server cannot take it) and false. */
static bool
client_msg_fits(struct client_session *cs, struct client_msg *m)
{
	char text[512];
	const char *dsn = NULL;
	int code = 554;

	/* Again for each server: what one can take, another may not. */
	client_txn_clear(cs);
	cs->out = m->data;
	cs->out_len = m->len;
	if (m->smtputf8 && !(cs->ext & CLIENT_EXT_SMTPUTF8) &&
	    !client_utf8_downgrade(cs, m)) {
		dsn = "5.6.7";
		snprintf(text, sizeof(text),
		    "SMTPUTF8 is required, but was not offered by host %s",
		    cs->name);
	} else if (m->arrival > 0 && !(cs->ext & CLIENT_EXT_ARRIVAL)) {
		dsn = "5.7.0";
		snprintf(text, sizeof(text),
		    "host %s does not offer XMXSPOOL-ARRIVAL: not a "
		    "peer_listen listener",
		    cs->name);
	} else if (m->body == BODY_BINARYMIME &&
		   (cs->ext & (CLIENT_EXT_BINARYMIME | CLIENT_EXT_CHUNKING)) !=
		       (CLIENT_EXT_BINARYMIME | CLIENT_EXT_CHUNKING)) {
		dsn = "5.6.3";
		snprintf(text, sizeof(text),
		    "BINARYMIME is required, but was not offered by host %s",
		    cs->name);
	} else if ((dsn = client_body_fits(cs, m, text, sizeof(text))) !=
		   NULL) {
		/* code 554 */
	} else if (cs->size_limit != 0 && cs->out_len > cs->size_limit) {
		dsn = "5.3.4";
		code = 552;
		snprintf(text, sizeof(text),
		    "message size %zu exceeds size limit %llu of server %s",
		    cs->out_len, (unsigned long long)cs->size_limit, cs->name);
	}
	if (dsn == NULL) {
		if (m->smtputf8 && !(cs->ext & CLIENT_EXT_SMTPUTF8))
			log_info("%s: SMTPUTF8 not needed for host %s: "
				 "header is ASCII, envelope %s",
			    m->qid, cs->name,
			    cs->sender7 || client_rcpt7_any(cs) ? "in A-labels"
								: "is ASCII");
		return true;
	}
	client_txn_clear(cs);
	/* No reply came; the code is ours, of the dsn's class, so that the
	 * owner sees a permanent failure. */
	for (size_t i = 0; i < m->nrcpts; i++)
		rcpt_set(&m->rcpts[i], STAGE_NONE, code, dsn, text);
	log_info("%s: client %s: %s", m->qid, cs->relay, text);
	cs->in_owner = true;
	cs->cbs.done(cs->arg, cs, m);
	cs->in_owner = false;
	return false;
}

/* Writes the body: dot-stuffed after DATA, or as one BDAT chunk. */
void
client_write_body(struct client_session *cs)
{
	struct evbuffer *out = bufferevent_get_output(cs->bev);
	size_t n;
	char *buf;

	if (cs->bdat) {
		log_debug("%s: client %s > BDAT %zu LAST", client_logid(cs),
		    cs->relay, cs->out_len);
		evbuffer_add_printf(out, "BDAT %zu LAST\r\n", cs->out_len);
		evbuffer_add(out, cs->out, cs->out_len);
	} else {
		buf = client_dot_stuff(cs->out, cs->out_len, &n);
		evbuffer_add(out, buf, n);
		free(buf);
	}
	cs->body_queued = true;
	cs->body_sent = false;
	/* The final reply's timeout starts once it is all written (a
	 * pipelined BDAT keeps the command timeout for MAIL and RCPT). */
	if (cs->st == CS_DOT)
		client_timeouts(
		    cs, 0, client_secs(cs->t->data_timeout, CLIENT_DEF_DATA));
}

void
client_send_rcpt(struct client_session *cs, size_t i)
{
	struct client_rcpt r = cs->msg->rcpts[i];
	char *cmd;

	if (i < cs->nrcpt7 && cs->rcpt7[i] != NULL)
		r.addr = cs->rcpt7[i];
	cmd = client_rcpt_cmd(&r, cs->ext);

	client_send(cs, cmd);
	free(cmd);
}

/* Entering CS_MAIL: MAIL, and with PIPELINING every RCPT and DATA too. */
void
client_start_msg(struct client_session *cs)
{
	struct client_msg *m = cs->msg;
	char *cmd;

	cs->accepted = xcalloc(m->nrcpts, sizeof(bool));
	cs->final = xcalloc(m->nrcpts, sizeof(bool));
	cs->rcpt_i = cs->lmtp_i = cs->naccepted = 0;
	cs->mail_ok = cs->body_queued = cs->body_sent = false;
	/* A hand-over waits for every RCPT's answer before DATA or BDAT
	 * (client_handover_partial); on a LAN that costs little. */
	cs->pipelined =
	    (cs->ext & CLIENT_EXT_PIPELINING) != 0 && m->arrival == 0;
	cs->bdat = m->body == BODY_BINARYMIME;
	cs->nmsgs++;
	m->dsn_passed = (cs->ext & CLIENT_EXT_DSN) != 0;
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].text);
		m->rcpts[i].text = NULL;
		m->rcpts[i].code = 0;
		m->rcpts[i].dsn[0] = '\0';
	}
	if (cs->sender7 != NULL) {
		struct client_msg m7 = *m;

		m7.sender = cs->sender7;
		cmd = client_mail_cmd(&m7, cs->out_len, cs->ext);
	} else
		cmd = client_mail_cmd(m, cs->out_len, cs->ext);
	client_send(cs, cmd);
	free(cmd);
	if (cs->pipelined) {
		for (size_t i = 0; i < m->nrcpts; i++)
			client_send_rcpt(cs, i);
		if (cs->bdat)
			client_write_body(cs);
		else
			client_send(cs, "DATA");
	}
}

/* Entering CS_READY: the next message, idleness, or the end. */
void
client_ready(struct client_session *cs)
{
	struct client_msg *m;

	for (;;) {
		if (cs->quit_req ||
		    (cs->t->max_msgs != 0 && cs->nmsgs >= cs->t->max_msgs)) {
			client_set_state(cs, CS_QUIT);
			return;
		}
		cs->woken = false;
		cs->in_owner = true;
		m = cs->cbs.next(cs->arg, cs);
		cs->in_owner = false;
		if (m == NULL && cs->quit_req) {
			/* Asked to quit from next(): now, not after idling. */
			client_set_state(cs, CS_QUIT);
			return;
		}
		if (m == NULL) {
			client_set_state(cs, CS_IDLE);
			/* Woken meanwhile: ask again, from the loop. */
			if (cs->woken && cs->st == CS_IDLE)
				event_active(cs->ev_work, EV_TIMEOUT, 1);
			return;
		}
		if (m->nrcpts == 0) {
			cs->in_owner = true;
			cs->cbs.done(cs->arg, cs, m);
			cs->in_owner = false;
			continue;
		}
		if (client_msg_fits(cs, m))
			break;
	}
	cs->msg = m;
	client_set_state(cs, CS_MAIL);
}

/* After the transaction: RSET if the server still holds a MAIL. */
static enum cs_state
client_after_msg(struct client_session *cs, bool need_rset)
{
	client_msg_done(cs);
	return need_rset ? CS_RSET : CS_READY;
}

/* A hand-over to a peer (ARRIVAL=) is all or nothing: a peer that took
 * some recipients and refused others would hold those it took, while the
 * message stays here and goes again with all of them. */
static bool
client_handover_partial(const struct client_session *cs)
{
	return cs->msg->arrival != 0 && cs->naccepted > 0 &&
	       cs->naccepted < cs->msg->nrcpts;
}

#define HANDOVER_PARTIAL "not handed over: the peer refused another recipient"

/* EHLO/LHLO or HELO accepted: STARTTLS if the policy wants it. */
static enum cs_state
client_hello_done(struct client_session *cs)
{
	enum tls_policy p = cs->t->tls;

	if (cs->tls_on || p == TLS_NONE || cs->plain_retry ||
	    cs->t->ans->kind == ROUTE_LMTP_UNIX)
		return CS_READY;
	if (cs->ext & CLIENT_EXT_STARTTLS)
		return CS_STARTTLS;
	if (p == TLS_MAY)
		return CS_READY;
	client_set_end(cs, 0, "4.7.4",
	    "TLS is required, but was not offered by host %s", cs->name);
	client_log_failure(cs);
	return CS_QUIT;
}

/* A reply that ends the session setup (EHLO refused...): QUIT. */
static enum cs_state
client_refused(
    struct client_session *cs, const struct client_reply *r, const char *what)
{
	char dsn[12];
	char *text = client_reply_text(r);

	client_reply_dsn(r, dsn, sizeof(dsn));
	client_set_end(
	    cs, r->code, dsn, "host %s refused %s: %s", cs->name, what, text);
	client_log_failure(cs);
	free(text);
	return CS_QUIT;
}

static bool
is2xx(const struct client_reply *r)
{
	return r->code >= 200 && r->code < 300;
}

/* The next accepted recipient from i on (LMTP replies), or nrcpts. */
static size_t
next_accepted(const struct client_session *cs, size_t i)
{
	while (i < cs->msg->nrcpts && !cs->accepted[i])
		i++;
	return i;
}

/* A complete reply in the current state: returns the next state. */
enum cs_state
client_step(struct client_session *cs, const struct client_reply *r)
{
	struct client_msg *m = cs->msg;
	char *text;

	/* 421 at any time: the server is closing (RFC 5321 3.8). */
	if (r->code == 421 && cs->st != CS_GREETING && cs->st != CS_QUIT) {
		cs->peer_closed = true;
		return client_abort(cs, 0, NULL, NULL, r);
	}

	switch (cs->st) {
	case CS_CONNECT:
	case CS_TLS:
	case CS_READY:
	case CS_DONE:
		PANIC("client: reply in state %s", client_state_str(cs->st));
	case CS_GREETING:
		if (is2xx(r)) {
			cs->end.connected = true;
			return CS_EHLO;
		}
		text = client_reply_text(r);
		client_set_end(cs, 0, "4.4.1",
		    "host %s refused to talk to me: %s", cs->name, text);
		free(text);
		return client_next_candidate(cs);
	case CS_EHLO:
		if (is2xx(r)) {
			cs->ext = client_ehlo_parse(r, &cs->size_limit);
			return client_hello_done(cs);
		}
		if (r->code >= 500 && !cs->t->lmtp)
			return CS_HELO;
		return client_refused(cs, r, cs->t->lmtp ? "LHLO" : "EHLO");
	case CS_HELO:
		if (!is2xx(r))
			return client_refused(cs, r, "HELO");
		cs->ext = 0;
		cs->size_limit = 0;
		return client_hello_done(cs);
	case CS_STARTTLS:
		if (r->code == 220)
			return CS_TLS;
		if (cs->t->tls == TLS_MAY)
			return CS_READY;
		text = client_reply_text(r);
		client_set_end(cs, 0, "4.7.4",
		    "TLS is required, but host %s refused to start TLS: %s",
		    cs->name, text);
		free(text);
		return CS_QUIT;
	case CS_IDLE:
		/* Nothing was asked: a server that talks now is confused. */
		return client_abort(
		    cs, 0, "4.5.0", "unexpected reply while idle", NULL);
	case CS_MAIL:
		cs->mail_ok = is2xx(r);
		if (!cs->mail_ok)
			client_set_pending(cs, 0, NULL, NULL, r);
		if (cs->pipelined)
			return CS_RCPT;
		return cs->mail_ok ? CS_RCPT : client_after_msg(cs, false);
	case CS_RCPT:
		if (cs->mail_ok) {
			if (is2xx(r)) {
				cs->accepted[cs->rcpt_i] = true;
				cs->naccepted++;
			} else {
				rcpt_set_reply(
				    &m->rcpts[cs->rcpt_i], STAGE_RCPT, r);
				cs->final[cs->rcpt_i] = true;
			}
		}
		if (++cs->rcpt_i < m->nrcpts)
			return CS_RCPT;
		if (cs->pipelined)
			return cs->bdat ? CS_DOT : CS_DATA;
		if (cs->naccepted == 0)
			return client_after_msg(cs, true);
		if (client_handover_partial(cs)) {
			client_set_pending(
			    cs, 0, "4.3.0", HANDOVER_PARTIAL, NULL);
			return client_after_msg(cs, true);
		}
		return cs->bdat ? CS_DOT : CS_DATA;
	case CS_DATA:
		if (r->code == 354)
			return cs->mail_ok && cs->naccepted > 0
				   ? CS_DOT
				   : CS_DOT_DISCARD;
		if (cs->mail_ok && cs->naccepted > 0)
			client_set_pending(cs, 0, NULL, NULL, r);
		return client_after_msg(cs, cs->mail_ok);
	case CS_DOT:
		if (!cs->mail_ok || cs->naccepted == 0)
			/* A pipelined BDAT after every RCPT failed. */
			return client_after_msg(cs, cs->mail_ok);
		if (cs->t->lmtp) {
			/* One reply per accepted recipient, in order. */
			cs->lmtp_i = next_accepted(cs, cs->lmtp_i);
			rcpt_set_reply(&m->rcpts[cs->lmtp_i], STAGE_DOT, r);
			cs->final[cs->lmtp_i] = true;
			cs->lmtp_i = next_accepted(cs, cs->lmtp_i + 1);
			if (cs->lmtp_i < m->nrcpts)
				return CS_DOT;
		} else {
			client_set_pending(cs, 0, NULL, NULL, r);
		}
		if (!cs->body_sent) {
			/* An answer before the end of the data: whatever was
			 * still being written would be read as commands. */
			client_msg_done(cs);
			client_set_end(cs, r->code, "4.5.0",
			    "host %s replied before the end of data", cs->name);
			return CS_DONE;
		}
		return client_after_msg(cs, false);
	case CS_DOT_DISCARD:
		return client_after_msg(cs, true);
	case CS_RSET:
		return CS_READY;
	case CS_QUIT:
		if (cs->end.text[0] == '\0' && cs->end.dsn[0] == '\0')
			client_set_end(cs, r->code, "2.0.0", "%s", "");
		return CS_DONE;
	}
	return CS_DONE;
}
