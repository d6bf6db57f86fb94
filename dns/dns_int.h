/*
 * Internals shared by the files of dns/: record sets, the cache (cache.c),
 * the pure ranking rules (mx.c), and the resolver state that resolve.c
 * (c-ares on the loop) and route.c (lookups as callers see them) share.
 * Nothing outside dns/ and its unit tests includes this.
 */
#ifndef MXSPOOL_DNS_INT_H
#define MXSPOOL_DNS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "dns/dns.h"

/* Query types, as on the wire. */
#define DNS_T_A 1
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_AAAA 28

#define DNS_MAX_MX 32    /* MX hosts considered per domain */
#define DNS_MAX_ADDRS 32 /* addresses kept per host and family */

/* The outcome of one query. */
enum dns_rc {
	DNS_RC_OK,       /* records */
	DNS_RC_NODATA,   /* the name exists, no record of the type */
	DNS_RC_NXDOMAIN, /* the name does not exist */
	DNS_RC_TEMP,     /* SERVFAIL, refused, timeout, bad reply */
};

/* One record: MX (pref, name), A/AAAA (family, addr), PTR (name). */
struct dns_rr {
	int pref;
	char *name;
	int family;
	unsigned char addr[16];
};

struct dns_rrset {
	enum dns_rc rc;
	char *why; /* DNS_RC_TEMP: what failed ("timeout", "SERVFAIL") */
	struct dns_rr *rr;
	size_t nrr;
	/*
	 * Seconds: the smallest record TTL, or for NODATA and NXDOMAIN the
	 * RFC 2308 negative TTL from the SOA; -1 when there is none (not
	 * cached).
	 */
	int64_t ttl;
};

void dns_rrset_fini(struct dns_rrset *s);
void dns_rrset_copy(struct dns_rrset *dst, const struct dns_rrset *src);
const char *dns_rc_str(enum dns_rc rc);

/*
 * How long a set stays cached, in seconds (0: not at all): positive TTLs
 * clamped to [min_ttl, max_ttl]; negative ones capped at neg_max (RFC
 * 2308: only with an SOA); temporary failures never.
 */
int64_t dns_cache_ttl(const struct dns_rrset *s, int64_t min_ttl,
    int64_t max_ttl, int64_t neg_max);

/* The cache: bounded, least recently used evicted first. Times in ms. */
struct dns_cache;
struct dns_cache *dns_cache_new(size_t max_entries);
void dns_cache_free(struct dns_cache *c);
/* Stores a copy of s under (type, name) until now_ms + ttl seconds. */
void dns_cache_put(struct dns_cache *c, int type, const char *name,
    const struct dns_rrset *s, int64_t ttl, int64_t now_ms);
/* The cached set, borrowed until the next put, or NULL. */
const struct dns_rrset *dns_cache_get(
    struct dns_cache *c, int type, const char *name, int64_t now_ms);
size_t dns_cache_count(const struct dns_cache *c);
void dns_cache_clear(struct dns_cache *c);

/* This host, for loop detection. */
struct mx_self {
	char **names; /* lower case, no trailing dot */
	size_t nnames;
	struct sockaddr_storage *addrs; /* ports are ignored */
	size_t naddrs;
};

/* What the MX query of a domain says to do next. */
enum mx_next {
	MX_USE_LIST, /* rank the MX hosts */
	MX_IMPLICIT, /* no MX: the domain's own A/AAAA */
	MX_NULL,     /* RFC 7505 null MX: 5.1.10 */
	MX_NXDOMAIN, /* 5.1.2 */
	MX_TEMP,     /* defer */
};

enum mx_next mx_classify(const struct dns_rrset *mx);

/* One host to rank: its preference and what its address lookups found. */
struct mx_in {
	const char *name;
	int pref;
	const struct dns_addr *addrs; /* port 0; mx_rank sets it */
	size_t naddrs;
	enum dns_rc rc;  /* DNS_RC_OK when any address was found */
	const char *why; /* rc != OK: e.g. "A: NXDOMAIN, AAAA: NXDOMAIN" */
};

/* The combined outcome of a host's A and AAAA lookups. */
enum dns_rc mx_addr_rc(enum dns_rc a, enum dns_rc aaaa, size_t naddrs);

/* A uniform random number below bound (> 0). */
typedef uint32_t mx_rand_fn(void *arg, uint32_t bound);

struct mx_rank_opts {
	const struct mx_self *self; /* NULL: no loop detection */
	bool prefer_ipv6;
	uint16_t port;
	bool implicit; /* in[0] is the domain itself */
	mx_rand_fn *rnd;
	void *rnd_arg;
};

/*
 * The backup-MX rules (RFC 5321 5.1): sorts in by preference, shuffles
 * equal preferences, drops this host and every MX not better than it, then
 * hosts without addresses. Fills out's status, dsn, reason, hosts (with
 * port and ordered addresses) and drops; returns out->status. Pure.
 */
enum dns_status mx_rank(struct dns_answer *out, const char *domain,
    const struct mx_in *in, size_t n, const struct mx_rank_opts *o);

/* Whether sa is one of self's addresses (port ignored). */
bool mx_is_self_addr(const struct mx_self *self, const struct sockaddr *sa);
bool mx_is_self_name(const struct mx_self *self, const char *name);
/* Sorts addresses: one family first, otherwise in the order given. */
void mx_order_addrs(struct dns_addr *a, size_t n, bool prefer_ipv6);

/* Answer helpers (answer.c). */
void dns_answer_fini(struct dns_answer *a);
void dns_answer_set(struct dns_answer *a, enum dns_status st, const char *dsn,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void dns_answer_add_drop(struct dns_answer *a, const char *name, int pref,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void dns_addr_fill(
    struct dns_addr *a, int family, const void *addr, uint16_t port);

/*
 * The resolver (resolve.c), seen by route.c. A lookup of (type, name)
 * answers through dns_rrset_cb with the id and slot it was given; from the
 * cache that happens at once, inside dns_lookup().
 */
typedef void dns_rrset_cb(
    struct dns *d, uint64_t id, int slot, const struct dns_rrset *s);
void dns_lookup(struct dns *d, int type, const char *name, dns_rrset_cb *cb,
    uint64_t id, int slot);

/* Buckets of the tables of queries and requests in flight. */
#define DNS_NBUCKETS 1024
/*
 * Queries sent and not yet answered, at most; the rest wait their turn. A
 * burst of thousands of UDP queries overflows the server's socket buffer
 * (or ours), and every dropped one costs a whole timeout.
 */
#define DNS_MAX_SENT 128

struct ares_channeldata;
struct dns_req;
TAILQ_HEAD(dns_req_list, dns_req);
LIST_HEAD(dns_req_bucket, dns_req);
struct dns_flight;
TAILQ_HEAD(dns_flight_list, dns_flight);
struct dns_sock;
TAILQ_HEAD(dns_sock_list, dns_sock);

struct dns {
	struct event_base *base;
	const struct conf *cf;
	struct ares_channeldata *channel; /* an ares_channel */
	struct event *timer;
	struct event *done_ev;
	struct dns_sock_list socks;
	struct dns_flight_list flights[DNS_NBUCKETS]; /* by type and name */
	struct dns_flight_list queued; /* not sent yet: DNS_MAX_SENT */
	unsigned nsent;
	struct dns_req_list reqs;                    /* pending */
	struct dns_req_bucket req_ids[DNS_NBUCKETS]; /* pending, by id */
	struct dns_req_list done; /* answered, callbacks not yet run */
	struct dns_cache *cache;
	struct mx_self self;
	uint64_t next_id;
	bool closing;
	struct dns_stats st;
};

int64_t dns_now_ms(void);
/*
 * Replies (reply.c). From a reply (untrusted bytes): the smallest TTL of
 * the answer records of type, and the RFC 2308 negative TTL from an SOA
 * in the authority section; -1 for each that is not there or not well
 * formed.
 */
void dns_reply_ttls(const unsigned char *buf, int len, int type,
    int64_t *ans_ttl, int64_t *neg_ttl);
/*
 * The record set a query of type gets from c-ares's status and reply (buf
 * may be NULL): the records, or NODATA, NXDOMAIN, or TEMP with why; and
 * the TTL to cache it for. Fills every field of s (dns_rrset_fini frees).
 */
void dns_reply_rrset(struct dns_rrset *s, int type, int status,
    const unsigned char *buf, int len);
/* route.c: frees every request without calling back. */
void dns_reqs_free(struct dns *d);
/* route.c: the done event's handler. */
void dns_on_done(int fd, short what, void *arg);

#endif
