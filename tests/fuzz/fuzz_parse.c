/*
 * libFuzzer target for relay/parse.c: every parser entry point on the
 * same input, and the DATA decoder fed in pieces whose sizes the input
 * chooses. Invariants checked: no crash, no leak, decoded output never
 * longer than the input nor than the limit, and the end of data found
 * only right after CRLF "." CRLF.
 *
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. \
 *       tests/fuzz/fuzz_parse.c relay/parse.c relay/parse_data.c \
 *       common/xmem.c -o fuzz_parse
 *   ./fuzz_parse -max_total_time=60
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	(void)parse_mail(line, &m, reply, sizeof(reply));
	(void)parse_rcpt(line, false, &r, reply, sizeof(reply));
	(void)parse_rcpt(line, true, &r, reply, sizeof(reply));
	(void)parse_bdat(line, &n, &last, reply, sizeof(reply));
	(void)parse_helo("EHLO", line, helo, reply, sizeof(reply));
	verb = parse_split(line, &args);
	(void)verb;
	if (parse_rcpt(args, true, &r, reply, sizeof(reply)) == 0) {
		if (strlen(r.local) > PARSE_LOCAL_MAX ||
		    strlen(r.domain) > PARSE_DOMAIN_MAX ||
		    strchr(r.addr, '@') == NULL)
			abort();
	}
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
