/*
 * The answer cache: record sets by (type, name), kept for their TTL, in a
 * hash table with a least-recently-used list so that a full cache evicts
 * what nobody asked for longest. Pure: the caller passes the time.
 *
 * Negative answers are cached per RFC 2308 (for the SOA's TTL, capped),
 * and only when the reply carried an SOA; temporary failures never are, so
 * that a recovered server is asked again at once.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/xmem.h"
#include "dns/dns_int.h"

struct dns_centry {
	LIST_ENTRY(dns_centry) hash;
	TAILQ_ENTRY(dns_centry) lru;
	int type;
	char *name; /* lower case */
	int64_t expires_ms;
	struct dns_rrset set;
};

LIST_HEAD(dns_cbucket, dns_centry);

struct dns_cache {
	struct dns_cbucket *buckets;
	size_t nbuckets;              /* a power of two */
	TAILQ_HEAD(, dns_centry) lru; /* least recently used first */
	size_t count, max;
};

const char *
dns_rc_str(enum dns_rc rc)
{
	switch (rc) {
	case DNS_RC_OK:
		return "ok";
	case DNS_RC_NODATA:
		return "NODATA";
	case DNS_RC_NXDOMAIN:
		return "NXDOMAIN";
	case DNS_RC_TEMP:
		return "temporary failure";
	}
	return "?";
}

void
dns_rrset_fini(struct dns_rrset *s)
{
	for (size_t i = 0; i < s->nrr; i++)
		free(s->rr[i].name);
	free(s->rr);
	free(s->why);
	memset(s, 0, sizeof(*s));
}

void
dns_rrset_copy(struct dns_rrset *dst, const struct dns_rrset *src)
{
	*dst = *src;
	dst->why = src->why ? xstrdup(src->why) : NULL;
	dst->rr = xcalloc(src->nrr, sizeof(*dst->rr));
	for (size_t i = 0; i < src->nrr; i++) {
		dst->rr[i] = src->rr[i];
		if (src->rr[i].name != NULL)
			dst->rr[i].name = xstrdup(src->rr[i].name);
	}
}

int64_t
dns_cache_ttl(const struct dns_rrset *s, int64_t min_ttl, int64_t max_ttl,
    int64_t neg_max)
{
	int64_t t = s->ttl;

	switch (s->rc) {
	case DNS_RC_TEMP:
		return 0;
	case DNS_RC_NODATA:
	case DNS_RC_NXDOMAIN:
		if (t < 0)
			return 0;
		return t < neg_max ? t : neg_max;
	case DNS_RC_OK:
		break;
	}
	if (t < 0)
		t = 0;
	if (t < min_ttl)
		t = min_ttl;
	if (max_ttl > 0 && t > max_ttl)
		t = max_ttl;
	return t;
}

struct dns_cache *
dns_cache_new(size_t max_entries)
{
	struct dns_cache *c = xcalloc(1, sizeof(*c));

	c->max = max_entries;
	c->nbuckets = 16;
	while (c->nbuckets < max_entries && c->nbuckets < (1u << 20))
		c->nbuckets <<= 1;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	TAILQ_INIT(&c->lru);
	return c;
}

static void
dns_centry_free(struct dns_cache *c, struct dns_centry *e)
{
	LIST_REMOVE(e, hash);
	TAILQ_REMOVE(&c->lru, e, lru);
	c->count--;
	dns_rrset_fini(&e->set);
	free(e->name);
	free(e);
}

void
dns_cache_clear(struct dns_cache *c)
{
	struct dns_centry *e;

	while ((e = TAILQ_FIRST(&c->lru)) != NULL)
		dns_centry_free(c, e);
}

void
dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	dns_cache_clear(c);
	free(c->buckets);
	free(c);
}

size_t
dns_cache_count(const struct dns_cache *c)
{
	return c->count;
}

/* FNV-1a over the type and the lower-cased name. */
static size_t
dns_cache_hash(const struct dns_cache *c, int type, const char *name)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;

	h *= 16777619u;
	for (const char *p = name; *p; p++) {
		h ^= (unsigned char)tolower((unsigned char)*p);
		h *= 16777619u;
	}
	return h & (c->nbuckets - 1);
}

static struct dns_centry *
dns_cache_find(struct dns_cache *c, int type, const char *name)
{
	struct dns_centry *e;

	LIST_FOREACH(e, &c->buckets[dns_cache_hash(c, type, name)], hash)
	{
		if (e->type == type && strcasecmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

void
dns_cache_put(struct dns_cache *c, int type, const char *name,
    const struct dns_rrset *s, int64_t ttl, int64_t now_ms)
{
	struct dns_centry *e = dns_cache_find(c, type, name);

	if (e != NULL)
		dns_centry_free(c, e);
	if (ttl <= 0 || c->max == 0)
		return;
	while (c->count >= c->max)
		dns_centry_free(c, TAILQ_FIRST(&c->lru));
	e = xcalloc(1, sizeof(*e));
	e->type = type;
	e->name = xstrdup(name);
	for (char *p = e->name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	e->expires_ms = now_ms + ttl * 1000;
	dns_rrset_copy(&e->set, s);
	LIST_INSERT_HEAD(&c->buckets[dns_cache_hash(c, type, name)], e, hash);
	TAILQ_INSERT_TAIL(&c->lru, e, lru);
	c->count++;
}

const struct dns_rrset *
dns_cache_get(struct dns_cache *c, int type, const char *name, int64_t now_ms)
{
	struct dns_centry *e = dns_cache_find(c, type, name);

	if (e == NULL)
		return NULL;
	if (now_ms >= e->expires_ms) {
		dns_centry_free(c, e);
		return NULL;
	}
	TAILQ_REMOVE(&c->lru, e, lru);
	TAILQ_INSERT_TAIL(&c->lru, e, lru);
	return &e->set;
}
