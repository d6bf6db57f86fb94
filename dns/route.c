/*
 * Lookups as callers see them: dns_route() (where mail for a domain goes)
 * and dns_ptr() (a client's name). Each is a request with an id; the
 * record lookups it starts (resolve.c) answer to that id, so a request
 * cancelled in the meantime is simply not found. Finished requests wait on
 * a done list until the loop runs their callbacks: a caller is never called
 * back from inside its own call.
 *
 * A route request: the static route from the config, else the MX records
 * (or the implicit MX), then the A and AAAA records of every host at once,
 * then the ranking rules of mx.c.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/idn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmem.h"
#include "dns/dns_int.h"

#define SLOT_MX (-1)

enum req_kind { REQ_ROUTE, REQ_PTR };

struct req_host {
	char *name;
	int pref;
	struct dns_addr addrs[2 * DNS_MAX_ADDRS];
	size_t naddrs;
	enum dns_rc rc4, rc6;
	char why[160];
};

struct dns_req {
	TAILQ_ENTRY(dns_req) entry; /* d->reqs or d->done */
	LIST_ENTRY(dns_req) hentry; /* d->req_ids while pending */
	struct dns *d;
	uint64_t id;
	enum req_kind kind;
	int64_t started_ms;

	/* REQ_ROUTE */
	dns_route_cb *cb;
	void *arg;
	struct dns_answer ans;
	char *mxname;    /* whose MX records are wanted */
	bool check_self; /* delivery to port 25 by MX: loops are possible */
	uint16_t port;
	struct req_host *hosts;
	size_t nhosts;
	int pending;   /* record lookups not yet answered */
	bool starting; /* still starting lookups: do not rank yet */

	/* REQ_PTR */
	dns_ptr_cb *pcb;
	struct event *timer;
	enum dns_status pst;
	char *pname;
	char *claimed; /* the PTR name, until its addresses confirm it */
	int family;    /* the client's, v4-mapped counted as AF_INET */
	unsigned char addr[16];
	char rev[80]; /* the reverse name, for the log */
};

static void dns_req_on_rrset(
    struct dns *d, uint64_t id, int slot, const struct dns_rrset *s);

static struct dns_req *
dns_req_new(struct dns *d, enum req_kind kind)
{
	struct dns_req *r = xcalloc(1, sizeof(*r));

	r->d = d;
	r->id = d->next_id++;
	r->kind = kind;
	r->started_ms = dns_now_ms();
	TAILQ_INSERT_TAIL(&d->reqs, r, entry);
	LIST_INSERT_HEAD(&d->req_ids[r->id & (DNS_NBUCKETS - 1)], r, hentry);
	d->st.requests++;
	return r;
}

static void
dns_req_free(struct dns_req *r)
{
	dns_answer_fini(&r->ans);
	free(r->mxname);
	for (size_t i = 0; i < r->nhosts; i++)
		free(r->hosts[i].name);
	free(r->hosts);
	if (r->timer != NULL)
		event_free(r->timer);
	free(r->pname);
	free(r->claimed);
	free(r);
}

static struct dns_req *
dns_req_find(struct dns *d, uint64_t id)
{
	struct dns_req *r;

	LIST_FOREACH(r, &d->req_ids[id & (DNS_NBUCKETS - 1)], hentry)
	{
		if (r->id == id)
			return r;
	}
	return NULL;
}

/* Queues the callback for the loop. */
static void
dns_req_finish(struct dns_req *r)
{
	struct dns *d = r->d;

	if (r->kind == REQ_ROUTE)
		log_debug("dns: route %s: %s %s (%s), %zu hosts, %zu dropped, "
			  "%lld ms",
		    r->ans.domain, dns_status_str(r->ans.status), r->ans.dsn,
		    r->ans.reason, r->ans.nhosts, r->ans.ndrops,
		    (long long)(dns_now_ms() - r->started_ms));
	TAILQ_REMOVE(&d->reqs, r, entry);
	LIST_REMOVE(r, hentry);
	TAILQ_INSERT_TAIL(&d->done, r, entry);
	event_active(d->done_ev, EV_TIMEOUT, 0);
}

void
dns_on_done(int fd, short what, void *arg)
{
	struct dns *d = arg;
	struct dns_req *r;

	(void)fd;
	(void)what;
	while ((r = TAILQ_FIRST(&d->done)) != NULL) {
		TAILQ_REMOVE(&d->done, r, entry);
		d->st.requests--;
		if (r->kind == REQ_ROUTE) {
			metrics_dns(dns_status_str(r->ans.status));
			r->cb(r->arg, &r->ans);
		} else
			r->pcb(r->arg, r->pst, r->pname);
		dns_req_free(r);
	}
}

void
dns_cancel(struct dns *d, uint64_t id)
{
	struct dns_req *r;

	if (id == 0)
		return;
	if ((r = dns_req_find(d, id)) != NULL) {
		TAILQ_REMOVE(&d->reqs, r, entry);
		LIST_REMOVE(r, hentry);
	} else {
		TAILQ_FOREACH(r, &d->done, entry)
		{
			if (r->id == id)
				break;
		}
		if (r == NULL)
			return;
		TAILQ_REMOVE(&d->done, r, entry);
	}
	d->st.requests--;
	dns_req_free(r);
}

void
dns_reqs_free(struct dns *d)
{
	struct dns_req *r;

	while ((r = TAILQ_FIRST(&d->reqs)) != NULL) {
		TAILQ_REMOVE(&d->reqs, r, entry);
		LIST_REMOVE(r, hentry);
		dns_req_free(r);
	}
	while ((r = TAILQ_FIRST(&d->done)) != NULL) {
		TAILQ_REMOVE(&d->done, r, entry);
		dns_req_free(r);
	}
	d->st.requests = 0;
}

static uint32_t
dns_rand(void *arg, uint32_t bound)
{
	(void)arg;
	return arc4random_uniform(bound);
}

static void
dns_req_rank(struct dns_req *r)
{
	struct dns *d = r->d;
	struct mx_in *in = xcalloc(r->nhosts, sizeof(*in));
	struct mx_rank_opts o = {
	    .self = r->check_self ? &d->self : NULL,
	    .prefer_ipv6 = d->cf->dns_prefer_ipv6,
	    .port = r->port,
	    .implicit = r->ans.implicit_mx,
	    .rnd = dns_rand,
	};

	for (size_t i = 0; i < r->nhosts; i++) {
		struct req_host *h = &r->hosts[i];

		in[i].name = h->name;
		in[i].pref = h->pref;
		in[i].addrs = h->addrs;
		in[i].naddrs = h->naddrs;
		in[i].rc = mx_addr_rc(h->rc4, h->rc6, h->naddrs);
		in[i].why = h->why[0] ? h->why : NULL;
	}
	mx_rank(&r->ans, r->ans.domain, in, r->nhosts, &o);
	free(in);
	if (r->ans.kind != ROUTE_MX && r->ans.status == DNS_PERMFAIL) {
		/* A static route that does not resolve is the config's
		 * fault, not the sender's: hold the mail. */
		r->ans.status = DNS_TEMPFAIL;
		r->ans.dsn = "4.4.4";
	}
	if (r->ans.loop) {
		char drops[512] = "";

		for (size_t i = 0; i < r->ans.ndrops; i++) {
			size_t len = strlen(drops);

			snprintf(drops + len, sizeof(drops) - len, "%s%s %d",
			    i ? ", " : "", r->ans.drops[i].name,
			    r->ans.drops[i].pref);
		}
		log_warn("dns: mail for %s loops back to myself (MX: %s); "
			 "deferred",
		    r->ans.domain, drops);
	}
	dns_req_finish(r);
}

static void
dns_req_add_host(struct dns_req *r, const char *name, int pref)
{
	struct req_host *h;

	r->hosts = xrealloc(r->hosts, (r->nhosts + 1) * sizeof(*h));
	h = &r->hosts[r->nhosts++];
	memset(h, 0, sizeof(*h));
	h->name = xstrdup(name);
	h->pref = pref;
	h->rc4 = h->rc6 = DNS_RC_NODATA;
}

/* Starts the A and AAAA lookups of every host; ranks when all are in. */
static void
dns_req_lookup_hosts(struct dns_req *r)
{
	struct dns *d = r->d;
	uint64_t id = r->id;
	unsigned char buf[16];

	r->starting = true;
	r->pending = 0;
	for (size_t i = 0; i < r->nhosts; i++) {
		struct req_host *h = &r->hosts[i];

		if (h->name[0] == '\0' || strcmp(h->name, ".") == 0)
			continue;
		if (inet_pton(AF_INET, h->name, buf) == 1) {
			dns_addr_fill(&h->addrs[h->naddrs++], AF_INET, buf, 0);
			h->rc4 = DNS_RC_OK;
		} else if (inet_pton(AF_INET6, h->name, buf) == 1) {
			dns_addr_fill(&h->addrs[h->naddrs++], AF_INET6, buf, 0);
			h->rc6 = DNS_RC_OK;
		} else {
			r->pending += 2;
		}
	}
	for (size_t i = 0; i < r->nhosts; i++) {
		struct req_host *h = &r->hosts[i];

		if (h->naddrs > 0 || h->name[0] == '\0' ||
		    strcmp(h->name, ".") == 0)
			continue;
		/* Answers from the cache come back at once, into r. */
		dns_lookup(
		    d, DNS_T_A, h->name, dns_req_on_rrset, id, (int)(2 * i));
		dns_lookup(d, DNS_T_AAAA, h->name, dns_req_on_rrset, id,
		    (int)(2 * i + 1));
	}
	r->starting = false;
	if (r->pending == 0)
		dns_req_rank(r);
}

/*
 * The MX hosts, best first so that a long list is cut at its worst end:
 * whatever is cut is no better than what is kept, and so no better than
 * this host if this host was kept.
 */
static void
dns_req_add_mx_hosts(struct dns_req *r, const struct dns_rrset *s)
{
	size_t *idx = xcalloc(s->nrr, sizeof(*idx));

	for (size_t i = 0; i < s->nrr; i++) {
		size_t j = i;

		while (j > 0 && s->rr[idx[j - 1]].pref > s->rr[i].pref) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = i;
	}
	for (size_t i = 0; i < s->nrr; i++) {
		const struct dns_rr *rr = &s->rr[idx[i]];

		if (i < DNS_MAX_MX)
			dns_req_add_host(r, rr->name, rr->pref);
		else
			dns_answer_add_drop(&r->ans, rr->name, rr->pref,
			    "beyond the best %d MX", DNS_MAX_MX);
	}
	free(idx);
}

static void
dns_req_on_mx(struct dns_req *r, const struct dns_rrset *s)
{
	struct dns_answer *a = &r->ans;
	const char *name = r->mxname;
	bool route = a->kind != ROUTE_MX;

	switch (mx_classify(s)) {
	case MX_TEMP:
		dns_answer_set(a, DNS_TEMPFAIL, "4.4.3",
		    "MX lookup for %s failed: %s", name,
		    s->why ? s->why : "temporary failure");
		dns_req_finish(r);
		return;
	case MX_NXDOMAIN:
		if (route)
			dns_answer_set(a, DNS_TEMPFAIL, "4.4.4",
			    "route host %s does not exist (NXDOMAIN)", name);
		else
			dns_answer_set(a, DNS_PERMFAIL, "5.1.2",
			    "domain %s does not exist (NXDOMAIN)", name);
		dns_req_finish(r);
		return;
	case MX_NULL:
		if (route)
			dns_answer_set(a, DNS_TEMPFAIL, "4.4.4",
			    "route host %s has a null MX", name);
		else
			dns_answer_set(a, DNS_PERMFAIL, "5.1.10",
			    "domain %s accepts no mail (null MX, RFC 7505)",
			    name);
		dns_req_finish(r);
		return;
	case MX_IMPLICIT:
		a->implicit_mx = true;
		dns_req_add_host(r, name, 0);
		break;
	case MX_USE_LIST:
		dns_req_add_mx_hosts(r, s);
		break;
	}
	dns_req_lookup_hosts(r);
}

static void
dns_req_on_addrs(struct dns_req *r, int slot, const struct dns_rrset *s)
{
	struct req_host *h = &r->hosts[slot / 2];
	bool v6 = slot % 2 == 1;
	size_t len;

	if (v6)
		h->rc6 = s->rc;
	else
		h->rc4 = s->rc;
	for (size_t i = 0; i < s->nrr && h->naddrs < 2 * DNS_MAX_ADDRS; i++)
		dns_addr_fill(
		    &h->addrs[h->naddrs++], s->rr[i].family, s->rr[i].addr, 0);
	if (s->rc != DNS_RC_OK) {
		len = strlen(h->why);
		snprintf(h->why + len, sizeof(h->why) - len, "%s%s: %s",
		    len ? ", " : "", v6 ? "AAAA" : "A",
		    s->rc == DNS_RC_TEMP && s->why ? s->why
						   : dns_rc_str(s->rc));
	}
}

static void
dns_ptr_finish(struct dns_req *r, enum dns_status st, const char *name)
{
	if (r->timer != NULL)
		evtimer_del(r->timer);
	r->pst = st;
	r->pname = name ? xstrdup(name) : NULL;
	log_debug("dns: PTR %s: %s%s%s", r->rev, dns_status_str(st),
	    name ? " " : "", name ? name : "");
	dns_req_finish(r);
}

/*
 * A PTR name is only believed when the name's own addresses include the
 * client's (forward-confirmed): anyone can put any name in the reverse
 * zone of their own addresses. Slot 0 is the PTR answer, slot 1 the A or
 * AAAA answer for the name it gave.
 */
static void
dns_ptr_on_rrset(struct dns_req *r, int slot, const struct dns_rrset *s)
{
	if (s->rc == DNS_RC_TEMP) {
		dns_ptr_finish(r, DNS_TEMPFAIL, NULL);
		return;
	}
	if (slot == 0) {
		if (s->rc != DNS_RC_OK || s->nrr == 0 ||
		    !conf_valid_domain(s->rr[0].name)) {
			dns_ptr_finish(r, DNS_PERMFAIL, NULL);
			return;
		}
		r->claimed = xstrdup(s->rr[0].name);
		dns_lookup(r->d, r->family == AF_INET ? DNS_T_A : DNS_T_AAAA,
		    r->claimed, dns_req_on_rrset, r->id, 1);
		return;
	}
	for (size_t i = 0; i < s->nrr; i++) {
		if (s->rr[i].family == r->family &&
		    memcmp(s->rr[i].addr, r->addr,
			r->family == AF_INET ? 4 : 16) == 0) {
			dns_ptr_finish(r, DNS_OK, r->claimed);
			return;
		}
	}
	log_info("dns: PTR %s: name %s does not resolve back to the address",
	    r->rev, r->claimed);
	dns_ptr_finish(r, DNS_PERMFAIL, NULL);
}

static void
dns_req_on_rrset(
    struct dns *d, uint64_t id, int slot, const struct dns_rrset *s)
{
	struct dns_req *r = dns_req_find(d, id);

	if (r == NULL) /* cancelled, or a PTR that timed out */
		return;
	if (r->kind == REQ_PTR) {
		dns_ptr_on_rrset(r, slot, s);
		return;
	}
	if (slot == SLOT_MX) {
		dns_req_on_mx(r, s);
		return;
	}
	dns_req_on_addrs(r, slot, s);
	if (--r->pending == 0 && !r->starting)
		dns_req_rank(r);
}

uint64_t
dns_route(struct dns *d, const char *domain, dns_route_cb *cb, void *arg)
{
	return dns_route_via(d, domain, NULL, cb, arg);
}

uint64_t
dns_route_via(struct dns *d, const char *domain, const struct conf_route *via,
    dns_route_cb *cb, void *arg)
{
	struct dns_req *r = dns_req_new(d, REQ_ROUTE);
	const struct conf_route *rt;
	struct dns_answer *a = &r->ans;
	uint64_t id = r->id;
	char ace[IDN_NAME_SIZE], why[128];
	int bad;
	size_t len;

	r->cb = cb;
	r->arg = arg;
	a->domain = xstrdup(domain);
	len = strlen(a->domain);
	if (len > 0 && a->domain[len - 1] == '.')
		a->domain[len - 1] = '\0';
	/* Routes, the cache and DNS itself know a name by its A-labels
	 * (RFC 5890 2.3.2.1); c-ares cannot take UTF-8. */
	bad = idn_to_ascii(a->domain, ace, sizeof(ace), why, sizeof(why));
	if (bad == 0) {
		free(a->domain);
		a->domain = xstrdup(ace);
	} else {
		for (char *p = a->domain; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	rt = via != NULL ? via : conf_route_for(d->cf, a->domain);
	a->kind = rt->kind;
	a->route = xstrdup(rt->text ? rt->text : "mx");
	if (bad < 0) {
		dns_answer_set(a, DNS_PERMFAIL, "5.1.2",
		    "bad domain name '%s': %s", a->domain, why);
		dns_req_finish(r);
		return id;
	}
	switch (rt->kind) {
	case ROUTE_LMTP_UNIX:
		a->path = xstrdup(rt->path);
		dns_answer_set(a, DNS_OK, "2.0.0", "static route %s", a->route);
		dns_req_finish(r);
		return id;
	case ROUTE_SMTP:
	case ROUTE_LMTP:
		r->port = rt->port;
		if (rt->bracketed) {
			/* [host]: its addresses as they are, no MX rules. */
			dns_req_add_host(r, rt->host, -1);
			dns_req_lookup_hosts(r);
			return id;
		}
		r->mxname = xstrdup(rt->host);
		/* Only SMTP to port 25 can come back to this host. */
		r->check_self = rt->kind == ROUTE_SMTP && rt->port == 25;
		break;
	case ROUTE_MX:
		r->port = 25;
		r->mxname = xstrdup(a->domain);
		r->check_self = true;
		break;
	}
	dns_lookup(d, DNS_T_MX, r->mxname, dns_req_on_rrset, id, SLOT_MX);
	return id;
}

static void
dns_ptr_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req *r = arg;

	(void)fd;
	(void)what;
	/* The query goes on; its answer will find no request. */
	dns_ptr_finish(r, DNS_TEMPFAIL, NULL);
}

uint64_t
dns_ptr(struct dns *d, const struct sockaddr *sa, unsigned timeout_ms,
    dns_ptr_cb *cb, void *arg)
{
	struct dns_req *r = dns_req_new(d, REQ_PTR);
	uint64_t id = r->id;
	const unsigned char *b;
	struct timeval tv;

	r->pcb = cb;
	r->arg = arg;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		b = s6->sin6_addr.s6_addr;
		r->family = AF_INET6;
		memcpy(r->addr, b, 16);
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			r->family = AF_INET;
			memcpy(r->addr, b + 12, 4);
			snprintf(r->rev, sizeof(r->rev),
			    "%u.%u.%u.%u.in-addr.arpa", b[15], b[14], b[13],
			    b[12]);
		} else {
			char *p = r->rev;

			for (int i = 15; i >= 0; i--) {
				snprintf(p, 5, "%x.%x.", b[i] & 15, b[i] >> 4);
				p += 4;
			}
			strcpy(p, "ip6.arpa");
		}
	} else if (sa->sa_family == AF_INET) {
		b = (const unsigned char *)&((const struct sockaddr_in *)sa)
			->sin_addr;
		r->family = AF_INET;
		memcpy(r->addr, b, 4);
		snprintf(r->rev, sizeof(r->rev), "%u.%u.%u.%u.in-addr.arpa",
		    b[3], b[2], b[1], b[0]);
	} else {
		dns_ptr_finish(r, DNS_PERMFAIL, NULL);
		return id;
	}
	r->timer = evtimer_new(d->base, dns_ptr_on_timeout, r);
	if (r->timer == NULL)
		PANIC("evtimer_new failed");
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(r->timer, &tv);
	dns_lookup(d, DNS_T_PTR, r->rev, dns_req_on_rrset, id, 0);
	return id;
}
