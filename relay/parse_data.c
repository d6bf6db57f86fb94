/*
 * The message side of the SMTP parser (declared in relay/parse.h): the
 * DATA decoder, BDAT chunks, the Received header count and the Received
 * header itself. Pure code, like relay/parse.c.
 *
 * The decoder is a byte-at-a-time state machine, so it finds the end of
 * data wherever the client's packets split it, and it ends DATA only at
 * CRLF "." CRLF: a bare CR or LF never starts a line.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xmem.h"
#include "relay/parse.h"

/* DATA decoder states. */
enum {
	DD_BOL,   /* at the start of a line */
	DD_DOT,   /* "." at the start of a line */
	DD_DOTCR, /* "." CR at the start of a line */
	DD_TEXT,  /* inside a line */
	DD_CR,    /* CR inside a line */
	DD_END,
};

void
parse_data_init(struct parse_data *d, uint64_t limit)
{
	memset(d, 0, sizeof(*d));
	d->state = DD_BOL;
	d->limit = limit;
}

void
parse_data_fini(struct parse_data *d)
{
	free(d->buf);
	memset(d, 0, sizeof(*d));
}

#define DD_FIRST_CAP 16384 /* bytes: the first buffer */

size_t
parse_data_grown_cap(const struct parse_data *d, size_t n)
{
	size_t cap;

	if (d->len >= d->limit)
		return d->cap;
	if (n > d->limit - d->len)
		n = (size_t)(d->limit - d->len);
	if (d->len + n <= d->cap)
		return d->cap;
	cap = d->cap ? d->cap * 2 : DD_FIRST_CAP;
	while (cap < d->len + n)
		cap *= 2;
	if (cap > d->limit)
		cap = (size_t)d->limit;
	return cap;
}

void
parse_data_drop(struct parse_data *d)
{
	free(d->buf);
	d->buf = NULL;
	d->len = d->cap = 0;
	d->limit = 0;
}

static void
dd_put(struct parse_data *d, const char *p, size_t n)
{
	size_t cap = parse_data_grown_cap(d, n);

	d->total += n;
	d->line_len += n;
	if (d->len >= d->limit)
		return;
	if (n > d->limit - d->len)
		n = (size_t)(d->limit - d->len);
	if (cap > d->cap) {
		d->buf = xrealloc(d->buf, cap);
		d->cap = cap;
	}
	memcpy(d->buf + d->len, p, n);
	d->len += n;
}

static void
dd_eol(struct parse_data *d)
{
	if (d->line_len > PARSE_TEXT_LINE_MAX)
		d->long_lines++;
	d->line_len = 0;
}

size_t
parse_data_feed(struct parse_data *d, const char *in, size_t len, bool *done)
{
	size_t i = 0;

	*done = d->state == DD_END;
	while (i < len && d->state != DD_END) {
		char c = in[i];

		/* Plain text runs: copy up to the next CR or LF at once. */
		if (d->state == DD_TEXT && c != '\r' && c != '\n') {
			size_t j = i;
			while (j < len && in[j] != '\r' && in[j] != '\n')
				j++;
			dd_put(d, in + i, j - i);
			i = j;
			continue;
		}
		i++;
		switch (d->state) {
		case DD_BOL:
			if (c == '.') {
				d->line_len++; /* the stuffed dot counts */
				d->state = DD_DOT;
			} else if (c == '\r') {
				d->state = DD_CR;
			} else if (c == '\n') {
				d->bare_lf++;
				dd_put(d, "\n", 1);
				d->state = DD_TEXT;
			} else {
				dd_put(d, &c, 1);
				d->state = DD_TEXT;
			}
			break;
		case DD_DOT:
			if (c == '\r') {
				d->state = DD_DOTCR;
				break;
			}
			d->state = DD_TEXT;
			if (c == '\n') {
				d->bare_lf++;
				dd_put(d, "\n", 1);
			} else {
				dd_put(d, &c, 1);
			}
			break;
		case DD_DOTCR:
			if (c == '\n') {
				d->state = DD_END;
				break;
			}
			/* ".", CR, other: a bare CR on a stuffed line. */
			d->bare_cr++;
			dd_put(d, "\r", 1);
			d->state = DD_TEXT;
			i--; /* c again, inside the line */
			break;
		case DD_TEXT:
			if (c == '\r') {
				d->state = DD_CR;
			} else {
				/* Only LF reaches here. */
				d->bare_lf++;
				dd_put(d, "\n", 1);
			}
			break;
		case DD_CR:
			if (c == '\n') {
				dd_put(d, "\r\n", 2);
				dd_eol(d);
				d->state = DD_BOL;
			} else {
				d->bare_cr++;
				dd_put(d, "\r", 1);
				d->state = DD_TEXT;
				i--;
			}
			break;
		case DD_END:
			break;
		}
	}
	*done = d->state == DD_END;
	return i;
}

void
parse_data_raw(struct parse_data *d, const char *in, size_t len, bool last)
{
	bool cr = d->state == DD_CR;
	unsigned n = parse_bare_newlines(in, len, &cr);

	/* Split the count the way DATA would: a bare LF or a bare CR. */
	for (size_t i = 0; i < len && n > 0; i++) {
		if (in[i] == '\n' &&
		    (i > 0 ? in[i - 1] != '\r' : d->state != DD_CR)) {
			d->bare_lf++;
			n--;
		}
	}
	d->bare_cr += n;
	if (last && cr)
		d->bare_cr++;
	d->state = cr ? DD_CR : DD_TEXT;
	dd_put(d, in, len);
}

char *
parse_data_take(struct parse_data *d, size_t *len)
{
	char *b = d->buf;

	*len = d->len;
	d->buf = NULL;
	d->len = d->cap = 0;
	return b;
}

unsigned
parse_bare_newlines(const char *buf, size_t len, bool *cr)
{
	unsigned n = 0;

	for (size_t i = 0; i < len; i++) {
		if (*cr && buf[i] != '\n')
			n++;
		if (!*cr && buf[i] == '\n')
			n++;
		*cr = buf[i] == '\r';
	}
	return n;
}

unsigned
parse_count_received(const char *msg, size_t len)
{
	unsigned n = 0;
	size_t i = 0;

	while (i < len) {
		const char *eol = memchr(msg + i, '\n', len - i);
		size_t end = eol != NULL ? (size_t)(eol - msg) : len;
		size_t llen = end - i;

		/* An empty line ends the header section. */
		if (llen == 0 || (llen == 1 && msg[i] == '\r'))
			break;
		if (llen >= 9 && strncasecmp(msg + i, "Received:", 9) == 0)
			n++;
		else if (llen >= 9 &&
			 strncasecmp(msg + i, "Received", 8) == 0) {
			/* "Received :" is obsolete syntax but still counts. */
			size_t k = i + 8;
			while (
			    k < i + llen && (msg[k] == ' ' || msg[k] == '\t'))
				k++;
			if (k < i + llen && msg[k] == ':')
				n++;
		}
		if (eol == NULL)
			break;
		i = (size_t)(eol - msg) + 1;
	}
	return n;
}

bool
parse_message_id(const char *msg, size_t len, char *out, size_t outlen)
{
	size_t i = 0, n = 0;
	bool in = false, space = false;

	while (i < len) {
		const char *eol = memchr(msg + i, '\n', len - i);
		size_t end = eol != NULL ? (size_t)(eol - msg) : len;
		size_t llen = end - i, k = i;

		if (llen == 0 || (llen == 1 && msg[i] == '\r'))
			break;
		if (in && msg[i] != ' ' && msg[i] != '\t')
			break; /* the next field: ours is whole */
		if (!in && llen >= 11 &&
		    strncasecmp(msg + i, "Message-ID:", 11) == 0) {
			in = true;
			k = i + 11;
		}
		for (; in && k < end; k++) {
			unsigned char c = (unsigned char)msg[k];

			if (c == ' ' || c == '\t' || c == '\r') {
				space = n > 0;
				continue;
			}
			if (space && n + 1 < outlen)
				out[n++] = ' ';
			space = false;
			if (n + 1 < outlen)
				out[n++] = c > 0x20 && c < 0x7f ? (char)c : '?';
		}
		if (eol == NULL)
			break;
		i = end + 1;
	}
	if (outlen > 0)
		out[n < outlen ? n : outlen - 1] = '\0';
	return n > 0;
}

/*
 * Copies s into a form safe inside a header comment: no controls, CR, LF,
 * parentheses, backslash, semicolon or space.
 */
static void
trace_clean(char *out, size_t outlen, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 1 < outlen; s++) {
		unsigned char c = (unsigned char)*s;
		bool bad = c < 32 || c == 127 || c == '(' || c == ')' ||
			   c == '\\' || c == ';' || c == ' ';
		out[n++] = bad ? '?' : (char)c;
	}
	out[n] = '\0';
}

char *
parse_received(const struct parse_trace *t, size_t *len)
{
	char helo[PARSE_HELO_MAX + 1], date[64], lit[80], tls[200], name[256];
	char rcpt[PARSE_ADDR_SIZE + 16], node[80], by[sizeof(node) + 8];
	struct tm tm;
	char *h;

	trace_clean(helo, sizeof(helo), t->helo ? t->helo : "unknown");
	trace_clean(name, sizeof(name), t->name ? t->name : "unknown");
	if (strchr(t->addr, ':') != NULL)
		snprintf(lit, sizeof(lit), "[IPv6:%s]", t->addr);
	else
		snprintf(lit, sizeof(lit), "[%s]", t->addr);
	localtime_r(&t->when, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	tls[0] = '\0';
	if (t->tls != NULL) /* from OpenSSL, not from the client */
		snprintf(tls, sizeof(tls), "\r\n\t(using %.180s)", t->tls);
	rcpt[0] = '\0';
	if (t->rcpt != NULL)
		snprintf(rcpt, sizeof(rcpt), "\r\n\tfor <%s>", t->rcpt);
	by[0] = '\0';
	if (t->node != NULL) {
		trace_clean(node, sizeof(node), t->node);
		snprintf(by, sizeof(by), " node %s", node);
	}
	h = xasprintf("Received: from %s (%s %s)\r\n"
		      "\tby %s (mxspool%s) with %s id %s%s%s;\r\n"
		      "\t%s\r\n",
	    helo, name, lit, t->by, by, t->protocol, t->qid, tls, rcpt, date);
	*len = strlen(h);
	return h;
}
