/*
 * Config checks that libconfuse cannot make, because they are about more
 * than one value or about how the text is written (see conf_int.h): an
 * option given twice, a typo of a known option, a wildcard where a domain
 * pattern goes, a domain section for mail that is never accepted, retry
 * and TTL bounds out of order. Each names the line at fault, or the one
 * that set what it depends on.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/conf.h"
#include "common/conf_int.h"
#include "common/xmem.h"

int
conf_distance(const char *a, const char *b)
{
	/* Optimal string alignment: Levenshtein, plus swapping two
	 * neighbours. Names are short; longer ones are far from any. */
	enum { MAX = 64 };
	int d[MAX + 1][MAX + 1];
	size_t la = strlen(a), lb = strlen(b);

	if (la > MAX || lb > MAX)
		return MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]);
			int cb = tolower((unsigned char)b[j - 1]);
			int v = d[i - 1][j - 1] + (ca != cb);

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 &&
			    ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

bool
conf_close_enough(const char *name, int d)
{
	/* Two edits in a short name make another word ("foo" and "log"). */
	return d <= (strlen(name) >= 6 ? 2 : 1);
}

bool
conf_wildcard(const char *domain, char *why, size_t whylen)
{
	if (strncmp(domain, "*.", 2) != 0)
		return false;
	snprintf(why, whylen,
	    "'%s' is a wildcard: write '%s' for the names below %s", domain,
	    domain + 1, domain + 2);
	return true;
}

static bool
conf_tok_eq(struct conf_tok a, struct conf_tok b)
{
	return a.len == b.len && memcmp(a.p, b.p, (size_t)a.len) == 0;
}

void
conf_check_twice(const struct conf_item *items, size_t n,
    bool (*is_list)(const char *name, int len))
{
	for (size_t i = 0; i < n; i++) {
		const struct conf_item *it = &items[i];
		bool list = it->parent < 0 && is_list(it->name.p, it->name.len);

		/* A titled section (`domain "x"`) is one of many; libconfuse
		 * refuses the same title twice itself. */
		if (it->append || it->title.len > 0)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct conf_item *first = &items[j];

			if (first->parent != it->parent ||
			    first->title.len > 0 ||
			    !conf_tok_eq(first->name, it->name))
				continue;
			if (list)
				conf_error_at(it->name.line,
				    "%.*s: given twice (first at line %d); a "
				    "list is written once: %.*s = {\"a\", "
				    "\"b\"}",
				    it->name.len, it->name.p, first->name.line,
				    it->name.len, it->name.p);
			else
				conf_error_at(it->name.line,
				    "%.*s: given twice (first at line %d)",
				    it->name.len, it->name.p, first->name.line);
			break;
		}
	}
}

/* Whether pattern or name a ("x.org", ".x.org": below it) and b have a
 * name in common. */
static bool
conf_domains_meet(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (a[0] != '.' && b[0] != '.')
		return strcasecmp(a, b) == 0;
	if (a[0] != '.') /* a name, below pattern b */
		return la > lb && strcasecmp(a + la - lb, b) == 0;
	if (b[0] != '.')
		return lb > la && strcasecmp(b + lb - la, a) == 0;
	/* Two patterns: one is below, or the same as, the other. */
	return strcasecmp(
		   la > lb ? a + la - lb : b + lb - la, la > lb ? b : a) == 0;
}

/* The top-level section items, in order: the i-th `domain` is domains[i]. */
static const struct conf_item *
conf_nth_section(
    const struct conf_item *items, size_t n, const char *name, size_t nth)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (items[i].parent < 0 && items[i].section &&
		    items[i].name.len == (int)len &&
		    memcmp(items[i].name.p, name, len) == 0 && nth-- == 0)
			return &items[i];
	return NULL;
}

/*
 * A domain section is for mail mxspool accepts: for a relay domain, or
 * the postmaster's (mail to <Postmaster> goes there, whatever the domain).
 * Any other is never used, and is most likely a domain left out of
 * relay_domains, whose mail is refused.
 */
static void
conf_check_domains(
    const struct conf *cf, const struct conf_item *items, size_t n)
{
	const char *pm = cf->postmaster ? strrchr(cf->postmaster, '@') : NULL;

	for (size_t i = 0; i < cf->ndomains; i++) {
		const struct conf_domain *d = &cf->domains[i];
		const struct conf_item *it =
		    conf_nth_section(items, n, "domain", i);
		bool used = pm != NULL && conf_domains_meet(d->name, pm + 1);

		for (size_t j = 0; j < cf->nrelay_domains && !used; j++)
			used = conf_domains_meet(d->name, cf->relay_domains[j]);
		if (used)
			continue;
		conf_error_at(it != NULL ? it->name.line : 0,
		    "domain \"%s\": not in relay_domains, so no mail for it is "
		    "accepted and this section is never used",
		    d->name);
	}
}

/* Where a retry option is set: in the block at item index sec (-1 for
 * none), else 0. */
static int
conf_retry_line(
    const struct conf_item *items, size_t n, int sec, const char *name)
{
	const struct conf_item *it =
	    sec < 0 ? NULL : conf_item_find(items, n, sec, name);

	return it != NULL ? it->name.line : 0;
}

/* " (line N)" or " (the default)", for a value's origin in a message. */
static void
conf_origin(int line, char *buf, size_t len)
{
	if (line > 0)
		snprintf(buf, len, "line %d", line);
	else
		snprintf(buf, len, "the default");
}

/*
 * warn_after sends a delay notice once; max_age returns the mail. A notice
 * due no sooner than the return is never sent, and one written so is a
 * mistake: said where warn_after is set, in the block itself, else where
 * max_age is. Left to its default, warn_after only yields to a max_age
 * shorter than it.
 */
static void
conf_check_retry(const struct conf_retry *r, const struct conf_item *items,
    size_t n, int sec, int global)
{
	int wline = conf_retry_line(items, n, sec, "warn_after");
	int aline = conf_retry_line(items, n, sec, "max_age");
	int gwline = conf_retry_line(items, n, global, "warn_after");
	int galine = conf_retry_line(items, n, global, "max_age");
	char wa[32], ma[32], from[32];

	if (r->warn_after == 0 || r->max_age == 0 ||
	    r->warn_after < r->max_age || (wline == 0 && gwline == 0))
		return;
	conf_format_duration(r->warn_after, wa, sizeof(wa));
	conf_format_duration(r->max_age, ma, sizeof(ma));
	if (wline > 0) {
		conf_origin(aline > 0 ? aline : galine, from, sizeof(from));
		conf_error_at(wline,
		    "warn_after: %s is not less than max_age (%s, %s): the "
		    "delay notice would never be sent",
		    wa, ma, from);
	} else if (aline > 0) {
		conf_origin(gwline, from, sizeof(from));
		conf_error_at(aline,
		    "max_age: %s is not more than warn_after (%s, %s): the "
		    "delay notice would never be sent",
		    ma, wa, from);
	}
}

/* The index of the `retry` section in section parent (-1: top), or -1. */
static int
conf_retry_sec(const struct conf_item *items, size_t n, int parent)
{
	const struct conf_item *it = conf_item_find(items, n, parent, "retry");

	return it != NULL && it->section ? (int)(it - items) : -1;
}

static void
conf_check_retries(
    const struct conf *cf, const struct conf_item *items, size_t n)
{
	int global = conf_retry_sec(items, n, -1);

	conf_check_retry(&cf->retry, items, n, global, global);
	for (size_t i = 0; i < cf->ndomains; i++) {
		const struct conf_item *it =
		    conf_nth_section(items, n, "domain", i);
		int sec = it != NULL
			      ? conf_retry_sec(items, n, (int)(it - items))
			      : -1;

		/* A block that sets neither inherits the global verdict. */
		if (conf_retry_line(items, n, sec, "warn_after") > 0 ||
		    conf_retry_line(items, n, sec, "max_age") > 0)
			conf_check_retry(
			    &cf->domains[i].retry, items, n, sec, global);
	}
}

static void
conf_check_ttls(const struct conf *cf, const struct conf_item *items, size_t n)
{
	const struct conf_item *lo =
	    conf_item_find(items, n, -1, "dns_min_ttl");
	const struct conf_item *hi =
	    conf_item_find(items, n, -1, "dns_max_ttl");
	char min[32], max[32], from[32];

	/* dns_max_ttl = 0 caps nothing (dns/cache.c). */
	if (cf->dns_max_ttl == 0 || cf->dns_min_ttl <= cf->dns_max_ttl)
		return;
	conf_format_duration(cf->dns_min_ttl, min, sizeof(min));
	conf_format_duration(cf->dns_max_ttl, max, sizeof(max));
	if (lo != NULL) {
		conf_origin(hi != NULL ? hi->name.line : 0, from, sizeof(from));
		conf_error_at(lo->name.line,
		    "dns_min_ttl: %s is more than dns_max_ttl (%s, %s)", min,
		    max, from);
	} else {
		conf_origin(0, from, sizeof(from));
		conf_error_at(hi != NULL ? hi->name.line : 0,
		    "dns_max_ttl: %s is less than dns_min_ttl (%s, %s)", max,
		    min, from);
	}
}

/*
 * The name in the greeting and in EHLO should be fully qualified (RFC 5321
 * 4.1.1.1, 4.1.3); receivers may refuse a bare one. Only a name the config
 * sets is checked: the system's, the default, is what it is.
 */
static void
conf_check_hostname(
    const struct conf *cf, const struct conf_item *items, size_t n)
{
	const struct conf_item *it = conf_item_find(items, n, -1, "hostname");

	/* `hostname = ""` is the system's name, like no line at all. */
	if (it == NULL || it->value.len == 0 ||
	    (it->value.len == 2 && strchr("\"'", it->value.p[0]) != NULL))
		return;
	if (strchr(cf->hostname, '.') == NULL)
		conf_warning_at(it->name.line,
		    "hostname: '%s' is not a fully qualified domain name; "
		    "the greeting and EHLO should give one "
		    "(e.g. '%s.example.net')",
		    cf->hostname, cf->hostname);
}

void
conf_check_values(
    const struct conf *cf, const struct conf_item *items, size_t n)
{
	conf_check_domains(cf, items, n);
	conf_check_retries(cf, items, n);
	conf_check_ttls(cf, items, n);
	conf_check_hostname(cf, items, n);
}
