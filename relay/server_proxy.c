#define LOG_ROLE "smtpd"
/*
 * Sessions behind a proxy (proxy_listen): before anything else the proxy
 * sends a PROXY protocol header (relay/proxy.c) naming the client it
 * relays, and from then on that client is the session's client: in the
 * log, the Received header, the PTR lookup and max_connections_per_ip.
 *
 * Nothing is said to a proxy before its header is whole (HAProxy's
 * specification: a receiver must not start before it has a valid header,
 * which matters where the server speaks first, as in SMTP), and only a
 * source in proxy_trusted may send one, or anyone could claim any address.
 * A header that is not valid or not whole within proxy_timeout closes the
 * connection without a word. The header's bytes are taken from the
 * session's input and nothing after them: what follows is SMTP.
 *
 * A LOCAL header (v2), UNKNOWN (v1) or a family other than TCP over IPv4
 * or IPv6 names no client: the connection is the proxy's own, a health
 * check. It is greeted, under the proxy's address, and answers what a
 * check sends (HAProxy's `option smtpchk`: HELO, then QUIT), but takes no
 * mail (smtp_cmd_mail).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "relay/proxy.h"
#include "relay/server_int.h"

static bool
smtp_proxy_trusted(const struct conf *cf, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cf->nproxy_trusted; i++)
		if (conf_cidr_match(&cf->proxy_trusted[i], sa))
			return true;
	return false;
}

/* Closes a session that has not been greeted: not a byte is sent. */
static void
smtp_proxy_refuse(struct smtp_sess *s)
{
	metrics_reject("proxy_header");
	smtp_close_after(s);
}

static void
smtp_proxy_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_sess *s = arg;

	(void)fd;
	(void)what;
	if (s->closing || s->state != SMTP_ST_PROXY)
		return;
	log_event(s->id, "reject: no whole PROXY header from %s in %llds",
	    s->peer, (long long)s->srv->cf->proxy_timeout);
	smtp_proxy_refuse(s);
}

void
smtp_proxy_start(struct smtp_sess *s, const struct sockaddr *sa)
{
	const struct conf *cf = s->srv->cf;
	struct timeval tv = {cf->proxy_timeout, 0};

	if (!smtp_proxy_trusted(cf, sa)) {
		log_event(s->id,
		    "reject: connect from %s: not in proxy_trusted", s->peer);
		metrics_reject("proxy_untrusted");
		smtp_close_after(s);
		return;
	}
	s->proxy_wait = evtimer_new(s->srv->base, smtp_proxy_on_timeout, s);
	evtimer_add(s->proxy_wait, &tv);
}

int
smtp_proxy_read(struct smtp_sess *s, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in), used;
	struct proxy_hdr h;
	char why[128];
	const uint8_t *p;
	int rc;

	if (len > PROXY_MAX)
		len = PROXY_MAX;
	p = evbuffer_pullup(in, (ev_ssize_t)len);
	rc = proxy_parse(p, len, &h, &used, why, sizeof(why));
	if (rc == PROXY_MORE) {
		if (s->eof)
			log_debug("%s: %s left before its PROXY header was "
				  "whole",
			    s->id, s->peer);
		return -1;
	}
	if (rc == PROXY_BAD) {
		log_event(s->id, "reject: bad PROXY header from %s: %s",
		    s->peer, why);
		smtp_proxy_refuse(s);
		return -1;
	}
	evbuffer_drain(in, used);
	evtimer_del(s->proxy_wait);
	memcpy(s->via, s->peer, sizeof(s->via));
	if (h.local)
		s->proxy_local = true;
	else
		smtp_format_addr(
		    (const struct sockaddr *)&h.src, s->addr, s->peer);
	log_debug("%s: PROXY v%d header from %s: %s", s->id, h.version, s->via,
	    h.local ? "no client" : s->peer);
	smtp_set_state(s, SMTP_ST_GREET);
	smtp_admit(s, (const struct sockaddr *)&h.src);
	return 0;
}
