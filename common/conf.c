/*
 * Config loading. libconfuse parses; each option with a format of its own
 * (durations, sizes, addresses, names) has a parse callback that checks it
 * where libconfuse still knows the line. A callback that finds a problem
 * records it and lets parsing go on, so that `mxspoold -t` reports every
 * such error at once. Syntax errors and unknown options stop libconfuse at
 * the first one; those are reported too, with their line.
 *
 * Comments are removed here before libconfuse sees the text: its 3.3 lexer
 * counts each comment's newline twice (so every line number after a comment
 * is wrong) and refuses a comment inside a list (libconfuse issue #150).
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
#include "common/xmem.h"

#define CONF_FILE_MAX (1024 * 1024)

/* Errors of the load in progress: loads run on one thread at a time. */
static const char *conf_cur_path;
static char *conf_errs;
static size_t conf_errs_len;
static int conf_nerrs;

static void __attribute__((format(printf, 2, 0)))
conf_on_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[1024];
	char *line;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	line = xasprintf("%s:%d: %s\n", conf_cur_path, cfg->line, msg);
	conf_errs = xrealloc(conf_errs, conf_errs_len + strlen(line) + 1);
	memcpy(conf_errs + conf_errs_len, line, strlen(line) + 1);
	conf_errs_len += strlen(line);
	conf_nerrs++;
	free(line);
}

int
conf_parse_duration(const char *s, int64_t *secs)
{
	int64_t total = 0;

	if (*s == '\0')
		return -1;
	while (*s != '\0') {
		int64_t unit;
		char *end;

		if (!isdigit((unsigned char)*s))
			return -1;
		errno = 0;
		unsigned long long n = strtoull(s, &end, 10);
		if (errno != 0)
			return -1;
		switch (*end) {
		case '\0':
			/* A bare number is seconds, but only on its own. */
			if (total != 0)
				return -1;
			unit = 1;
			break;
		case 's':
			unit = 1;
			break;
		case 'm':
			unit = 60;
			break;
		case 'h':
			unit = 3600;
			break;
		case 'd':
			unit = 86400;
			break;
		case 'w':
			unit = 7 * 86400;
			break;
		default:
			return -1;
		}
		if (n >
		    (unsigned long long)(INT64_MAX - total) / (uint64_t)unit)
			return -1;
		total += (int64_t)n * unit;
		s = *end ? end + 1 : end;
	}
	*secs = total;
	return 0;
}

int
conf_parse_size(const char *s, uint64_t *bytes)
{
	unsigned long long n;
	uint64_t mult = 1;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1024;
		break;
	case 'm':
	case 'M':
		mult = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mult = 1024 * 1024 * 1024;
		break;
	default:
		return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (n > UINT64_MAX / mult)
		return -1;
	*bytes = n * mult;
	return 0;
}

static int
conf_parse_port(const char *s, uint16_t *port)
{
	char *end;
	long n;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || n < 1 || n > 65535)
		return -1;
	*port = (uint16_t)n;
	return 0;
}

int
conf_parse_addr(const char *s, struct conf_addr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon;
	uint16_t port;
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (conf_parse_port(close + 2, &port) < 0)
			return -1;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		out->salen = sizeof(*sin6);
		snprintf(out->text, sizeof(out->text), "[%s]:%u", host, port);
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon == NULL || strchr(s, ':') != colon)
		return -1;
	hlen = (size_t)(colon - s);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (conf_parse_port(colon + 1, &port) < 0)
		return -1;
	struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	if (strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -1;
	out->salen = sizeof(*sin);
	snprintf(out->text, sizeof(out->text), "%s:%u", host, port);
	return 0;
}

bool
conf_valid_domain(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
		if (*p == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return s[len - 1] != '-';
}

bool
conf_is_relay_domain(const struct conf *cf, const char *domain)
{
	size_t dlen = strlen(domain);

	for (size_t i = 0; i < cf->nrelay_domains; i++) {
		const char *rd = cf->relay_domains[i];
		size_t rlen = strlen(rd);

		if (rd[0] == '.') {
			/* ".example.com" matches any subdomain, not the parent.
			 */
			if (dlen > rlen &&
			    strcasecmp(domain + dlen - rlen, rd) == 0)
				return true;
		} else if (strcasecmp(domain, rd) == 0)
			return true;
	}
	return false;
}

/*
 * Parse callbacks. Each receives the text as written and stores the parsed
 * value in *result; a bad value is reported with its line and parsing goes
 * on (returning -1 would stop libconfuse at the first problem).
 */
static int
conf_cb_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	int64_t secs = 0;

	if (conf_parse_duration(value, &secs) < 0 || secs > LONG_MAX)
		cfg_error(cfg,
		    "%s: bad duration '%s' (use e.g. 30s, 5m, 4h, 5d)",
		    opt->name, value);
	*(long *)result = (long)secs;
	return 0;
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

static int
conf_cb_domain(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *d = value[0] == '.' ? value + 1 : value;

	if (!conf_valid_domain(d))
		cfg_error(cfg, "%s: bad domain name '%s'", opt->name, value);
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

/*
 * The option table: name, default, and the callback that checks it. Each
 * is documented, with the same default, in etc/mxspool.conf.
 */
static cfg_opt_t conf_opts[] = {
    CFG_STR_CB("hostname", "", CFGF_NONE, conf_cb_hostname),
    CFG_STR_LIST_CB("listen", "{\"0.0.0.0:25\"}", CFGF_NONE, conf_cb_addr),
    CFG_STR_CB("spool_dir", "/var/spool/mxspool", CFGF_NONE, conf_cb_path),
    CFG_STR_CB(
	"control_socket", "/run/mxspool/control.sock", CFGF_NONE, conf_cb_path),
    CFG_STR_LIST_CB("relay_domains", 0, CFGF_NODEFAULT, conf_cb_domain),
    CFG_STR_CB("log_level", "info", CFGF_NONE, conf_cb_log_level),
    CFG_STR_CB("log", "stderr", CFGF_NONE, conf_cb_log),
    CFG_INT_CB("shutdown_timeout", 10, CFGF_NONE, conf_cb_duration),
    CFG_END(),
};

static char *
conf_default_hostname(void)
{
	char buf[256];

	if (gethostname(buf, sizeof(buf) - 1) < 0 || buf[0] == '\0')
		return xstrdup("localhost");
	buf[sizeof(buf) - 1] = '\0';
	return xstrdup(buf);
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
	cf->control_socket = xstrdup(cfg_getstr(cfg, "control_socket"));

	cf->nrelay_domains = cfg_size(cfg, "relay_domains");
	cf->relay_domains = xcalloc(cf->nrelay_domains, sizeof(char *));
	for (size_t i = 0; i < cf->nrelay_domains; i++) {
		char *d =
		    xstrdup(cfg_getnstr(cfg, "relay_domains", (unsigned)i));
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		cf->relay_domains[i] = d;
	}

	if (log_level_parse(cfg_getstr(cfg, "log_level"), &cf->log_level) < 0)
		PANIC("log_level passed its check but not parse");
	cf->log_dest = strcmp(cfg_getstr(cfg, "log"), "syslog") == 0
			   ? LOG_TO_SYSLOG
			   : LOG_TO_STDERR;
	cf->shutdown_timeout = cfg_getint(cfg, "shutdown_timeout");
}

/* Checks that need the whole file: required options, cross-references. */
static void
conf_check(cfg_t *cfg)
{
	if (cfg_size(cfg, "relay_domains") == 0)
		cfg_error(cfg,
		    "relay_domains: missing required value (the domains this "
		    "relay holds mail for)");
	if (cfg_size(cfg, "listen") == 0)
		cfg_error(cfg, "listen: missing required value");
}

/*
 * Blanks out comments outside quoted strings: # and // to the end of the
 * line, and C-style blocks. Every newline stays, so line numbers stay true.
 */
static void
conf_strip_comments(char *p)
{
	char quote = 0;

	for (; *p; p++) {
		if (quote) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == quote)
				quote = 0;
		} else if (*p == '"' || *p == '\'') {
			quote = *p;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			for (; *p && *p != '\n'; p++)
				*p = ' ';
			if (*p == '\0')
				return;
		} else if (p[0] == '/' && p[1] == '*') {
			for (; *p && !(p[0] == '*' && p[1] == '/'); p++)
				if (*p != '\n')
					*p = ' ';
			if (*p == '\0')
				return;
			p[0] = p[1] = ' ';
			p++;
		}
	}
}

/* Reads a whole config file; on failure returns NULL and sets *why. */
static char *
conf_read_file(const char *path, const char **why)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	size_t n;

	if (fp == NULL) {
		*why = strerror(errno);
		return NULL;
	}
	buf = xmalloc(CONF_FILE_MAX + 1);
	n = fread(buf, 1, CONF_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		*why = strerror(errno);
		free(buf);
		buf = NULL;
	} else if (n > CONF_FILE_MAX) {
		*why = "larger than 1 MiB";
		free(buf);
		buf = NULL;
	} else if (memchr(buf, '\0', n) != NULL) {
		*why = "contains a NUL byte";
		free(buf);
		buf = NULL;
	} else
		buf[n] = '\0';
	fclose(fp);
	return buf;
}

int
conf_load(struct conf **cfp, const char *path, char **errors)
{
	const char *why;
	struct conf *cf;
	char *text;
	cfg_t *cfg;
	int rc;

	*cfp = NULL;
	*errors = NULL;
	conf_errs = NULL;
	conf_errs_len = 0;
	conf_nerrs = 0;

	text = conf_read_file(path, &why);
	if (text == NULL) {
		*errors = xasprintf("%s: cannot read: %s\n", path, why);
		return -1;
	}
	conf_strip_comments(text);
	conf_cur_path = path;
	cfg = cfg_init(conf_opts, CFGF_NONE);
	cfg_set_error_function(cfg, conf_on_error);
	rc = cfg_parse_buf(cfg, text);
	free(text);
	if (rc == CFG_SUCCESS)
		conf_check(cfg);
	if (rc != CFG_SUCCESS || conf_nerrs > 0) {
		if (conf_errs == NULL)
			conf_errs = xasprintf("%s: cannot parse\n", path);
		*errors = conf_errs;
		conf_errs = NULL;
		cfg_free(cfg);
		return -1;
	}

	cf = xcalloc(1, sizeof(*cf));
	cf->path = xstrdup(path);
	conf_build(cf, cfg);
	cfg_free(cfg);
	*cfp = cf;
	return 0;
}

void
conf_free(struct conf *cf)
{
	if (cf == NULL)
		return;
	free(cf->path);
	free(cf->hostname);
	free(cf->listen);
	free(cf->spool_dir);
	free(cf->control_socket);
	for (size_t i = 0; i < cf->nrelay_domains; i++)
		free(cf->relay_domains[i]);
	free(cf->relay_domains);
	free(cf);
}
