#define LOG_ROLE "smtp"
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

const char *
client_logid(const struct client_session *cs)
{
	return cs->msg != NULL && cs->msg->qid != NULL ? cs->msg->qid : cs->id;
}

int64_t
client_secs(int64_t v, int64_t def)
{
	return v > 0 ? v : def;
}

void
client_timeouts(struct client_session *cs, int64_t rd, int64_t wr)
{
	struct timeval r = {.tv_sec = (time_t)rd}, w = {.tv_sec = (time_t)wr};

	bufferevent_set_timeouts(
	    cs->bev, rd > 0 ? &r : NULL, wr > 0 ? &w : NULL);
}

/* The body is written: now the wait for the final reply(ies). */
static void
client_final_timeouts(struct client_session *cs)
{
	client_timeouts(cs, client_secs(cs->t->final_timeout, CLIENT_DEF_FINAL),
	    client_secs(cs->t->data_timeout, CLIENT_DEF_DATA));
}

void
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
		/* conf_parse_route refuses a path that would be cut. */
		if (strlen(ans->path) >= sizeof(sun->sun_path))
			PANIC("socket path %s passed its check but does not "
			      "fit",
			    ans->path);
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, ans->path, strlen(ans->path) + 1);
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

/* Whether every candidate so far refused the connection (nothing
 * listens: ECONNREFUSED, or no unix socket): err is the errno of one
 * failure, -1 for another kind. */
static void
client_note_refused(struct client_session *cs, int err)
{
	if (err != ECONNREFUSED && err != ENOENT)
		cs->not_refused = true;
}

void
client_log_failure(const struct client_session *cs)
{
	if (cs->t->quiet)
		log_debug("%s: client: %s", cs->id, cs->end.text);
	else
		log_info("%s: client: %s", cs->id, cs->end.text);
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
			client_note_refused(cs, fd < 0 ? -1 : errno);
			client_set_end(cs, 0, "4.4.1", "connect to %s: %s",
			    cs->relay, strerror(errno));
			client_log_failure(cs);
			if (fd >= 0)
				close(fd);
			client_advance(cs);
			continue;
		}
		cs->bev =
		    bufferevent_socket_new(cs->base, fd, BEV_OPT_CLOSE_ON_FREE);
		if (cs->bev == NULL) {
			client_note_refused(cs, -1);
			close(fd);
			client_set_end(cs, 0, "4.4.1", "connect to %s: %s",
			    cs->relay, "cannot make a bufferevent");
			client_advance(cs);
			continue;
		}
		bufferevent_setcb(cs->bev, client_on_read, client_on_write,
		    client_on_event, cs);
		client_timeouts(cs, 0,
		    client_secs(cs->t->connect_timeout, CLIENT_DEF_CONNECT));
		/* No address: wait for the connect() above to finish. */
		if (bufferevent_socket_connect(cs->bev, NULL, 0) < 0) {
			client_note_refused(cs, -1);
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
	cs->end.refused = cs->tried_any && !cs->not_refused;
	cs->end.code = 0;
	snprintf(cs->end.dsn, sizeof(cs->end.dsn), "4.4.1");
	client_set_state(cs, CS_DONE);
}

/* This candidate failed before its greeting: the next one. */
enum cs_state
client_next_candidate(struct client_session *cs)
{
	client_log_failure(cs);
	client_drop_bev(cs);
	client_advance(cs);
	return CS_CONNECT;
}

/* ---- states ----------------------------------------------------------- */

static void
client_enter(struct client_session *cs)
{
	const struct client_target *t = cs->t;
	int64_t cmd_to = client_secs(t->command_timeout, CLIENT_DEF_COMMAND);
	int64_t data_to = client_secs(t->data_timeout, CLIENT_DEF_DATA);
	char *cmd;

	switch (cs->st) {
	case CS_CONNECT:
		client_connect(cs);
		return;
	case CS_GREETING:
		cs->not_refused = true;
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
		else if (cs->body_sent)
			client_final_timeouts(cs);
		return;
	case CS_DOT_DISCARD:
		client_timeouts(cs,
		    client_secs(t->final_timeout, CLIENT_DEF_FINAL), data_to);
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
void
client_set_state(struct client_session *cs, enum cs_state st)
{
	log_debug("%s: client %s: %s -> %s", client_logid(cs), cs->relay,
	    client_state_str(cs->st), client_state_str(st));
	cs->st = st;
	client_enter(cs);
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
	/* A pipelined BDAT chunk may be all written before CS_DOT. */
	if (cs->body_queued && !cs->body_sent) {
		cs->body_sent = true;
		if (cs->st == CS_DOT)
			client_final_timeouts(cs);
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
		client_note_refused(
		    cs, (what & BEV_EVENT_TIMEOUT) ? ETIMEDOUT : err);
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
	cs->peer_closed = true;
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
	/* From inside next() too: the NULL it is about to return is stale. */
	cs->woken = true;
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
	client_txn_clear(cs);
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

const struct deliver_ops client_deliver_ops = {
    .open = client_session_new,
    .wake = client_session_wake,
    .quit = client_session_quit,
    .close = client_session_free,
    .relay = client_session_relay,
};
