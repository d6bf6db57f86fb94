/*
 * The SMTP protocol parser (RFC 5321, with RFC 1870 SIZE, RFC 6152
 * 8BITMIME, RFC 3461 DSN, RFC 3030 CHUNKING and RFC 6531 SMTPUTF8).
 *
 * Where the RFCs leave a choice this follows Postfix's defaults: a space
 * after "FROM:" and a path without angle brackets are tolerated, as clients
 * in the wild send them. Forms that only serve to relay through us (source
 * routes, % hacks, bang paths, address literals, and @ % or ! inside a
 * quoted local part, where a next hop could read them as a route) are
 * refused in recipients outright: a backup MX has no use for them. Other
 * quoted local parts are valid and relayed byte for byte.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xmem.h"
#include "relay/parse.h"

static void __attribute__((format(printf, 3, 4)))
parse_say(char *reply, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, len, fmt, ap);
	va_end(ap);
}

char *
parse_split(char *line, char **args)
{
	char *sp = strchr(line, ' ');

	if (sp == NULL) {
		*args = line + strlen(line);
	} else {
		*sp = '\0';
		*args = sp + 1;
	}
	return line;
}

static bool
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool
is_atext(int c)
{
	return is_alpha(c) || is_digit(c) ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
static size_t
utf8_seq(const unsigned char *p)
{
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (p[0] == 0xe0 && p[1] < 0xa0)
			return 0; /* overlong */
		if (p[0] == 0xed && p[1] >= 0xa0)
			return 0; /* surrogates */
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if (p[0] == 0xf0 && p[1] < 0x90)
			return 0;
		if (p[0] == 0xf4 && p[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

/* A parsed path. */
struct path {
	char addr[PARSE_ADDR_SIZE];
	char local[PARSE_LOCAL_MAX + 1]; /* unquoted */
	char domain[PARSE_DOMAIN_MAX + 1];
	bool null;       /* <> */
	bool route;      /* <@a,@b:user@c> */
	bool quoted;     /* "local"@domain */
	bool qroute;     /* the quoted part has @, % or !: route characters */
	bool postmaster; /* <Postmaster> alone (RFC 5321 4.5.1) */
	bool hack;       /* % or ! in the local part */
	bool literal;    /* user@[192.0.2.1] */
	bool eight_bit;  /* UTF-8 somewhere */
	const char *end; /* first byte after the path */
};

enum path_err { PATH_OK = 0, PATH_SYNTAX = -1 };

/*
 * A domain or address literal at *pp. Stops at the first byte that cannot
 * belong to it.
 */
static int
path_domain(const char **pp, struct path *p, const char **why)
{
	const char *s = *pp, *start = s;
	size_t n;

	if (*s == '[') {
		char lit[PARSE_DOMAIN_MAX + 1];
		unsigned char bin[16];
		const char *close = strchr(s, ']');

		if (close == NULL ||
		    (size_t)(close - s) > PARSE_DOMAIN_MAX - 1) {
			*why = "bad address literal";
			return PATH_SYNTAX;
		}
		n = (size_t)(close - s - 1);
		memcpy(lit, s + 1, n);
		lit[n] = '\0';
		if (strncasecmp(lit, "IPv6:", 5) == 0
			? inet_pton(AF_INET6, lit + 5, bin) != 1
			: inet_pton(AF_INET, lit, bin) != 1) {
			*why = "bad address literal";
			return PATH_SYNTAX;
		}
		p->literal = true;
		n = (size_t)(close + 1 - start);
		memcpy(p->domain, start, n);
		p->domain[n] = '\0';
		*pp = close + 1;
		return PATH_OK;
	}
	for (;;) {
		/* sub-domain = Let-dig [Ldh-str], or a U-label. */
		const char *label = s;

		while (*s != '\0') {
			size_t u;

			if (is_alpha(*s) || is_digit(*s) || *s == '-') {
				s++;
			} else if ((unsigned char)*s >= 0x80 &&
				   (u = utf8_seq((const unsigned char *)s)) >
				       0) {
				p->eight_bit = true;
				s += u;
			} else {
				break;
			}
		}
		if (s == label || *label == '-' || s[-1] == '-' ||
		    s - label > 63) {
			*why = "bad domain name";
			return PATH_SYNTAX;
		}
		if (*s != '.')
			break;
		s++;
	}
	n = (size_t)(s - start);
	if (n > PARSE_DOMAIN_MAX) {
		*why = "domain name too long";
		return PATH_SYNTAX;
	}
	for (size_t i = 0; i < n; i++) {
		char c = start[i];
		p->domain[i] =
		    (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	p->domain[n] = '\0';
	*pp = s;
	return PATH_OK;
}

/*
 * A local part: Dot-string or Quoted-string (RFC 5321 4.1.2). A quoted one
 * is kept as given in the path; p->local gets it unquoted. Its octets are
 * qtextSMTP (%d32-33 / %d35-91 / %d93-126, and UTF-8 with SMTPUTF8, RFC
 * 6531 3.3) or quoted-pairSMTP (backslash and %d32-126). The 64-octet
 * limit (RFC 5321 4.5.3.1.1) counts the local part as sent, quotes and
 * backslashes included, since that is what the next hop receives.
 */
static int
path_local(const char **pp, struct path *p, const char **why)
{
	const char *s = *pp;
	size_t n = 0;

	if (*s == '"') {
		const char *open = s;

		p->quoted = true;
		for (s++; *s != '"'; s++) {
			unsigned char c = (unsigned char)*s;
			size_t u = 1;

			if (c == '\\') {
				c = (unsigned char)*++s;
				if (c == '\0') {
					*why = "unterminated quoted local part";
					return PATH_SYNTAX;
				}
				if (c < 32 || c > 126) {
					*why = "bad character in quoted local "
					       "part";
					return PATH_SYNTAX;
				}
			} else if (c == '\0') {
				*why = "unterminated quoted local part";
				return PATH_SYNTAX;
			} else if (c >= 0x80) {
				if ((u = utf8_seq((const unsigned char *)s)) ==
				    0) {
					*why = "bad UTF-8";
					return PATH_SYNTAX;
				}
				p->eight_bit = true;
			} else if (c < 32 || c == 127) {
				*why = "bad character in quoted local part";
				return PATH_SYNTAX;
			}
			if (c == '@' || c == '%' || c == '!')
				p->qroute = true;
			/* What is sent so far, and the closing quote. */
			if ((size_t)(s - open) + u + 1 > PARSE_LOCAL_MAX) {
				*why = "local part too long";
				return PATH_SYNTAX;
			}
			memcpy(p->local + n, s, u);
			n += u;
			s += u - 1;
		}
		s++;
	} else {
		bool prevdot = true;

		while (*s != '\0') {
			unsigned char c = (unsigned char)*s;
			size_t u = 1;

			if (c == '.') {
				if (prevdot) {
					*why = "bad local part";
					return PATH_SYNTAX;
				}
				prevdot = true;
			} else if (c >= 0x80) {
				if ((u = utf8_seq((const unsigned char *)s)) ==
				    0) {
					*why = "bad UTF-8";
					return PATH_SYNTAX;
				}
				p->eight_bit = true;
				prevdot = false;
			} else if (is_atext(c)) {
				if (c == '%' || c == '!')
					p->hack = true;
				prevdot = false;
			} else {
				break;
			}
			if (n + u > PARSE_LOCAL_MAX) {
				*why = "local part too long";
				return PATH_SYNTAX;
			}
			memcpy(p->local + n, s, u);
			n += u;
			s += u;
		}
		if (n == 0 || prevdot) {
			*why = "bad local part";
			return PATH_SYNTAX;
		}
	}
	p->local[n] = '\0';
	*pp = s;
	return PATH_OK;
}

/*
 * A Reverse-path or Forward-path at s (after "FROM:" or "TO:" and any
 * spaces). Sets p->end to the byte after it.
 */
static int
path_parse(const char *s, bool null_ok, bool postmaster_ok, struct path *p,
    const char **why)
{
	const char *start = s, *lstart;
	bool bracket = false;
	size_t n;

	memset(p, 0, sizeof(*p));
	if (*s == '<') {
		bracket = true;
		s++;
		if (*s == '>') {
			if (!null_ok) {
				*why = "empty address";
				return PATH_SYNTAX;
			}
			p->null = true;
			p->end = s + 1;
			return PATH_OK;
		}
		if (*s == '@') {
			/* A-d-l ":" : parsed only to be refused. */
			for (;;) {
				struct path tmp;

				if (*s != '@') {
					*why = "bad source route";
					return PATH_SYNTAX;
				}
				s++;
				memset(&tmp, 0, sizeof(tmp));
				if (path_domain(&s, &tmp, why) < 0)
					return PATH_SYNTAX;
				if (*s == ':')
					break;
				if (*s != ',') {
					*why = "bad source route";
					return PATH_SYNTAX;
				}
				s++;
			}
			s++;
			p->route = true;
		}
	}
	lstart = s;
	if (path_local(&s, p, why) < 0)
		return PATH_SYNTAX;
	if (*s == '@') {
		s++;
		if (path_domain(&s, p, why) < 0)
			return PATH_SYNTAX;
	} else if (postmaster_ok && !p->quoted &&
		   strcasecmp(p->local, "postmaster") == 0) {
		p->postmaster = true;
	} else {
		*why = "domain name required";
		return PATH_SYNTAX;
	}
	if (bracket) {
		if (*s != '>') {
			*why = "bad address";
			return PATH_SYNTAX;
		}
		s++;
	}
	if (*s != '\0' && *s != ' ') {
		*why = "bad address";
		return PATH_SYNTAX;
	}
	if ((size_t)(s - start) + (bracket ? 0 : 2) > PARSE_PATH_MAX) {
		*why = "address too long";
		return PATH_SYNTAX;
	}
	n = (size_t)(s - lstart) - (bracket ? 1 : 0);
	memcpy(p->addr, lstart, n);
	p->addr[n] = '\0';
	p->end = s;
	return PATH_OK;
}

/*
 * xtext (RFC 3461 4): printable ASCII but "=", with "+" starting two upper
 * case hex digits. RFC 6533's utf-8-addr-xtext passes the same test.
 */
static bool
xtext_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 33 || c > 126 || c == '=')
			return false;
		if (c == '+') {
			if (i + 2 >= n)
				return false;
			for (int k = 1; k <= 2; k++) {
				char h = s[i + (size_t)k];
				if (!is_digit(h) && !(h >= 'A' && h <= 'F'))
					return false;
			}
			i += 2;
		}
	}
	return true;
}

/* One "KEYWORD[=value]" parameter, split in a copy. */
struct param {
	char key[32];
	const char *val; /* NULL: no "=" */
	size_t vlen;
};

/*
 * The next parameter from *sp (after spaces). Returns 1 with one, 0 at the
 * end, -1 on bad syntax.
 */
static int
param_next(const char **sp, struct param *pm)
{
	const char *s = *sp, *k;
	size_t n;

	while (*s == ' ')
		s++;
	if (*s == '\0') {
		*sp = s;
		return 0;
	}
	k = s;
	if (!is_alpha(*s) && !is_digit(*s))
		return -1;
	while (is_alpha(*s) || is_digit(*s) || *s == '-')
		s++;
	n = (size_t)(s - k);
	if (n >= sizeof(pm->key))
		return -1;
	memcpy(pm->key, k, n);
	pm->key[n] = '\0';
	pm->val = NULL;
	pm->vlen = 0;
	if (*s == '=') {
		pm->val = ++s;
		while (*s != '\0' && *s != ' ') {
			unsigned char c = (unsigned char)*s;
			if (c < 33 || c > 126 || c == '=')
				return -1;
			s++;
		}
		pm->vlen = (size_t)(s - pm->val);
		if (pm->vlen == 0)
			return -1;
	}
	if (*s != '\0' && *s != ' ')
		return -1;
	*sp = s;
	return 1;
}

static bool
val_is(const struct param *pm, const char *word)
{
	return pm->val != NULL && pm->vlen == strlen(word) &&
	       strncasecmp(pm->val, word, pm->vlen) == 0;
}

/* "FROM:" or "TO:" then optional spaces; returns what follows, or NULL. */
static const char *
expect_keyword(const char *args, const char *kw)
{
	size_t n = strlen(kw);

	if (strncasecmp(args, kw, n) != 0)
		return NULL;
	args += n;
	while (*args == ' ')
		args++;
	return args;
}

int
parse_helo(
    const char *verb, const char *args, char *out, char *reply, size_t replylen)
{
	const char *s = args;
	size_t n;

	while (*s != '\0') {
		unsigned char c = (unsigned char)*s;
		size_t u = 1;

		if (c >= 0x80) {
			if ((u = utf8_seq((const unsigned char *)s)) == 0)
				break;
		} else if (c < 33 || c > 126) {
			break;
		}
		s += u;
	}
	n = (size_t)(s - args);
	if (n == 0 || *s != '\0') {
		parse_say(
		    reply, replylen, "501 5.5.4 Syntax: %s hostname", verb);
		return -1;
	}
	if (n > PARSE_HELO_MAX) {
		parse_say(reply, replylen, "501 5.5.4 %s name too long", verb);
		return -1;
	}
	memcpy(out, args, n + 1);
	return 0;
}

int
parse_mail(
    const char *args, struct parse_mail *out, char *reply, size_t replylen)
{
	const char *s = expect_keyword(args, "FROM:"), *why = NULL;
	struct param pm;
	struct path p;
	unsigned seen = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		parse_say(
		    reply, replylen, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return -1;
	}
	if (path_parse(s, true, false, &p, &why) < 0) {
		parse_say(reply, replylen,
		    "501 5.1.7 Bad sender address syntax: %s", why);
		return -1;
	}
	if (p.route) {
		parse_say(reply, replylen,
		    "553 5.1.7 Source routes are not accepted");
		return -1;
	}
	s = p.end;
	while ((rc = param_next(&s, &pm)) > 0) {
		unsigned bit;

		if (strcasecmp(pm.key, "SIZE") == 0) {
			bit = 1;
			if (pm.val == NULL || pm.vlen > 20) {
				parse_say(reply, replylen,
				    "501 5.5.4 Bad SIZE parameter");
				return -1;
			}
			out->has_size = true;
			for (size_t i = 0; i < pm.vlen; i++) {
				unsigned d = (unsigned)(pm.val[i] - '0');
				if (!is_digit(pm.val[i])) {
					parse_say(reply, replylen,
					    "501 5.5.4 Bad SIZE parameter");
					return -1;
				}
				if (out->size > (UINT64_MAX - d) / 10)
					out->size = UINT64_MAX;
				else
					out->size = out->size * 10 + d;
			}
		} else if (strcasecmp(pm.key, "BODY") == 0) {
			bit = 2;
			if (val_is(&pm, "7BIT"))
				out->body = BODY_7BIT;
			else if (val_is(&pm, "8BITMIME"))
				out->body = BODY_8BITMIME;
			else {
				parse_say(reply, replylen,
				    "501 5.5.4 Unsupported BODY type");
				return -1;
			}
		} else if (strcasecmp(pm.key, "SMTPUTF8") == 0) {
			bit = 4;
			if (pm.val != NULL) {
				parse_say(reply, replylen,
				    "501 5.5.4 SMTPUTF8 takes no value");
				return -1;
			}
			out->smtputf8 = true;
		} else if (strcasecmp(pm.key, "RET") == 0) {
			bit = 8;
			if (val_is(&pm, "FULL"))
				out->ret = RET_FULL;
			else if (val_is(&pm, "HDRS"))
				out->ret = RET_HDRS;
			else {
				parse_say(reply, replylen,
				    "501 5.5.4 Bad RET parameter");
				return -1;
			}
		} else if (strcasecmp(pm.key, "ENVID") == 0) {
			bit = 16;
			if (pm.val == NULL || pm.vlen > PARSE_ENVID_MAX ||
			    !xtext_valid(pm.val, pm.vlen)) {
				parse_say(reply, replylen,
				    "501 5.5.4 Bad ENVID parameter");
				return -1;
			}
			out->has_envid = true;
			memcpy(out->envid, pm.val, pm.vlen);
			out->envid[pm.vlen] = '\0';
		} else if (strcasecmp(pm.key, "ARRIVAL") == 0) {
			/* Unix seconds, 1 to 10^11 (year 5138): digits only. */
			int64_t v = 0;

			bit = 32;
			if (pm.val == NULL || pm.vlen == 0 || pm.vlen > 11)
				v = -1;
			for (size_t i = 0; v >= 0 && i < pm.vlen; i++)
				v = isdigit((unsigned char)pm.val[i])
					? v * 10 + (pm.val[i] - '0')
					: -1;
			if (v <= 0) {
				parse_say(reply, replylen,
				    "501 5.5.4 Bad ARRIVAL parameter");
				return -1;
			}
			out->arrival = v;
		} else {
			parse_say(reply, replylen,
			    "555 5.5.4 Unsupported parameter %.31s", pm.key);
			return -1;
		}
		if (seen & bit) {
			parse_say(reply, replylen,
			    "501 5.5.4 Duplicate parameter %.31s", pm.key);
			return -1;
		}
		seen |= bit;
	}
	if (rc < 0) {
		parse_say(reply, replylen, "501 5.5.4 Bad parameter syntax");
		return -1;
	}
	if (p.eight_bit && !out->smtputf8) {
		parse_say(reply, replylen,
		    "553 5.6.7 UTF-8 address without SMTPUTF8");
		return -1;
	}
	strcpy(out->addr, p.addr);
	out->eight_bit = p.eight_bit;
	return 0;
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1). */
static int
notify_parse(const struct param *pm, unsigned *out)
{
	const char *s = pm->val, *end = pm->val + pm->vlen;

	*out = 0;
	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		size_t n = (size_t)((comma ? comma : end) - s);
		unsigned bit;

		if (n == 5 && strncasecmp(s, "NEVER", 5) == 0)
			bit = NOTIFY_NEVER;
		else if (n == 7 && strncasecmp(s, "SUCCESS", 7) == 0)
			bit = NOTIFY_SUCCESS;
		else if (n == 7 && strncasecmp(s, "FAILURE", 7) == 0)
			bit = NOTIFY_FAILURE;
		else if (n == 5 && strncasecmp(s, "DELAY", 5) == 0)
			bit = NOTIFY_DELAY;
		else
			return -1;
		*out |= bit;
		if (comma == NULL)
			break;
		s = comma + 1;
		if (s == end)
			return -1;
	}
	if ((*out & NOTIFY_NEVER) && *out != NOTIFY_NEVER)
		return -1;
	return *out ? 0 : -1;
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2). */
static bool
orcpt_valid(const struct param *pm)
{
	const char *semi = memchr(pm->val, ';', pm->vlen);
	size_t tlen;

	if (semi == NULL || pm->vlen > PARSE_ORCPT_MAX)
		return false;
	tlen = (size_t)(semi - pm->val);
	if (tlen == 0)
		return false;
	for (size_t i = 0; i < tlen; i++)
		if (!is_atext(pm->val[i]))
			return false;
	return pm->vlen > tlen + 1 &&
	       xtext_valid(semi + 1, pm->vlen - tlen - 1);
}

int
parse_rcpt(const char *args, bool smtputf8, struct parse_rcpt *out, char *reply,
    size_t replylen)
{
	const char *s = expect_keyword(args, "TO:"), *why = NULL;
	struct param pm;
	struct path p;
	unsigned seen = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		parse_say(
		    reply, replylen, "501 5.5.4 Syntax: RCPT TO:<address>");
		return -1;
	}
	if (path_parse(s, false, true, &p, &why) < 0) {
		parse_say(reply, replylen,
		    "501 5.1.3 Bad recipient address syntax: %s", why);
		return -1;
	}
	if (p.route) {
		parse_say(reply, replylen,
		    "553 5.1.3 Source routes are not accepted");
		return -1;
	}
	if (p.literal) {
		parse_say(reply, replylen,
		    "553 5.1.3 Address literals are not accepted");
		return -1;
	}
	if (p.hack) {
		parse_say(reply, replylen,
		    "553 5.1.3 %% and ! in addresses are not accepted");
		return -1;
	}
	if (p.qroute) {
		parse_say(reply, replylen,
		    "553 5.1.3 @, %% and ! in quoted local parts are not "
		    "accepted");
		return -1;
	}
	if (p.eight_bit && !smtputf8) {
		parse_say(reply, replylen,
		    "553 5.6.7 UTF-8 address without SMTPUTF8");
		return -1;
	}
	s = p.end;
	while ((rc = param_next(&s, &pm)) > 0) {
		unsigned bit;

		if (strcasecmp(pm.key, "NOTIFY") == 0) {
			bit = 1;
			if (pm.val == NULL ||
			    notify_parse(&pm, &out->notify) < 0) {
				parse_say(reply, replylen,
				    "501 5.5.4 Bad NOTIFY parameter");
				return -1;
			}
		} else if (strcasecmp(pm.key, "ORCPT") == 0) {
			bit = 2;
			if (pm.val == NULL || !orcpt_valid(&pm)) {
				parse_say(reply, replylen,
				    "501 5.5.4 Bad ORCPT parameter");
				return -1;
			}
			out->has_orcpt = true;
			memcpy(out->orcpt, pm.val, pm.vlen);
			out->orcpt[pm.vlen] = '\0';
		} else {
			parse_say(reply, replylen,
			    "555 5.5.4 Unsupported parameter %.31s", pm.key);
			return -1;
		}
		if (seen & bit) {
			parse_say(reply, replylen,
			    "501 5.5.4 Duplicate parameter %.31s", pm.key);
			return -1;
		}
		seen |= bit;
	}
	if (rc < 0) {
		parse_say(reply, replylen, "501 5.5.4 Bad parameter syntax");
		return -1;
	}
	/*
	 * Kept byte for byte: the local part is the destination's to read
	 * (RFC 5321 2.4), so "joe"@d and joe@d stay two addresses here.
	 */
	strcpy(out->addr, p.addr);
	out->postmaster = p.postmaster;
	strcpy(out->local, p.local);
	strcpy(out->domain, p.domain);
	return 0;
}

int
parse_bdat(
    const char *args, uint64_t *size, bool *last, char *reply, size_t replylen)
{
	const char *s = args;
	uint64_t v = 0;

	*size = 0;
	*last = false;
	parse_say(reply, replylen, "501 5.5.4 Syntax: BDAT size [LAST]");
	/* Blanks between the words are tolerated, as Postfix does. */
	while (*s == ' ')
		s++;
	if (!is_digit(*s))
		return PARSE_BDAT_NOSIZE;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return PARSE_BDAT_NOSIZE;
		v = v * 10 + d;
	}
	if (*s != '\0' && *s != ' ')
		return PARSE_BDAT_NOSIZE; /* "3x": not a number at all */
	*size = v;
	while (*s == ' ')
		s++;
	if (strncasecmp(s, "LAST", 4) == 0 && (s[4] == '\0' || s[4] == ' ')) {
		*last = true;
		s += 4;
		while (*s == ' ')
			s++;
	}
	if (*s != '\0') {
		*last = false;
		return PARSE_BDAT_BADARG;
	}
	reply[0] = '\0';
	return PARSE_BDAT_OK;
}
