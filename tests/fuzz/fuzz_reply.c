/*
 * libFuzzer target for relay/client_proto.c, what the outbound client
 * reads from a next hop and writes to it. The input is what a server
 * sends, cut into lines at LF (a CR before it dropped) as the session's
 * reader does; each line goes to client_reply_add, and each whole reply
 * to the enhanced status code, log text and EHLO keyword readers.
 * Invariants checked:
 * - a reply has a code of 200 to 599, every line counted, and at most
 *   CLIENT_REPLY_LINES kept; nothing is added after its last line;
 * - its status code is "C.x.y" of the reply's class, within a 12-byte
 *   buffer (the callers'); its text is bounded, starts with the code and
 *   has no control characters; the EHLO reader sets only known bits, and
 *   a SIZE limit only with the SIZE bit;
 * - the whole input, dot-stuffed as a message body, decodes through the
 *   server's DATA decoder (relay/parse_data.c) to itself (plus the CRLF
 *   the stuffing adds to a body that lacks one), ending exactly at the
 *   final "."; so no body can end a transaction early (SMTP smuggling);
 * - the input as an address or an ORCPT, made 7-bit for a hop without
 *   SMTPUTF8, is 7-bit.
 *
 *   make fuzz FUZZ_TARGETS=reply   (seeds: tests/fuzz/corpus/reply/, the
 *   server side of real sessions)
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/client_int.h"
#include "relay/downgrade.h"
#include "relay/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KNOWN_EXT                                                              \
	(CLIENT_EXT_PIPELINING | CLIENT_EXT_SIZE | CLIENT_EXT_8BITMIME |       \
	    CLIENT_EXT_STARTTLS | CLIENT_EXT_DSN | CLIENT_EXT_SMTPUTF8 |       \
	    CLIENT_EXT_ENHANCED | CLIENT_EXT_CHUNKING |                        \
	    CLIENT_EXT_BINARYMIME | CLIENT_EXT_ARRIVAL)

/* One to three digits at *p, then stop; returns how many. */
static size_t
digits(const char *p)
{
	size_t n = 0;

	while (n < 4 && isdigit((unsigned char)p[n]))
		n++;
	return n >= 1 && n <= 3 ? n : 0;
}

static void
check_reply(const struct client_reply *r, size_t added)
{
	char dsn[12], code[4], *text;
	const char *p;
	uint64_t limit;
	unsigned ext;
	size_t n;

	if (r->code < 200 || r->code > 599 || r->nlines == 0 ||
	    r->nlines > CLIENT_REPLY_LINES || r->nlines + r->nextra != added)
		abort();

	client_reply_dsn(r, dsn, sizeof(dsn));
	if (dsn[0] != '0' + r->code / 100 || dsn[1] != '.' ||
	    (n = digits(dsn + 2)) == 0 || dsn[2 + n] != '.')
		abort();
	p = dsn + 3 + n;
	if ((n = digits(p)) == 0 || p[n] != '\0')
		abort();

	text = client_reply_text(r);
	snprintf(code, sizeof(code), "%d", r->code);
	if (strlen(text) >= CLIENT_TEXT_MAX || strncmp(text, code, 3) != 0)
		abort();
	for (p = text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
	free(text);

	ext = client_ehlo_parse(r, &limit);
	if ((ext & ~KNOWN_EXT) != 0 || (limit != 0 && !(ext & CLIENT_EXT_SIZE)))
		abort();
}

static void
fuzz_replies(const char *data, size_t size)
{
	struct client_reply r;
	const char *line = data, *end = data + size, *nl;
	size_t added = 0;

	client_reply_init(&r);
	/* Whole lines only: the reader waits for the rest of a last one. */
	while ((nl = memchr(line, '\n', (size_t)(end - line))) != NULL) {
		size_t len = (size_t)(nl - line);

		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (client_reply_add(&r, line, len) < 0) {
			/* Malformed: the session gives up on this reply. */
			client_reply_fini(&r);
			added = 0;
		} else if (++added > 0 && r.done) {
			check_reply(&r, added);
			if (client_reply_add(&r, "250 again", 9) != -1)
				abort();
			client_reply_fini(&r);
			added = 0;
		}
		line = nl + 1;
	}
	client_reply_fini(&r);
}

static void
fuzz_dot_stuff(const char *data, size_t size)
{
	struct parse_data d;
	size_t outlen, got, want;
	bool done, crlf;
	char *out;

	out = client_dot_stuff(data, size, &outlen);
	parse_data_init(&d, UINT64_MAX);
	got = parse_data_feed(&d, out, outlen, &done);
	crlf = size >= 2 && data[size - 2] == '\r' && data[size - 1] == '\n';
	want = size + (size > 0 && !crlf ? 2 : 0);
	if (!done || got != outlen || d.len != want ||
	    (size > 0 && memcmp(d.buf, data, size) != 0) ||
	    (want > size && memcmp(d.buf + size, "\r\n", 2) != 0))
		abort();
	parse_data_fini(&d);
	free(out);
}

static void
fuzz_addresses(const char *data, size_t size)
{
	char s[1024], *ascii, *orcpt;
	size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;

	memcpy(s, data, n);
	s[n] = '\0';
	if (client_addr_ascii(s, &ascii) == 0) {
		const char *a = ascii ? ascii : s;

		if (!downgrade_is_7bit(a, strlen(a)))
			abort();
		free(ascii);
	}
	/* An rfc822 ORCPT whose xtext says more than ASCII. */
	if (strncmp(s, "rfc822;", 7) == 0) {
		orcpt = client_orcpt_7bit(s);
		if (orcpt != NULL && !downgrade_is_7bit(orcpt, strlen(orcpt)))
			abort();
		free(orcpt);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_replies((const char *)data, size);
	fuzz_dot_stuff((const char *)data, size);
	fuzz_addresses((const char *)data, size);
	return 0;
}
