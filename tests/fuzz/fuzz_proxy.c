/*
 * libFuzzer target for relay/proxy.c: the PROXY protocol header parser on
 * the input, and on prefixes of it as a connection would deliver them.
 * Invariants checked: no crash, no read past the input; a verdict is OK,
 * MORE or BAD; OK takes at least one byte, at most the input, PROXY_MAX
 * and (v1) 107 ending in CRLF, and does not depend on the bytes after the
 * header; every shorter prefix of a header is MORE, and a prefix of
 * anything else is MORE or BAD (never OK); MORE is never said of
 * PROXY_MAX bytes; BAD says why; the addresses of a header come back the
 * same when written as a v1 line and as a v2 header and parsed again.
 *
 *   make fuzz FUZZ_TARGETS=proxy   (seeds: tests/fuzz/corpus/proxy/)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
parse(const uint8_t *data, size_t size, struct proxy_hdr *h, size_t *used)
{
	char why[128];
	int rc;
	/* A copy of exactly size bytes: ASan catches a read past them. */
	uint8_t *copy = malloc(size > 0 ? size : 1);

	if (size > 0)
		memcpy(copy, data, size);
	rc = proxy_parse(copy, size, h, used, why, sizeof(why));
	free(copy);
	if (rc != PROXY_OK && rc != PROXY_MORE && rc != PROXY_BAD)
		abort();
	if (rc == PROXY_BAD && why[0] == '\0')
		abort();
	if (rc != PROXY_OK && *used != 0)
		abort();
	if (rc == PROXY_MORE && size >= PROXY_MAX)
		abort();
	return rc;
}

static void
check_hdr(const struct proxy_hdr *h)
{
	if (h->version != 1 && h->version != 2)
		abort();
	if (h->local) {
		if (h->src.ss_family != AF_UNSPEC ||
		    h->dst.ss_family != AF_UNSPEC)
			abort();
		return;
	}
	if (h->src.ss_family != h->dst.ss_family)
		abort();
	if (h->src.ss_family == AF_INET) {
		if (h->srclen != sizeof(struct sockaddr_in) ||
		    h->dstlen != sizeof(struct sockaddr_in))
			abort();
	} else if (h->src.ss_family == AF_INET6) {
		if (h->srclen != sizeof(struct sockaddr_in6) ||
		    h->dstlen != sizeof(struct sockaddr_in6))
			abort();
	} else {
		abort();
	}
}

static void
addr_text(
    const struct sockaddr_storage *ss, char *a, size_t alen, unsigned *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, a, (socklen_t)alen);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, a, (socklen_t)alen);
		*port = ntohs(sin6->sin6_port);
	}
}

static bool
same_addr(const struct proxy_hdr *a, const struct proxy_hdr *b)
{
	return !a->local && !b->local && a->srclen == b->srclen &&
	       a->dstlen == b->dstlen &&
	       memcmp(&a->src, &b->src, a->srclen) == 0 &&
	       memcmp(&a->dst, &b->dst, a->dstlen) == 0;
}

/* h written as a v1 line and as a v2 header parses back to h. */
static void
check_round_trip(const struct proxy_hdr *h)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[PROXY_V1_MAX + 1];
	bool v6 = h->src.ss_family == AF_INET6;
	uint8_t v2[16 + 36];
	unsigned sp, dp;
	struct proxy_hdr back;
	size_t used;
	int n;

	addr_text(&h->src, s, sizeof(s), &sp);
	addr_text(&h->dst, d, sizeof(d), &dp);
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
	    v6 ? "TCP6" : "TCP4", s, d, sp, dp);
	/* inet_ntop writes a v4-mapped IPv6 address with dots, which a v1
	 * line may not have: such a one is only checked through v2. */
	if (!v6 || (strchr(s, '.') == NULL && strchr(d, '.') == NULL)) {
		if (n <= 0 || (size_t)n >= sizeof(line) ||
		    parse((const uint8_t *)line, (size_t)n, &back, &used) !=
			PROXY_OK ||
		    used != (size_t)n || !same_addr(h, &back))
			abort();
	}
	memcpy(v2, "\r\n\r\n\0\r\nQUIT\n", 12);
	v2[12] = 0x21;
	v2[13] = v6 ? 0x21 : 0x11;
	v2[14] = 0;
	v2[15] = v6 ? 36 : 12;
	if (v6) {
		memcpy(v2 + 16,
		    &((const struct sockaddr_in6 *)&h->src)->sin6_addr, 16);
		memcpy(v2 + 32,
		    &((const struct sockaddr_in6 *)&h->dst)->sin6_addr, 16);
	} else {
		memcpy(v2 + 16,
		    &((const struct sockaddr_in *)&h->src)->sin_addr, 4);
		memcpy(v2 + 20,
		    &((const struct sockaddr_in *)&h->dst)->sin_addr, 4);
	}
	v2[16 + v2[15] - 4] = (uint8_t)(sp >> 8);
	v2[16 + v2[15] - 3] = (uint8_t)sp;
	v2[16 + v2[15] - 2] = (uint8_t)(dp >> 8);
	v2[16 + v2[15] - 1] = (uint8_t)dp;
	if (parse(v2, 16u + v2[15], &back, &used) != PROXY_OK ||
	    used != 16u + v2[15] || !same_addr(h, &back))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h, p;
	size_t used, pused;
	int rc = parse(data, size, &h, &used);
	size_t cut[4];

	if (rc == PROXY_OK) {
		check_hdr(&h);
		if (used == 0 || used > size || used > PROXY_MAX)
			abort();
		if (h.version == 1 &&
		    (used > PROXY_V1_MAX || data[used - 2] != '\r' ||
			data[used - 1] != '\n'))
			abort();
		/* The header alone says the same: nothing after it read. */
		if (parse(data, used, &p, &pused) != PROXY_OK ||
		    pused != used || memcmp(&p, &h, sizeof(p)) != 0)
			abort();
		if (!h.local)
			check_round_trip(&h);
	}
	/* Prefixes, as the bytes might arrive. */
	cut[0] = 1;
	cut[1] = (rc == PROXY_OK ? used : size) / 2;
	cut[2] = (rc == PROXY_OK ? used : size) - 1;
	cut[3] = size > 0 ? data[0] % (size + 1) : 0;
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		size_t k = cut[i];
		int prc;

		if (size == 0 || k >= size || (rc == PROXY_OK && k >= used))
			continue;
		prc = parse(data, k, &p, &pused);
		if (rc == PROXY_OK && prc != PROXY_MORE)
			abort(); /* a header's prefix is only a start */
		if (rc != PROXY_OK && prc == PROXY_OK)
			abort(); /* more bytes cannot unmake a header */
		if (rc == PROXY_MORE && prc != PROXY_MORE)
			abort();
	}
	return 0;
}
