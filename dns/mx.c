/*
 * The MX ranking rules, as pure functions: no DNS, no event loop, so the
 * unit tests can feed them every case.
 *
 * RFC 5321 5.1: hosts are tried in order of preference, those of equal
 * preference in random order. A backup MX must only hand mail to an MX that
 * is better than itself: when this host is in the list, it and every MX of
 * equal or worse preference are dropped. If nothing better is left, sending
 * on would loop, so the mail waits (a temporary failure) instead of being
 * bounced: the primary may come back.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xmem.h"
#include "dns/dns_int.h"

enum mx_next
mx_classify(const struct dns_rrset *mx)
{
	switch (mx->rc) {
	case DNS_RC_TEMP:
		return MX_TEMP;
	case DNS_RC_NXDOMAIN:
		return MX_NXDOMAIN;
	case DNS_RC_NODATA:
		return MX_IMPLICIT;
	case DNS_RC_OK:
		break;
	}
	if (mx->nrr == 0)
		return MX_IMPLICIT;
	/*
	 * RFC 7505: a single MX whose target is the root says the domain
	 * takes no mail. Among other MX records it is an error in the zone;
	 * mx_rank() then drops that record and uses the others.
	 */
	if (mx->nrr == 1 &&
	    (mx->rr[0].name[0] == '\0' || strcmp(mx->rr[0].name, ".") == 0))
		return MX_NULL;
	return MX_USE_LIST;
}

enum dns_rc
mx_addr_rc(enum dns_rc a, enum dns_rc aaaa, size_t naddrs)
{
	if (naddrs > 0)
		return DNS_RC_OK;
	if (a == DNS_RC_TEMP || aaaa == DNS_RC_TEMP)
		return DNS_RC_TEMP;
	if (a == DNS_RC_NXDOMAIN && aaaa == DNS_RC_NXDOMAIN)
		return DNS_RC_NXDOMAIN;
	return DNS_RC_NODATA;
}

static size_t
mx_name_len(const char *name)
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	return n;
}

bool
mx_is_self_name(const struct mx_self *self, const char *name)
{
	size_t n = mx_name_len(name);

	if (self == NULL || n == 0)
		return false;
	for (size_t i = 0; i < self->nnames; i++) {
		const char *s = self->names[i];

		if (mx_name_len(s) == n && strncasecmp(s, name, n) == 0)
			return true;
	}
	return false;
}

bool
mx_is_self_addr(const struct mx_self *self, const struct sockaddr *sa)
{
	if (self == NULL)
		return false;
	for (size_t i = 0; i < self->naddrs; i++) {
		const struct sockaddr *s =
		    (const struct sockaddr *)&self->addrs[i];

		if (s->sa_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET &&
		    memcmp(&((const struct sockaddr_in *)s)->sin_addr,
			&((const struct sockaddr_in *)sa)->sin_addr,
			sizeof(struct in_addr)) == 0)
			return true;
		if (sa->sa_family == AF_INET6 &&
		    memcmp(&((const struct sockaddr_in6 *)s)->sin6_addr,
			&((const struct sockaddr_in6 *)sa)->sin6_addr,
			sizeof(struct in6_addr)) == 0)
			return true;
	}
	return false;
}

void
mx_order_addrs(struct dns_addr *a, size_t n, bool prefer_ipv6)
{
	int first = prefer_ipv6 ? AF_INET6 : AF_INET;
	struct dns_addr *tmp;
	size_t k = 0;

	if (n < 2)
		return;
	/* A stable partition: within a family, the DNS order stays. */
	tmp = xcalloc(n, sizeof(*tmp));
	for (size_t i = 0; i < n; i++)
		if (a[i].sa.ss_family == first)
			tmp[k++] = a[i];
	for (size_t i = 0; i < n; i++)
		if (a[i].sa.ss_family != first)
			tmp[k++] = a[i];
	memcpy(a, tmp, n * sizeof(*a));
	free(tmp);
}

/* Why in is this host, or NULL if it is not. */
static const char *
mx_self_why(
    const struct mx_self *self, const struct mx_in *in, char *buf, size_t len)
{
	if (self == NULL)
		return NULL;
	if (mx_is_self_name(self, in->name)) {
		snprintf(buf, len, "is this host (a name in mx_self_names)");
		return buf;
	}
	for (size_t i = 0; i < in->naddrs; i++) {
		if (mx_is_self_addr(
			self, (const struct sockaddr *)&in->addrs[i].sa)) {
			snprintf(buf, len,
			    "is this host (its address %s is local)",
			    in->addrs[i].text);
			return buf;
		}
	}
	return NULL;
}

/* Sorts by preference, keeping the input order among equals. */
static void
mx_sort(size_t *idx, const struct mx_in *in, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		size_t v = idx[i], j = i;

		while (j > 0 && in[idx[j - 1]].pref > in[v].pref) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = v;
	}
}

/* Shuffles each run of equal preference (Fisher-Yates). */
static void
mx_shuffle(
    size_t *idx, const struct mx_in *in, size_t n, const struct mx_rank_opts *o)
{
	size_t start = 0;

	if (o->rnd == NULL)
		return;
	while (start < n) {
		size_t end = start + 1;

		while (end < n && in[idx[end]].pref == in[idx[start]].pref)
			end++;
		for (size_t i = end - start; i > 1; i--) {
			size_t j = o->rnd(o->rnd_arg, (uint32_t)i);
			size_t t = idx[start + i - 1];

			idx[start + i - 1] = idx[start + j];
			idx[start + j] = t;
		}
		start = end;
	}
}

static void
mx_add_host(struct dns_answer *out, const struct mx_in *in,
    const struct mx_rank_opts *o)
{
	struct dns_host *h;

	out->hosts = xrealloc(out->hosts, (out->nhosts + 1) * sizeof(*h));
	h = &out->hosts[out->nhosts++];
	h->name = xstrdup(in->name);
	h->pref = in->pref;
	h->port = o->port;
	h->naddrs = in->naddrs;
	h->addrs = xcalloc(in->naddrs, sizeof(*h->addrs));
	for (size_t i = 0; i < in->naddrs; i++) {
		struct sockaddr *sa;

		h->addrs[i] = in->addrs[i];
		sa = (struct sockaddr *)&h->addrs[i].sa;
		if (sa->sa_family == AF_INET)
			((struct sockaddr_in *)sa)->sin_port = htons(o->port);
		else if (sa->sa_family == AF_INET6)
			((struct sockaddr_in6 *)sa)->sin6_port = htons(o->port);
	}
	mx_order_addrs(h->addrs, h->naddrs, o->prefer_ipv6);
}

enum dns_status
mx_rank(struct dns_answer *out, const char *domain, const struct mx_in *in,
    size_t n, const struct mx_rank_opts *o)
{
	size_t *idx = xcalloc(n, sizeof(*idx));
	int self_pref = INT_MAX, unsure_pref = INT_MAX, cut;
	size_t nbetter = 0, ntemp = 0;
	char why[128];

	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	mx_sort(idx, in, n);
	mx_shuffle(idx, in, n, o);

	for (size_t i = 0; i < n; i++) {
		const struct mx_in *h = &in[idx[i]];

		if (h->name[0] != '\0' && h->pref < self_pref &&
		    mx_self_why(o->self, h, why, sizeof(why)) != NULL)
			self_pref = h->pref;
		/*
		 * A host whose addresses are unknown for now may be this host
		 * (known by address only): nothing of its preference or worse
		 * is safe to hand mail to (RFC 5321 5.1), or two backups could
		 * pass mail back and forth.
		 */
		if (h->rc == DNS_RC_TEMP && h->pref < unsure_pref)
			unsure_pref = h->pref;
	}
	cut = self_pref < unsure_pref ? self_pref : unsure_pref;

	for (size_t i = 0; i < n; i++) {
		const struct mx_in *h = &in[idx[i]];
		const char *self_why;

		if (h->name[0] == '\0' || strcmp(h->name, ".") == 0) {
			dns_answer_add_drop(out, ".", h->pref,
			    "null MX among other MX records (RFC 7505)");
			continue;
		}
		if (h->pref >= cut && h->pref < self_pref) {
			ntemp++;
			if (h->rc == DNS_RC_TEMP)
				dns_answer_add_drop(out, h->name, h->pref,
				    "address lookup failed (%s)",
				    h->why ? h->why : "temporary failure");
			else
				dns_answer_add_drop(out, h->name, h->pref,
				    "not better than an MX whose address is "
				    "unknown (it may be this host)");
			continue;
		}
		if (h->pref >= self_pref) {
			self_why = mx_self_why(o->self, h, why, sizeof(why));
			if (self_why != NULL)
				dns_answer_add_drop(
				    out, h->name, h->pref, "%s", self_why);
			else
				dns_answer_add_drop(out, h->name, h->pref,
				    "preference %d is not better than this "
				    "host's %d",
				    h->pref, self_pref);
			continue;
		}
		nbetter++;
		switch (h->rc) {
		case DNS_RC_OK:
			mx_add_host(out, h, o);
			break;
		case DNS_RC_TEMP:
			ntemp++;
			dns_answer_add_drop(out, h->name, h->pref,
			    "address lookup failed (%s)",
			    h->why ? h->why : "temporary failure");
			break;
		case DNS_RC_NODATA:
		case DNS_RC_NXDOMAIN:
			dns_answer_add_drop(out, h->name, h->pref,
			    "no address (%s)",
			    h->why ? h->why : "no A or AAAA");
			break;
		}
	}
	free(idx);

	if (out->nhosts > 0) {
		dns_answer_set(out, DNS_OK, "2.0.0", "%zu host%s, best %s",
		    out->nhosts, out->nhosts == 1 ? "" : "s",
		    out->hosts[0].name);
	} else if (self_pref != INT_MAX && nbetter == 0) {
		out->loop = true;
		dns_answer_set(out, DNS_TEMPFAIL, "4.4.6",
		    "mail for %s loops back to myself", domain);
	} else if (ntemp > 0) {
		dns_answer_set(out, DNS_TEMPFAIL, "4.4.3",
		    "address lookup failed for every %s of %s",
		    o->implicit ? "address" : "MX host", domain);
	} else if (self_pref != INT_MAX) {
		/*
		 * Better MXes exist but have no address: a broken zone. As a
		 * backup for this domain, hold the mail until it is fixed
		 * (max_age still bounds the wait) rather than bounce it.
		 */
		dns_answer_set(out, DNS_TEMPFAIL, "4.4.4",
		    "no MX host of %s better than this host has an address",
		    domain);
	} else if (o->implicit) {
		dns_answer_set(out, DNS_PERMFAIL, "5.4.4",
		    "%s has no MX, A or AAAA records", domain);
	} else if (n == 0) {
		dns_answer_set(
		    out, DNS_TEMPFAIL, "4.4.3", "no MX hosts for %s", domain);
	} else {
		dns_answer_set(out, DNS_PERMFAIL, "5.4.4",
		    "no MX host of %s has an address", domain);
	}
	return out->status;
}
