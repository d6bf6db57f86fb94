#define LOG_ROLE "smtp"
/*
 * The pure half of the outbound client: reading replies (RFC 5321 4.2),
 * the EHLO keywords, the MAIL and RCPT commands with their ESMTP
 * parameters, and dot-stuffing. Nothing here does I/O, so the unit tests
 * and fuzzers call it directly.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/idn.h"
#include "common/utf8.h"
#include "common/xmem.h"
#include "relay/client_int.h"
#include "relay/downgrade.h"

void
client_reply_init(struct client_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void
client_reply_fini(struct client_reply *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[i]);
	client_reply_init(r);
}

int
client_reply_add(struct client_reply *r, const char *line, size_t len)
{
	int code;

	if (r->done || len < 3 || len > CLIENT_LINE_MAX)
		return -1;
	if (line[0] < '2' || line[0] > '5' ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->code != 0 && code != r->code)
		return -1;
	r->code = code;
	if (r->nlines < CLIENT_REPLY_LINES)
		r->lines[r->nlines++] =
		    len > 4 ? xstrndup(line + 4, len - 4) : xstrdup("");
	else
		r->nextra++;
	/* "250" alone is a last line too (RFC 5321 4.2.1). */
	r->done = len == 3 || line[3] == ' ';
	return 0;
}

/* Up to three digits, at least one; returns the length, or 0. */
static size_t
esc_number(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && isdigit((unsigned char)s[n]))
		n++;
	return isdigit((unsigned char)s[n]) ? 0 : n;
}

bool
client_parse_esc(int code, const char *text, char *dsn, size_t dsnlen)
{
	const char *p = text;
	size_t n;

	if (text == NULL || p[0] != '0' + code / 100 || p[1] != '.')
		return false;
	p += 2;
	if ((n = esc_number(p, 3)) == 0 || p[n] != '.')
		return false;
	p += n + 1;
	if ((n = esc_number(p, 3)) == 0)
		return false;
	p += n;
	if (*p != '\0' && *p != ' ' && *p != '\t')
		return false;
	if ((size_t)(p - text) >= dsnlen)
		return false;
	memcpy(dsn, text, (size_t)(p - text));
	dsn[p - text] = '\0';
	return true;
}

void
client_reply_dsn(const struct client_reply *r, char *dsn, size_t dsnlen)
{
	if (r->nlines > 0 &&
	    (client_parse_esc(r->code, r->lines[0], dsn, dsnlen) ||
		client_parse_esc(
		    r->code, r->lines[r->nlines - 1], dsn, dsnlen)))
		return;
	snprintf(dsn, dsnlen, "%d.0.0", r->code / 100);
}

char *
client_reply_text(const struct client_reply *r)
{
	char buf[CLIENT_TEXT_MAX];
	size_t len;

	len = (size_t)snprintf(buf, sizeof(buf), "%d", r->code);
	for (size_t i = 0; i < r->nlines && len < sizeof(buf) - 1; i++) {
		const char *s = r->lines[i];

		if (*s == '\0')
			continue;
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %s", s);
	}
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	buf[len] = '\0';
	/* Replies are the peer's words: keep them printable for the logs. */
	for (char *p = buf; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return xstrdup(buf);
}

/* Whether line is keyword alone or keyword followed by a space. */
static bool
ehlo_is(const char *line, const char *kw, const char **arg)
{
	size_t n = strlen(kw);

	if (strncasecmp(line, kw, n) != 0)
		return false;
	if (line[n] != '\0' && line[n] != ' ')
		return false;
	if (arg != NULL)
		*arg = line[n] == ' ' ? line + n + 1 : line + n;
	return true;
}

unsigned
client_ehlo_parse(const struct client_reply *r, uint64_t *size)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} kws[] = {
	    {"PIPELINING", CLIENT_EXT_PIPELINING},
	    {"8BITMIME", CLIENT_EXT_8BITMIME},
	    {"STARTTLS", CLIENT_EXT_STARTTLS},
	    {"DSN", CLIENT_EXT_DSN},
	    {"SMTPUTF8", CLIENT_EXT_SMTPUTF8},
	    {"ENHANCEDSTATUSCODES", CLIENT_EXT_ENHANCED},
	    {"CHUNKING", CLIENT_EXT_CHUNKING},
	    {"BINARYMIME", CLIENT_EXT_BINARYMIME},
	    {"XMXSPOOL-ARRIVAL", CLIENT_EXT_ARRIVAL},
	};
	unsigned ext = 0;
	const char *arg;

	*size = 0;
	/* The first line is the server's name and greeting, not a keyword. */
	for (size_t i = 1; i < r->nlines; i++) {
		const char *line = r->lines[i];

		if (ehlo_is(line, "SIZE", &arg)) {
			char *end;
			unsigned long long v;

			ext |= CLIENT_EXT_SIZE;
			if (!isdigit((unsigned char)*arg))
				continue; /* "SIZE" alone: no fixed limit */
			v = strtoull(arg, &end, 10);
			if (*end == '\0' || *end == ' ')
				*size = (uint64_t)v;
			continue;
		}
		for (size_t k = 0; k < sizeof(kws) / sizeof(kws[0]); k++) {
			if (ehlo_is(line, kws[k].kw, NULL))
				ext |= kws[k].bit;
		}
	}
	return ext;
}

char *
client_dot_stuff(const char *data, size_t len, size_t *outlen)
{
	size_t n = len, o = 0;
	bool crlf = len >= 2 && data[len - 2] == '\r' && data[len - 1] == '\n';
	char *out;

	/* Count first, then copy: one allocation of the exact size. */
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '.' &&
		    (i == 0 ||
			(i >= 2 && data[i - 1] == '\n' && data[i - 2] == '\r')))
			n++;
	}
	n += (crlf || len == 0 ? 0 : 2) + 3;
	out = xmalloc(n);
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '.' &&
		    (i == 0 ||
			(i >= 2 && data[i - 1] == '\n' && data[i - 2] == '\r')))
			out[o++] = '.';
		out[o++] = data[i];
	}
	if (!crlf && len > 0) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	o += 3;
	*outlen = o;
	return out;
}

char *
client_mail_cmd(const struct client_msg *m, size_t size, unsigned ext)
{
	char buf[1200];
	size_t len;

	len = (size_t)snprintf(buf, sizeof(buf), "MAIL FROM:<%s>", m->sender);
#define ADD(...)                                                               \
	do {                                                                   \
		if (len < sizeof(buf))                                         \
			len += (size_t)snprintf(                               \
			    buf + len, sizeof(buf) - len, __VA_ARGS__);        \
	} while (0)
	if (ext & CLIENT_EXT_SIZE)
		ADD(" SIZE=%zu", size);
	if (m->body == BODY_8BITMIME && (ext & CLIENT_EXT_8BITMIME))
		ADD(" BODY=8BITMIME");
	else if (m->body == BODY_BINARYMIME && (ext & CLIENT_EXT_BINARYMIME))
		ADD(" BODY=BINARYMIME");
	if (m->smtputf8 && (ext & CLIENT_EXT_SMTPUTF8))
		ADD(" SMTPUTF8");
	if (ext & CLIENT_EXT_DSN) {
		switch (m->ret) {
		case RET_DEFAULT:
			break;
		case RET_FULL:
			ADD(" RET=FULL");
			break;
		case RET_HDRS:
			ADD(" RET=HDRS");
			break;
		}
		if (m->envid != NULL && m->envid[0] != '\0')
			ADD(" ENVID=%s", m->envid);
	}
	if (m->arrival > 0 && (ext & CLIENT_EXT_ARRIVAL))
		ADD(" ARRIVAL=%lld", (long long)m->arrival);
#undef ADD
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	return xstrndup(buf, len);
}

int
client_addr_ascii(const char *addr, char **out)
{
	const char *at = strrchr(addr, '@');
	char dom[IDN_NAME_SIZE];

	*out = NULL;
	if (downgrade_is_7bit(addr, strlen(addr)))
		return 0;
	if (at == NULL || !downgrade_is_7bit(addr, (size_t)(at - addr)) ||
	    idn_to_ascii(at + 1, dom, sizeof(dom), NULL, 0) != 0)
		return -1;
	*out = xasprintf("%.*s@%s", (int)(at - addr), addr, dom);
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
client_orcpt_7bit(const char *orcpt)
{
	const char *x;
	unsigned char *dec;
	size_t n = 0, len;
	bool ascii = true;
	char *enc, *out;

	if (strncasecmp(orcpt, "rfc822;", 7) != 0)
		return xstrdup(orcpt);
	/* The xtext's octets (RFC 3461 4: "+XX" is one octet). */
	x = orcpt + 7;
	len = strlen(x);
	dec = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		if (x[i] == '+' && i + 2 < len && hexval(x[i + 1]) >= 0 &&
		    hexval(x[i + 2]) >= 0) {
			dec[n] = (unsigned char)(hexval(x[i + 1]) << 4 |
						 hexval(x[i + 2]));
			i += 2;
		} else {
			dec[n] = (unsigned char)x[i];
		}
		if (dec[n++] & 0x80)
			ascii = false;
	}
	if (ascii) {
		free(dec);
		return xstrdup(orcpt);
	}
	/* utf-8-addr-xtext (RFC 6533 3); NULL when it is not UTF-8. */
	enc = utf8_addr_xtext((const char *)dec, n);
	out = enc ? xasprintf("utf-8;%s", enc) : NULL;
	free(enc);
	free(dec);
	return out;
}

char *
client_rcpt_cmd(const struct client_rcpt *r, unsigned ext)
{
	char notify[40] = "";
	char *orcpt = NULL, *cmd;

	if ((ext & CLIENT_EXT_DSN) && r->notify != 0) {
		if (r->notify & NOTIFY_NEVER) {
			strcpy(notify, " NOTIFY=NEVER");
		} else {
			const char *sep = " NOTIFY=";
			size_t n = 0;

			if (r->notify & NOTIFY_SUCCESS) {
				n += (size_t)snprintf(notify + n,
				    sizeof(notify) - n, "%sSUCCESS", sep);
				sep = ",";
			}
			if (r->notify & NOTIFY_FAILURE) {
				n += (size_t)snprintf(notify + n,
				    sizeof(notify) - n, "%sFAILURE", sep);
				sep = ",";
			}
			if (r->notify & NOTIFY_DELAY)
				snprintf(notify + n, sizeof(notify) - n,
				    "%sDELAY", sep);
		}
	}
	if ((ext & CLIENT_EXT_DSN) && r->orcpt != NULL && r->orcpt[0] != '\0')
		orcpt = (ext & CLIENT_EXT_SMTPUTF8)
			    ? xstrdup(r->orcpt)
			    : client_orcpt_7bit(r->orcpt);
	if (orcpt != NULL)
		cmd = xasprintf(
		    "RCPT TO:<%s>%s ORCPT=%s", r->addr, notify, orcpt);
	else
		cmd = xasprintf("RCPT TO:<%s>%s", r->addr, notify);
	free(orcpt);
	return cmd;
}
