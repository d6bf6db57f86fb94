/*
 * Config values: parsers for the formats options are written in. Pure
 * functions, shared by the config loader and anyone reading such values.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf.h"
#include "common/idn.h"
#include "common/xmem.h"

struct conf_unit {
	const char *name;
	uint64_t value;
};

int
conf_parse_duration(const char *s, int64_t *secs)
{
	const char *start = s;
	bool too_big = false;
	int64_t total = 0;

	if (*s == '\0')
		return CONF_PARSE_BAD;
	while (*s != '\0') {
		unsigned long long n;
		int64_t unit;
		char *end;

		if (!isdigit((unsigned char)*s))
			return CONF_PARSE_BAD;
		errno = 0;
		n = strtoull(s, &end, 10);
		switch (*end) {
		case '\0':
			/* A bare number is seconds, but only on its own. */
			if (s != start)
				return CONF_PARSE_BAD;
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
			return CONF_PARSE_BAD;
		}
		/* Past INT64_MAX seconds: the rest is still read, so that
		 * only a well-written duration is called too big. */
		if (errno == ERANGE ||
		    n > (unsigned long long)(INT64_MAX - total) /
			    (uint64_t)unit)
			too_big = true;
		else
			total += (int64_t)n * unit;
		s = *end ? end + 1 : end;
	}
	if (too_big)
		return CONF_PARSE_RANGE;
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
		return CONF_PARSE_BAD;
	errno = 0;
	n = strtoull(s, &end, 10);
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
	case 't':
	case 'T':
		mult = (uint64_t)1024 * 1024 * 1024 * 1024;
		break;
	default:
		return CONF_PARSE_BAD;
	}
	if (*end != '\0' && end[1] != '\0')
		return CONF_PARSE_BAD;
	if (errno == ERANGE || n > UINT64_MAX / mult)
		return CONF_PARSE_RANGE;
	*bytes = n * mult;
	return 0;
}

/*
 * n in the largest unit of units (largest first, value 0 last) that
 * divides it: "1d", "64G"; 0 is "0" and the last unit.
 */
static void
conf_format_units(
    uint64_t n, const struct conf_unit *units, char *buf, size_t len)
{
	const struct conf_unit *u = units;

	while (u->value != 0 && (n == 0 || n % u->value != 0))
		u++;
	snprintf(buf, len, "%llu%s",
	    (unsigned long long)(u->value ? n / u->value : n), u->name);
}

void
conf_format_duration(int64_t secs, char *buf, size_t len)
{
	static const struct conf_unit units[] = {
	    {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}, {"s", 0}};

	conf_format_units((uint64_t)secs, units, buf, len);
}

void
conf_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const struct conf_unit units[] = {{"T", (uint64_t)1 << 40},
	    {"G", 1 << 30}, {"M", 1 << 20}, {"k", 1 << 10}, {"", 0}};

	conf_format_units(bytes, units, buf, len);
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

/*
 * "10.0.0.0/8", "2001:db8::/32", or an address alone (all its bits). The
 * address is kept as bytes in network order, so that one comparison of
 * leading bits serves both families.
 */
int
conf_parse_cidr(const char *s, struct conf_cidr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned max;
	char *end;
	long bits;

	memset(out, 0, sizeof(*out));
	if (hlen == 0 || hlen >= sizeof(host))
		return CONF_CIDR_BAD;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return CONF_CIDR_BAD;
	}
	out->bits = max;
	if (slash != NULL) {
		if (!isdigit((unsigned char)slash[1]))
			return CONF_CIDR_BAD;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || bits < 0 || bits > (long)max)
			return CONF_CIDR_BAD;
		out->bits = (unsigned)bits;
	}
	/* Bits past the prefix are a mistake, as Postfix says of its
	 * mynetworks: 10.0.0.1/8 is not what it seems to mean. */
	for (unsigned i = out->bits; i < max; i++)
		if (out->addr[i / 8] & (0x80 >> (i % 8)))
			return CONF_CIDR_HOST_BITS;
	return 0;
}

bool
conf_cidr_match(const struct conf_cidr *c, const struct sockaddr *sa)
{
	const struct sockaddr_in *sin = (const void *)sa;
	const struct sockaddr_in6 *sin6 = (const void *)sa;
	int family = sa->sa_family;
	const uint8_t *a;
	unsigned i;

	if (family == AF_INET) {
		a = (const uint8_t *)&sin->sin_addr;
	} else if (family == AF_INET6) {
		a = sin6->sin6_addr.s6_addr;
		/* An IPv4 client seen on an IPv6 socket: ::ffff:a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			family = AF_INET;
			a += 12;
		}
	} else {
		return false;
	}
	if (family != c->family)
		return false;
	for (i = 0; i + 8 <= c->bits; i += 8)
		if (a[i / 8] != c->addr[i / 8])
			return false;
	return i == c->bits ||
	       ((a[i / 8] ^ c->addr[i / 8]) & (0xff00 >> (c->bits - i))) == 0;
}

bool
conf_valid_node_id(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= CONF_NODE_ID_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789-") == n;
}

/*
 * A host in a route: a domain name in either form (kept as A-labels, the
 * form DNS takes), or (bracketed only) an IP address. h has room for a
 * name of IDN_NAME_MAX octets.
 */
static bool
conf_route_host(char *h, bool bracketed)
{
	char ace[IDN_NAME_SIZE];
	struct in6_addr a6;
	struct in_addr a4;

	if (bracketed && (inet_pton(AF_INET, h, &a4) == 1 ||
			     inet_pton(AF_INET6, h, &a6) == 1))
		return true;
	if (idn_to_ascii(h, ace, sizeof(ace), NULL, 0) < 0)
		return false;
	strcpy(h, ace);
	return true;
}

int
conf_parse_route(const char *s, struct conf_route *out)
{
	const char *rest, *port = NULL;
	char host[256];
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (strcmp(s, "mx") == 0) {
		out->kind = ROUTE_MX;
		out->text = xstrdup(s);
		return 0;
	}
	if (strncmp(s, "smtp:", 5) == 0) {
		out->kind = ROUTE_SMTP;
		out->port = 25;
	} else if (strncmp(s, "lmtp:", 5) == 0) {
		out->kind = ROUTE_LMTP;
		out->port = 24;
	} else
		return -1;
	rest = s + 5;
	if (out->kind == ROUTE_LMTP && strncmp(rest, "unix:", 5) == 0) {
		if (rest[5] != '/' || strlen(rest + 5) > CONF_SOCKET_PATH_MAX)
			return -1;
		out->kind = ROUTE_LMTP_UNIX;
		out->port = 0;
		out->path = xstrdup(rest + 5);
		out->text = xstrdup(s);
		return 0;
	}
	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');
		if (close == NULL)
			return -1;
		out->bracketed = true;
		hlen = (size_t)(close - rest - 1);
		rest++;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return -1;
	} else {
		const char *colon = strchr(rest, ':');
		hlen = colon ? (size_t)(colon - rest) : strlen(rest);
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, rest, hlen);
	host[hlen] = '\0';
	if (!conf_route_host(host, out->bracketed))
		return -1;
	if (port != NULL && conf_parse_port(port, &out->port) < 0)
		return -1;
	out->host = xstrdup(host);
	out->text = xstrdup(s);
	return 0;
}

void
conf_route_fini(struct conf_route *r)
{
	free(r->host);
	free(r->path);
	free(r->text);
	memset(r, 0, sizeof(*r));
}

const char *
conf_tls_policy_str(enum tls_policy p)
{
	switch (p) {
	case TLS_NONE:
		return "none";
	case TLS_MAY:
		return "may";
	case TLS_ENCRYPT:
		return "encrypt";
	case TLS_VERIFY:
		return "verify";
	}
	return "?";
}
