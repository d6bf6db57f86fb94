/*
 * Delivery status notifications: RFC 3464 reports in a RFC 6522
 * multipart/report, with the RFC 3461 ENVID, ORCPT and RET semantics, and
 * the RFC 6533 global types when the notice goes to a non-ASCII sender
 * (who has SMTPUTF8). A notice to an ASCII sender stays ASCII, so that a
 * server without SMTPUTF8 takes it: non-ASCII addresses in RFC 6533's
 * utf-8-addr-xtext, a UTF-8 header section returned as message/global in
 * base64.
 *
 * The text is built from the inputs alone (no clock, no hostname lookup,
 * no randomness: the boundary and Message-ID come from the queue id and
 * `now`), so the same input always gives the same bytes and golden files
 * can check it. Everything that came from outside (remote replies, ORCPT,
 * ENVID, addresses) is cleaned before it goes into a header field or a
 * text line: no CR or LF can start a field of its own, no control
 * characters, and no line passes 998 octets. Only the returned original is
 * copied as it is.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "common/utf8.h"
#include "common/xmem.h"
#include "queue/dsn.h"

#define DSN_FULL_MAX (1024 * 1024) /* larger originals: header only */
#define DSN_FOLD 78                /* header lines fold here if they can */
#define DSN_LINE_MAX 998           /* RFC 5322 2.1.1, without the CRLF */
#define DSN_TEXT_WIDTH 76          /* lines of the human-readable part */

struct dsn_buf {
	char *p;
	size_t len, cap;
};

/* What goes back to the sender of the original. */
enum dsn_return {
	RETURN_FULL,
	RETURN_HDRS_ASKED,
	RETURN_HDRS_BIG,
	RETURN_HDRS_NOTICE
};

/* The content transfer encoding a part needs. */
enum dsn_cte { CTE_7BIT, CTE_8BIT, CTE_BINARY, CTE_BASE64 };

static void
buf_put(struct dsn_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_puts(struct dsn_buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static char *__attribute__((format(printf, 1, 0)))
dsn_vasprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	char *s;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		n = 0;
	s = xmalloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static void __attribute__((format(printf, 2, 3)))
buf_printf(struct dsn_buf *b, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = dsn_vasprintf(fmt, ap);
	va_end(ap);
	buf_puts(b, s);
	free(s);
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned long cp;

	return utf8_char(s, n, &cp);
}

static bool
is_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/*
 * s made safe for a header field or a line of text (malloc'd): runs of
 * spaces, tabs, CR and LF become one space (so a multi-line reply reads as
 * one line and cannot start a field of its own), other control characters
 * become '?', and so does every octet that is not ASCII, or with utf8 not
 * part of valid UTF-8. Leading and trailing space is dropped.
 */
static char *
dsn_clean(const char *s, bool utf8)
{
	const unsigned char *p = (const unsigned char *)s, *end;
	size_t n = strlen(s);
	char *out = xmalloc(n + 1), *o = out;
	bool space = false;

	for (end = p + n; p < end;) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			space = true;
			p++;
			continue;
		}
		if (space && o > out)
			*o++ = ' ';
		space = false;
		if (*p < 0x20 || *p == 0x7f) {
			*o++ = '?';
			p++;
		} else if (*p < 0x80) {
			*o++ = (char)*p++;
		} else {
			size_t l = utf8 ? utf8_len(p, (size_t)(end - p)) : 0;

			if (l == 0) {
				*o++ = '?';
				p++;
			} else {
				memcpy(o, p, l);
				o += l;
				p += l;
			}
		}
	}
	*o = '\0';
	return out;
}

/* How many octets of the n at p fit in room, not cutting a UTF-8 char. */
static size_t
fit(const char *p, size_t n, size_t room)
{
	if (n <= room)
		return n;
	while (room > 1 && ((unsigned char)p[room] & 0xc0) == 0x80)
		room--;
	return room;
}

/*
 * Appends "name: value" and CRLF; value is clean (dsn_clean). The field is
 * folded before a space where a line would pass 78 octets. A word too long
 * for a line of 998 octets is cut (XXX: unfolding then shows a space in
 * it; only absurd replies are that long, and the limit is not negotiable).
 */
static void
hdr_put(struct dsn_buf *b, const char *name, const char *value)
{
	size_t col = strlen(name) + 1;
	const char *p = value;
	bool first = true;

	buf_puts(b, name);
	buf_puts(b, ":");
	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t wl = sp ? (size_t)(sp - p) : strlen(p);

		if (!first && col + 1 + wl > DSN_FOLD) {
			buf_puts(b, "\r\n");
			col = 0;
		}
		buf_puts(b, " ");
		col++;
		while (col + wl > DSN_LINE_MAX) {
			size_t take = fit(p, wl, DSN_LINE_MAX - col);

			buf_put(b, p, take);
			buf_puts(b, "\r\n ");
			p += take;
			wl -= take;
			col = 1;
		}
		buf_put(b, p, wl);
		col += wl;
		p += wl;
		if (*p == ' ')
			p++;
		first = false;
	}
	buf_puts(b, "\r\n");
}

/* hdr_put with a printf value, cleaned first. */
static void __attribute__((format(printf, 4, 5)))
hdr_printf(struct dsn_buf *b, bool utf8, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *raw, *v;

	va_start(ap, fmt);
	raw = dsn_vasprintf(fmt, ap);
	va_end(ap);
	v = dsn_clean(raw, utf8);
	hdr_put(b, name, v);
	free(v);
	free(raw);
}

/*
 * Appends clean text as lines of at most 76 octets where the words allow
 * (998 at worst), continuation lines indented by indent spaces.
 */
static void
text_put(struct dsn_buf *b, const char *text, size_t indent)
{
	const char *p = text;
	size_t col = 0;
	bool fresh = true;

	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t wl = sp ? (size_t)(sp - p) : strlen(p);

		if (!fresh && col + 1 + wl > DSN_TEXT_WIDTH) {
			buf_puts(b, "\r\n");
			for (col = 0; col < indent; col++)
				buf_puts(b, " ");
			fresh = true;
		}
		if (!fresh) {
			buf_puts(b, " ");
			col++;
		}
		while (col + wl > DSN_LINE_MAX) {
			size_t take = fit(p, wl, DSN_LINE_MAX - col);

			buf_put(b, p, take);
			buf_puts(b, "\r\n");
			for (col = 0; col < indent; col++)
				buf_puts(b, " ");
			p += take;
			wl -= take;
		}
		buf_put(b, p, wl);
		col += wl;
		p += wl;
		if (*p == ' ')
			p++;
		fresh = false;
	}
	buf_puts(b, "\r\n");
}

/* A paragraph of the human-readable part, then an empty line. */
static void __attribute__((format(printf, 3, 4)))
para(struct dsn_buf *b, bool utf8, const char *fmt, ...)
{
	va_list ap;
	char *raw, *v;

	va_start(ap, fmt);
	raw = dsn_vasprintf(fmt, ap);
	va_end(ap);
	v = dsn_clean(raw, utf8);
	text_put(b, v, 0);
	buf_puts(b, "\r\n");
	free(v);
	free(raw);
}

/* RFC 5322 date-time in UTC, with fixed English names (no locale). */
static void
fmt_date(char *out, size_t n, int64_t t)
{
	static const char *const days[] = {
	    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;

	if (t < 0 || t > 253402300799LL || gmtime_r(&tt, &tm) == NULL) {
		tt = 0; /* out of the 4-digit years: a bug upstream */
		gmtime_r(&tt, &tm);
	}
	snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday], tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "2 days 3 hours", "1 minute", "45 seconds": the two largest units. */
static void
fmt_duration(char *out, size_t n, int64_t secs)
{
	static const struct {
		int64_t len;
		const char *name;
	} u[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
	size_t i = 0;
	int64_t v, w;

	if (secs < 0)
		secs = 0;
	while (i < 3 && secs < u[i].len)
		i++;
	v = secs / u[i].len;
	w = i < 3 ? secs % u[i].len / u[i + 1].len : 0;
	if (w > 0)
		snprintf(out, n, "%lld %s%s %lld %s%s", (long long)v, u[i].name,
		    v == 1 ? "" : "s", (long long)w, u[i + 1].name,
		    w == 1 ? "" : "s");
	else
		snprintf(out, n, "%lld %s%s", (long long)v, u[i].name,
		    v == 1 ? "" : "s");
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Appends code point cp as UTF-8; false if it is not a scalar value. */
static bool
put_utf8(char **o, unsigned long cp)
{
	unsigned char *u = (unsigned char *)*o;

	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	if (cp < 0x80) {
		*u++ = (unsigned char)cp;
	} else if (cp < 0x800) {
		*u++ = (unsigned char)(0xc0 | cp >> 6);
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*u++ = (unsigned char)(0xe0 | cp >> 12);
		*u++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else {
		*u++ = (unsigned char)(0xf0 | cp >> 18);
		*u++ = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	}
	*o = (char *)u;
	return true;
}

/*
 * Decodes xtext (RFC 3461 4: "+XX" is the octet XX) and, with unicode,
 * the "\x{HEX}" of RFC 6533's utf-8-addr-xtext. Returns NULL when the
 * input is malformed or the result is not printable text (ASCII, or valid
 * UTF-8 when utf8), so that the caller shows the value as stored: a DSN
 * field must not receive a CR, LF or control octet from a decoded value.
 */
static char *
xtext_decode(const char *s, bool unicode, bool utf8)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;

	while (*s != '\0') {
		if (*s == '+') {
			int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);

			if (lo < 0)
				goto bad;
			*o++ = (char)(hi << 4 | lo);
			s += 3;
		} else if (unicode && s[0] == '\\' && s[1] == 'x' &&
			   s[2] == '{') {
			unsigned long cp = 0;
			size_t i;

			for (i = 3; i < 9 && hexval(s[i]) >= 0; i++)
				cp = cp << 4 | (unsigned long)hexval(s[i]);
			if (i == 3 || s[i] != '}' || !put_utf8(&o, cp))
				goto bad;
			s += i + 1;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
	for (const unsigned char *p = (const unsigned char *)out; *p;) {
		size_t l = utf8 ? utf8_len(p, strlen((const char *)p)) : 0;

		if (*p >= 0x20 && *p < 0x7f)
			p++;
		else if (*p >= 0x80 && l > 0)
			p += l;
		else
			goto bad;
	}
	return out;
bad:
	free(out);
	return NULL;
}

/* Whether s is an enhanced status code (RFC 3463): "5.1.1". */
static bool
status_valid(const char *s)
{
	size_t n;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		n = strspn(s, "0123456789");
		if (n < 1 || n > 3)
			return false;
		s += n;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

/* The status to report: the given one if it fits the action. */
static const char *
rcpt_status(enum dsn_action a, const char *st)
{
	bool ok = status_valid(st);

	switch (a) {
	case DSN_FAILED:
		return ok && st[0] != '2' ? st : "5.0.0";
	case DSN_DELAYED:
		return ok && st[0] == '4' ? st : "4.0.0";
	case DSN_DELIVERED:
	case DSN_RELAYED:
		return ok && st[0] == '2' ? st : "2.0.0";
	}
	return "5.0.0";
}

/* What an enhanced status means (RFC 3463), for people; or NULL. */
static const char *
status_text(const char *st)
{
	static const struct {
		const char *code, *text;
	} t[] = {
	    {"0.0", "other or undefined status"},
	    {"1.1", "the mailbox does not exist"},
	    {"1.2", "the destination system does not exist"},
	    {"1.3", "the address is not valid"},
	    {"1.6", "the mailbox has moved"},
	    {"2.1", "the mailbox is disabled"},
	    {"2.2", "the mailbox is full"},
	    {"2.3", "the message is too large for the mailbox"},
	    {"3.4", "the message is too large for the system"},
	    {"4.1", "no answer from the destination"},
	    {"4.2", "the connection was lost"},
	    {"4.3", "a directory server failed"},
	    {"4.4", "no route to the destination"},
	    {"4.6", "a mail loop was detected"},
	    {"4.7", "the message was too old to keep trying"},
	    {"5.3", "too many recipients"},
	    {"7.1", "delivery was not authorized"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(st + 2, t[i].code) == 0)
			return t[i].text;
	return NULL;
}

const char *
dsn_action_str(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_RELAYED:
		return "relayed";
	}
	return "unknown";
}

bool
dsn_wanted(const struct envelope *env, const struct env_rcpt *r,
    enum dsn_action action)
{
	unsigned n = r->notify;

	/* RFC 5321 4.5.5: nothing ever goes back to the null sender. */
	if (env->sender == NULL || env->sender[0] == '\0')
		return false;
	if (n & NOTIFY_NEVER)
		return false;
	switch (action) {
	case DSN_FAILED:
		return n == 0 || (n & NOTIFY_FAILURE);
	case DSN_DELAYED:
		return n == 0 || (n & NOTIFY_DELAY);
	case DSN_DELIVERED:
	case DSN_RELAYED:
		return (n & NOTIFY_SUCCESS) != 0;
	}
	return false;
}

/*
 * RET governs failure notices (RFC 3461 4.3): the whole message unless
 * RET=HDRS, and RET=FULL also for success notices. A delay notice carries
 * only the header (the sender still has nothing to resend), and so does
 * any notice about a message over 1 MiB, so that bounces do not double
 * the load of big mail.
 */
static enum dsn_return
dsn_what(const struct dsn_info *info)
{
	enum dsn_ret ret = info->env->ret;

	switch (info->action) {
	case DSN_FAILED:
		if (ret == RET_HDRS)
			return RETURN_HDRS_ASKED;
		break;
	case DSN_DELAYED:
		return RETURN_HDRS_NOTICE;
	case DSN_DELIVERED:
	case DSN_RELAYED:
		if (ret != RET_FULL)
			return RETURN_HDRS_NOTICE;
		break;
	}
	return info->len > DSN_FULL_MAX ? RETURN_HDRS_BIG : RETURN_FULL;
}

/* The length of the original's header section, with its last CRLF. */
static size_t
header_len(const char *body, size_t len)
{
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(body + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - body) + 1 : len;

		if (body[i] == '\n' ||
		    (body[i] == '\r' && end - i == 2 && body[i + 1] == '\n'))
			return i;
		i = end;
	}
	return len;
}

bool
dsn_needs_smtputf8(const struct envelope *env)
{
	return env->sender != NULL &&
	       !is_ascii(env->sender, strlen(env->sender));
}

enum body_type
dsn_body_type(const char *text, size_t len)
{
	enum body_type t = BODY_7BIT;
	size_t line = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\r' && i + 1 < len && text[i + 1] == '\n') {
			i++;
			line = 0;
			continue;
		}
		if (c == '\0' || c == '\r' || c == '\n' || ++line > 998)
			return BODY_BINARYMIME;
		if (c >= 0x80)
			t = BODY_8BITMIME;
	}
	return t;
}

static const struct env_rcpt *
rcpt_of(const struct dsn_info *info, size_t i)
{
	size_t idx = info->rcpts[i].idx;

	/* A bad index is the caller's bug; report nothing rather than crash. */
	if (idx >= info->env->nrcpts || info->env->rcpts[idx].addr == NULL)
		return NULL;
	return &info->env->rcpts[idx];
}

static const char *
subject_of(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "Undelivered Mail Returned to Sender";
	case DSN_DELAYED:
		return "Delayed Mail (still being retried)";
	case DSN_DELIVERED:
		return "Successful Mail Delivery Report";
	case DSN_RELAYED:
		return "Successful Mail Relay Report";
	}
	return "Mail Delivery Report";
}

/* An optional text: NULL or "" means there is none. */
static const char *
opt(const char *s)
{
	return s && *s ? s : NULL;
}

/* The line about one recipient in the human-readable part. */
static void
human_rcpt(struct dsn_buf *b, const struct dsn_info *info, size_t i, bool utf8)
{
	const struct dsn_rcpt *dr = &info->rcpts[i];
	const struct env_rcpt *r = rcpt_of(info, i);
	const char *st = rcpt_status(info->action, dr->status);
	const char *what = status_text(st), *mta = opt(dr->remote_mta);
	const char *diag = opt(dr->diagnostic);
	char *raw, *v;

	/* Our own words name the host already. */
	if (mta && diag && dsn_diag_reply(diag) == diag)
		raw = xasprintf("<%s>: host %s said: %s", r->addr, mta, diag);
	else if (diag)
		raw = xasprintf("<%s>: %s", r->addr, diag);
	else if (mta)
		raw = xasprintf("<%s>: host %s: %s (%s)", r->addr, mta,
		    what ? what : dsn_action_str(info->action), st);
	else
		raw = xasprintf("<%s>: %s (%s)", r->addr,
		    what ? what : dsn_action_str(info->action), st);
	v = dsn_clean(raw, utf8);
	text_put(b, v, 4);
	free(v);
	free(raw);
}

/* The text/plain part: what happened, in words. */
static void
human_part(struct dsn_buf *b, const struct dsn_info *info, bool utf8,
    enum dsn_return what, size_t nrcpts)
{
	const struct envelope *env = info->env;
	const char *mta = info->reporting_mta;
	const char *who = nrcpts == 1 ? "recipient" : "recipients";
	int64_t arrived = env->arrival / 1000000;
	char date[80], held[64], until[80];
	bool expired = false;

	fmt_date(date, sizeof(date), arrived);
	fmt_duration(held, sizeof(held), info->now - arrived);
	for (size_t i = 0; i < info->nrcpts; i++)
		if (rcpt_of(info, i) &&
		    rcpt_status(info->action, info->rcpts[i].status)[0] == '4')
			expired = true;

	para(b, utf8, "This is the mail system at host %s.", mta);
	switch (info->action) {
	case DSN_FAILED:
		if (expired)
			para(b, utf8,
			    "Your message could not be delivered to the %s "
			    "listed below within the time this server keeps "
			    "trying, and it has now given up. The message will "
			    "not be retried.",
			    who);
		else
			para(b, utf8,
			    "Your message could not be delivered to the %s "
			    "listed below. The problem is permanent, so the "
			    "message will not be retried.",
			    who);
		break;
	case DSN_DELAYED:
		para(b, utf8,
		    "This is a warning only: you do not need to send your "
		    "message again. It has not yet been delivered to the %s "
		    "listed below, and delivery is still being retried.",
		    who);
		break;
	case DSN_DELIVERED:
		para(b, utf8,
		    "Your message was delivered to the %s listed below. You "
		    "receive this notice because you asked for one.",
		    who);
		break;
	case DSN_RELAYED:
		para(b, utf8,
		    "Your message was passed on to the next mail server for "
		    "the %s listed below. That server does not send delivery "
		    "notices, so you may hear nothing more about this "
		    "message.",
		    who);
		break;
	}
	para(b, utf8,
	    "%s is a backup mail server (a secondary MX): it accepts mail "
	    "while the recipients' own mail system cannot take it, keeps it "
	    "safely, and delivers it when that system is back. It accepted "
	    "your message on %s and held it for %s (%u delivery attempt%s).",
	    mta, date, held, (unsigned)env->attempts,
	    env->attempts == 1 ? "" : "s");
	if (info->action == DSN_DELAYED) {
		if (info->will_retry_until > 0) {
			fmt_date(until, sizeof(until), info->will_retry_until);
			para(b, utf8,
			    "It will keep trying until %s. Only if the message "
			    "still cannot be delivered by then will it be "
			    "returned to you.",
			    until);
		} else {
			para(b, utf8,
			    "It keeps messages without a time limit and will "
			    "go on trying until the message can be delivered.");
		}
	}
	switch (what) {
	case RETURN_FULL:
		para(b, utf8, "Your message is attached below.");
		break;
	case RETURN_HDRS_ASKED:
		para(b, utf8,
		    "As the sender asked (RET=HDRS), only the "
		    "header of your message is attached.");
		break;
	case RETURN_HDRS_BIG:
		para(b, utf8,
		    "Your message was larger than 1 MiB, so only its header is "
		    "attached.");
		break;
	case RETURN_HDRS_NOTICE:
		para(b, utf8, "The header of your message is attached.");
		break;
	}
	if (info->action == DSN_FAILED)
		para(b, utf8,
		    "If you need help, write to the postmaster of %s and "
		    "include this report.",
		    mta);
	for (size_t i = 0, n = 0; i < info->nrcpts; i++) {
		if (rcpt_of(info, i) == NULL)
			continue;
		if (n++ > 0)
			buf_puts(b, "\r\n");
		human_rcpt(b, info, i, utf8);
	}
}

/* Whether p starts an SMTP reply: a code 2xx-5xx, then a space, a
 * hyphen, a line end or the end. */
static bool
is_reply(const char *p)
{
	return p[0] >= '2' && p[0] <= '5' && isdigit((unsigned char)p[1]) &&
	       isdigit((unsigned char)p[2]) &&
	       (p[3] == '\0' || strchr(" -\t\r\n", p[3]) != NULL);
}

const char *
dsn_diag_reply(const char *text)
{
	const char *p;

	if (text == NULL)
		return NULL;
	if (is_reply(text))
		return text;
	for (p = strstr(text, ": "); p != NULL; p = strstr(p + 2, ": "))
		if (is_reply(p + 2))
			return p + 2;
	return NULL;
}

char *
dsn_mta_name(const char *relay)
{
	size_t n;

	if (relay == NULL || relay[0] == '\0' || relay[0] == '/')
		return NULL;
	n = strcspn(relay, "[:");
	return n > 0 ? xstrndup(relay, n) : NULL;
}

/* Original-Recipient from ORCPT "type;xtext", decoded where it is safe,
 * in RFC 6533's 7-bit form for a utf-8 address in an ASCII report. */
static void
orcpt_put(struct dsn_buf *b, const char *orcpt, bool global)
{
	const char *semi = strchr(orcpt, ';');
	char *type, *dec = NULL;

	if (semi == NULL) {
		hdr_printf(b, global, "Original-Recipient", "%s", orcpt);
		return;
	}
	type = xstrndup(orcpt, (size_t)(semi - orcpt));
	if (strcasecmp(type, "utf-8") != 0)
		dec = xtext_decode(semi + 1, false, global);
	else if (global)
		dec = xtext_decode(semi + 1, true, true);
	else {
		/* An ASCII report: utf-8-addr-xtext, however it was given
		 * (RFC 6533 3 lets SMTPUTF8 clients send raw UTF-8). */
		char *u = xtext_decode(semi + 1, true, true);

		dec = u ? utf8_addr_xtext(u, strlen(u)) : NULL;
		free(u);
	}
	if (dec)
		hdr_printf(b, global, "Original-Recipient", "%s;%s", type, dec);
	else
		hdr_printf(b, global, "Original-Recipient", "%s", orcpt);
	free(dec);
	free(type);
}

/* The message/delivery-status part: the fields of RFC 3464 2.2 and 2.3. */
static void
report_part(struct dsn_buf *b, const struct dsn_info *info, bool global)
{
	const struct envelope *env = info->env;
	char date[80];

	if (env->envid) {
		char *dec = xtext_decode(env->envid, false, false);

		hdr_printf(b, global, "Original-Envelope-Id", "%s",
		    dec ? dec : env->envid);
		free(dec);
	}
	hdr_printf(b, global, "Reporting-MTA", "dns; %s", info->reporting_mta);
	if (env->arrival > 0) {
		fmt_date(date, sizeof(date), env->arrival / 1000000);
		hdr_put(b, "Arrival-Date", date);
	}
	hdr_printf(b, false, "X-Mxspool-Queue-ID", "%s", env->qid);
	for (size_t i = 0; i < info->nrcpts; i++) {
		const struct dsn_rcpt *dr = &info->rcpts[i];
		const struct env_rcpt *r = rcpt_of(info, i);
		const char *reply;
		char *mta;

		if (r == NULL)
			continue;
		buf_puts(b, "\r\n");
		if (r->orcpt)
			orcpt_put(b, r->orcpt, global);
		if (is_ascii(r->addr, strlen(r->addr)))
			hdr_printf(b, global, "Final-Recipient", "rfc822; %s",
			    r->addr);
		else if (global)
			hdr_printf(
			    b, global, "Final-Recipient", "utf-8; %s", r->addr);
		else {
			char *x = utf8_addr_xtext(r->addr, strlen(r->addr));

			hdr_printf(b, false, "Final-Recipient", "utf-8; %s",
			    x ? x : r->addr);
			free(x);
		}
		hdr_put(b, "Action", dsn_action_str(info->action));
		hdr_put(b, "Status", rcpt_status(info->action, dr->status));
		if ((mta = dsn_mta_name(dr->remote_mta)) != NULL)
			hdr_printf(b, global, "Remote-MTA", "dns; %s", mta);
		free(mta);
		/* "smtp" is for the remote's reply alone (RFC 3464 2.3.6);
		 * what we say ourselves is of our own type. */
		if ((reply = dsn_diag_reply(opt(dr->diagnostic))) != NULL)
			hdr_printf(
			    b, global, "Diagnostic-Code", "smtp; %s", reply);
		else if (opt(dr->diagnostic))
			hdr_printf(b, global, "Diagnostic-Code",
			    "X-mxspool; %s", dr->diagnostic);
		if (env->last_attempt > 0) {
			fmt_date(date, sizeof(date), env->last_attempt);
			hdr_put(b, "Last-Attempt-Date", date);
		}
		if (info->action == DSN_DELAYED && info->will_retry_until > 0) {
			fmt_date(date, sizeof(date), info->will_retry_until);
			hdr_put(b, "Will-Retry-Until", date);
		}
	}
}

static enum dsn_cte
cte_of(const char *p, size_t n)
{
	return is_ascii(p, n) ? CTE_7BIT : CTE_8BIT;
}

static const char *const cte_names[] = {"7bit", "8bit", "binary", "base64"};

/* The returned message's Content-Description. */
static const char *
orig_desc(const struct dsn_info *info, enum dsn_return what)
{
	if (what != RETURN_FULL)
		return "Message Headers";
	return info->action == DSN_FAILED ? "Undelivered Message" : "Message";
}

/* p in base64 (RFC 2045 6.8), lines of 76 characters, CRLF; malloc'd. */
static char *
base64_lines(const char *p, size_t n)
{
	char *out = xmalloc((n + 56) / 57 * 78 + 1), *o = out;

	for (size_t i = 0; i < n; i += 57) {
		size_t k = n - i < 57 ? n - i : 57;

		o += EVP_EncodeBlock(
		    (unsigned char *)o, (const unsigned char *)p + i, (int)k);
		*o++ = '\r';
		*o++ = '\n';
	}
	*o = '\0';
	return out;
}

/* Appends one body part: its header fields, an empty line, content. */
static void
part_put(struct dsn_buf *b, const char *type, const char *desc,
    enum dsn_cte cte, const char *content, size_t len)
{
	hdr_put(b, "Content-Description", desc);
	hdr_put(b, "Content-Type", type);
	hdr_put(b, "Content-Transfer-Encoding", cte_names[cte]);
	buf_puts(b, "\r\n");
	buf_put(b, content, len);
	if (len < 2 || content[len - 2] != '\r' || content[len - 1] != '\n')
		buf_puts(b, "\r\n");
}

static bool
boundary_in(const struct dsn_buf *parts, size_t n, const char *bound)
{
	char delim[96];

	snprintf(delim, sizeof(delim), "--%s", bound);
	for (size_t i = 0; i < n; i++)
		if (parts[i].len &&
		    memmem(parts[i].p, parts[i].len, delim, strlen(delim)))
			return true;
	return false;
}

char *
dsn_build(const struct dsn_info *info, size_t *len)
{
	const struct envelope *env = info->env;
	const char *mta =
	    info->reporting_mta ? info->reporting_mta : "localhost";
	const char *idhost = info->msgid_domain ? info->msgid_domain : mta;
	struct dsn_info in = *info;
	struct dsn_buf out = {0}, part[3] = {{0}};
	enum dsn_return what;
	enum dsn_cte cte[3], top;
	/* RFC 6533's global types only for a sender who has SMTPUTF8
	 * anyway: a notice to an ASCII address must reach a server without
	 * it, so it stays ASCII but for the returned message. */
	bool global = dsn_needs_smtputf8(env), b64 = false;
	const char *orig_type;
	char qid[QID_SIZE], bound[80], date[80];
	size_t nrcpts = 0, hlen, k = 0;

	in.reporting_mta = mta;
	info = &in;
	what = dsn_what(info);
	for (size_t i = 0; i < info->nrcpts; i++)
		if (rcpt_of(info, i))
			nrcpts++;

	human_part(&part[0], info, global, what, nrcpts);
	cte[0] = cte_of(part[0].p, part[0].len);
	report_part(&part[1], info, global);
	cte[1] = cte_of(part[1].p, part[1].len);
	if (what == RETURN_FULL) {
		hlen = info->len;
		cte[2] = env->body == BODY_BINARYMIME
			     ? CTE_BINARY
			     : cte_of(info->body, hlen);
		if (env->body == BODY_8BITMIME && cte[2] == CTE_7BIT)
			cte[2] = CTE_8BIT;
		orig_type = global ? "message/global" : "message/rfc822";
	} else {
		hlen = header_len(info->body, info->len);
		cte[2] = cte_of(info->body, hlen);
		orig_type =
		    global ? "message/global-headers" : "text/rfc822-headers";
	}
	/* A UTF-8 header section (RFC 6532) in an ASCII notice: the global
	 * type, whose content may be encoded (RFC 6532 3.5), in base64. */
	if (!global && (env->flags & ENV_SMTPUTF8) &&
	    !is_ascii(info->body, header_len(info->body, hlen))) {
		orig_type = what == RETURN_FULL ? "message/global"
						: "message/global-headers";
		cte[2] = CTE_BASE64;
		b64 = true;
	}
	if (b64) {
		char *enc = base64_lines(info->body, hlen);

		part_put(&part[2], orig_type, orig_desc(info, what), CTE_BASE64,
		    enc, strlen(enc));
		free(enc);
	} else
		part_put(&part[2], orig_type, orig_desc(info, what), cte[2],
		    info->body, hlen);
	top = cte[0] > cte[1] ? cte[0] : cte[1];
	top = cte[2] != CTE_BASE64 && cte[2] > top ? cte[2] : top;

	/* Queue id letters only: the boundary must be a plain token. */
	for (size_t i = 0; env->qid[i] != '\0' && i < QID_LEN; i++)
		if ((env->qid[i] >= '0' && env->qid[i] <= '9') ||
		    (env->qid[i] >= 'A' && env->qid[i] <= 'Z'))
			qid[k++] = env->qid[i];
	qid[k] = '\0';
	snprintf(bound, sizeof(bound), "=_%s.%lld", qid, (long long)info->now);
	for (unsigned n = 1; boundary_in(part, 3, bound); n++)
		snprintf(bound, sizeof(bound), "=_%s.%lld.%u", qid,
		    (long long)info->now, n);

	hdr_printf(&out, false, "From",
	    "Mail Delivery System <MAILER-DAEMON@%s>", mta);
	hdr_printf(&out, global, "To", "<%s>", env->sender ? env->sender : "");
	hdr_put(&out, "Subject", subject_of(info->action));
	fmt_date(date, sizeof(date), info->now);
	hdr_put(&out, "Date", date);
	/* One notice per action and moment: a later one gets a new id. */
	hdr_printf(&out, false, "Message-ID", "<%lld.%c%s@%s>",
	    (long long)info->now,
	    info->action <= DSN_RELAYED ? "FDSR"[info->action] : 'X', qid,
	    idhost);
	hdr_put(&out, "MIME-Version", "1.0");
	hdr_put(&out, "Auto-Submitted", "auto-replied");
	hdr_printf(&out, false, "Content-Type",
	    "multipart/report; report-type=%s; boundary=\"%s\"",
	    global ? "global-delivery-status" : "delivery-status", bound);
	hdr_put(&out, "Content-Transfer-Encoding", cte_names[top]);
	buf_puts(&out, "\r\nThis is a MIME-encapsulated delivery status "
		       "notification.\r\n");

	buf_printf(&out, "\r\n--%s\r\n", bound);
	part_put(&out,
	    global ? "text/plain; charset=utf-8"
		   : "text/plain; charset=us-ascii",
	    "Notification", cte[0], part[0].p, part[0].len);
	buf_printf(&out, "\r\n--%s\r\n", bound);
	part_put(&out,
	    global ? "message/global-delivery-status"
		   : "message/delivery-status",
	    "Delivery report", cte[1], part[1].p, part[1].len);
	buf_printf(&out, "\r\n--%s\r\n", bound);
	buf_put(&out, part[2].p, part[2].len);
	buf_printf(&out, "\r\n--%s--\r\n", bound);

	for (size_t i = 0; i < 3; i++)
		free(part[i].p);
	*len = out.len;
	return out.p;
}
