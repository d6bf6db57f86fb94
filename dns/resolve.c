/*
 * c-ares on the event loop. c-ares tells us which sockets it wants watched
 * (the socket-state callback) and when it next needs to run (ares_timeout);
 * libevent watches those sockets and arms one timer, and each wake-up hands
 * the ready socket to ares_process_fd(). Nothing here blocks.
 *
 * Above that sits one query per (type, name) at a time: a lookup of a name
 * already in flight joins it and is answered with it. Answers go into the
 * cache for their TTL (cache.c); the next lookup is answered from there.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/xmem.h"
#include "dns/dns_int.h"

struct dns_sock {
	TAILQ_ENTRY(dns_sock) entry;
	ares_socket_t fd;
	struct event *ev;
};

struct dns_waiter {
	dns_rrset_cb *cb;
	uint64_t id;
	int slot;
};

/* One query in flight and everyone waiting for its answer. */
struct dns_flight {
	TAILQ_ENTRY(dns_flight) entry;  /* d->flights[bucket] */
	TAILQ_ENTRY(dns_flight) qentry; /* d->queued, until sent */
	bool queued;
	struct dns *d;
	size_t bucket;
	int type;
	char *name;
	struct dns_waiter *w;
	size_t nw, capw;
};

static int ares_lib_refs;

int64_t
dns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* c-ares asks for its next wake-up after each call into it. */
static void
dns_arm_timer(struct dns *d)
{
	struct timeval tv, *tvp;

	if (d->closing)
		return;
	tvp = ares_timeout(d->channel, NULL, &tv);
	if (tvp != NULL)
		evtimer_add(d->timer, tvp);
	else
		evtimer_del(d->timer);
}

static void
dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	(void)fd;
	(void)what;
	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_arm_timer(d);
}

static void
dns_on_sock_io(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_arm_timer(d);
}

/* c-ares opens, changes and closes its sockets; we follow. */
static void
dns_on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock *s;
	short what =
	    (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

	TAILQ_FOREACH(s, &d->socks, entry)
	{
		if (s->fd == fd)
			break;
	}
	if (what == 0) {
		if (s != NULL) {
			TAILQ_REMOVE(&d->socks, s, entry);
			event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		TAILQ_INSERT_TAIL(&d->socks, s, entry);
	} else {
		event_free(s->ev);
	}
	s->ev = event_new(
	    d->base, fd, (short)(what | EV_PERSIST), dns_on_sock_io, d);
	if (s->ev == NULL)
		PANIC("event_new failed for a DNS socket");
	event_add(s->ev, NULL);
}

static void
dns_flight_free(struct dns_flight *f)
{
	free(f->name);
	free(f->w);
	free(f);
}

static void dns_on_reply(
    void *arg, int status, int timeouts, unsigned char *buf, int len);

static void
dns_send(struct dns_flight *f)
{
	struct dns *d = f->d;

	d->nsent++;
	/* May answer at once (a bad name): f must be complete. */
	ares_query(d->channel, f->name, C_IN, f->type, dns_on_reply, f);
}

/* Sends waiting queries while there is room. */
static void
dns_send_queued(struct dns *d)
{
	struct dns_flight *f;

	while (
	    d->nsent < DNS_MAX_SENT && (f = TAILQ_FIRST(&d->queued)) != NULL) {
		TAILQ_REMOVE(&d->queued, f, qentry);
		f->queued = false;
		dns_send(f);
	}
}

static void
dns_on_reply(void *arg, int status, int timeouts, unsigned char *buf, int len)
{
	struct dns_flight *f = arg;
	struct dns *d = f->d;
	struct dns_rrset s;

	(void)timeouts;
	TAILQ_REMOVE(&d->flights[f->bucket], f, entry);
	d->st.in_flight--;
	d->nsent--;
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED ||
	    d->closing) {
		dns_flight_free(f);
		return;
	}
	dns_send_queued(d);
	dns_reply_rrset(&s, f->type, status, buf, len);
	log_debug("dns: %s/%d: %s%s%s, %zu records, ttl %lld", f->name, f->type,
	    dns_rc_str(s.rc), s.why ? ": " : "", s.why ? s.why : "", s.nrr,
	    (long long)s.ttl);
	dns_cache_put(d->cache, f->type, f->name, &s,
	    dns_cache_ttl(&s, d->cf->dns_min_ttl, d->cf->dns_max_ttl,
		d->cf->dns_negative_ttl),
	    dns_now_ms());
	/* A waiter may start lookups of its own; f is already unlinked. */
	for (size_t i = 0; i < f->nw; i++)
		f->w[i].cb(d, f->w[i].id, f->w[i].slot, &s);
	dns_rrset_fini(&s);
	dns_flight_free(f);
}

void
dns_lookup(struct dns *d, int type, const char *name, dns_rrset_cb *cb,
    uint64_t id, int slot)
{
	const struct dns_rrset *cached;
	struct dns_flight *f;
	uint32_t bucket = 2166136261u ^ (uint32_t)type;

	cached = dns_cache_get(d->cache, type, name, dns_now_ms());
	if (cached != NULL) {
		struct dns_rrset s;

		/* Copied: the callback may add to the cache, moving it. */
		dns_rrset_copy(&s, cached);
		d->st.cache_hits++;
		cb(d, id, slot, &s);
		dns_rrset_fini(&s);
		return;
	}
	for (const char *p = name; *p; p++)
		bucket = (bucket ^ (unsigned char)tolower((unsigned char)*p)) *
			 16777619u;
	bucket &= DNS_NBUCKETS - 1;
	TAILQ_FOREACH(f, &d->flights[bucket], entry)
	{
		if (f->type == type && strcasecmp(f->name, name) == 0)
			break;
	}
	if (f != NULL) {
		d->st.coalesced++;
	} else {
		f = xcalloc(1, sizeof(*f));
		f->d = d;
		f->bucket = bucket;
		f->type = type;
		f->name = xstrdup(name);
		TAILQ_INSERT_TAIL(&d->flights[bucket], f, entry);
		d->st.in_flight++;
		d->st.queries++;
	}
	f->w = xgrow(f->w, &f->capw, f->nw + 1, sizeof(*f->w));
	f->w[f->nw++] = (struct dns_waiter){cb, id, slot};
	if (f->nw == 1) {
		if (d->nsent < DNS_MAX_SENT) {
			dns_send(f);
			dns_arm_timer(d);
		} else {
			f->queued = true;
			TAILQ_INSERT_TAIL(&d->queued, f, qentry);
		}
	}
}

/* This host's addresses, for loop detection: every interface's. */
static void
dns_self_addrs(struct mx_self *self)
{
	struct ifaddrs *ifa, *i;
	size_t cap = 0;

	if (getifaddrs(&ifa) < 0) {
		log_warn("dns: getifaddrs: %s; loops are detected by name only",
		    strerror(errno));
		return;
	}
	for (i = ifa; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL ||
		    (i->ifa_addr->sa_family != AF_INET &&
			i->ifa_addr->sa_family != AF_INET6))
			continue;
		self->addrs = xgrow(
		    self->addrs, &cap, self->naddrs + 1, sizeof(*self->addrs));
		memset(&self->addrs[self->naddrs], 0, sizeof(*self->addrs));
		memcpy(&self->addrs[self->naddrs++], i->ifa_addr,
		    i->ifa_addr->sa_family == AF_INET
			? sizeof(struct sockaddr_in)
			: sizeof(struct sockaddr_in6));
	}
	freeifaddrs(ifa);
}

/*
 * resolv.conf's servers again, after a config that named others: read by a
 * channel of its own and handed over (c-ares 1.18 has no ares_reinit).
 */
static int
dns_system_servers(struct dns *d)
{
	struct ares_addr_port_node *list = NULL;
	ares_channel tmp;
	int rc = ares_init(&tmp);

	if (rc == ARES_SUCCESS) {
		rc = ares_get_servers_ports(tmp, &list);
		ares_destroy(tmp);
	}
	if (rc == ARES_SUCCESS)
		rc = ares_set_servers_ports(d->channel, list);
	ares_free_data(list);
	if (rc != ARES_SUCCESS) {
		log_err("dns: servers of resolv.conf: %s", ares_strerror(rc));
		return -1;
	}
	log_debug("dns: servers of resolv.conf");
	return 0;
}

static int
dns_set_servers(struct dns *d, const struct conf *cf)
{
	char *csv;
	size_t len = 1;
	int rc;

	/* None: resolv.conf's, which a new channel has already. */
	if (cf->ndns_servers == 0)
		return d->cf != NULL && d->cf->ndns_servers > 0
			   ? dns_system_servers(d)
			   : 0;
	for (size_t i = 0; i < cf->ndns_servers; i++)
		len += strlen(cf->dns_servers[i].text) + 1;
	csv = xcalloc(1, len);
	for (size_t i = 0; i < cf->ndns_servers; i++) {
		if (i > 0)
			strcat(csv, ",");
		strcat(csv, cf->dns_servers[i].text);
	}
	rc = ares_set_servers_ports_csv(d->channel, csv);
	if (rc != ARES_SUCCESS) {
		log_err("dns: servers '%s': %s", csv, ares_strerror(rc));
		free(csv);
		return -1;
	}
	log_debug("dns: servers %s", csv);
	free(csv);
	return 0;
}

int
dns_new(struct dns **dp, const struct conf *cf, struct event_base *base)
{
	struct ares_options opts;
	struct dns *d;
	int rc;

	*dp = NULL;
	if (ares_lib_refs++ == 0 &&
	    (rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		ares_lib_refs--;
		log_err("dns: c-ares: %s", ares_strerror(rc));
		return -1;
	}
	d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->cf = cf;
	d->next_id = 1;
	TAILQ_INIT(&d->socks);
	TAILQ_INIT(&d->queued);
	for (size_t i = 0; i < DNS_NBUCKETS; i++) {
		TAILQ_INIT(&d->flights[i]);
		LIST_INIT(&d->req_ids[i]);
	}
	TAILQ_INIT(&d->reqs);
	TAILQ_INIT(&d->done);

	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = dns_on_sock_state;
	opts.sock_state_cb_data = d;
	opts.timeout = cf->dns_timeout_ms > 0 ? cf->dns_timeout_ms : 5000;
	opts.tries = cf->dns_tries > 0 ? (int)cf->dns_tries : 2;
	/* Names are fully qualified: no search list, no hosts file. */
	opts.flags = ARES_FLAG_NOSEARCH;
	opts.lookups = (char *)(uintptr_t) "b";
	rc = ares_init_options(&d->channel, &opts,
	    ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
		ARES_OPT_FLAGS | ARES_OPT_LOOKUPS);
	if (rc != ARES_SUCCESS) {
		log_err("dns: c-ares: %s", ares_strerror(rc));
		free(d);
		if (--ares_lib_refs == 0)
			ares_library_cleanup();
		return -1;
	}
	d->timer = evtimer_new(base, dns_on_timer, d);
	d->done_ev = event_new(base, -1, 0, dns_on_done, d);
	if (d->timer == NULL || d->done_ev == NULL)
		PANIC("evtimer_new failed");
	d->cache = dns_cache_new(cf->dns_cache_size);
	if (dns_set_conf(d, cf) < 0) {
		dns_free(d);
		return -1;
	}
	dns_self_addrs(&d->self);
	*dp = d;
	return 0;
}

int
dns_set_conf(struct dns *d, const struct conf *cf)
{
	if (dns_set_servers(d, cf) < 0)
		return -1;
	d->cf = cf;
	/* Borrowed from cf, which outlives this until the next call. */
	d->self.names = cf->mx_self_names;
	d->self.nnames = cf->nmx_self_names;
	return 0;
}

void
dns_free(struct dns *d)
{
	struct dns_flight *f;
	struct dns_sock *s;

	if (d == NULL)
		return;
	d->closing = true;
	dns_reqs_free(d);
	/* Runs every sent flight's callback with ARES_EDESTRUCTION. */
	ares_destroy(d->channel);
	while ((f = TAILQ_FIRST(&d->queued)) != NULL) {
		TAILQ_REMOVE(&d->queued, f, qentry);
		TAILQ_REMOVE(&d->flights[f->bucket], f, entry);
		dns_flight_free(f);
	}
	while ((s = TAILQ_FIRST(&d->socks)) != NULL) {
		TAILQ_REMOVE(&d->socks, s, entry);
		event_free(s->ev);
		free(s);
	}
	event_free(d->timer);
	event_free(d->done_ev);
	dns_cache_free(d->cache);
	free(d->self.addrs);
	free(d);
	if (--ares_lib_refs == 0)
		ares_library_cleanup();
}

void
dns_get_stats(const struct dns *d, struct dns_stats *st)
{
	*st = d->st;
	st->cache_size = dns_cache_count(d->cache);
}
