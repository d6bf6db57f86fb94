/*
 * Config loading. libconfuse parses; each option with a format of its own
 * (durations, sizes, addresses, names) has a parse callback that checks it
 * where libconfuse still knows the line. A callback that finds a problem
 * records it and lets parsing go on, so that `mxspoold -t` reports every
 * such error at once. Syntax errors and unknown options stop libconfuse at
 * the first one; those are reported too, with their line.
 *
 * Comments are removed (conf_text.c) before libconfuse sees the text: its
 * 3.3 lexer counts each comment's newline twice (so every line number after
 * a comment is wrong) and refuses a comment inside a list (libconfuse issue
 * #150).
 */
#include <arpa/inet.h>
#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/conf_int.h"
#include "common/idn.h"
#include "common/priv.h"
#include "common/xmem.h"

/* Errors and warnings of the load in progress: loads run on one thread at
 * a time. */
static const char *conf_cur_path;
static char *conf_errs, *conf_warns;
static size_t conf_errs_len, conf_warns_len;
static int conf_nerrs;
/* Where options that conf_check and the TLS check report on were set
 * (0: not set). */
static struct conf_seen {
	const char *name;
	int line;
} conf_seen[] = {{"group", 0}, {"control_socket_owner", 0},
    {"tls_cert_file", 0}, {"tls_key_file", 0}};

static void
conf_note_line(const cfg_opt_t *opt, int line)
{
	for (size_t i = 0; i < sizeof(conf_seen) / sizeof(conf_seen[0]); i++)
		if (strcmp(conf_seen[i].name, opt->name) == 0)
			conf_seen[i].line = line;
}

static int
conf_line_of(const char *name)
{
	for (size_t i = 0; i < sizeof(conf_seen) / sizeof(conf_seen[0]); i++)
		if (strcmp(conf_seen[i].name, name) == 0)
			return conf_seen[i].line;
	PANIC("conf_seen does not keep the line of %s", name);
}

/* Appends msg and a newline to *buf, of *len bytes. */
static void
conf_append_line(char **buf, size_t *len, const char *msg)
{
	size_t n = strlen(msg);

	*buf = xrealloc(*buf, *len + n + 2);
	memcpy(*buf + *len, msg, n);
	(*buf)[*len + n] = '\n';
	(*buf)[*len + n + 1] = '\0';
	*len += n + 1;
}

/* An error found outside libconfuse's parse (no cfg at hand). */
static void __attribute__((format(printf, 1, 2)))
conf_add_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_append_line(&conf_errs, &conf_errs_len, msg);
	conf_nerrs++;
}

/* "FILE:LINE: " before a message, or "FILE: " for line 0. */
static void
conf_where(int line, char *buf, size_t len)
{
	if (line > 0)
		snprintf(buf, len, "%s:%d: ", conf_cur_path, line);
	else
		snprintf(buf, len, "%s: ", conf_cur_path);
}

void
conf_error_at(int line, const char *fmt, ...)
{
	char where[PATH_MAX + 32], msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_where(line, where, sizeof(where));
	conf_add_error("%s%s", where, msg);
}

void
conf_warning_at(int line, const char *fmt, ...)
{
	char where[PATH_MAX + 32], msg[1024], *text;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_where(line, where, sizeof(where));
	text = xasprintf("%swarning: %s", where, msg);
	conf_append_line(&conf_warns, &conf_warns_len, text);
	free(text);
}

/*
 * An unknown option: the known one of its section (cfg) that it is most
 * likely a typo of, if any is close enough.
 */
static const char *
conf_suggest(const cfg_t *cfg, const char *name)
{
	const char *best = NULL;
	int best_d = INT_MAX;

	for (const cfg_opt_t *o = cfg->opts; o->name != NULL; o++) {
		int d = conf_distance(name, o->name);

		if (d < best_d) {
			best = o->name;
			best_d = d;
		}
	}
	return best != NULL && conf_close_enough(name, best_d) ? best : NULL;
}

static void __attribute__((format(printf, 2, 0)))
conf_on_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[1024];

	/* libconfuse's own words for an unknown option (untranslated: the
	 * daemon keeps the C locale): say which one was meant. */
	if (strcmp(fmt, "no such option '%s'") == 0) {
		const char *name = va_arg(ap, const char *);
		const char *like = conf_suggest(cfg, name);

		if (like != NULL)
			snprintf(msg, sizeof(msg),
			    "unknown option '%s' (did you mean '%s'?)", name,
			    like);
		else
			snprintf(msg, sizeof(msg), "unknown option '%s'", name);
	} else
		vsnprintf(msg, sizeof(msg), fmt, ap);
	conf_add_error("%s:%d: %s", conf_cur_path, cfg->line, msg);
}

/* Each section text leaves open at its end, at the line that opens it. */
static void
conf_check_sections(const char *text)
{
	struct conf_open open[8];
	size_t max = sizeof(open) / sizeof(open[0]),
	       n = conf_open_sections(text, open, max);

	for (size_t i = 0; i < n && i < max; i++)
		conf_add_error("%s:%d: section '%.*s%s%.*s' opened here is "
			       "never closed",
		    conf_cur_path, open[i].line, open[i].name.len,
		    open[i].name.p, open[i].title.len > 0 ? " " : "",
		    open[i].title.len, open[i].title.p);
}

/*
 * The range of every number option. The upper bounds are what the code
 * that uses each value can honour with room to spare, so that nothing -t
 * lets through overflows a timeval, a count of milliseconds or an int on
 * its way; mxspool.conf(5) and the README list them. conf_ranges_check
 * makes sure no number option is left out.
 */
struct conf_range {
	const char *name;
	int64_t min, max;
};

#define CONF_DAY (24 * 3600)
#define CONF_GIB ((int64_t)1 << 30)
#define CONF_COUNT_MAX 1000000
/* The DNS timeouts are kept in milliseconds as ints, as c-ares takes them. */
#define CONF_DNS_TIMEOUT_MAX 30
_Static_assert(CONF_DNS_TIMEOUT_MAX * 1000LL <= INT_MAX,
    "dns_timeout and dns_ptr_timeout fit int milliseconds");

static const struct conf_range conf_ranges[] = {
    /* Timeouts, each a timeval: a day is longer than any peer waits. A
     * 0 is refused where it would time everything out at once, and means
     * the built-in default for the delivery timeouts. */
    {"shutdown_timeout", 0, CONF_DAY},
    {"command_timeout", 1, CONF_DAY},
    {"data_timeout", 1, CONF_DAY},
    {"session_deadline", 1, CONF_DAY},
    {"min_data_rate_window", 1, CONF_DAY},
    {"proxy_timeout", 1, CONF_DAY},
    {"connect_timeout", 0, CONF_DAY},
    {"client_command_timeout", 0, CONF_DAY},
    {"client_data_timeout", 0, CONF_DAY},
    {"client_final_timeout", 0, CONF_DAY},
    /* Per try, and the whole of a client's PTR lookup: as resolv.conf(5)
     * caps timeout at 30 s and attempts at 5. 0: the default. */
    {"dns_timeout", 0, CONF_DNS_TIMEOUT_MAX},
    {"dns_ptr_timeout", 0, CONF_DNS_TIMEOUT_MAX},
    {"dns_tries", 1, 5},
    /* RFC 8767 4: a TTL is capped at 7 days. */
    {"dns_min_ttl", 0, 7 * CONF_DAY},
    {"dns_max_ttl", 0, 7 * CONF_DAY},
    {"dns_negative_ttl", 0, 7 * CONF_DAY},
    /* Retry intervals: a store that is back is probed within a day. */
    {"initial", 0, CONF_DAY},
    {"max_interval", 0, CONF_DAY},
    {"probe_interval", 0, CONF_DAY},
    {"reject_storm_window", 0, CONF_DAY},
    /* Ages: a year (0: never). */
    {"max_age", 0, 365 * CONF_DAY},
    {"warn_after", 0, 365 * CONF_DAY},
    {"known_recipients_max_age", 0, 365 * CONF_DAY},
    /* A body is one RocksDB value (which must stay under 4 GiB) and is
     * held whole in memory, with its Received header. */
    {"message_size_limit", 1, CONF_GIB},
    {"data_memory_limit", 1, 64 * CONF_GIB},
    {"min_data_rate", 0, CONF_GIB},
    /* 1 PiB: more than the disk of any spool. */
    {"spool_min_free", 0, 1024 * 1024 * CONF_GIB},
    {"max_recipients", 1, CONF_COUNT_MAX},
    {"max_connections", 1, CONF_COUNT_MAX},
    {"max_connections_per_ip", 1, CONF_COUNT_MAX},
    {"max_errors", 1, CONF_COUNT_MAX},
    {"max_hops", 1, CONF_COUNT_MAX},
    {"dns_cache_size", 1, CONF_COUNT_MAX},
    {"max_outbound_connections", 1, CONF_COUNT_MAX},
    {"active_limit", 1, CONF_COUNT_MAX},
    {"recovery_connections", 1, CONF_COUNT_MAX},
    {"max_msgs_per_connection", 1, CONF_COUNT_MAX},
    {"reject_storm_min", 1, CONF_COUNT_MAX},
    /* Nodes behind one MX: past a thousand each share is one connection. */
    {"cluster_nodes", 1, 1000},
};

static const struct conf_range *
conf_range_of(const char *name)
{
	for (size_t i = 0; i < sizeof(conf_ranges) / sizeof(conf_ranges[0]);
	     i++)
		if (strcmp(conf_ranges[i].name, name) == 0)
			return &conf_ranges[i];
	PANIC("number option %s has no range in conf_ranges", name);
}

enum conf_kind { CONF_DURATION, CONF_SIZE, CONF_COUNT };

/* value as a number of kind: 0, CONF_PARSE_BAD or CONF_PARSE_RANGE. */
static int
conf_parse_number(enum conf_kind kind, const char *value, int64_t *v)
{
	unsigned long long n;
	uint64_t bytes;
	char *end;
	int rc;

	if (kind == CONF_DURATION)
		return conf_parse_duration(value, v);
	if (kind == CONF_SIZE) {
		if ((rc = conf_parse_size(value, &bytes)) < 0)
			return rc;
		n = bytes;
	} else {
		if (!isdigit((unsigned char)value[0]))
			return CONF_PARSE_BAD;
		errno = 0;
		n = strtoull(value, &end, 10);
		if (*end != '\0')
			return CONF_PARSE_BAD;
		if (errno == ERANGE)
			return CONF_PARSE_RANGE;
	}
	if (n > INT64_MAX)
		return CONF_PARSE_RANGE;
	*v = (int64_t)n;
	return 0;
}

/* v as the config would write it: "1d", "64G", "5". */
static void
conf_format_number(enum conf_kind kind, int64_t v, char *buf, size_t len)
{
	if (kind == CONF_DURATION)
		conf_format_duration(v, buf, len);
	else if (kind == CONF_SIZE)
		conf_format_size((uint64_t)v, buf, len);
	else
		snprintf(buf, len, "%lld", (long long)v);
}

/*
 * Parse callbacks. Each receives the text as written and stores the parsed
 * value in *result; a bad value is reported with its line and parsing goes
 * on (returning -1 would stop libconfuse at the first problem).
 *
 * A number of the given kind, within its option's range.
 */
static int
conf_cb_number(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
    enum conf_kind kind)
{
	static const char *const what[][2] = {
	    [CONF_DURATION] = {"duration", "30s, 5m, 4h, 5d"},
	    [CONF_SIZE] = {"size", "512, 10k, 25M"},
	    [CONF_COUNT] = {"number", "20"}};
	const struct conf_range *r = conf_range_of(opt->name);
	char lim[32];
	int64_t v = 0;
	int rc = conf_parse_number(kind, value, &v);

	if (rc == CONF_PARSE_BAD) {
		cfg_error(cfg, "%s: bad %s '%s' (use e.g. %s)", opt->name,
		    what[kind][0], value, what[kind][1]);
		v = r->min;
	} else if (rc < 0 || v > r->max) {
		conf_format_number(kind, r->max, lim, sizeof(lim));
		cfg_error(cfg, "%s: %s is more than the limit of %s", opt->name,
		    value, lim);
		v = r->max;
	} else if (v < r->min) {
		conf_format_number(kind, r->min, lim, sizeof(lim));
		cfg_error(cfg, "%s: must be at least %s", opt->name, lim);
		v = r->min;
	}
	*(long *)result = (long)v;
	return 0;
}

static int
conf_cb_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_cb_number(cfg, opt, value, result, CONF_DURATION);
}

static int
conf_cb_size(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_cb_number(cfg, opt, value, result, CONF_SIZE);
}

static int
conf_cb_count(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_cb_number(cfg, opt, value, result, CONF_COUNT);
}

static int
conf_cb_addr(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct conf_addr a;

	if (conf_parse_addr(value, &a) < 0)
		cfg_error(cfg,
		    "%s: bad address '%s' (use 127.0.0.1:25 or [::1]:25)",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

/*
 * A domain, or ".domain" for the names below it, in either form: U-labels
 * or A-labels (RFC 5890). Kept as written until built; compared as
 * A-labels.
 */
static int
conf_cb_domain(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *d = value[0] == '.' ? value + 1 : value;
	char ace[IDN_NAME_SIZE], why[128];

	if (conf_wildcard(value, why, sizeof(why)))
		cfg_error(cfg, "%s: %s", opt->name, why);
	else if (idn_to_ascii(d, ace, sizeof(ace), why, sizeof(why)) < 0)
		cfg_error(
		    cfg, "%s: bad domain name '%s': %s", opt->name, value, why);
	*(const char **)result = value;
	return 0;
}

static int
conf_cb_hostname(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value[0] != '\0' && !conf_valid_domain(value))
		cfg_error(cfg, "%s: bad host name '%s'", opt->name, value);
	*(const char **)result = value;
	return 0;
}

static int
conf_cb_path(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value[0] == '\0')
		cfg_error(cfg, "%s: missing required value", opt->name);
	*(const char **)result = value;
	return 0;
}

/* A Unix socket's path: it must fit sun_path, or it would be cut. */
static int
conf_cb_socket_path(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	conf_cb_path(cfg, opt, value, result);
	if (strlen(value) > CONF_SOCKET_PATH_MAX)
		cfg_error(cfg,
		    "%s: a path of %zu bytes is more than the limit of %zu "
		    "for a Unix socket",
		    opt->name, strlen(value), CONF_SOCKET_PATH_MAX);
	return 0;
}

/*
 * The spool directory: RocksDB and the WAL quarantine make files and
 * directories below it, whose whole paths must fit PATH_MAX, and no
 * file system takes a name in it of more than NAME_MAX bytes.
 */
static int
conf_cb_spool_dir(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	conf_cb_path(cfg, opt, value, result);
	if (strlen(value) > CONF_SPOOL_DIR_MAX) {
		cfg_error(cfg,
		    "%s: a path of %zu bytes is more than the limit of %d "
		    "(PATH_MAX, less room for the spool's own files)",
		    opt->name, strlen(value), CONF_SPOOL_DIR_MAX);
		return 0;
	}
	for (const char *p = value; *p != '\0';) {
		size_t n = strcspn(p, "/");

		if (n > NAME_MAX) {
			cfg_error(cfg,
			    "%s: a name of %zu bytes in the path is more than "
			    "the limit of %d (NAME_MAX)",
			    opt->name, n, NAME_MAX);
			break;
		}
		p += n + (p[n] == '/');
	}
	return 0;
}

/* An address, or "" for off. */
static int
conf_cb_opt_addr(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value[0] == '\0') {
		*(const char **)result = value;
		return 0;
	}
	return conf_cb_addr(cfg, opt, value, result);
}

/* Permission bits in octal: "0660". */
static int
conf_cb_mode(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char *end;
	long m;

	errno = 0;
	m = strtol(value, &end, 8);
	if (errno != 0 || end == value || *end != '\0' || m < 0 || m > 0777)
		cfg_error(cfg, "%s: bad mode '%s' (use octal, e.g. 0660)",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

/* A user or group name (looked up when the socket is made). */
static int
conf_cb_account(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	conf_note_line(opt, cfg->line);
	for (const char *p = value; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' &&
		    *p != '.') {
			cfg_error(cfg, "%s: bad user or group name '%s'",
			    opt->name, value);
			break;
		}
	*(const char **)result = value;
	return 0;
}

/*
 * `user` and `group`: a name the passwd or group database knows, checked
 * here so that -t reports one that does not exist with its line. "" is
 * unset.
 */
static int
conf_cb_user(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct priv_id id;
	char err[256];
	int nerrs = conf_nerrs;

	conf_cb_account(cfg, opt, value, result);
	if (value[0] == '\0' || conf_nerrs > nerrs)
		return 0;
	if (priv_resolve(value, NULL, &id, err, sizeof(err)) < 0)
		cfg_error(cfg, "%s", err);
	return 0;
}

static int
conf_cb_group(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char err[256];
	gid_t gid;
	int nerrs = conf_nerrs;

	conf_cb_account(cfg, opt, value, result);
	if (value[0] == '\0' || conf_nerrs > nerrs)
		return 0;
	if (priv_lookup_group(value, &gid, err, sizeof(err)) < 0)
		cfg_error(cfg, "%s", err);
	else if (gid == 0)
		cfg_error(cfg,
		    "group: '%s' has gid 0 and would keep what root's "
		    "group may read and write",
		    value);
	return 0;
}

static int
conf_cb_log_level(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	enum log_level lv;

	if (log_level_parse(value, &lv) < 0)
		cfg_error(cfg,
		    "%s: '%s' is not one of debug, info, warn, error",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

static int
conf_cb_log(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (strcmp(value, "stderr") != 0 && strcmp(value, "syslog") != 0)
		cfg_error(cfg, "%s: '%s' is not one of stderr, syslog",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

/* A fraction for jitter: 0 to 1. */
static int
conf_cb_fraction(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || !(d >= 0 && d <= 1)) {
		cfg_error(cfg, "%s: '%s' is not a number from 0 to 1",
		    opt->name, value);
		d = 0;
	}
	*(double *)result = d;
	return 0;
}

/* A backoff multiplier: 1 to 100. */
static int
conf_cb_multiplier(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' ||
	    !(d >= 1 && d <= 100)) {
		cfg_error(cfg, "%s: '%s' is not a number from 1 to 100",
		    opt->name, value);
		d = 1;
	}
	*(double *)result = d;
	return 0;
}

static int
conf_cb_route(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *unix_path = "lmtp:unix:";
	struct conf_route r;

	if (strncmp(value, unix_path, strlen(unix_path)) == 0 &&
	    strlen(value + strlen(unix_path)) > CONF_SOCKET_PATH_MAX)
		cfg_error(cfg,
		    "%s: a path of %zu bytes is more than the limit of %zu "
		    "for a Unix socket",
		    opt->name, strlen(value + strlen(unix_path)),
		    CONF_SOCKET_PATH_MAX);
	else if (conf_parse_route(value, &r) < 0)
		cfg_error(cfg,
		    "%s: bad route '%s' (use mx, smtp:[host]:port, "
		    "lmtp:[host]:port or lmtp:unix:/path)",
		    opt->name, value);
	else
		conf_route_fini(&r);
	*(const char **)result = value;
	return 0;
}

static int
conf_tls_policy_parse(const char *s, enum tls_policy *out)
{
	static const enum tls_policy all[] = {
	    TLS_NONE, TLS_MAY, TLS_ENCRYPT, TLS_VERIFY};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(s, conf_tls_policy_str(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	return -1;
}

static int
conf_cb_tls(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	enum tls_policy p;

	if (conf_tls_policy_parse(value, &p) < 0)
		cfg_error(cfg,
		    "%s: '%s' is not one of none, may, encrypt, verify",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

static int
conf_cb_dns_prefer(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (strcmp(value, "ipv4") != 0 && strcmp(value, "ipv6") != 0)
		cfg_error(
		    cfg, "%s: '%s' is not one of ipv4, ipv6", opt->name, value);
	*(const char **)result = value;
	return 0;
}

static int
conf_cb_spool_recovery(
    cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (strcmp(value, "strict") != 0 && strcmp(value, "salvage") != 0)
		cfg_error(cfg, "%s: '%s' is not one of strict, salvage",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

/* A network proxies may send the PROXY protocol from. */
static int
conf_cb_cidr(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct conf_cidr c;
	int rc = conf_parse_cidr(value, &c);

	if (rc == CONF_CIDR_HOST_BITS)
		cfg_error(cfg,
		    "%s: '%s' has bits set past its prefix length (use the "
		    "network's first address, e.g. 10.0.0.0/8)",
		    opt->name, value);
	else if (rc < 0)
		cfg_error(cfg,
		    "%s: bad network '%s' (use 10.0.0.0/8, 2001:db8::/32 or "
		    "an address)",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

/* This node's name in a fleet, or "" for the host name's first label. */
static int
conf_cb_node_id(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value[0] != '\0' && !conf_valid_node_id(value))
		cfg_error(cfg,
		    "%s: bad node id '%s' (letters, digits and hyphens, at "
		    "most %d)",
		    opt->name, value, CONF_NODE_ID_MAX);
	*(const char **)result = value;
	return 0;
}

/* The host name's first label, made a valid node_id. */
static char *
conf_default_node_id(const char *hostname)
{
	size_t n = strcspn(hostname, ".");
	char *id;

	if (n == 0)
		return xstrdup("localhost");
	if (n > CONF_NODE_ID_MAX)
		n = CONF_NODE_ID_MAX;
	id = xasprintf("%.*s", (int)n, hostname);
	for (char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p))
			*p = '-';
	return id;
}

/* The PROXY protocol's options and node_id, into cf (checked already). */
static void
conf_build_proxy(struct conf *cf, cfg_t *cfg)
{
	const char *id = cfg_getstr(cfg, "node_id");

	cf->nproxy_listen = cfg_size(cfg, "proxy_listen");
	cf->proxy_listen =
	    xcalloc(cf->nproxy_listen, sizeof(*cf->proxy_listen));
	for (size_t i = 0; i < cf->nproxy_listen; i++)
		if (conf_parse_addr(
			cfg_getnstr(cfg, "proxy_listen", (unsigned)i),
			&cf->proxy_listen[i]) < 0)
			PANIC("proxy_listen passed its check but not parse");
	cf->nproxy_trusted = cfg_size(cfg, "proxy_trusted");
	cf->proxy_trusted =
	    xcalloc(cf->nproxy_trusted, sizeof(*cf->proxy_trusted));
	for (size_t i = 0; i < cf->nproxy_trusted; i++)
		if (conf_parse_cidr(
			cfg_getnstr(cfg, "proxy_trusted", (unsigned)i),
			&cf->proxy_trusted[i]) < 0)
			PANIC("proxy_trusted passed its check but not parse");
	cf->proxy_timeout = cfg_getint(cfg, "proxy_timeout");
	cf->npeer_listen = cfg_size(cfg, "peer_listen");
	cf->peer_listen = xcalloc(cf->npeer_listen, sizeof(*cf->peer_listen));
	for (size_t i = 0; i < cf->npeer_listen; i++)
		if (conf_parse_addr(
			cfg_getnstr(cfg, "peer_listen", (unsigned)i),
			&cf->peer_listen[i]) < 0)
			PANIC("peer_listen passed its check but not parse");
	cf->npeer_trusted = cfg_size(cfg, "peer_trusted");
	cf->peer_trusted =
	    xcalloc(cf->npeer_trusted, sizeof(*cf->peer_trusted));
	for (size_t i = 0; i < cf->npeer_trusted; i++)
		if (conf_parse_cidr(
			cfg_getnstr(cfg, "peer_trusted", (unsigned)i),
			&cf->peer_trusted[i]) < 0)
			PANIC("peer_trusted passed its check but not parse");
	cf->node_id =
	    id[0] != '\0' ? xstrdup(id) : conf_default_node_id(cf->hostname);
}

/* An optional file that must be readable when given. */
static int
conf_cb_file(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	conf_note_line(opt, value[0] != '\0' ? cfg->line : 0);
	if (value[0] != '\0' && access(value, R_OK) < 0)
		cfg_error(cfg, "%s: cannot read '%s': %s", opt->name, value,
		    strerror(errno));
	*(const char **)result = value;
	return 0;
}

/*
 * Whether s is local@domain with a dot-atom local part of at most 64
 * octets (RFC 5321 4.1.2, 4.5.3.1.1) and no % or !, which a next hop could
 * read as a route.
 */
static bool
conf_valid_mailbox(const char *s)
{
	const char *at = strrchr(s, '@');
	bool prevdot = true;

	char ace[IDN_NAME_SIZE];

	if (at == NULL || at == s || at - s > 64 ||
	    idn_to_ascii(at + 1, ace, sizeof(ace), NULL, 0) != 0)
		return false;
	for (const char *p = s; p < at; p++) {
		if (*p == '.') {
			if (prevdot)
				return false;
			prevdot = true;
		} else if (isalnum((unsigned char)*p) ||
			   strchr("#$&'*+-/=?^_`{|}~", *p) != NULL) {
			prevdot = false;
		} else {
			return false;
		}
	}
	return !prevdot;
}

/* A valid mailbox with its domain in A-labels (malloc'd), so that it
 * needs no SMTPUTF8 in any envelope; NULL for "". */
static char *
conf_mailbox_ace(const char *s)
{
	const char *at = strrchr(s, '@');
	char ace[IDN_NAME_SIZE];

	if (s[0] == '\0' || at == NULL ||
	    idn_to_ascii(at + 1, ace, sizeof(ace), NULL, 0) != 0)
		return NULL;
	return xasprintf("%.*s@%s", (int)(at - s), s, ace);
}

/* An address, or "" for the default. */
static int
conf_cb_mailbox(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value[0] != '\0' && !conf_valid_mailbox(value))
		cfg_error(cfg, "%s: bad address '%s' (use local@domain)",
		    opt->name, value);
	*(const char **)result = value;
	return 0;
}

/*
 * A domain section's title must be a domain; libconfuse calls this once
 * the section is read, so the line is the section's last.
 */
static int
conf_validate_domain_sec(cfg_t *cfg, cfg_opt_t *opt)
{
	unsigned n = cfg_opt_size(opt);
	const char *t = cfg_title(cfg_opt_getnsec(opt, n - 1));
	char ace[IDN_NAME_SIZE], why[128];

	if (t != NULL && conf_wildcard(t, why, sizeof(why))) {
		cfg_error(cfg, "domain: %s", why);
		return 0;
	}
	if (t == NULL || idn_to_ascii(t[0] == '.' ? t + 1 : t, ace, sizeof(ace),
			     why, sizeof(why)) < 0) {
		cfg_error(cfg, "domain: bad domain name '%s': %s", t ? t : "",
		    t ? why : "empty name");
		return 0;
	}
	/* The two forms of one name are one section (libconfuse only
	 * catches titles written the same). */
	for (unsigned i = 0; i + 1 < n; i++) {
		const char *o = cfg_title(cfg_opt_getnsec(opt, i));
		char oace[IDN_NAME_SIZE];

		if (o != NULL && (o[0] == '.') == (t[0] == '.') &&
		    idn_to_ascii(o[0] == '.' ? o + 1 : o, oace, sizeof(oace),
			NULL, 0) == 0 &&
		    strcmp(ace, oace) == 0)
			cfg_error(cfg,
			    "domain: '%s' is the same domain as '%s'", t, o);
	}
	return 0;
}

/*
 * The option table: name, default, and the callback that checks it. Each
 * is documented, with the same default, in etc/mxspool.conf.
 */
/*
 * The retry policy's options. The global block has defaults; a domain's
 * block has none, so that what it leaves out is inherited.
 */
#define CONF_RETRY_OPTS(F)                                                     \
	{                                                                      \
		CFG_INT_CB("initial", 5, F, conf_cb_duration),                 \
		    CFG_FLOAT_CB("multiplier", 2.0, F, conf_cb_multiplier),    \
		    CFG_INT_CB("max_interval", 10, F, conf_cb_duration),       \
		    CFG_FLOAT_CB("jitter", 0.1, F, conf_cb_fraction),          \
		    CFG_INT_CB("max_age", 14 * 86400, F, conf_cb_duration),    \
		    CFG_INT_CB("warn_after", 86400, F, conf_cb_duration),      \
		    CFG_INT_CB("probe_interval", 10, F, conf_cb_duration),     \
		    CFG_INT_CB("recovery_connections", 2, F, conf_cb_count),   \
		    CFG_INT_CB("max_connections", 20, F, conf_cb_count),       \
		    CFG_INT_CB(                                                \
			"max_msgs_per_connection", 100, F, conf_cb_count),     \
		    CFG_INT_CB("cluster_nodes", 1, F, conf_cb_count),          \
		    CFG_BOOL("rejection_guard", cfg_true, F),                  \
		    CFG_FLOAT_CB(                                              \
			"reject_storm_ratio", 0.5, F, conf_cb_fraction),       \
		    CFG_INT_CB("reject_storm_min", 20, F, conf_cb_count),      \
		    CFG_INT_CB(                                                \
			"reject_storm_window", 600, F, conf_cb_duration),      \
		    CFG_END()                                                  \
	}

static cfg_opt_t conf_retry_opts[] = CONF_RETRY_OPTS(CFGF_NONE);
static cfg_opt_t conf_domain_retry_opts[] = CONF_RETRY_OPTS(CFGF_NODEFAULT);

static cfg_opt_t conf_domain_opts[] = {
    CFG_STR_CB("route", "mx", CFGF_NONE, conf_cb_route),
    CFG_STR_CB("tls", 0, CFGF_NODEFAULT, conf_cb_tls),
    CFG_STR_CB("recipients", "", CFGF_NONE, conf_cb_file),
    CFG_SEC("retry", conf_domain_retry_opts, CFGF_NONE),
    CFG_BOOL("soft_bounce", cfg_false, CFGF_NODEFAULT),
    CFG_END(),
};

/*
 * The option table: name, default, and the callback that checks it. Each
 * is documented, with the same default, in etc/mxspool.conf.
 */
static cfg_opt_t conf_opts[] = {
    CFG_STR_CB("hostname", "", CFGF_NONE, conf_cb_hostname),
    CFG_STR_LIST_CB("listen", "{\"0.0.0.0:25\"}", CFGF_NONE, conf_cb_addr),
    CFG_STR_CB(
	"spool_dir", CONF_DEFAULT_SPOOL_DIR, CFGF_NONE, conf_cb_spool_dir),
    CFG_INT_CB("spool_min_free", 128 * 1024 * 1024, CFGF_NONE, conf_cb_size),
    CFG_STR_CB("spool_recovery", "salvage", CFGF_NONE, conf_cb_spool_recovery),
    CFG_BOOL("spool_dir_check", cfg_true, CFGF_NONE),
    CFG_STR_CB("control_socket", CONF_DEFAULT_CONTROL_SOCKET, CFGF_NONE,
	conf_cb_socket_path),
    CFG_STR_CB("control_socket_mode", "0660", CFGF_NONE, conf_cb_mode),
    CFG_STR_CB("control_socket_owner", "", CFGF_NONE, conf_cb_account),
    CFG_STR_CB("control_socket_group", "", CFGF_NONE, conf_cb_account),
    CFG_STR_CB("metrics_listen", "127.0.0.1:9125", CFGF_NONE, conf_cb_opt_addr),
    CFG_STR_CB("user", "", CFGF_NONE, conf_cb_user),
    CFG_STR_CB("group", "", CFGF_NONE, conf_cb_group),
    CFG_STR_LIST_CB("relay_domains", 0, CFGF_NODEFAULT, conf_cb_domain),
    CFG_STR_CB("log_level", "info", CFGF_NONE, conf_cb_log_level),
    CFG_STR_CB("log", "stderr", CFGF_NONE, conf_cb_log),
    CFG_INT_CB("shutdown_timeout", 10, CFGF_NONE, conf_cb_duration),
    /* Inbound SMTP. */
    CFG_INT_CB("message_size_limit", 25 * 1024 * 1024, CFGF_NONE, conf_cb_size),
    CFG_INT_CB("max_recipients", 1000, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("max_connections", 1000, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("max_connections_per_ip", 50, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("max_errors", 20, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("command_timeout", 300, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("data_timeout", 180, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("data_memory_limit", 512 * 1024 * 1024, CFGF_NONE, conf_cb_size),
    CFG_INT_CB("session_deadline", 30 * 60, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("min_data_rate", 1024, CFGF_NONE, conf_cb_size),
    CFG_INT_CB("min_data_rate_window", 60, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("max_hops", 50, CFGF_NONE, conf_cb_count),
    CFG_STR_CB("tls_cert_file", "", CFGF_NONE, conf_cb_file),
    CFG_STR_CB("tls_key_file", "", CFGF_NONE, conf_cb_file),
    CFG_STR_CB("postmaster", "", CFGF_NONE, conf_cb_mailbox),
    CFG_STR_LIST_CB("proxy_listen", "{}", CFGF_NONE, conf_cb_addr),
    CFG_STR_LIST_CB("proxy_trusted", "{\"127.0.0.1/32\", \"::1/128\"}",
	CFGF_NONE, conf_cb_cidr),
    CFG_INT_CB("proxy_timeout", 5, CFGF_NONE, conf_cb_duration),
    CFG_STR_LIST_CB("peer_listen", "{}", CFGF_NONE, conf_cb_addr),
    CFG_STR_LIST_CB("peer_trusted", "{\"127.0.0.1/32\", \"::1/128\"}",
	CFGF_NONE, conf_cb_cidr),
    CFG_STR_CB("node_id", "", CFGF_NONE, conf_cb_node_id),
    /* DNS. */
    CFG_STR_LIST_CB("dns_servers", "{}", CFGF_NONE, conf_cb_addr),
    CFG_INT_CB("dns_timeout", 5, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("dns_tries", 2, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("dns_ptr_timeout", 3, CFGF_NONE, conf_cb_duration),
    CFG_STR_CB("dns_prefer", "ipv4", CFGF_NONE, conf_cb_dns_prefer),
    CFG_STR_LIST_CB("mx_self_names", "{}", CFGF_NONE, conf_cb_domain),
    CFG_INT_CB("dns_cache_size", 10000, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("dns_min_ttl", 10, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("dns_max_ttl", 86400, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("dns_negative_ttl", 300, CFGF_NONE, conf_cb_duration),
    /* Delivery. */
    CFG_SEC("retry", conf_retry_opts, CFGF_NONE),
    CFG_BOOL("soft_bounce", cfg_false, CFGF_NONE),
    CFG_INT_CB(
	"known_recipients_max_age", 90 * 86400, CFGF_NONE, conf_cb_duration),
    CFG_STR_CB("tls", "may", CFGF_NONE, conf_cb_tls),
    CFG_STR_CB("tls_ca_file", "", CFGF_NONE, conf_cb_file),
    CFG_STR_CB("bounce_route", "mx", CFGF_NONE, conf_cb_route),
    CFG_INT_CB("max_outbound_connections", 100, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("active_limit", 20000, CFGF_NONE, conf_cb_count),
    CFG_INT_CB("connect_timeout", 30, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("client_command_timeout", 300, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("client_data_timeout", 180, CFGF_NONE, conf_cb_duration),
    CFG_INT_CB("client_final_timeout", 600, CFGF_NONE, conf_cb_duration),
    CFG_SEC("domain", conf_domain_opts,
	CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
    CFG_END(),
};

/* Every number option has its range in conf_ranges (a bug otherwise). */
static void
conf_ranges_check(const cfg_opt_t *opts)
{
	for (; opts->name != NULL; opts++)
		if (opts->type == CFGT_SEC)
			conf_ranges_check(opts->subopts);
		else if (opts->parsecb == conf_cb_duration ||
			 opts->parsecb == conf_cb_size ||
			 opts->parsecb == conf_cb_count)
			(void)conf_range_of(opts->name);
}

const char *
conf_option_name(size_t i)
{
	static char names[128][64];
	static size_t n;

	if (n == 0)
		for (const cfg_opt_t *o = conf_opts; o->name != NULL; o++) {
			if (o->type != CFGT_SEC) {
				ASSERT(n < sizeof(names) / sizeof(names[0]));
				snprintf(names[n++], sizeof(names[0]), "%s",
				    o->name);
				continue;
			}
			for (const cfg_opt_t *so = o->subopts; so->name != NULL;
			     so++) {
				ASSERT(n < sizeof(names) / sizeof(names[0]));
				snprintf(names[n++], sizeof(names[0]), "%s.%s",
				    o->name, so->name);
			}
		}
	return i < n ? names[i] : NULL;
}

/* Whether top-level option name (len bytes) is a list. */
static bool
conf_is_list(const char *name, int len)
{
	for (const cfg_opt_t *o = conf_opts; o->name != NULL; o++)
		if ((int)strlen(o->name) == len &&
		    memcmp(o->name, name, (size_t)len) == 0)
			return (o->flags & CFGF_LIST) != 0;
	return false;
}

static char *
conf_default_hostname(void)
{
	char buf[256];

	if (gethostname(buf, sizeof(buf) - 1) < 0 || buf[0] == '\0')
		return xstrdup("localhost");
	buf[sizeof(buf) - 1] = '\0';
	return xstrdup(buf);
}

static char *
conf_lower_dup(const char *s)
{
	char *d = xstrdup(s);

	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

static char *
conf_opt_path(cfg_t *cfg, const char *name)
{
	const char *v = cfg_getstr(cfg, name);

	return v != NULL && v[0] != '\0' ? xstrdup(v) : NULL;
}

/*
 * A domain as the config keeps it: lower-case A-labels, with a leading "."
 * (a pattern for the names below it) kept. Its parse callback checked it.
 */
static char *
conf_domain_dup(const char *value)
{
	bool dot = value[0] == '.';
	char ace[IDN_NAME_SIZE];

	if (idn_to_ascii(value + dot, ace, sizeof(ace), NULL, 0) < 0)
		PANIC("domain '%s' passed its check but not conversion", value);
	return xasprintf("%s%s", dot ? "." : "", ace);
}

/* A list of domains, as conf_domain_dup keeps them. */
static char **
conf_domain_list(cfg_t *cfg, const char *name, size_t *n)
{
	char **v;

	*n = cfg_size(cfg, name);
	v = xcalloc(*n, sizeof(char *));
	for (size_t i = 0; i < *n; i++)
		v[i] = conf_domain_dup(cfg_getnstr(cfg, name, (unsigned)i));
	return v;
}

static void
conf_build_route(struct conf_route *r, const char *text)
{
	if (conf_parse_route(text, r) < 0)
		PANIC("route '%s' passed its check but not parse", text);
}

static void
conf_build_retry(struct conf_retry *r, cfg_t *sec)
{
	/* Only what the section sets: a domain's block inherits the rest. */
	if (cfg_size(sec, "initial"))
		r->initial = cfg_getint(sec, "initial");
	if (cfg_size(sec, "multiplier"))
		r->multiplier = cfg_getfloat(sec, "multiplier");
	if (cfg_size(sec, "max_interval"))
		r->max_interval = cfg_getint(sec, "max_interval");
	if (cfg_size(sec, "jitter"))
		r->jitter = cfg_getfloat(sec, "jitter");
	if (cfg_size(sec, "max_age"))
		r->max_age = cfg_getint(sec, "max_age");
	if (cfg_size(sec, "warn_after"))
		r->warn_after = cfg_getint(sec, "warn_after");
	if (cfg_size(sec, "probe_interval"))
		r->probe_interval = cfg_getint(sec, "probe_interval");
	if (cfg_size(sec, "recovery_connections"))
		r->recovery_connections =
		    (unsigned)cfg_getint(sec, "recovery_connections");
	if (cfg_size(sec, "max_connections"))
		r->max_connections =
		    (unsigned)cfg_getint(sec, "max_connections");
	if (cfg_size(sec, "max_msgs_per_connection"))
		r->max_msgs_per_connection =
		    (unsigned)cfg_getint(sec, "max_msgs_per_connection");
	if (cfg_size(sec, "cluster_nodes"))
		r->cluster_nodes = (unsigned)cfg_getint(sec, "cluster_nodes");
	if (cfg_size(sec, "rejection_guard"))
		r->rejection_guard = cfg_getbool(sec, "rejection_guard");
	if (cfg_size(sec, "reject_storm_ratio"))
		r->reject_storm_ratio = cfg_getfloat(sec, "reject_storm_ratio");
	if (cfg_size(sec, "reject_storm_min"))
		r->reject_storm_min =
		    (unsigned)cfg_getint(sec, "reject_storm_min");
	if (cfg_size(sec, "reject_storm_window"))
		r->reject_storm_window = cfg_getint(sec, "reject_storm_window");
}

static int
conf_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Reads a recipients file: one address or local part per line, # comments.
 * Problems are reported as "FILE:LINE: message" like the config's own.
 */
static void
conf_load_recipients(struct conf_domain *d)
{
	const char *err;
	char *text = conf_read_file(d->recipients_file, &err), *line, *save;
	char ace[IDN_NAME_SIZE], why[128];
	size_t cap = 0;
	int lineno = 0;

	if (text == NULL) {
		conf_add_error("%s: cannot read: %s", d->recipients_file, err);
		return;
	}
	for (line = text; line != NULL; line = save) {
		char *end, *p;

		save = strchr(line, '\n');
		if (save != NULL)
			*save++ = '\0';
		lineno++;
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		while (isspace((unsigned char)*line))
			line++;
		end = line + strlen(line);
		while (end > line && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*line == '\0')
			continue;
		p = strchr(line, '@');
		if (strpbrk(line, " \t<>\"") != NULL || p == line ||
		    (p != NULL && strchr(p + 1, '@') != NULL)) {
			conf_add_error("%s:%d: bad recipient '%s'",
			    d->recipients_file, lineno, line);
			continue;
		}
		/* The domain in either form, kept as A-labels: the lookup
		 * converts the recipient's domain the same way. */
		if (p != NULL && idn_to_ascii(p + 1, ace, sizeof(ace), why,
				     sizeof(why)) < 0) {
			conf_add_error("%s:%d: bad recipient '%s': %s",
			    d->recipients_file, lineno, line, why);
			continue;
		}
		if (p != NULL)
			*p = '\0';
		d->recipients = xgrow(
		    d->recipients, &cap, d->nrecipients + 1, sizeof(char *));
		d->recipients[d->nrecipients] = conf_lower_dup(line);
		if (p != NULL) {
			char *lp = d->recipients[d->nrecipients];

			d->recipients[d->nrecipients] =
			    xasprintf("%s@%s", lp, ace);
			free(lp);
		}
		d->nrecipients++;
	}
	free(text);
	if (d->nrecipients > 0) /* an empty file: no list to sort */
		qsort(
		    d->recipients, d->nrecipients, sizeof(char *), conf_strcmp);
}

static void
conf_build_domain(struct conf *cf, struct conf_domain *d, cfg_t *sec)
{
	const char *tls = cfg_size(sec, "tls") ? cfg_getstr(sec, "tls") : NULL;

	d->name = conf_domain_dup(cfg_title(sec));
	conf_build_route(&d->route, cfg_getstr(sec, "route"));
	d->tls = cf->tls;
	if (tls != NULL)
		(void)conf_tls_policy_parse(tls, &d->tls);
	d->retry = cf->retry;
	conf_build_retry(&d->retry, cfg_getsec(sec, "retry"));
	if (cfg_size(sec, "soft_bounce"))
		d->retry.soft_bounce = cfg_getbool(sec, "soft_bounce");
	d->recipients_file = conf_opt_path(sec, "recipients");
	if (d->recipients_file != NULL)
		conf_load_recipients(d);
}

static void
conf_build(struct conf *cf, cfg_t *cfg)
{
	const char *host = cfg_getstr(cfg, "hostname");

	cf->hostname = host[0] ? xstrdup(host) : conf_default_hostname();

	cf->nlisten = cfg_size(cfg, "listen");
	cf->listen = xcalloc(cf->nlisten, sizeof(*cf->listen));
	for (size_t i = 0; i < cf->nlisten; i++)
		if (conf_parse_addr(cfg_getnstr(cfg, "listen", (unsigned)i),
			&cf->listen[i]) < 0)
			PANIC("listen address passed its check but not parse");

	cf->spool_dir = xstrdup(cfg_getstr(cfg, "spool_dir"));
	cf->spool_min_free = (uint64_t)cfg_getint(cfg, "spool_min_free");
	cf->spool_recovery_strict =
	    strcmp(cfg_getstr(cfg, "spool_recovery"), "strict") == 0;
	cf->spool_dir_check = cfg_getbool(cfg, "spool_dir_check");
	cf->control_socket = xstrdup(cfg_getstr(cfg, "control_socket"));
	cf->control_socket_mode =
	    (unsigned)strtoul(cfg_getstr(cfg, "control_socket_mode"), NULL, 8);
	cf->control_socket_owner = conf_opt_path(cfg, "control_socket_owner");
	cf->control_socket_group = conf_opt_path(cfg, "control_socket_group");
	cf->user = conf_opt_path(cfg, "user");
	cf->group = conf_opt_path(cfg, "group");
	if (cfg_getstr(cfg, "metrics_listen")[0] != '\0') {
		cf->metrics_listen = xcalloc(1, sizeof(*cf->metrics_listen));
		if (conf_parse_addr(cfg_getstr(cfg, "metrics_listen"),
			cf->metrics_listen) < 0)
			PANIC("metrics_listen passed its check but not parse");
	}
	cf->relay_domains =
	    conf_domain_list(cfg, "relay_domains", &cf->nrelay_domains);
	if (log_level_parse(cfg_getstr(cfg, "log_level"), &cf->log_level) < 0)
		PANIC("log_level passed its check but not parse");
	cf->log_dest = strcmp(cfg_getstr(cfg, "log"), "syslog") == 0
			   ? LOG_TO_SYSLOG
			   : LOG_TO_STDERR;
	cf->shutdown_timeout = cfg_getint(cfg, "shutdown_timeout");

	cf->message_size_limit =
	    (uint64_t)cfg_getint(cfg, "message_size_limit");
	cf->max_recipients = (unsigned)cfg_getint(cfg, "max_recipients");
	cf->max_connections = (unsigned)cfg_getint(cfg, "max_connections");
	cf->max_connections_per_ip =
	    (unsigned)cfg_getint(cfg, "max_connections_per_ip");
	cf->max_errors = (unsigned)cfg_getint(cfg, "max_errors");
	cf->command_timeout = cfg_getint(cfg, "command_timeout");
	cf->data_timeout = cfg_getint(cfg, "data_timeout");
	cf->data_memory_limit = (uint64_t)cfg_getint(cfg, "data_memory_limit");
	cf->session_deadline = cfg_getint(cfg, "session_deadline");
	cf->min_data_rate = (uint64_t)cfg_getint(cfg, "min_data_rate");
	cf->min_data_rate_window = cfg_getint(cfg, "min_data_rate_window");
	cf->max_hops = (unsigned)cfg_getint(cfg, "max_hops");
	cf->tls_cert_file = conf_opt_path(cfg, "tls_cert_file");
	cf->tls_key_file = conf_opt_path(cfg, "tls_key_file");
	cf->tls_cert_line = conf_line_of("tls_cert_file");
	cf->tls_key_line = conf_line_of("tls_key_file");
	cf->postmaster = conf_mailbox_ace(cfg_getstr(cfg, "postmaster"));
	for (size_t i = 0; cf->postmaster == NULL && i < cf->nrelay_domains;
	     i++)
		if (cf->relay_domains[i][0] != '.')
			cf->postmaster =
			    xasprintf("postmaster@%s", cf->relay_domains[i]);
	conf_build_proxy(cf, cfg);

	cf->ndns_servers = cfg_size(cfg, "dns_servers");
	cf->dns_servers = xcalloc(cf->ndns_servers, sizeof(*cf->dns_servers));
	for (size_t i = 0; i < cf->ndns_servers; i++)
		if (conf_parse_addr(
			cfg_getnstr(cfg, "dns_servers", (unsigned)i),
			&cf->dns_servers[i]) < 0)
			PANIC("dns server passed its check but not parse");
	cf->dns_timeout_ms = (int)cfg_getint(cfg, "dns_timeout") * 1000;
	cf->dns_tries = (unsigned)cfg_getint(cfg, "dns_tries");
	cf->dns_ptr_timeout_ms = (int)cfg_getint(cfg, "dns_ptr_timeout") * 1000;
	cf->dns_prefer_ipv6 =
	    strcmp(cfg_getstr(cfg, "dns_prefer"), "ipv6") == 0;
	cf->mx_self_names =
	    conf_domain_list(cfg, "mx_self_names", &cf->nmx_self_names);
	if (cf->nmx_self_names == 0) {
		cf->mx_self_names =
		    xgrow(cf->mx_self_names, &(size_t){0}, 1, sizeof(char *));
		cf->mx_self_names[0] = conf_lower_dup(cf->hostname);
		cf->nmx_self_names = 1;
	}
	cf->dns_cache_size = (unsigned)cfg_getint(cfg, "dns_cache_size");
	cf->dns_min_ttl = cfg_getint(cfg, "dns_min_ttl");
	cf->dns_max_ttl = cfg_getint(cfg, "dns_max_ttl");
	cf->dns_negative_ttl = cfg_getint(cfg, "dns_negative_ttl");

	conf_build_retry(&cf->retry, cfg_getsec(cfg, "retry"));
	cf->retry.soft_bounce = cfg_getbool(cfg, "soft_bounce");
	cf->known_recipients_max_age =
	    cfg_getint(cfg, "known_recipients_max_age");
	(void)conf_tls_policy_parse(cfg_getstr(cfg, "tls"), &cf->tls);
	cf->tls_ca_file = conf_opt_path(cfg, "tls_ca_file");
	conf_build_route(&cf->bounce_route, cfg_getstr(cfg, "bounce_route"));
	cf->max_outbound_connections =
	    (unsigned)cfg_getint(cfg, "max_outbound_connections");
	cf->active_limit = (unsigned)cfg_getint(cfg, "active_limit");
	cf->connect_timeout = cfg_getint(cfg, "connect_timeout");
	cf->client_command_timeout = cfg_getint(cfg, "client_command_timeout");
	cf->client_data_timeout = cfg_getint(cfg, "client_data_timeout");
	cf->client_final_timeout = cfg_getint(cfg, "client_final_timeout");

	cf->ndomains = cfg_size(cfg, "domain");
	cf->domains = xcalloc(cf->ndomains, sizeof(*cf->domains));
	for (size_t i = 0; i < cf->ndomains; i++)
		conf_build_domain(cf, &cf->domains[i],
		    cfg_getnsec(cfg, "domain", (unsigned)i));
}

/* Whether list option name has a value that does not start with a dot. */
static bool
conf_has_plain(cfg_t *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg_size(cfg, name); i++)
		if (cfg_getnstr(cfg, name, i)[0] != '.')
			return true;
	return false;
}

/* The line where the text sets top-level option name, or 0. */
static int
conf_top_line(const struct conf_item *items, size_t n, const char *name)
{
	const struct conf_item *it = conf_item_find(items, n, -1, name);

	return it != NULL ? it->name.line : 0;
}

/*
 * Checks that need the whole file: required options, cross-references.
 * hint: the line of a commented-out relay_domains, or 0: a missing option
 * has no line of its own, and the one after the file's end is no help.
 */
static void
conf_check(cfg_t *cfg, int hint, const struct conf_item *items, size_t n)
{
	const char *user, *owner;

	if (cfg_size(cfg, "relay_domains") == 0) {
		conf_error_at(hint,
		    "relay_domains is required (the domains this backup MX "
		    "accepts mail for)");
	} else if (cfg_getstr(cfg, "postmaster")[0] == '\0' &&
		   !conf_has_plain(cfg, "relay_domains")) {
		conf_error_at(conf_top_line(items, n, "relay_domains"),
		    "postmaster: not set, and relay_domains names no domain "
		    "(only .subdomain patterns) to default to");
	}
	if (cfg_size(cfg, "listen") == 0)
		conf_error_at(conf_top_line(items, n, "listen"),
		    "listen: missing required value");
	/* user and group: reported at the line of the option they refuse. */
	user = cfg_getstr(cfg, "user");
	owner = cfg_getstr(cfg, "control_socket_owner");
	if (cfg_getstr(cfg, "group")[0] != '\0' && user[0] == '\0') {
		cfg->line = conf_line_of("group");
		cfg_error(cfg, "group: set without user (the group is the "
			       "one mxspoold switches to with user)");
	}
	if ((cfg_getstr(cfg, "tls_cert_file")[0] == '\0') !=
	    (cfg_getstr(cfg, "tls_key_file")[0] == '\0')) {
		bool cert = cfg_getstr(cfg, "tls_cert_file")[0] != '\0';

		cfg->line =
		    conf_line_of(cert ? "tls_cert_file" : "tls_key_file");
		cfg_error(cfg,
		    "tls_cert_file and tls_key_file go together: %s is not set",
		    cert ? "tls_key_file" : "tls_cert_file");
	}
	if (user[0] != '\0' && owner[0] != '\0' && strcmp(owner, user) != 0) {
		cfg->line = conf_line_of("control_socket_owner");
		cfg_error(cfg,
		    "control_socket_owner: must be empty or the same as user "
		    "'%s' (the socket is made after the switch to user)",
		    user);
	}
}

int
conf_load(struct conf **cfp, const char *path, char **errors)
{
	struct conf_item *items;
	const char *why;
	struct conf *cf;
	size_t nitems;
	char *text;
	cfg_t *cfg;
	int rc, hint;

	*cfp = NULL;
	*errors = NULL;
	conf_errs = conf_warns = NULL;
	conf_errs_len = conf_warns_len = 0;
	conf_nerrs = 0;
	for (size_t i = 0; i < sizeof(conf_seen) / sizeof(conf_seen[0]); i++)
		conf_seen[i].line = 0;

	text = conf_read_file(path, &why);
	if (text == NULL) {
		*errors = xasprintf("%s: cannot read: %s\n", path, why);
		return -1;
	}
	conf_ranges_check(conf_opts);
	hint = conf_hint_line(text, "relay_domains");
	conf_strip_comments(text);
	conf_cur_path = path;
	conf_check_sections(text);
	items = conf_items(text, &nitems);
	cfg = cfg_init(conf_opts, CFGF_NONE);
	cfg_set_error_function(cfg, conf_on_error);
	cfg_set_validate_func(cfg, "domain", conf_validate_domain_sec);
	rc = cfg_parse_buf(cfg, text);
	conf_check_twice(items, nitems, conf_is_list);
	if (rc == CFG_SUCCESS)
		conf_check(cfg, hint, items, nitems);
	if (rc != CFG_SUCCESS || conf_nerrs > 0) {
		if (conf_errs == NULL)
			conf_errs = xasprintf("%s: cannot parse\n", path);
		cfg_free(cfg);
		goto fail;
	}

	cf = xcalloc(1, sizeof(*cf));
	cf->path = xstrdup(path);
	conf_build(cf, cfg);
	cfg_free(cfg);
	conf_check_values(cf, items, nitems);
	if (conf_nerrs > 0) { /* in files the config names, or between values */
		conf_free(cf);
		goto fail;
	}
	cf->warnings = conf_warns;
	conf_warns = NULL;
	free(items);
	free(text);
	*cfp = cf;
	return 0;

fail:
	*errors = conf_errs;
	conf_errs = NULL;
	free(conf_warns);
	conf_warns = NULL;
	free(items);
	free(text);
	return -1;
}

static void
conf_free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
conf_free(struct conf *cf)
{
	if (cf == NULL)
		return;
	free(cf->path);
	free(cf->warnings);
	free(cf->hostname);
	free(cf->listen);
	free(cf->spool_dir);
	free(cf->control_socket);
	free(cf->control_socket_owner);
	free(cf->control_socket_group);
	free(cf->user);
	free(cf->group);
	free(cf->metrics_listen);
	conf_free_list(cf->relay_domains, cf->nrelay_domains);
	free(cf->tls_cert_file);
	free(cf->tls_key_file);
	free(cf->postmaster);
	free(cf->proxy_listen);
	free(cf->proxy_trusted);
	free(cf->peer_listen);
	free(cf->peer_trusted);
	free(cf->node_id);
	free(cf->dns_servers);
	conf_free_list(cf->mx_self_names, cf->nmx_self_names);
	free(cf->tls_ca_file);
	conf_route_fini(&cf->bounce_route);
	for (size_t i = 0; i < cf->ndomains; i++) {
		struct conf_domain *d = &cf->domains[i];
		free(d->name);
		conf_route_fini(&d->route);
		free(d->recipients_file);
		conf_free_list(d->recipients, d->nrecipients);
	}
	free(cf->domains);
	free(cf);
}

/* Appends "what: u-labels (a-labels)\n" to *text if name has U-labels. */
static void
conf_idn_line(char **text, const char *what, const char *name)
{
	bool dot = name[0] == '.';
	char u[4 * IDN_NAME_SIZE];
	char *t;

	if (!idn_other_form(name + dot, u, sizeof(u)))
		return;
	t = xasprintf("%s%s: %s%s (%s)\n", *text ? *text : "", what,
	    dot ? "." : "", u, name);
	free(*text);
	*text = t;
}

char *
conf_idn_names(const struct conf *cf)
{
	char *text = NULL;

	for (size_t i = 0; i < cf->nrelay_domains; i++)
		conf_idn_line(&text, "relay_domains", cf->relay_domains[i]);
	for (size_t i = 0; i < cf->ndomains; i++)
		conf_idn_line(&text, "domain", cf->domains[i].name);
	return text;
}

/* Whether name matches a domain pattern ("a.b", or ".a.b" for below it). */
static bool
conf_domain_match(const char *pattern, const char *name)
{
	size_t plen = strlen(pattern), nlen = strlen(name);

	if (pattern[0] != '.')
		return strcasecmp(pattern, name) == 0;
	return nlen > plen && strcasecmp(name + nlen - plen, pattern) == 0;
}

bool
conf_is_relay_domain(const struct conf *cf, const char *domain)
{
	char buf[IDN_NAME_SIZE];

	domain = idn_key(domain, buf);
	for (size_t i = 0; i < cf->nrelay_domains; i++)
		if (conf_domain_match(cf->relay_domains[i], domain))
			return true;
	return false;
}

const struct conf_domain *
conf_domain_find(const struct conf *cf, const char *domain)
{
	const struct conf_domain *best = NULL;
	char buf[IDN_NAME_SIZE];

	/* An exact section wins; else the longest ".parent" that matches. */
	domain = idn_key(domain, buf);
	for (size_t i = 0; i < cf->ndomains; i++) {
		const struct conf_domain *d = &cf->domains[i];

		if (!conf_domain_match(d->name, domain))
			continue;
		if (d->name[0] != '.')
			return d;
		if (best == NULL || strlen(d->name) > strlen(best->name))
			best = d;
	}
	return best;
}

const struct conf_route *
conf_route_for(const struct conf *cf, const char *domain)
{
	static const struct conf_route mx = {.kind = ROUTE_MX, .text = "mx"};
	const struct conf_domain *d = conf_domain_find(cf, domain);

	return d != NULL ? &d->route : &mx;
}

enum tls_policy
conf_tls_for(const struct conf *cf, const char *domain)
{
	const struct conf_domain *d = conf_domain_find(cf, domain);

	return d != NULL ? d->tls : cf->tls;
}

const struct conf_retry *
conf_retry_for(const struct conf *cf, const char *domain)
{
	const struct conf_domain *d = conf_domain_find(cf, domain);

	return d != NULL ? &d->retry : &cf->retry;
}

static bool
conf_list_has(char *const *v, size_t n, const char *key)
{
	return n > 0 &&
	       bsearch(&key, v, n, sizeof(char *), conf_strcmp) != NULL;
}

bool
conf_has_recipients(const struct conf *cf, const char *domain)
{
	const struct conf_domain *d = conf_domain_find(cf, domain);

	return d != NULL && d->recipients_file != NULL;
}

bool
conf_recipient_known(
    const struct conf *cf, const char *local, const char *domain)
{
	const struct conf_domain *d = conf_domain_find(cf, domain);
	char buf[IDN_NAME_SIZE];
	char *addr, *lp;
	bool known;

	if (d == NULL || d->recipients_file == NULL)
		return true;
	domain = idn_key(domain, buf);
	lp = conf_lower_dup(local);
	if (lp[0] == '"' && strlen(lp) >= 2 && lp[strlen(lp) - 1] == '"') {
		/* A quoted local part is listed unquoted (RFC 5321 4.1.2:
		 * the backslash of a quoted-pair is not part of the name). */
		char *o = lp;

		for (const char *p = lp + 1; p[1] != '\0'; p++)
			*o++ = *p == '\\' && p[2] != '\0' ? *++p : *p;
		*o = '\0';
	}
	addr = xasprintf("%s@%s", lp, domain);
	for (char *p = addr; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	known = conf_list_has(d->recipients, d->nrecipients, addr) ||
		conf_list_has(d->recipients, d->nrecipients, lp);
	free(addr);
	free(lp);
	return known;
}
