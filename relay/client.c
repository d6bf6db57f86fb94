/*
 * Outbound SMTP (RFC 5321) and LMTP (RFC 2033) sessions on libevent.
 *
 * One state machine: entering a state sends what the state is about
 * (client_enter), and each complete reply read in a state chooses the next
 * one (client_step). With PIPELINING (RFC 2920) entering CS_MAIL writes
 * MAIL, every RCPT and DATA at once and the following states only read
 * their replies, in order.
 *
 * Results follow the design's contract 2: a connection failure, a timeout
 * or a lost connection is never a permanent failure; only a 5xx reply
 * about a recipient (or the message's own needs that the server cannot
 * meet: SIZE, SMTPUTF8, BINARYMIME) is.
 *
 * The owner's `closed` callback always runs from an event of its own, so
 * it may free the session; `next` and `done` run inside our callbacks and
 * must not.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xmem.h"
#include "relay/client_int.h"

/* Defaults for target fields left at zero (RFC 5321 4.5.3.2). */
#define CLIENT_DEF_CONNECT 30
#define CLIENT_DEF_COMMAND 300
#define CLIENT_DEF_DATA 180
#define CLIENT_DEF_FINAL 600

enum cs_state {
	CS_CONNECT,     /* TCP or unix connect in progress */
	CS_GREETING,    /* waiting for 220 */
	CS_EHLO,        /* EHLO or LHLO sent */
	CS_HELO,        /* HELO sent after EHLO was refused */
	CS_STARTTLS,    /* STARTTLS sent */
	CS_TLS,         /* handshake in progress */
	CS_READY,       /* asking the owner for a message (transient) */
	CS_IDLE,        /* waiting for client_session_wake() */
	CS_MAIL,        /* MAIL sent (and with PIPELINING, the rest) */
	CS_RCPT,        /* waiting for the reply to RCPT number rcpt_i */
	CS_DATA,        /* waiting for 354 */
	CS_DOT,         /* body sent: waiting for the final reply(ies) */
	CS_DOT_DISCARD, /* 354 with no recipient: an empty body sent */
	CS_RSET,        /* RSET sent */
	CS_QUIT,        /* QUIT sent */
	CS_DONE,        /* closed; `closed` is scheduled */
};

struct client_session {
	struct event_base *base;
	const struct client_target *t;
	struct client_cbs cbs;
	void *arg;
	char id[16]; /* "O%08x", for the log before a message is known */
	enum cs_state st;
	struct bufferevent *bev;
	struct event *ev_closed; /* runs `closed` from an event of its own */
	struct event *ev_work;   /* wake: ask the owner again */
	struct event *ev_idle;   /* the idle timeout */

	/* The candidate being tried. */
	size_t host_i, addr_i;
	bool tried_any;
	bool plain_retry; /* TLS `may` failed here: again, without TLS */
	char name[256];   /* "mx.example.com[192.0.2.1]" or the path */
	char relay[300];  /* "mx.example.com[192.0.2.1]:25" or the path */
	char host[256];   /* the name certificates are checked against */

	/* The connection. */
	bool tls_on;
	char tls_desc[128];
	unsigned ext;
	uint64_t size_limit;
	struct client_reply reply;
	unsigned nmsgs;
	bool quit_req;
	bool in_owner; /* inside next() or done() */

	/* The transaction. */
	struct client_msg *msg;
	bool *accepted; /* per rcpt: 2xx to RCPT, final reply still due */
	bool *final;    /* per rcpt: the result is set */
	size_t rcpt_i, lmtp_i, naccepted;
	bool mail_ok, pipelined, bdat, body_queued, body_sent;

	struct client_end end;
};

static void client_set_state(struct client_session *cs, enum cs_state st);

static const char *
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
static const char *
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

static const char *
client_logid(const struct client_session *cs)
{
	return cs->msg != NULL && cs->msg->qid != NULL ? cs->msg->qid : cs->id;
}

static int64_t
secs(int64_t v, int64_t def)
{
	return v > 0 ? v : def;
}

static void
client_timeouts(struct client_session *cs, int64_t rd, int64_t wr)
{
	struct timeval r = {.tv_sec = (time_t)rd}, w = {.tv_sec = (time_t)wr};

	bufferevent_set_timeouts(
	    cs->bev, rd > 0 ? &r : NULL, wr > 0 ? &w : NULL);
}

static void
client_send(struct client_session *cs, const char *cmd)
{
	log_debug("%s: client %s > %s", client_logid(cs), cs->relay, cmd);
	evbuffer_add_printf(bufferevent_get_output(cs->bev), "%s\r\n", cmd);
}

static void
client_drop_bev(struct client_session *cs)
{
	if (cs->bev != NULL) {
		bufferevent_free(cs->bev);
		cs->bev = NULL;
	}
	client_reply_fini(&cs->reply);
}

/* ---- results ---------------------------------------------------------- */

static void
rcpt_set(struct client_rcpt *r, int code, const char *dsn, const char *text)
{
	r->code = code;
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	free(r->text);
	r->text = text != NULL ? xstrdup(text) : NULL;
}

static void
rcpt_set_reply(struct client_rcpt *r, const struct client_reply *rep)
{
	char dsn[12];

	client_reply_dsn(rep, dsn, sizeof(dsn));
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
			rcpt_set_reply(&cs->msg->rcpts[i], rep);
		else
			rcpt_set(&cs->msg->rcpts[i], code, dsn, text);
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
	cs->msg = NULL;
	cs->in_owner = true;
	cs->cbs.done(cs->arg, cs, m);
	cs->in_owner = false;
}

static void client_set_end(struct client_session *cs, int code, const char *dsn,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
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
static enum cs_state
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
	if (cs->msg != NULL) {
		client_set_pending(cs, code, dsn, text, rep);
		client_msg_done(cs);
	}
	free(rtext);
	return CS_DONE;
}

/* ---- connecting ------------------------------------------------------- */

static void client_on_read(struct bufferevent *bev, void *arg);
static void client_on_write(struct bufferevent *bev, void *arg);
static void client_on_event(struct bufferevent *bev, short what, void *arg);

/* Moves to the next address (or host) after a failure. */
static void
client_advance(struct client_session *cs)
{
	const struct dns_answer *ans = cs->t->ans;

	cs->plain_retry = false;
	if (ans->kind == ROUTE_LMTP_UNIX) {
		cs->host_i = 1;
		return;
	}
	if (cs->host_i < ans->nhosts &&
	    ++cs->addr_i < ans->hosts[cs->host_i].naddrs)
		return;
	cs->host_i++;
	cs->addr_i = 0;
}

/* The socket address of the current candidate, and its names. */
static bool
client_candidate(
    struct client_session *cs, struct sockaddr_storage *ss, socklen_t *sslen)
{
	const struct dns_answer *ans = cs->t->ans;

	memset(ss, 0, sizeof(*ss));
	if (ans->kind == ROUTE_LMTP_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;

		if (cs->host_i > 0 || ans->path == NULL)
			return false;
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", ans->path);
		*sslen = sizeof(*sun);
		snprintf(cs->name, sizeof(cs->name), "%s", ans->path);
		snprintf(cs->relay, sizeof(cs->relay), "%s", ans->path);
		snprintf(cs->host, sizeof(cs->host), "%s", ans->path);
		return true;
	}
	while (cs->host_i < ans->nhosts &&
	       cs->addr_i >= ans->hosts[cs->host_i].naddrs) {
		cs->host_i++;
		cs->addr_i = 0;
	}
	if (cs->host_i >= ans->nhosts)
		return false;
	const struct dns_host *h = &ans->hosts[cs->host_i];
	const struct dns_addr *a = &h->addrs[cs->addr_i];
	uint16_t port;

	memcpy(ss, &a->sa, a->salen);
	*sslen = a->salen;
	if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		if (s6->sin6_port == 0)
			s6->sin6_port = htons(h->port);
		port = ntohs(s6->sin6_port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		if (s4->sin_port == 0)
			s4->sin_port = htons(h->port);
		port = ntohs(s4->sin_port);
	}
	snprintf(cs->name, sizeof(cs->name), "%s[%s]",
	    h->name != NULL ? h->name : a->text, a->text);
	snprintf(cs->relay, sizeof(cs->relay), "%s:%u", cs->name, port);
	snprintf(cs->host, sizeof(cs->host), "%s",
	    h->name != NULL ? h->name : a->text);
	return true;
}

/* Entering CS_CONNECT: tries candidates until a connect is under way. */
static void
client_connect(struct client_session *cs)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	client_drop_bev(cs);
	while (client_candidate(cs, &ss, &sslen)) {
		cs->tried_any = true;
		fd = socket(ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		/* Our own connect(), so that an immediate failure (a unix
		 * socket that is not there) keeps its errno for the text. */
		if (fd < 0 || (connect(fd, (struct sockaddr *)&ss, sslen) < 0 &&
				  errno != EINPROGRESS)) {
			client_set_end(cs, 0, "4.4.1", "connect to %s: %s",
			    cs->relay, strerror(errno));
			log_info("%s: client: %s", cs->id, cs->end.text);
			if (fd >= 0)
				close(fd);
			client_advance(cs);
			continue;
		}
		cs->bev =
		    bufferevent_socket_new(cs->base, fd, BEV_OPT_CLOSE_ON_FREE);
		if (cs->bev == NULL) {
			close(fd);
			client_set_end(cs, 0, "4.4.1", "connect to %s: %s",
			    cs->relay, "cannot make a bufferevent");
			client_advance(cs);
			continue;
		}
		bufferevent_setcb(cs->bev, client_on_read, client_on_write,
		    client_on_event, cs);
		client_timeouts(
		    cs, 0, secs(cs->t->connect_timeout, CLIENT_DEF_CONNECT));
		/* No address: wait for the connect() above to finish. */
		if (bufferevent_socket_connect(cs->bev, NULL, 0) < 0) {
			client_set_end(cs, 0, "4.4.1", "connect to %s: %s",
			    cs->relay, strerror(errno));
			client_drop_bev(cs);
			client_advance(cs);
			continue;
		}
		log_debug("%s: client: connecting to %s", cs->id, cs->relay);
		return;
	}
	if (!cs->tried_any)
		client_set_end(cs, 0, "4.4.1",
		    "no host to connect to for %s%s%s",
		    cs->t->ans->domain != NULL ? cs->t->ans->domain : "?",
		    cs->t->ans->reason != NULL ? ": " : "",
		    cs->t->ans->reason != NULL ? cs->t->ans->reason : "");
	/* Every candidate failed: the text of the last failure stays. */
	cs->end.code = 0;
	snprintf(cs->end.dsn, sizeof(cs->end.dsn), "4.4.1");
	client_set_state(cs, CS_DONE);
}

/* This candidate failed before its greeting: the next one. */
static enum cs_state
client_next_candidate(struct client_session *cs)
{
	log_info("%s: client: %s", cs->id, cs->end.text);
	client_drop_bev(cs);
	client_advance(cs);
	return CS_CONNECT;
}

/* ---- the transaction -------------------------------------------------- */

/* Checks the message against what the server offers; on a mismatch every
 * recipient fails permanently (the server cannot take it) and false. */
static bool
client_msg_fits(struct client_session *cs, struct client_msg *m)
{
	char text[512];
	const char *dsn = NULL;
	int code = 554;

	if (m->smtputf8 && !(cs->ext & CLIENT_EXT_SMTPUTF8)) {
		dsn = "5.6.7";
		snprintf(text, sizeof(text),
		    "SMTPUTF8 is required, but was not offered by host %s",
		    cs->name);
	} else if (m->body == BODY_BINARYMIME &&
		   (cs->ext & (CLIENT_EXT_BINARYMIME | CLIENT_EXT_CHUNKING)) !=
		       (CLIENT_EXT_BINARYMIME | CLIENT_EXT_CHUNKING)) {
		dsn = "5.6.3";
		snprintf(text, sizeof(text),
		    "BINARYMIME is required, but was not offered by host %s",
		    cs->name);
	} else if (cs->size_limit != 0 && m->len > cs->size_limit) {
		dsn = "5.3.4";
		code = 552;
		snprintf(text, sizeof(text),
		    "message size %zu exceeds size limit %llu of server %s",
		    m->len, (unsigned long long)cs->size_limit, cs->name);
	}
	if (dsn == NULL)
		return true;
	/* No reply came; the code is ours, of the dsn's class, so that the
	 * owner sees a permanent failure. */
	for (size_t i = 0; i < m->nrcpts; i++)
		rcpt_set(&m->rcpts[i], code, dsn, text);
	log_info("%s: client %s: %s", m->qid, cs->relay, text);
	cs->in_owner = true;
	cs->cbs.done(cs->arg, cs, m);
	cs->in_owner = false;
	return false;
}

/* Writes the body: dot-stuffed after DATA, or as one BDAT chunk. */
static void
client_write_body(struct client_session *cs)
{
	struct evbuffer *out = bufferevent_get_output(cs->bev);
	struct client_msg *m = cs->msg;
	size_t n;
	char *buf;

	if (cs->bdat) {
		log_debug("%s: client %s > BDAT %zu LAST", client_logid(cs),
		    cs->relay, m->len);
		evbuffer_add_printf(out, "BDAT %zu LAST\r\n", m->len);
		evbuffer_add(out, m->data, m->len);
	} else {
		buf = client_dot_stuff(m->data, m->len, &n);
		evbuffer_add(out, buf, n);
		free(buf);
	}
	cs->body_queued = true;
	cs->body_sent = false;
	/* The final reply's timeout starts once it is all written. */
	client_timeouts(cs, 0, secs(cs->t->data_timeout, CLIENT_DEF_DATA));
}

static void
client_send_rcpt(struct client_session *cs, size_t i)
{
	char *cmd = client_rcpt_cmd(&cs->msg->rcpts[i], cs->ext);

	client_send(cs, cmd);
	free(cmd);
}

/* Entering CS_MAIL: MAIL, and with PIPELINING every RCPT and DATA too. */
static void
client_start_msg(struct client_session *cs)
{
	struct client_msg *m = cs->msg;
	char *cmd;

	cs->accepted = xcalloc(m->nrcpts, sizeof(bool));
	cs->final = xcalloc(m->nrcpts, sizeof(bool));
	cs->rcpt_i = cs->lmtp_i = cs->naccepted = 0;
	cs->mail_ok = cs->body_queued = cs->body_sent = false;
	cs->pipelined = (cs->ext & CLIENT_EXT_PIPELINING) != 0;
	cs->bdat = m->body == BODY_BINARYMIME;
	cs->nmsgs++;
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].text);
		m->rcpts[i].text = NULL;
		m->rcpts[i].code = 0;
		m->rcpts[i].dsn[0] = '\0';
	}
	cmd = client_mail_cmd(m, cs->ext);
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
static void
client_ready(struct client_session *cs)
{
	struct client_msg *m;

	for (;;) {
		if (cs->quit_req ||
		    (cs->t->max_msgs != 0 && cs->nmsgs >= cs->t->max_msgs)) {
			client_set_state(cs, CS_QUIT);
			return;
		}
		cs->in_owner = true;
		m = cs->cbs.next(cs->arg, cs);
		cs->in_owner = false;
		if (m == NULL) {
			client_set_state(cs, CS_IDLE);
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

/* ---- states ----------------------------------------------------------- */

static void
client_enter(struct client_session *cs)
{
	const struct client_target *t = cs->t;
	int64_t cmd_to = secs(t->command_timeout, CLIENT_DEF_COMMAND);
	int64_t data_to = secs(t->data_timeout, CLIENT_DEF_DATA);
	char *cmd;

	switch (cs->st) {
	case CS_CONNECT:
		client_connect(cs);
		return;
	case CS_GREETING:
		client_timeouts(cs, cmd_to, cmd_to);
		bufferevent_enable(cs->bev, EV_READ | EV_WRITE);
		return;
	case CS_EHLO:
		cmd = xasprintf("%s %s", t->lmtp ? "LHLO" : "EHLO",
		    t->helo_name != NULL ? t->helo_name : "localhost");
		client_send(cs, cmd);
		free(cmd);
		client_timeouts(cs, cmd_to, cmd_to);
		return;
	case CS_HELO:
		cmd = xasprintf("HELO %s",
		    t->helo_name != NULL ? t->helo_name : "localhost");
		client_send(cs, cmd);
		free(cmd);
		return;
	case CS_STARTTLS:
		client_send(cs, "STARTTLS");
		return;
	case CS_TLS: {
		char err[256];
		struct bufferevent *bev;
		struct evbuffer *in = bufferevent_get_input(cs->bev);

		/* Whatever came after the 220 in clear is not to be trusted
		 * (CVE-2011-0411 from the server side). */
		evbuffer_drain(in, evbuffer_get_length(in));
		bev = client_tls_wrap(cs->base, cs->bev, cs->host,
		    t->tls == TLS_VERIFY, t->tls_ca_file, err, sizeof(err));
		if (bev == NULL) {
			/* The server waits for a ClientHello: no QUIT. */
			client_set_end(cs, 0, "4.7.5",
			    "Cannot start TLS with %s: %s", cs->name, err);
			client_set_state(cs, CS_DONE);
			return;
		}
		cs->bev = bev;
		bufferevent_setcb(cs->bev, client_on_read, client_on_write,
		    client_on_event, cs);
		client_timeouts(cs, cmd_to, cmd_to);
		bufferevent_enable(cs->bev, EV_READ | EV_WRITE);
		return;
	}
	case CS_READY:
		client_timeouts(cs, 0, cmd_to);
		client_ready(cs);
		return;
	case CS_IDLE:
		client_timeouts(cs, 0, cmd_to);
		if (t->idle_timeout <= 0) {
			client_set_state(cs, CS_QUIT);
		} else {
			struct timeval tv = {.tv_sec = (time_t)t->idle_timeout};

			evtimer_add(cs->ev_idle, &tv);
		}
		return;
	case CS_MAIL:
		client_timeouts(cs, cmd_to, cmd_to);
		client_start_msg(cs);
		return;
	case CS_RCPT:
		if (!cs->pipelined)
			client_send_rcpt(cs, cs->rcpt_i);
		return;
	case CS_DATA:
		client_timeouts(cs, data_to, data_to);
		if (!cs->pipelined)
			client_send(cs, "DATA");
		return;
	case CS_DOT:
		if (!cs->body_queued)
			client_write_body(cs);
		return;
	case CS_DOT_DISCARD:
		client_timeouts(
		    cs, secs(t->final_timeout, CLIENT_DEF_FINAL), data_to);
		evbuffer_add(bufferevent_get_output(cs->bev), ".\r\n", 3);
		return;
	case CS_RSET:
		client_timeouts(cs, cmd_to, cmd_to);
		client_send(cs, "RSET");
		return;
	case CS_QUIT:
		client_timeouts(cs, cmd_to, cmd_to);
		client_send(cs, "QUIT");
		return;
	case CS_DONE:
		client_drop_bev(cs);
		event_del(cs->ev_idle);
		event_active(cs->ev_closed, EV_TIMEOUT, 1);
		return;
	}
}

/* The one place the state changes. */
static void
client_set_state(struct client_session *cs, enum cs_state st)
{
	log_debug("%s: client %s: %s -> %s", client_logid(cs), cs->relay,
	    client_state_str(cs->st), client_state_str(st));
	cs->st = st;
	client_enter(cs);
}

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
	log_info("%s: client: %s", cs->id, cs->end.text);
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
	log_info("%s: client: %s", cs->id, cs->end.text);
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
static enum cs_state
client_step(struct client_session *cs, const struct client_reply *r)
{
	struct client_msg *m = cs->msg;
	char *text;

	/* 421 at any time: the server is closing (RFC 5321 3.8). */
	if (r->code == 421 && cs->st != CS_GREETING && cs->st != CS_QUIT)
		return client_abort(cs, 0, NULL, NULL, r);

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
				rcpt_set_reply(&m->rcpts[cs->rcpt_i], r);
				cs->final[cs->rcpt_i] = true;
			}
		}
		if (++cs->rcpt_i < m->nrcpts)
			return CS_RCPT;
		if (cs->pipelined)
			return cs->bdat ? CS_DOT : CS_DATA;
		if (cs->naccepted == 0)
			return client_after_msg(cs, true);
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
			rcpt_set_reply(&m->rcpts[cs->lmtp_i], r);
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

/* ---- libevent callbacks ----------------------------------------------- */

static void
client_on_read(struct bufferevent *bev, void *arg)
{
	struct client_session *cs = arg;
	struct evbuffer *in;
	size_t n;
	char *line;

	(void)bev;
	while (cs->st != CS_DONE && cs->st != CS_CONNECT && cs->st != CS_TLS) {
		in = bufferevent_get_input(cs->bev);
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > CLIENT_LINE_MAX)
				client_set_state(
				    cs, client_abort(cs, 0, "4.5.0",
					    "reply line too long", NULL));
			return;
		}
		log_debug(
		    "%s: client %s < %s", client_logid(cs), cs->relay, line);
		if (client_reply_add(&cs->reply, line, n) < 0) {
			char text[512];

			snprintf(text, sizeof(text),
			    "malformed reply from %s while %s: %.80s", cs->name,
			    client_phase(cs), line);
			free(line);
			if (cs->st == CS_GREETING) {
				client_set_end(cs, 0, "4.4.1", "%s", text);
				client_set_state(cs, client_next_candidate(cs));
			} else {
				client_set_state(cs,
				    client_abort(cs, 0, "4.5.0", text, NULL));
			}
			continue;
		}
		free(line);
		if (!cs->reply.done)
			continue;
		{
			struct client_reply r = cs->reply;
			enum cs_state next;

			client_reply_init(&cs->reply);
			next = client_step(cs, &r);
			client_reply_fini(&r);
			client_set_state(cs, next);
		}
	}
}

static void
client_on_write(struct bufferevent *bev, void *arg)
{
	struct client_session *cs = arg;

	(void)bev;
	if (cs->st == CS_DOT && cs->body_queued && !cs->body_sent) {
		cs->body_sent = true;
		client_timeouts(cs,
		    secs(cs->t->final_timeout, CLIENT_DEF_FINAL),
		    secs(cs->t->data_timeout, CLIENT_DEF_DATA));
	}
}

static void
client_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct client_session *cs = arg;
	char text[512];
	int err = EVUTIL_SOCKET_ERROR();

	if (cs->st == CS_CONNECT) {
		if (what & BEV_EVENT_CONNECTED) {
			client_set_state(cs, CS_GREETING);
			return;
		}
		client_set_end(cs, 0, "4.4.1", "connect to %s: %s", cs->relay,
		    (what & BEV_EVENT_TIMEOUT) ? "Connection timed out"
		    : err != 0                 ? strerror(err)
					       : "Connection failed");
		client_set_state(cs, client_next_candidate(cs));
		return;
	}
	if (cs->st == CS_TLS) {
		if (what & BEV_EVENT_CONNECTED) {
			cs->tls_on = true;
			client_tls_describe(
			    bev, cs->tls_desc, sizeof(cs->tls_desc));
			log_debug("%s: client %s: TLS: %s", cs->id, cs->relay,
			    cs->tls_desc);
			client_set_state(cs, CS_EHLO);
			return;
		}
		if (what & BEV_EVENT_TIMEOUT)
			snprintf(text, sizeof(text), "TLS handshake timed out");
		else
			client_tls_failure(
			    bev, cs->t->tls == TLS_VERIFY, text, sizeof(text));
		if (cs->t->tls == TLS_MAY) {
			/* As Postfix does: the same address once more, in
			 * clear, rather than no delivery at all. */
			log_info("%s: client %s: %s; trying again without TLS",
			    cs->id, cs->relay, text);
			client_drop_bev(cs);
			cs->plain_retry = true;
			client_set_state(cs, CS_CONNECT);
			return;
		}
		client_set_state(cs, client_abort(cs, 0, "4.7.5", text, NULL));
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(text, sizeof(text),
		    "conversation with %s timed out while %s", cs->name,
		    client_phase(cs));
	else
		snprintf(text, sizeof(text), "lost connection with %s while %s",
		    cs->name, client_phase(cs));
	if (cs->st == CS_GREETING) {
		client_set_end(cs, 0, "4.4.1", "%s", text);
		client_set_state(cs, client_next_candidate(cs));
		return;
	}
	if (cs->st == CS_QUIT) {
		/* A server may close without answering QUIT. */
		if (cs->end.dsn[0] == '\0')
			client_set_end(cs, 0, "2.0.0", "%s", "");
		client_set_state(cs, CS_DONE);
		return;
	}
	if (cs->st == CS_DONE)
		return;
	client_set_state(cs, client_abort(cs, 0, "4.4.2", text, NULL));
}

static void
client_on_closed(int fd, short what, void *arg)
{
	struct client_session *cs = arg;

	(void)fd;
	(void)what;
	log_debug("%s: client %s: closed: connected=%d msgs=%u code=%d "
		  "dsn=%s %s",
	    cs->id, cs->relay, cs->end.connected, cs->end.delivered_msgs,
	    cs->end.code, cs->end.dsn, cs->end.text);
	/* The last thing done with cs: the owner may free it. */
	cs->cbs.closed(cs->arg, cs, &cs->end);
}

static void
client_on_work(int fd, short what, void *arg)
{
	struct client_session *cs = arg;

	(void)fd;
	(void)what;
	if (cs->st == CS_IDLE) {
		event_del(cs->ev_idle);
		client_set_state(cs, CS_READY);
	}
}

static void
client_on_idle(int fd, short what, void *arg)
{
	struct client_session *cs = arg;

	(void)fd;
	(void)what;
	if (cs->st == CS_IDLE)
		client_set_state(cs, CS_QUIT);
}

/* ---- the interface ---------------------------------------------------- */

struct client_session *
client_session_new(struct event_base *base, const struct client_target *t,
    const struct client_cbs *cbs, void *arg)
{
	static unsigned serial;
	struct client_session *cs = xcalloc(1, sizeof(*cs));

	cs->base = base;
	cs->t = t;
	cs->cbs = *cbs;
	cs->arg = arg;
	snprintf(cs->id, sizeof(cs->id), "O%08x", ++serial);
	snprintf(cs->relay, sizeof(cs->relay), "none");
	snprintf(cs->name, sizeof(cs->name), "none");
	client_reply_init(&cs->reply);
	cs->ev_closed = evtimer_new(base, client_on_closed, cs);
	cs->ev_work = evtimer_new(base, client_on_work, cs);
	cs->ev_idle = evtimer_new(base, client_on_idle, cs);
	cs->st = CS_CONNECT;
	if (t->ans == NULL) {
		client_set_end(cs, 0, "4.4.1", "no route");
		client_set_state(cs, CS_DONE);
		return cs;
	}
	client_enter(cs);
	return cs;
}

void
client_session_wake(struct client_session *cs)
{
	if (cs->st == CS_IDLE)
		event_active(cs->ev_work, EV_TIMEOUT, 1);
}

void
client_session_quit(struct client_session *cs)
{
	cs->quit_req = true;
	switch (cs->st) {
	case CS_IDLE:
		if (!cs->in_owner) {
			event_del(cs->ev_idle);
			client_set_state(cs, CS_QUIT);
		}
		return;
	case CS_CONNECT:
	case CS_GREETING:
	case CS_EHLO:
	case CS_HELO:
	case CS_STARTTLS:
	case CS_TLS:
		/* No message yet: nothing to finish. */
		client_set_end(cs, 0, "4.4.2",
		    "session with %s stopped "
		    "before it was ready",
		    cs->name);
		client_set_state(cs, CS_DONE);
		return;
	case CS_READY:
	case CS_MAIL:
	case CS_RCPT:
	case CS_DATA:
	case CS_DOT:
	case CS_DOT_DISCARD:
	case CS_RSET:
	case CS_QUIT:
	case CS_DONE:
		/* CS_READY sees quit_req before it asks for more. */
		return;
	}
}

void
client_session_free(struct client_session *cs)
{
	if (cs == NULL)
		return;
	ASSERT(!cs->in_owner);
	client_drop_bev(cs);
	event_free(cs->ev_closed);
	event_free(cs->ev_work);
	event_free(cs->ev_idle);
	free(cs->accepted);
	free(cs->final);
	free(cs);
}

const char *
client_session_relay(const struct client_session *cs)
{
	return cs->relay;
}

const char *
client_session_tls(const struct client_session *cs)
{
	return cs->tls_on ? cs->tls_desc : NULL;
}
