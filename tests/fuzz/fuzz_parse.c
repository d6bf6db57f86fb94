/*
 * libFuzzer target for relay/parse.c: every parser entry point on the
 * same input, and the DATA decoder fed in pieces whose sizes the input
 * chooses. Invariants checked: no crash, no leak, a refusal is a whole
 * reply line, an accepted address fits its bounds and has a domain (or is
 * <Postmaster>), decoded output never longer than the input nor than the
 * limit, and the end of data found only right after CRLF "." CRLF.
 *
 *   make fuzz FUZZ_TARGETS=parse   (seeds: tests/fuzz/corpus/parse/)
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "relay/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A refusal: "501 5.5.4 text", whole, within the buffer. */
static void
check_reply(const char *reply)
{
	size_t n = strnlen(reply, PARSE_REPLY_SIZE);

	if (n == PARSE_REPLY_SIZE || n < 4 || reply[0] < '4' ||
	    reply[0] > '5' || !isdigit((unsigned char)reply[1]) ||
	    !isdigit((unsigned char)reply[2]) || reply[3] != ' ' ||
	    strpbrk(reply, "\r\n") != NULL)
		abort();
}

static void
check_rcpt(const struct parse_rcpt *r)
{
	if (strlen(r->addr) > PARSE_PATH_MAX ||
	    strlen(r->local) > PARSE_LOCAL_MAX ||
	    strlen(r->domain) > PARSE_DOMAIN_MAX)
		abort();
	/* <Postmaster> alone has no domain; every other address has one. */
	if (r->postmaster &&
	    (r->domain[0] != '\0' || strcasecmp(r->local, "postmaster") != 0))
		abort();
	if (!r->postmaster &&
	    (strchr(r->addr, '@') == NULL || r->domain[0] == '\0'))
		abort();
}

static void
fuzz_commands(const uint8_t *data, size_t size)
{
	char line[600], reply[PARSE_REPLY_SIZE], helo[PARSE_HELO_MAX + 1];
	struct parse_mail m;
	struct parse_rcpt r;
	uint64_t n;
	bool last;
	char *verb, *args;
	size_t len = size < sizeof(line) - 1 ? size : sizeof(line) - 1;

	memcpy(line, data, len);
	line[len] = '\0';
	if (parse_mail(line, &m, reply, sizeof(reply)) < 0)
		check_reply(reply);
	else if (strlen(m.addr) > PARSE_PATH_MAX ||
		 strlen(m.envid) > PARSE_ENVID_MAX ||
		 (m.addr[0] != '\0' && strchr(m.addr, '@') == NULL))
		abort();
	if (parse_rcpt(line, false, &r, reply, sizeof(reply)) < 0)
		check_reply(reply);
	else
		check_rcpt(&r);
	if (parse_rcpt(line, true, &r, reply, sizeof(reply)) < 0)
		check_reply(reply);
	else
		check_rcpt(&r);
	if (parse_bdat(line, &n, &last, reply, sizeof(reply)) < 0)
		check_reply(reply);
	if (parse_helo("EHLO", line, helo, reply, sizeof(reply)) < 0)
		check_reply(reply);
	else if (strlen(helo) > PARSE_HELO_MAX)
		abort();
	verb = parse_split(line, &args);
	(void)verb;
	if (parse_rcpt(args, true, &r, reply, sizeof(reply)) < 0)
		check_reply(reply);
	else
		check_rcpt(&r);
	if (parse_mail(args, &m, reply, sizeof(reply)) < 0)
		check_reply(reply);
}

static void
fuzz_data(const uint8_t *data, size_t size)
{
	struct parse_data d;
	size_t used = 0, step = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;
	bool done = false;

	parse_data_init(&d, 4096);
	while (used < size && !done) {
		size_t k = size - used < step ? size - used : step;
		size_t got =
		    parse_data_feed(&d, (const char *)data + used, k, &done);

		if (got > k || (got == 0 && !done))
			abort();
		used += got;
	}
	if (d.len > used || d.len > 4096)
		abort();
	if (done && (used < 3 || memcmp(data + used - 3, ".\r\n", 3) != 0 ||
			(used > 3 && (used < 5 || memcmp(data + used - 5,
						      "\r\n", 2) != 0))))
		abort();
	parse_data_fini(&d);
	(void)parse_count_received((const char *)data, size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_commands(data, size);
	fuzz_data(data, size);
	return 0;
}
