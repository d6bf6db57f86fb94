/*
 * dns/: where mail for a domain goes. A static route from the config wins;
 * otherwise the domain's MX records (or its own A/AAAA: the implicit MX),
 * ranked by the backup-MX rules of RFC 5321 5.1: this host and every MX
 * that is not better than it are dropped. Lookups run through c-ares on
 * the caller's libevent loop and never block it; answers are cached for
 * their TTL.
 *
 * Callbacks always run later on the loop, never from inside the call that
 * asked. A lookup is named by an id: its owner may cancel it, and an owner
 * that has gone away simply cancels instead of leaving a dangling pointer.
 */
#ifndef MXSPOOL_DNS_H
#define MXSPOOL_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/conf.h"

struct dns; /* opaque: the c-ares channel, its events and the cache */
struct event_base;
struct json_t;

enum dns_status {
	DNS_OK = 0,
	DNS_TEMPFAIL = -1, /* defer: SERVFAIL, timeout, refused, loop */
	DNS_PERMFAIL = -2, /* bounce: NXDOMAIN (5.1.2), null MX (5.1.10) */
};

/* One address of a candidate host, with the port to connect to. */
struct dns_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char text[48]; /* the address alone, "192.0.2.1" or "2001:db8::1" */
};

/* A host to try, in order: an MX target, a route's host or the domain. */
struct dns_host {
	char *name;
	int pref; /* MX preference; -1 for static routes */
	uint16_t port;
	struct dns_addr *addrs; /* ordered per dns_prefer_ipv6 */
	size_t naddrs;
};

/* An MX that was left out, and why ("is this host", "no address", ...). */
struct dns_drop {
	char *name;
	int pref;
	char *why;
};

/*
 * The decision for one domain: what the delivery code needs and what
 * `mxspoolctl route` shows. Everything in it is owned by the answer.
 */
struct dns_answer {
	char *domain;
	enum dns_status status;
	const char *dsn; /* enhanced status: "2.0.0", "4.4.3", "5.1.10", ... */
	char *reason;    /* one line for logs and DSNs */
	enum route_kind kind;
	char *route;      /* the route as written, "mx" by default */
	char *path;       /* ROUTE_LMTP_UNIX: the socket path */
	bool implicit_mx; /* no MX records: the domain's own addresses */
	bool loop;        /* this host is the best MX left */
	struct dns_host *hosts;
	size_t nhosts;
	struct dns_drop *drops;
	size_t ndrops;
};

/* ans is borrowed for the call; dns_answer_dup() keeps a copy. */
typedef void dns_route_cb(void *arg, const struct dns_answer *ans);
/* name is the PTR name on DNS_OK, else NULL; borrowed for the call. */
typedef void dns_ptr_cb(void *arg, enum dns_status st, const char *name);

/* Counters, for tests and metrics. */
struct dns_stats {
	uint64_t queries;    /* sent to c-ares */
	uint64_t cache_hits; /* answered from the cache */
	uint64_t coalesced;  /* joined a query already in flight */
	uint64_t in_flight;  /* queries now in flight */
	uint64_t cache_size; /* entries now cached */
	uint64_t requests;   /* dns_route and dns_ptr calls now pending */
};

/*
 * Creates the resolver on base: servers from cf->dns_servers (else
 * resolv.conf), this host's names (cf->mx_self_names) and its interface
 * addresses for loop detection. cf is borrowed until dns_free() or the
 * next dns_set_conf(). Returns 0, or -1 after logging why.
 */
int dns_new(struct dns **dp, const struct conf *cf, struct event_base *base);
/* Cancels everything pending (no callbacks run). NULL is a no-op. Not
 * from inside a dns_ callback. */
void dns_free(struct dns *d);
/* After a reload: new routes, servers and self names; the cache is kept. */
int dns_set_conf(struct dns *d, const struct conf *cf);

/*
 * Finds where mail for domain goes. Returns the lookup's id (never 0);
 * cb runs once, later, on the loop, unless the id is cancelled first.
 */
uint64_t dns_route(
    struct dns *d, const char *domain, dns_route_cb *cb, void *arg);
/* The same along a given route instead of the domain's (e.g. the
 * bounce_route for notifications); via is borrowed for the call. */
uint64_t dns_route_via(struct dns *d, const char *domain,
    const struct conf_route *via, dns_route_cb *cb, void *arg);
/*
 * The PTR name of a client address, for the Received header and the log,
 * given only when the name resolves back to the address (else
 * DNS_PERMFAIL, as when there is no PTR: the client is "unknown"). cb runs
 * within timeout_ms (DNS_TEMPFAIL then), so a slow reverse zone never
 * holds up an SMTP session longer than that.
 */
uint64_t dns_ptr(struct dns *d, const struct sockaddr *sa, unsigned timeout_ms,
    dns_ptr_cb *cb, void *arg);
/* Forgets a pending lookup: its callback will not run. Unknown ids and 0
 * are ignored, so an id may be cancelled after its answer came. */
void dns_cancel(struct dns *d, uint64_t id);

void dns_get_stats(const struct dns *d, struct dns_stats *st);
const char *dns_status_str(enum dns_status st);

struct dns_answer *dns_answer_dup(const struct dns_answer *a);
/* Frees what the answer holds and the answer itself. NULL is a no-op. */
void dns_answer_free(struct dns_answer *a);
/*
 * The answer as a JSON object (a new reference): domain, status, dsn,
 * reason, route, candidates (name, pref, port, addresses), dropped (name,
 * pref, why). The shape `mxspoolctl route --json` prints.
 */
struct json_t *dns_answer_json(const struct dns_answer *a);

#endif
