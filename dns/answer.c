/*
 * The answer for a domain as data: built by mx.c and route.c, handed to
 * callers, copied by those that keep it, and shown as JSON by mxroute and
 * `mxspoolctl route`.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmem.h"
#include "dns/dns_int.h"

const char *
dns_status_str(enum dns_status st)
{
	switch (st) {
	case DNS_OK:
		return "ok";
	case DNS_TEMPFAIL:
		return "tempfail";
	case DNS_PERMFAIL:
		return "permfail";
	}
	return "?";
}

void
dns_addr_fill(struct dns_addr *a, int family, const void *addr, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, addr, sizeof(sin->sin_addr));
		a->salen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, addr, sizeof(sin6->sin6_addr));
		a->salen = sizeof(*sin6);
	}
	inet_ntop(family, addr, a->text, sizeof(a->text));
}

void
dns_answer_set(struct dns_answer *a, enum dns_status st, const char *dsn,
    const char *fmt, ...)
{
	va_list ap;
	char buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(a->reason);
	a->reason = xstrdup(buf);
	a->status = st;
	a->dsn = dsn;
}

void
dns_answer_add_drop(
    struct dns_answer *a, const char *name, int pref, const char *fmt, ...)
{
	struct dns_drop *d;
	va_list ap;
	char buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	a->drops = xrealloc(a->drops, (a->ndrops + 1) * sizeof(*d));
	d = &a->drops[a->ndrops++];
	d->name = xstrdup(name);
	d->pref = pref;
	d->why = xstrdup(buf);
}

void
dns_answer_fini(struct dns_answer *a)
{
	free(a->domain);
	free(a->reason);
	free(a->route);
	free(a->path);
	for (size_t i = 0; i < a->nhosts; i++) {
		free(a->hosts[i].name);
		free(a->hosts[i].addrs);
	}
	free(a->hosts);
	for (size_t i = 0; i < a->ndrops; i++) {
		free(a->drops[i].name);
		free(a->drops[i].why);
	}
	free(a->drops);
	memset(a, 0, sizeof(*a));
}

void
dns_answer_free(struct dns_answer *a)
{
	if (a == NULL)
		return;
	dns_answer_fini(a);
	free(a);
}

static char *
dns_strdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct dns_answer *
dns_answer_dup(const struct dns_answer *a)
{
	struct dns_answer *c = xcalloc(1, sizeof(*c));

	*c = *a;
	c->domain = dns_strdup_or_null(a->domain);
	c->reason = dns_strdup_or_null(a->reason);
	c->route = dns_strdup_or_null(a->route);
	c->path = dns_strdup_or_null(a->path);
	c->hosts = xcalloc(a->nhosts, sizeof(*c->hosts));
	for (size_t i = 0; i < a->nhosts; i++) {
		c->hosts[i] = a->hosts[i];
		c->hosts[i].name = xstrdup(a->hosts[i].name);
		c->hosts[i].addrs =
		    xcalloc(a->hosts[i].naddrs, sizeof(struct dns_addr));
		memcpy(c->hosts[i].addrs, a->hosts[i].addrs,
		    a->hosts[i].naddrs * sizeof(struct dns_addr));
	}
	c->drops = xcalloc(a->ndrops, sizeof(*c->drops));
	for (size_t i = 0; i < a->ndrops; i++) {
		c->drops[i].name = xstrdup(a->drops[i].name);
		c->drops[i].pref = a->drops[i].pref;
		c->drops[i].why = xstrdup(a->drops[i].why);
	}
	return c;
}

static const char *
dns_kind_str(enum route_kind k)
{
	switch (k) {
	case ROUTE_MX:
		return "mx";
	case ROUTE_SMTP:
		return "smtp";
	case ROUTE_LMTP:
		return "lmtp";
	case ROUTE_LMTP_UNIX:
		return "lmtp-unix";
	}
	return "?";
}

json_t *
dns_answer_json(const struct dns_answer *a)
{
	json_t *o = json_object(), *hosts = json_array(), *drops = json_array();

	json_object_set_new(
	    o, "domain", json_string(a->domain ? a->domain : ""));
	json_object_set_new(
	    o, "status", json_string(dns_status_str(a->status)));
	json_object_set_new(o, "dsn", json_string(a->dsn ? a->dsn : ""));
	json_object_set_new(
	    o, "reason", json_string(a->reason ? a->reason : ""));
	json_object_set_new(o, "kind", json_string(dns_kind_str(a->kind)));
	json_object_set_new(
	    o, "route", json_string(a->route ? a->route : "mx"));
	if (a->path != NULL)
		json_object_set_new(o, "path", json_string(a->path));
	json_object_set_new(o, "implicit_mx", json_boolean(a->implicit_mx));
	json_object_set_new(o, "loop", json_boolean(a->loop));
	for (size_t i = 0; i < a->nhosts; i++) {
		const struct dns_host *h = &a->hosts[i];
		json_t *ho = json_object(), *addrs = json_array();

		json_object_set_new(ho, "name", json_string(h->name));
		json_object_set_new(ho, "pref", json_integer(h->pref));
		json_object_set_new(ho, "port", json_integer(h->port));
		for (size_t j = 0; j < h->naddrs; j++)
			json_array_append_new(
			    addrs, json_string(h->addrs[j].text));
		json_object_set_new(ho, "addresses", addrs);
		json_array_append_new(hosts, ho);
	}
	json_object_set_new(o, "candidates", hosts);
	for (size_t i = 0; i < a->ndrops; i++) {
		json_t *d = json_object();

		json_object_set_new(d, "name", json_string(a->drops[i].name));
		json_object_set_new(d, "pref", json_integer(a->drops[i].pref));
		json_object_set_new(d, "why", json_string(a->drops[i].why));
		json_array_append_new(drops, d);
	}
	json_object_set_new(o, "dropped", drops);
	return o;
}
