/*
 * The configuration: etc/mxspool.conf read with libconfuse into a plain
 * struct that no other module needs libconfuse to read. A reload builds a
 * new struct conf and swaps it in; the old one stays valid until freed.
 */
#ifndef MXSPOOL_CONF_H
#define MXSPOOL_CONF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/log.h"

#include "mxspool_paths.h" /* made by the Makefile: PREFIX's directories */

/* The defaults that depend on where mxspool is installed. */
#define CONF_DEFAULT_PATH MXSPOOL_SYSCONFDIR "/mxspool/mxspool.conf"
#define CONF_DEFAULT_SPOOL_DIR MXSPOOL_LOCALSTATEDIR "/spool/mxspool"
#define CONF_DEFAULT_CONTROL_SOCKET MXSPOOL_RUNSTATEDIR "/mxspool/control.sock"

/* The longest path of a Unix socket: sun_path, less its NUL (107). */
#define CONF_SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* The longest spool_dir: PATH_MAX less room for the longest name RocksDB
 * and the WAL quarantine put below it ("/quarantine/<stamp>-N/<log>"). */
#define CONF_SPOOL_DIR_MAX (PATH_MAX - 96)

/* A listening or connecting address, as given and as a sockaddr. */
struct conf_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char text[64]; /* "127.0.0.1:25" or "[::1]:25" */
};

/* A network: "10.0.0.0/8", "::1/128". */
struct conf_cidr {
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network order; bits past the prefix are 0 */
	unsigned bits;
};

/* The longest node_id: one DNS label. */
#define CONF_NODE_ID_MAX 63

/* Where mail for a domain goes (DESIGN.md, Routes). */
enum route_kind {
	ROUTE_MX,        /* "mx": MX lookup of the recipient domain */
	ROUTE_SMTP,      /* "smtp:[host]:port" or "smtp:host:port" */
	ROUTE_LMTP,      /* "lmtp:[host]:port" or "lmtp:host:port" */
	ROUTE_LMTP_UNIX, /* "lmtp:unix:/path" */
};

struct conf_route {
	enum route_kind kind;
	char *host;     /* SMTP/LMTP: name or address, without brackets */
	bool bracketed; /* [host]: A/AAAA only; bare host: MX lookup first */
	uint16_t port;  /* default 25 for smtp, 24 for lmtp */
	char *path;     /* LMTP_UNIX: socket path */
	char *text;     /* as written, for logs and the CLI */
};

/* Outbound TLS policy (issue: delivery). */
enum tls_policy { TLS_NONE, TLS_MAY, TLS_ENCRYPT, TLS_VERIFY };

/* The retry and drain policy, global or for one domain. */
struct conf_retry {
	int64_t initial;        /* first backoff, seconds */
	double multiplier;      /* backoff growth per failed probe */
	int64_t max_interval;   /* backoff cap, seconds */
	double jitter;          /* 0..1: fraction of the interval randomised */
	int64_t max_age;        /* then bounce; 0 = keep forever */
	int64_t warn_after;     /* delay DSN once; 0 = never */
	int64_t probe_interval; /* slow-start step after recovery, seconds */
	unsigned recovery_connections; /* concurrency right after recovery */
	unsigned max_connections;      /* per destination */
	unsigned max_msgs_per_connection;
	/* Nodes sharing the store: each uses its share of the two
	 * connection counts above (retry_share in queue/retry.c). */
	unsigned cluster_nodes;
	/* The rejection guard: a 5xx for a recipient the store accepted
	 * before, or in a storm of 5xx, is held, not bounced. */
	bool rejection_guard;
	double reject_storm_ratio;   /* of recipient verdicts that are 5xx */
	unsigned reject_storm_min;   /* verdicts needed to judge */
	int64_t reject_storm_window; /* seconds of verdicts counted */
	bool soft_bounce;            /* every 5xx defers (Postfix's switch) */
};

/* A `domain "name" { ... }` section. */
struct conf_domain {
	char *name; /* lower-case A-labels; ".example.com" = subdomains */
	struct conf_route route;
	enum tls_policy tls;
	struct conf_retry retry; /* the global one, overridden per option */
	char *recipients_file;   /* NULL: any recipient is accepted */
	char **recipients; /* sorted, lower case: "user@a-labels" or "user" */
	size_t nrecipients;
};

struct conf {
	char *path;
	char *hostname;
	struct conf_addr *listen;
	size_t nlisten;
	char *spool_dir;
	uint64_t spool_min_free; /* refuse mail (452 4.3.1) below this */
	/* A write-ahead log damaged before its tail: refuse to start
	 * (strict), or keep what reads after the damage (salvage). */
	bool spool_recovery_strict;
	bool spool_dir_check; /* refuse a spool others may enter or read */
	char *control_socket;
	unsigned control_socket_mode;     /* permission bits, default 0660 */
	char *control_socket_owner;       /* user name; NULL: the daemon's */
	char *control_socket_group;       /* group name; NULL: the daemon's */
	struct conf_addr *metrics_listen; /* /metrics, /healthz; NULL: off */
	char *user;  /* who mxspoold becomes after start; NULL: no switch */
	char *group; /* its group; NULL: the user's primary group */
	char **relay_domains; /* lower-case A-labels; ".x.com": below it */
	size_t nrelay_domains;
	enum log_level log_level;
	enum log_dest log_dest;
	int64_t shutdown_timeout; /* seconds open sessions get at SIGTERM */
	int64_t known_recipients_max_age; /* seconds a learned address counts */

	/* Inbound SMTP (relay/server.c). */
	uint64_t message_size_limit;     /* bytes; SIZE and end of data */
	unsigned max_recipients;         /* per message: 452 4.5.3 */
	unsigned max_connections;        /* in total: 421 4.7.0 */
	unsigned max_connections_per_ip; /* per client address: 421 4.7.0 */
	unsigned max_errors;             /* then 421 and close */
	int64_t command_timeout;         /* seconds, waiting for a command */
	int64_t data_timeout;            /* seconds, waiting for data */
	unsigned max_hops;               /* Received headers: 554 5.4.6 */
	char *tls_cert_file;             /* NULL: no STARTTLS offered */
	char *tls_key_file;
	int tls_cert_line, tls_key_line; /* their lines in path; 0: unset */
	char *postmaster; /* where <Postmaster> goes (RFC 5321 4.5.1) */
	/* The PROXY protocol (relay/proxy.c): listeners that take a proxy's
	 * header, the proxies they take it from, and how long they wait. */
	struct conf_addr *proxy_listen;
	size_t nproxy_listen;
	struct conf_cidr *proxy_trusted;
	size_t nproxy_trusted;
	int64_t proxy_timeout; /* seconds */
	/* Listeners for other nodes handing their queue over (mxspoolctl
	 * xfer): they offer XMXSPOOL-ARRIVAL, only to peer_trusted. */
	struct conf_addr *peer_listen;
	size_t npeer_listen;
	struct conf_cidr *peer_trusted;
	size_t npeer_trusted;
	/* This node's name in a fleet: logs, Received, /metrics, summary. */
	char *node_id;

	/* What one client may hold of the server (relay/server.c, data.c). */
	uint64_t data_memory_limit;   /* bytes of message data held in total */
	int64_t session_deadline;     /* seconds a session may last */
	uint64_t min_data_rate;       /* bytes/s in a body; 0: no minimum */
	int64_t min_data_rate_window; /* seconds each rate check covers */

	/* DNS (dns/). */
	struct conf_addr *dns_servers; /* none: the system's resolv.conf */
	size_t ndns_servers;
	int dns_timeout_ms; /* per try; an int, as c-ares takes it */
	unsigned dns_tries;
	int dns_ptr_timeout_ms; /* longest a PTR lookup may hold a session */
	bool dns_prefer_ipv6;   /* address order within a host */
	char **mx_self_names;   /* lower case; default: { hostname } */
	size_t nmx_self_names;
	unsigned dns_cache_size;  /* entries */
	int64_t dns_min_ttl;      /* seconds: positive TTLs clamped to */
	int64_t dns_max_ttl;      /* [min, max]; negative ones to max */
	int64_t dns_negative_ttl; /* cap for RFC 2308 negative caching */

	/* Delivery (relay/client.c, queue/sched.c). */
	struct conf_retry retry; /* the global retry { } block */
	enum tls_policy tls;     /* default outbound TLS policy */
	char *tls_ca_file;       /* for tls = verify; NULL: system store */
	struct conf_route bounce_route; /* where DSNs go; default mx */
	unsigned max_outbound_connections;
	unsigned active_limit;   /* messages in memory (the active window) */
	int64_t connect_timeout; /* seconds */
	int64_t client_command_timeout; /* greeting, EHLO, MAIL, RCPT */
	int64_t client_data_timeout;    /* DATA reply and each block */
	int64_t client_final_timeout;   /* reply to the end of data */
	struct conf_domain *domains;
	size_t ndomains;

	/* What the config does that works but is likely wrong, as lines of
	 * "FILE:LINE: warning: message\n"; NULL if nothing. */
	char *warnings;
};

/*
 * Reads and checks path. On success returns 0 and *cfp, with its warnings
 * in (*cfp)->warnings; on failure -1 and, in *errors (malloc'd, caller
 * frees), every problem found as lines of "FILE:LINE: message\n" (or
 * "FILE: message\n" for one that has no line, such as a missing option).
 */
int conf_load(struct conf **cfp, const char *path, char **errors);
void conf_free(struct conf *cf);
/*
 * The i-th option of mxspool.conf(5), or NULL past the last: top-level
 * ones by name, those of the retry section as "retry.NAME" and those of a
 * domain section as "domain.NAME". For tables that must cover every option.
 */
const char *conf_option_name(size_t i);

/* Why a value did not parse: written wrong, or too big for its type. */
enum conf_parse_status { CONF_PARSE_BAD = -1, CONF_PARSE_RANGE = -2 };
/*
 * "30s", "5m", "4h", "5d", "1w", combinations such as "1h30m", or plain
 * seconds, into *secs. Returns 0, CONF_PARSE_BAD, or CONF_PARSE_RANGE for
 * a well-written duration of more than INT64_MAX seconds.
 */
int conf_parse_duration(const char *s, int64_t *secs);
/*
 * "512", "10k", "25M", "1G", "2T" (binary multiples) into *bytes. Returns
 * 0, CONF_PARSE_BAD, or CONF_PARSE_RANGE past UINT64_MAX bytes.
 */
int conf_parse_size(const char *s, uint64_t *bytes);
/* The other way, in the largest unit that divides: "1d", "90s", "64G". */
void conf_format_duration(int64_t secs, char *buf, size_t len);
void conf_format_size(uint64_t bytes, char *buf, size_t len);
/* "127.0.0.1:25", "[::1]:25", "*:25" (IPv4 any), "[::]:25". Numeric only. */
int conf_parse_addr(const char *s, struct conf_addr *out);
/* "10.0.0.0/8", "::1/128", or an address alone (/32, /128). Returns 0,
 * CONF_CIDR_BAD, or CONF_CIDR_HOST_BITS when bits past the prefix are set
 * ("10.0.0.1/8"). */
enum { CONF_CIDR_BAD = -1, CONF_CIDR_HOST_BITS = -2 };
int conf_parse_cidr(const char *s, struct conf_cidr *out);
/* Whether sa (AF_INET, or AF_INET6, IPv4-mapped too) is inside c. */
bool conf_cidr_match(const struct conf_cidr *c, const struct sockaddr *sa);
/* A node_id: letters, digits and hyphens, 1 to CONF_NODE_ID_MAX. */
bool conf_valid_node_id(const char *s);
/* A host or domain name: letters, digits, hyphens, dots; at most 253.
 * ASCII only: common/idn.h converts and checks names with U-labels. */
bool conf_valid_domain(const char *s);

/*
 * The configured domains that have U-labels, one line each, as both forms
 * ("relay_domains: bücher.test (xn--bcher-kva.test)\n"), malloc'd for the
 * caller to free; NULL if none has. For -t and the start-up log.
 */
char *conf_idn_names(const struct conf *cf);

/* Whether mail for domain (any case, U-labels or A-labels) is ours to
 * relay. Every lookup by domain below takes either form (RFC 5890). */
bool conf_is_relay_domain(const struct conf *cf, const char *domain);
/* The `domain` section for domain (exact name first, then ".parent"). */
const struct conf_domain *conf_domain_find(
    const struct conf *cf, const char *domain);
/* The route, TLS policy and retry policy in force for domain. */
const struct conf_route *conf_route_for(
    const struct conf *cf, const char *domain);
enum tls_policy conf_tls_for(const struct conf *cf, const char *domain);
const struct conf_retry *conf_retry_for(
    const struct conf *cf, const char *domain);
/*
 * Whether rcpt (local@domain) may receive mail: true unless the domain has
 * a recipients file that lists neither the address nor its local part.
 * local is as in the address: a quoted one is looked up unquoted.
 */
bool conf_recipient_known(
    const struct conf *cf, const char *local, const char *domain);
/* Whether domain has a recipients file. */
bool conf_has_recipients(const struct conf *cf, const char *domain);
/* "mx", "smtp:[host]:port", "lmtp:host:port", "lmtp:unix:/path" (a path
 * of at most CONF_SOCKET_PATH_MAX bytes). */
int conf_parse_route(const char *s, struct conf_route *out);
void conf_route_fini(struct conf_route *r);
const char *conf_tls_policy_str(enum tls_policy p);

#endif
