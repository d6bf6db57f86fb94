/*
 * SMTP sessions. This is the skeleton the full ESMTP server grows from:
 * a greeting, line reading with a bound and a timeout, QUIT, and a clean
 * shutdown that lets open sessions finish.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/log.h"
#include "common/xmem.h"
#include "relay/listen.h"
#include "relay/server.h"

#define SMTP_LINE_MAX 512    /* RFC 5321 4.5.3.1.4, including CRLF */
#define SMTP_CMD_TIMEOUT 300 /* RFC 5321 4.5.3.2.7 */
#define SMTP_ACCEPT_PAUSE 1  /* seconds, after running out of descriptors */

struct smtp_sess {
	TAILQ_ENTRY(smtp_sess) entry;
	struct server *srv;
	struct bufferevent *bev;
	char id[16];   /* "C%08x", the log key until there is a queue id */
	char peer[64]; /* "[addr]:port" */
	unsigned ncmds;
	bool closing; /* reply flushed, then free */
};

struct server {
	struct event_base *base;
	const struct conf *cf;
	struct listen_set *listeners;
	struct event *accept_pause;
	struct event *deadline;
	TAILQ_HEAD(, smtp_sess) sessions;
	size_t nsessions;
	unsigned next_id;
	server_done_cb *done;
	void *done_arg;
};

static void smtp_sess_free(struct smtp_sess *s);

static void __attribute__((format(printf, 2, 3)))
smtp_reply(struct smtp_sess *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* Sends a last reply and closes once it is written. */
static void
smtp_close_after(struct smtp_sess *s)
{
	s->closing = true;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_sess_free(s);
}

static void
smtp_command(struct smtp_sess *s, char *line)
{
	char *args = line + strcspn(line, " ");

	if (*args)
		*args++ = '\0';
	s->ncmds++;
	if (strcasecmp(line, "QUIT") == 0) {
		smtp_reply(s, "221 2.0.0 Bye");
		smtp_close_after(s);
	} else if (strcasecmp(line, "NOOP") == 0) {
		smtp_reply(s, "250 2.0.0 Ok");
	} else {
		smtp_reply(s, "502 5.5.1 Command not implemented");
	}
}

static void
smtp_on_read(struct bufferevent *bev, void *arg)
{
	struct smtp_sess *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!s->closing) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);

		if (line == NULL) {
			if (evbuffer_get_length(in) >= SMTP_LINE_MAX) {
				smtp_reply(s, "500 5.5.6 Line too long");
				smtp_close_after(s);
			}
			return;
		}
		if (len + 2 > SMTP_LINE_MAX)
			smtp_reply(s, "500 5.5.6 Line too long");
		else if (strlen(line) != len)
			smtp_reply(s, "500 5.5.2 NUL character in command");
		else
			smtp_command(s, line);
		free(line);
	}
}

static void
smtp_on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_sess *s = arg;

	(void)bev;
	if (s->closing)
		smtp_sess_free(s);
}

static void
smtp_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_sess *s = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		log_event(s->id, "timeout after %u commands from %s", s->ncmds,
		    s->peer);
		smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded",
		    s->srv->cf->hostname);
		bufferevent_set_timeouts(bev, NULL, NULL);
		smtp_close_after(s);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_debug("%s: connection error: %s", s->id, strerror(errno));
	/* EOF or error: the client has gone. */
	smtp_sess_free(s);
}

static void
smtp_format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
	}
	snprintf(buf, len, "[%s]:%u", host, port);
}

static void
server_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;
	struct smtp_sess *s = xcalloc(1, sizeof(*s));
	struct timeval tv = {SMTP_CMD_TIMEOUT, 0};

	(void)l;
	(void)salen;
	s->srv = srv;
	snprintf(s->id, sizeof(s->id), "C%08x", ++srv->next_id);
	smtp_format_peer(sa, s->peer, sizeof(s->peer));
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(
	    s->bev, smtp_on_read, smtp_on_write, smtp_on_event, s);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	/* Never buffer more than one over-long line from a client. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_LINE_MAX * 4);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nsessions++;
	log_event(s->id, "connect from %s", s->peer);
	smtp_reply(s, "220 %s ESMTP mxspool", srv->cf->hostname);
}

static void
server_on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	if (srv->listeners != NULL && srv->done == NULL)
		listen_enable(srv->listeners, true);
}

/*
 * accept() failing with EMFILE leaves the connection pending, so the
 * listener would fire again at once: pause accepting for a moment instead
 * of spinning.
 */
static void
server_on_accept_error(struct evconnlistener *l, void *arg)
{
	struct server *srv = arg;
	struct timeval tv = {SMTP_ACCEPT_PAUSE, 0};
	int e = EVUTIL_SOCKET_ERROR();

	(void)l;
	log_warn("accept: %s; pausing for %ds", strerror(e), SMTP_ACCEPT_PAUSE);
	listen_enable(srv->listeners, false);
	evtimer_add(srv->accept_pause, &tv);
}

static void
smtp_sess_free(struct smtp_sess *s)
{
	struct server *srv = s->srv;

	log_event(s->id, "disconnect from %s commands=%u", s->peer, s->ncmds);
	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nsessions--;
	bufferevent_free(s->bev);
	free(s);
	if (srv->done != NULL && srv->nsessions == 0) {
		server_done_cb *done = srv->done;
		srv->done = NULL;
		evtimer_del(srv->deadline);
		done(srv->done_arg);
	}
}

struct server *
server_new(struct event_base *base, const struct conf *cf)
{
	struct server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->cf = cf;
	TAILQ_INIT(&srv->sessions);
	srv->accept_pause = evtimer_new(base, server_on_accept_resume, srv);
	return srv;
}

int
server_listen(struct server *srv, char *err, size_t errlen)
{
	srv->listeners = listen_open(srv->base, srv->cf->listen,
	    srv->cf->nlisten, server_on_accept, srv, err, errlen);
	if (srv->listeners == NULL)
		return -1;
	listen_set_error_cb(srv->listeners, server_on_accept_error);
	return 0;
}

void
server_set_conf(struct server *srv, const struct conf *cf)
{
	srv->cf = cf;
}

size_t
server_nsessions(const struct server *srv)
{
	return srv->nsessions;
}

static void
server_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct smtp_sess *s;

	(void)fd;
	(void)what;
	log_info("shutdown: closing %zu open sessions", srv->nsessions);
	/*
	 * One non-blocking send of the 421 each: a client that does not read
	 * is not waited for. (The bufferevent's output buffer is frozen to
	 * everyone but the bufferevent, so the reply goes out directly.)
	 */
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL) {
		char msg[300];
		int n = snprintf(msg, sizeof(msg),
		    "421 4.3.2 %s Service shutting down\r\n",
		    srv->cf->hostname);

		if (!s->closing && n > 0 && (size_t)n < sizeof(msg))
			(void)send(bufferevent_getfd(s->bev), msg, (size_t)n,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
		smtp_sess_free(s);
	}
}

void
server_shutdown(struct server *srv, server_done_cb *done, void *arg)
{
	struct timeval tv = {srv->cf->shutdown_timeout, 0};

	listen_close(srv->listeners);
	srv->listeners = NULL;
	evtimer_del(srv->accept_pause);
	if (srv->nsessions == 0) {
		done(arg);
		return;
	}
	log_info("shutdown: waiting up to %llds for %zu open sessions",
	    (long long)srv->cf->shutdown_timeout, srv->nsessions);
	srv->done = done;
	srv->done_arg = arg;
	srv->deadline = evtimer_new(srv->base, server_on_deadline, srv);
	evtimer_add(srv->deadline, &tv);
}

void
server_free(struct server *srv)
{
	struct smtp_sess *s;

	if (srv == NULL)
		return;
	srv->done = NULL;
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL)
		smtp_sess_free(s);
	listen_close(srv->listeners);
	if (srv->deadline != NULL)
		event_free(srv->deadline);
	event_free(srv->accept_pause);
	free(srv);
}
