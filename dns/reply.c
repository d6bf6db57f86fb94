/*
 * Reading DNS replies: the untrusted bytes c-ares hands back, turned into
 * a record set (records, or why there are none) with the TTL it may be
 * cached for. Pure: c-ares's parsers and no event loop, so that unit
 * tests and fuzzers drive it with replies of their own.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmem.h"
#include "dns/dns_int.h"

static unsigned
dns_get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* RFC 2181 8: a TTL with the top bit set counts as zero. */
static int64_t
dns_ttl(uint32_t v)
{
	return (v & 0x80000000u) ? 0 : (int64_t)v;
}

/* Skips the name at off; false if it runs past the reply or is bad. */
static bool
dns_skip_name(const unsigned char *buf, size_t len, size_t *off)
{
	char *name;
	long enc;

	if (*off >= len || ares_expand_name(buf + *off, buf, (int)len, &name,
			       &enc) != ARES_SUCCESS)
		return false;
	ares_free_string(name);
	*off += (size_t)enc;
	return *off <= len;
}

/*
 * Walks a reply: the smallest TTL of the answer records of type, and the
 * RFC 2308 negative TTL (min of the SOA's TTL and MINIMUM) from the
 * authority section. A reply that is cut short or malformed gives -1 for
 * both: nothing from it is cached.
 */
void
dns_reply_ttls(const unsigned char *buf, int len, int type, int64_t *ans_ttl,
    int64_t *neg_ttl)
{
	size_t off = HFIXEDSZ, n = len > 0 ? (size_t)len : 0;
	unsigned qd, an, ns;
	int64_t ans = -1, neg = -1;

	*ans_ttl = *neg_ttl = -1;
	if (buf == NULL || n < HFIXEDSZ)
		return;
	qd = dns_get16(buf + 4);
	an = dns_get16(buf + 6);
	ns = dns_get16(buf + 8);
	for (unsigned i = 0; i < qd; i++) {
		if (!dns_skip_name(buf, n, &off) || n - off < QFIXEDSZ)
			return;
		off += QFIXEDSZ;
	}
	for (unsigned i = 0; i < an + ns; i++) {
		unsigned rtype, rdlen;
		int64_t ttl;

		if (!dns_skip_name(buf, n, &off) || n - off < RRFIXEDSZ)
			return;
		rtype = dns_get16(buf + off);
		ttl = dns_ttl(dns_get32(buf + off + 4));
		rdlen = dns_get16(buf + off + 8);
		off += RRFIXEDSZ;
		if (n - off < rdlen)
			return;
		if (i < an && (int)rtype == type && (ans < 0 || ttl < ans))
			ans = ttl;
		if (i >= an && rtype == T_SOA && rdlen >= 22) {
			int64_t min = dns_ttl(dns_get32(buf + off + rdlen - 4));

			neg = ttl < min ? ttl : min;
		}
		off += rdlen;
	}
	*ans_ttl = ans;
	*neg_ttl = neg;
}

static void
dns_set_temp(struct dns_rrset *s, const char *why)
{
	s->rc = DNS_RC_TEMP;
	s->why = xstrdup(why);
	s->ttl = -1;
}

static void
dns_rr_add(struct dns_rrset *s, int pref, const char *name, int family,
    const void *addr, size_t alen)
{
	struct dns_rr *r;

	s->rr = xrealloc(s->rr, (s->nrr + 1) * sizeof(*r));
	r = &s->rr[s->nrr++];
	memset(r, 0, sizeof(*r));
	r->pref = pref;
	r->name = name ? xstrdup(name) : NULL;
	r->family = family;
	if (addr != NULL)
		memcpy(r->addr, addr, alen);
}

/*
 * Keeps the smallest TTL of the set's address records. c-ares gives each
 * as an int, so a TTL with the top bit set comes out negative: it counts
 * as zero (RFC 2181 8), as in dns_reply_ttls.
 */
static void
dns_min_ttl(struct dns_rrset *s, int ttl)
{
	int64_t t = ttl < 0 ? 0 : ttl;

	if (s->ttl < 0 || t < s->ttl)
		s->ttl = t;
}

/* Turns a successful reply into records; a reply that does not parse is a
 * temporary failure (the next server or try may do better). */
static void
dns_parse_records(
    struct dns_rrset *s, int type, const unsigned char *buf, int len)
{
	struct ares_addrttl ttl4[DNS_MAX_ADDRS];
	struct ares_addr6ttl ttl6[DNS_MAX_ADDRS];
	struct ares_mx_reply *mx = NULL;
	struct hostent *he = NULL;
	int n = DNS_MAX_ADDRS, rc = ARES_EBADRESP;

	s->rc = DNS_RC_OK;
	switch (type) {
	case DNS_T_MX:
		rc = ares_parse_mx_reply(buf, len, &mx);
		for (struct ares_mx_reply *m = mx; rc == ARES_SUCCESS && m;
		     m = m->next)
			dns_rr_add(s, m->priority, m->host, 0, NULL, 0);
		ares_free_data(mx);
		break;
	case DNS_T_A:
		rc = ares_parse_a_reply(buf, len, NULL, ttl4, &n);
		for (int i = 0; rc == ARES_SUCCESS && i < n; i++) {
			dns_rr_add(s, 0, NULL, AF_INET, &ttl4[i].ipaddr,
			    sizeof(ttl4[i].ipaddr));
			dns_min_ttl(s, ttl4[i].ttl);
		}
		break;
	case DNS_T_AAAA:
		rc = ares_parse_aaaa_reply(buf, len, NULL, ttl6, &n);
		for (int i = 0; rc == ARES_SUCCESS && i < n; i++) {
			dns_rr_add(s, 0, NULL, AF_INET6, &ttl6[i].ip6addr,
			    sizeof(ttl6[i].ip6addr));
			dns_min_ttl(s, ttl6[i].ttl);
		}
		break;
	case DNS_T_PTR:
		/* The address is only echoed back in the hostent. */
		rc =
		    ares_parse_ptr_reply(buf, len, "\0\0\0\0", 4, AF_INET, &he);
		if (rc == ARES_SUCCESS && he->h_name != NULL)
			dns_rr_add(s, 0, he->h_name, 0, NULL, 0);
		if (he != NULL)
			ares_free_hostent(he);
		break;
	}
	if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && s->nrr == 0)) {
		s->rc = DNS_RC_NODATA;
	} else if (rc != ARES_SUCCESS) {
		dns_rrset_fini(s);
		dns_set_temp(s, ares_strerror(rc));
	}
}

static const char *
dns_ares_why(int status)
{
	switch (status) {
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	case ARES_ECONNREFUSED:
		/*
		 * c-ares 1.18 says this, not SERVFAIL or REFUSED, once every
		 * server has answered with one of those: it tries the next
		 * server (good) and forgets why (not so good).
		 */
		return "no server answered (SERVFAIL, REFUSED or unreachable)";
	default:
		return ares_strerror(status);
	}
}

void
dns_reply_rrset(struct dns_rrset *s, int type, int status,
    const unsigned char *buf, int len)
{
	int64_t ans_ttl, neg_ttl;

	memset(s, 0, sizeof(*s));
	s->ttl = -1;
	dns_reply_ttls(buf, len, type, &ans_ttl, &neg_ttl);
	switch (status) {
	case ARES_SUCCESS:
		dns_parse_records(s, type, buf, len);
		/* A reply whose records do not parse stays a temporary
		 * failure with no TTL, whatever the TTL walk read. */
		if (s->rc == DNS_RC_OK &&
		    (type == DNS_T_MX || type == DNS_T_PTR))
			s->ttl = ans_ttl;
		else if (s->rc == DNS_RC_NODATA)
			s->ttl = neg_ttl;
		break;
	case ARES_ENODATA:
		s->rc = DNS_RC_NODATA;
		s->ttl = neg_ttl;
		break;
	case ARES_ENOTFOUND:
		s->rc = DNS_RC_NXDOMAIN;
		s->ttl = neg_ttl;
		break;
	default:
		dns_set_temp(s, dns_ares_why(status));
		break;
	}
}
