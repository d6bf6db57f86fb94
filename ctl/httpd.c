/*
 * /metrics and /healthz (see httpd.h). The counters come from
 * common/metrics; the gauges are read live from the queue, the scheduler
 * and the server when Prometheus scrapes, so nothing has to keep them
 * up to date in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "ctl/httpd.h"
#include "queue/queue.h"
#include "queue/sched.h"
#include "relay/server.h"

#define HTTPD_TIMEOUT 10 /* seconds each read or write may wait */
/* Seconds a connection may take from accept to the end of its reply,
 * however it trickles: one request a connection (Connection: close). */
#define HTTPD_DEADLINE 10
/* Bytes of a request line and its headers, and of a body (the endpoints
 * take none: a small one still gets its 405). */
#define HTTPD_MAX_HEADERS 8192
#define HTTPD_MAX_BODY 1024

/* Read ahead of evhttp's parser, at most: a request is far smaller. */
#define HTTPD_READ_MAX 65536

/*
 * A connection's deadline. It holds a reference to the connection's
 * bufferevent, so that it can tell whether evhttp still uses it; the
 * bufferevent closes the socket when the last reference goes
 * (BEV_OPT_CLOSE_ON_FREE, which evhttp honours), so that no other
 * connection can get the descriptor while the reference keeps the
 * bufferevent's events registered on it.
 */
struct httpd_conn {
	TAILQ_ENTRY(httpd_conn) entry;
	struct bufferevent *bev;
	time_t deadline; /* monotonic seconds */
};

struct httpd {
	struct event_base *base;
	const struct conf *cf;
	struct ctl_deps deps;
	struct evhttp *http;
	struct conf_addr addr; /* where it listens, when http is set */
	TAILQ_HEAD(, httpd_conn) conns;
	struct event *tick; /* each second while there are conns */
};

struct gauge_dest {
	char *name;
	size_t messages;
	uint64_t bytes, held;
	int64_t oldest; /* unix seconds */
	int backoff;    /* -1 unknown to the scheduler */
	int suspect;
	int paused;
	size_t connections;
};

struct gauges {
	const struct conf *cf;
	struct hmap *dests;
};

static struct gauge_dest *
gauge_dest_get(struct gauges *g, const char *name)
{
	struct gauge_dest *d = hmap_get(g->dests, name);

	if (d == NULL) {
		d = xcalloc(1, sizeof(*d));
		d->name = xstrdup(name);
		d->backoff = -1;
		hmap_put(g->dests, d->name, d);
	}
	return d;
}

/* From the counters: O(lanes), whatever the spool holds. */
static void
gauges_on_lane(
    void *arg, const char *lane, const struct lane_count *c, int64_t oldest)
{
	struct gauges *g = arg;
	char key[512];
	struct gauge_dest *d = gauge_dest_get(
	    g, sched_lane_dest_key(g->cf, lane, key, sizeof(key)));

	d->messages += c->messages;
	d->bytes += c->bytes;
	d->held += c->held;
	oldest /= 1000000;
	if (oldest > 0 && (d->oldest == 0 || oldest < d->oldest))
		d->oldest = oldest;
}

static void
gauges_on_dest(void *arg, const struct sched_dest_info *in)
{
	struct gauge_dest *d = gauge_dest_get(arg, in->name);

	d->backoff = strcmp(in->state, "backing off") == 0;
	d->suspect = in->suspect;
	d->paused = in->paused;
	d->connections = in->connections;
}

enum gauge_kind {
	G_MESSAGES,
	G_HELD,
	G_BYTES,
	G_AGE,
	G_BACKOFF,
	G_SUSPECT,
	G_PAUSED,
	G_CONNS,
	G_N
};

static const struct {
	const char *name, *help;
} gauge_desc[G_N] = {
    [G_MESSAGES] = {"mxspool_queue_messages",
	"Messages queued, by destination."},
    [G_HELD] = {"mxspool_queue_held_messages",
	"Messages on hold (mxspoolctl hold), by destination."},
    [G_BYTES] = {"mxspool_queue_bytes",
	"Bytes of queued messages, by destination."},
    [G_AGE] = {"mxspool_queue_oldest_age_seconds",
	"Age of the oldest queued message, by destination."},
    [G_BACKOFF] = {"mxspool_destination_backing_off",
	"1 while a destination fails and is only probed."},
    [G_SUSPECT] = {"mxspool_destination_suspect",
	"1 while the rejection guard holds a destination's 5xx replies."},
    [G_PAUSED] = {"mxspool_destination_paused",
	"1 while an operator has paused delivery to a destination."},
    [G_CONNS] = {"mxspool_outbound_connections",
	"Delivery connections open, by destination."},
};

/*
 * A gauge's value for d. Every destination has every gauge, 0 when the
 * scheduler has nothing of it or its queue is empty: a series that comes
 * and goes breaks rate(), and alerts on it misfire.
 */
static double
gauge_value(const struct gauge_dest *d, enum gauge_kind k, int64_t now)
{
	switch (k) {
	case G_MESSAGES:
		return (double)d->messages;
	case G_HELD:
		return (double)d->held;
	case G_BYTES:
		return (double)d->bytes;
	case G_AGE:
		return d->messages > 0 && d->oldest > 0
			   ? (double)(now - d->oldest)
			   : 0;
	case G_BACKOFF:
		return d->backoff > 0;
	case G_SUSPECT:
		return d->suspect;
	case G_PAUSED:
		return d->paused;
	case G_CONNS:
		return (double)d->connections;
	case G_N:
		break;
	}
	return 0;
}

/* Where each domain the config names goes, queued for or not. */
static void
gauges_configured(struct gauges *g)
{
	char key[512];

	for (size_t i = 0; i < g->cf->nrelay_domains; i++)
		if (g->cf->relay_domains[i][0] != '.')
			(void)gauge_dest_get(
			    g, sched_lane_dest_key(g->cf,
				   g->cf->relay_domains[i], key, sizeof(key)));
	for (size_t i = 0; i < g->cf->ndomains; i++)
		if (g->cf->domains[i].route.kind != ROUTE_MX)
			(void)gauge_dest_get(g, g->cf->domains[i].route.text);
}

/* The per-destination gauges, one family after the other. */
static void
httpd_write_gauges(struct httpd *h, FILE *fp)
{
	struct gauges g = {.cf = h->cf, .dests = hmap_new()};
	int64_t now = (int64_t)time(NULL);
	size_t pos = 0, n = 0;
	struct gauge_dest **v;
	const char *key;
	void *val;

	gauges_configured(&g);
	queue_foreach_lane(h->deps.q, gauges_on_lane, &g);
	sched_foreach_dest(h->deps.sched, gauges_on_dest, &g);
	v = xcalloc(hmap_count(g.dests) + 1, sizeof(*v));
	while (hmap_next(g.dests, &pos, &key, &val))
		v[n++] = val;
	for (int k = 0; k < G_N; k++) {
		metrics_write_head(
		    fp, gauge_desc[k].name, "gauge", gauge_desc[k].help);
		for (size_t i = 0; i < n; i++)
			metrics_write_sample(fp, gauge_desc[k].name,
			    "destination", v[i]->name,
			    gauge_value(v[i], (enum gauge_kind)k, now));
	}
	for (size_t i = 0; i < n; i++) {
		free(v[i]->name);
		free(v[i]);
	}
	free(v);
	hmap_free(g.dests);
}

static void
httpd_on_metrics(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char *text = NULL, why[300];
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	if (fp == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	metrics_write(fp);
	httpd_write_gauges(h, fp);
	metrics_write_head(
	    fp, "mxspool_spool_messages", "gauge", "Messages in the spool.");
	metrics_write_sample(fp, "mxspool_spool_messages", NULL, NULL,
	    (double)queue_count(h->deps.q));
	metrics_write_head(fp, "mxspool_spool_free_bytes", "gauge",
	    "Bytes free on the spool's file system (for mxspoold).");
	metrics_write_sample(fp, "mxspool_spool_free_bytes", NULL, NULL,
	    (double)queue_free_bytes(h->deps.q));
	metrics_write_head(fp, "mxspool_spool_min_free_bytes", "gauge",
	    "spool_min_free: below this much free space, new mail gets 452.");
	metrics_write_sample(fp, "mxspool_spool_min_free_bytes", NULL, NULL,
	    (double)h->cf->spool_min_free);
	metrics_write_head(fp, "mxspool_spool_writable", "gauge",
	    "1 while the spool takes mail, 0 while it refuses writes or its "
	    "free space is under spool_min_free.");
	metrics_write_sample(fp, "mxspool_spool_writable", NULL, NULL,
	    queue_writable(h->deps.q, why, sizeof(why)) ? 1 : 0);
	metrics_write_head(fp, "mxspool_connections_open", "gauge",
	    "Inbound SMTP sessions open.");
	metrics_write_sample(fp, "mxspool_connections_open", NULL, NULL,
	    (double)server_nsessions(h->deps.srv));
	fclose(fp);
	evbuffer_add(out, text, len);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Connection", "close");
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
}

/*
 * 200 "ok", or 503 with the reason in one line while the spool refuses
 * mail: it refuses writes since one failed, or its free space is under
 * spool_min_free (queue_writable).
 */
static void
httpd_on_healthz(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	char why[300];
	bool ok = queue_writable(h->deps.q, why, sizeof(why));

	evbuffer_add_printf(
	    evhttp_request_get_output_buffer(req), "%s\n", ok ? "ok" : why);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Connection", "close");
	if (ok)
		evhttp_send_reply(req, HTTP_OK, "OK", NULL);
	else
		evhttp_send_reply(
		    req, HTTP_SERVUNAVAIL, "Service Unavailable", NULL);
}

static const struct timeval httpd_tick = {1, 0};

static time_t
httpd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void
httpd_conn_free(struct httpd *h, struct httpd_conn *hc)
{
	TAILQ_REMOVE(&h->conns, hc, entry);
	bufferevent_decref(hc->bev); /* the last one closes the socket */
	free(hc);
}

/*
 * Each second: a connection evhttp is done with (it clears a bufferevent's
 * callbacks when it frees it) is let go, which closes its socket; one
 * still in use past its deadline is shut down, which makes evhttp free
 * it, and it goes at the next tick.
 */
static void
httpd_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct httpd *h = arg;
	struct httpd_conn *hc, *next;
	time_t now = httpd_now();

	(void)fd, (void)what;
	for (hc = TAILQ_FIRST(&h->conns); hc != NULL; hc = next) {
		bufferevent_data_cb readcb = NULL;
		evutil_socket_t s;

		next = TAILQ_NEXT(hc, entry);
		bufferevent_getcb(hc->bev, &readcb, NULL, NULL, NULL);
		if (readcb == NULL) {
			httpd_conn_free(h, hc);
		} else if (now >= hc->deadline &&
			   (s = bufferevent_getfd(hc->bev)) >= 0) {
			log_info("metrics: closing a client over the %ds "
				 "deadline",
			    HTTPD_DEADLINE);
			shutdown(s, SHUT_RDWR);
			hc->deadline = now + HTTPD_DEADLINE; /* once */
		}
	}
	if (!TAILQ_EMPTY(&h->conns))
		evtimer_add(h->tick, &httpd_tick);
}

/* evhttp's bufferevent for each connection it accepts: ours, to time it. */
static struct bufferevent *
httpd_new_bev(struct event_base *base, void *arg)
{
	struct httpd *h = arg;
	struct httpd_conn *hc = xcalloc(1, sizeof(*hc));

	hc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (hc->bev == NULL) {
		free(hc);
		return NULL; /* evhttp makes its own, untimed */
	}
	bufferevent_setwatermark(hc->bev, EV_READ, 0, HTTPD_READ_MAX);
	bufferevent_incref(hc->bev);
	hc->deadline = httpd_now() + HTTPD_DEADLINE;
	if (TAILQ_EMPTY(&h->conns))
		evtimer_add(h->tick, &httpd_tick);
	TAILQ_INSERT_TAIL(&h->conns, hc, entry);
	return hc->bev;
}

static void
httpd_on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, "try /metrics or /healthz");
}

struct httpd *
httpd_new(
    struct event_base *base, const struct conf *cf, const struct ctl_deps *deps)
{
	struct httpd *h = xcalloc(1, sizeof(*h));

	h->base = base;
	h->cf = cf;
	h->deps = *deps;
	metrics_set_node(cf->node_id);
	TAILQ_INIT(&h->conns);
	h->tick = evtimer_new(base, httpd_on_tick, h);
	return h;
}

/* A new evhttp listening on addr. */
static struct evhttp *
httpd_open(
    struct httpd *h, const struct conf_addr *addr, char *err, size_t errlen)
{
	struct evhttp *http;
	int fd, one = 1;

	fd = socket(
	    addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&addr->sa, addr->salen) < 0 ||
	    listen(fd, 64) < 0) {
		snprintf(err, errlen, "metrics_listen %s: %s", addr->text,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	http = evhttp_new(h->base);
	if (http == NULL ||
	    evhttp_accept_socket_with_handle(http, fd) == NULL) {
		snprintf(err, errlen, "metrics_listen %s: cannot serve HTTP",
		    addr->text);
		if (http != NULL)
			evhttp_free(http);
		close(fd);
		return NULL;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(http, HTTPD_TIMEOUT);
	evhttp_set_max_headers_size(http, HTTPD_MAX_HEADERS);
	evhttp_set_max_body_size(http, HTTPD_MAX_BODY);
	evhttp_set_bevcb(http, httpd_new_bev, h);
	evhttp_set_cb(http, "/metrics", httpd_on_metrics, h);
	evhttp_set_cb(http, "/healthz", httpd_on_healthz, h);
	evhttp_set_gencb(http, httpd_on_other, h);
	return http;
}

int
httpd_listen(struct httpd *h, char *err, size_t errlen)
{
	if (h->cf->metrics_listen == NULL)
		return 0;
	h->http = httpd_open(h, h->cf->metrics_listen, err, errlen);
	if (h->http == NULL)
		return -1;
	h->addr = *h->cf->metrics_listen;
	log_info("metrics on http://%s/metrics", h->addr.text);
	return 0;
}

int
httpd_set_conf(struct httpd *h, const struct conf *cf, char *err, size_t errlen)
{
	const struct conf_addr *a = cf->metrics_listen;
	struct evhttp *http = NULL;

	h->cf = cf;
	metrics_set_node(cf->node_id);
	if (h->http != NULL && a != NULL && strcmp(a->text, h->addr.text) == 0)
		return 0;
	if (h->http == NULL && a == NULL)
		return 0;
	/* The same port under another address would clash: free first,
	 * and if the new one fails, say so (metrics are off then). */
	if (h->http != NULL) {
		evhttp_free(h->http);
		h->http = NULL;
		log_info("metrics on %s: closed", h->addr.text);
	}
	if (a == NULL)
		return 0;
	http = httpd_open(h, a, err, errlen);
	if (http == NULL)
		return -1;
	h->http = http;
	h->addr = *a;
	log_info("metrics on http://%s/metrics", h->addr.text);
	return 0;
}

void
httpd_free(struct httpd *h)
{
	if (h == NULL)
		return;
	if (h->http != NULL)
		evhttp_free(h->http);
	while (!TAILQ_EMPTY(&h->conns))
		httpd_conn_free(h, TAILQ_FIRST(&h->conns));
	event_free(h->tick);
	free(h);
}
