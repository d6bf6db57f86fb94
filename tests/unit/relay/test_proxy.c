/* Unit tests for relay/proxy.c: the PROXY protocol header, v1 and v2. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/proxy.h"

static const uint8_t sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static struct proxy_hdr hdr;
static size_t used;
static char why[128];

static int
parse(const void *buf, size_t len)
{
	return proxy_parse(buf, len, &hdr, &used, why, sizeof(why));
}

static int
parse_str(const char *s)
{
	return parse(s, strlen(s));
}

/* The text form of a parsed address and its port: "192.0.2.1 4711". */
static const char *
addr_str(const struct sockaddr_storage *ss)
{
	static char out[INET6_ADDRSTRLEN + 8];
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(out, sizeof(out), "%s %u", a, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(out, sizeof(out), "%s %u", a, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, sizeof(out), "none");
	}
	return out;
}

/* A v2 header: signature, ver_cmd, fam, then the block of blen bytes. */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *block, size_t blen)
{
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	if (blen > 0)
		memcpy(out + 16, block, blen);
	return 16 + blen;
}

static const uint8_t inet_block[12] = {192, 0, 2, 10, 198, 51, 100, 1, 0x9c,
    0x40, 0x00, 25}; /* 192.0.2.10:40000 -> 198.51.100.1:25 */

static void
test_v1_tcp4_gives_both_ends_and_takes_only_the_line(void **state)
{
	const char *s =
	    "PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\r\nEHLO x\r\n";

	(void)state;
	assert_int_equal(parse_str(s), PROXY_OK);
	assert_int_equal(used, strlen("PROXY TCP4 192.0.2.10 198.51.100.1 "
				      "40000 25\r\n"));
	assert_int_equal(hdr.version, 1);
	assert_false(hdr.local);
	assert_string_equal(addr_str(&hdr.src), "192.0.2.10 40000");
	assert_string_equal(addr_str(&hdr.dst), "198.51.100.1 25");
	assert_int_equal(hdr.srclen, sizeof(struct sockaddr_in));
}

static void
test_v1_tcp6_reads_compressed_and_full_forms(void **state)
{
	(void)state;
	assert_int_equal(
	    parse_str(
		"PROXY TCP6 2001:db8::10 2001:DB8:0:0:0:0:0:1 65535 0\r\n"),
	    PROXY_OK);
	assert_string_equal(addr_str(&hdr.src), "2001:db8::10 65535");
	assert_string_equal(addr_str(&hdr.dst), "2001:db8::1 0");
	assert_int_equal(hdr.srclen, sizeof(struct sockaddr_in6));
	/* The longest line there is: 104 bytes. */
	assert_int_equal(
	    parse_str(
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	    PROXY_OK);
	assert_int_equal(used, 104);
}

static void
test_v1_unknown_uses_the_connection_and_ignores_the_rest(void **state)
{
	(void)state;
	assert_int_equal(parse_str("PROXY UNKNOWN\r\n"), PROXY_OK);
	assert_true(hdr.local);
	assert_int_equal(used, 15);
	assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
	/* The worst case of the specification: 107 bytes with CRLF. */
	assert_int_equal(
	    parse_str(
		"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	    PROXY_OK);
	assert_true(hdr.local);
	assert_int_equal(used, 107);
	assert_int_equal(
	    parse_str("PROXY UNKNOWN whatever is here\r\n"), PROXY_OK);
}

static void
test_v1_waits_for_crlf_within_107_bytes(void **state)
{
	const char *s = "PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\r\n";
	char big[200];

	(void)state;
	/* Every proper prefix is a start: wait. */
	for (size_t n = 0; n < strlen(s); n++)
		assert_int_equal(parse(s, n), PROXY_MORE);
	/* No CR in 106 bytes: no room for CRLF within 107, never a header. */
	memset(big, 'f', sizeof(big));
	memcpy(big, "PROXY UNKNOWN ", 14);
	assert_int_equal(parse(big, 105), PROXY_MORE);
	assert_int_equal(parse(big, 106), PROXY_BAD);
	assert_non_null(strstr(why, "107"));
	assert_int_equal(used, 0);
	/* CRLF as the 108th and 109th byte: one too many. */
	memcpy(big + 106, "\r\n", 2);
	assert_int_equal(parse(big, 108), PROXY_BAD);
}

static void
test_v1_refuses_what_does_not_match_exactly(void **state)
{
	static const char *const bad[] = {
	    "PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\rX",
	    "PROXY TCP4 192.0.2.10  198.51.100.1 40000 25\r\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 40000 25 \r\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 40000\r\n",
	    "PROXY TCP4 192.0.2.010 198.51.100.1 40000 25\r\n",
	    "PROXY TCP4 192.0.2.256 198.51.100.1 40000 25\r\n",
	    "PROXY TCP4 192.0.2 198.51.100.1 40000 25\r\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 040000 25\r\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 65536 25\r\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 -1 25\r\n",
	    "PROXY TCP4 2001:db8::1 198.51.100.1 40000 25\r\n",
	    "PROXY TCP6 192.0.2.10 2001:db8::1 40000 25\r\n",
	    "PROXY TCP6 ::ffff:192.0.2.10 2001:db8::1 40000 25\r\n",
	    "PROXY TCP6 2001:db8:::1 2001:db8::1 40000 25\r\n",
	    "PROXY UDP4 192.0.2.10 198.51.100.1 40000 25\r\n",
	    "PROXY tcp4 192.0.2.10 198.51.100.1 40000 25\r\n",
	    "PROXY \r\n",
	    "PROXY UNKNOWNX\r\n",
	    "PROXY TCP4 192.0.2.10 198.51.100.1 40000 2\x01\r\n",
	    "PROXYTCP4 192.0.2.10 198.51.100.1 40000 25\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse_str(bad[i]) != PROXY_BAD)
			fail_msg("taken: %s", bad[i]);
		assert_true(why[0] != '\0');
		assert_int_equal(used, 0);
	}
}

static void
test_other_protocols_are_refused_at_their_first_bytes(void **state)
{
	(void)state;
	assert_int_equal(parse_str("EHLO client.test\r\n"), PROXY_BAD);
	assert_string_equal(why, "not a PROXY protocol header");
	assert_int_equal(parse_str("G"), PROXY_BAD);
	assert_int_equal(parse_str("PROX"), PROXY_MORE);
	assert_int_equal(parse_str("PROXx"), PROXY_BAD);
	assert_int_equal(parse("\r\n\r\n\x00\r\nQU", 9), PROXY_MORE);
	assert_int_equal(parse("\r\n\r\n\x01", 5), PROXY_BAD);
	assert_int_equal(parse("", 0), PROXY_MORE);
}

static void
test_v2_tcp4_gives_both_ends(void **state)
{
	uint8_t buf[64];
	size_t n = v2(buf, 0x21, 0x11, inet_block, sizeof(inet_block));

	(void)state;
	buf[n] = 'X'; /* not the header's: must not be taken */
	assert_int_equal(parse(buf, n + 1), PROXY_OK);
	assert_int_equal(used, 28);
	assert_int_equal(hdr.version, 2);
	assert_false(hdr.local);
	assert_string_equal(addr_str(&hdr.src), "192.0.2.10 40000");
	assert_string_equal(addr_str(&hdr.dst), "198.51.100.1 25");
	assert_int_equal(hdr.ntlvs, 0);
}

static void
test_v2_tcp6_gives_both_ends(void **state)
{
	uint8_t block[36] = {0}, buf[64];
	size_t n;

	(void)state;
	inet_pton(AF_INET6, "2001:db8::10", block);
	inet_pton(AF_INET6, "2001:db8::1", block + 16);
	block[32] = 0xff, block[33] = 0xff, block[35] = 25;
	n = v2(buf, 0x21, 0x21, block, sizeof(block));
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_int_equal(used, 52);
	assert_string_equal(addr_str(&hdr.src), "2001:db8::10 65535");
	assert_string_equal(addr_str(&hdr.dst), "2001:db8::1 25");
}

static void
test_v2_skips_tlvs_and_refuses_broken_ones(void **state)
{
	uint8_t block[64], buf[128];
	/* ALPN "smtp", NOOP empty, UNIQUE_ID 3 bytes. */
	static const uint8_t tlvs[] = {
	    0x01, 0, 4, 's', 'm', 't', 'p', 0x04, 0, 0, 0x05, 0, 3, 1, 2, 3};
	size_t n;

	(void)state;
	memcpy(block, inet_block, 12);
	memcpy(block + 12, tlvs, sizeof(tlvs));
	n = v2(buf, 0x21, 0x11, block, 12 + sizeof(tlvs));
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_int_equal(hdr.ntlvs, 3);
	assert_int_equal(used, n);
	assert_string_equal(addr_str(&hdr.src), "192.0.2.10 40000");
	/* A TLV whose value runs past the header. */
	n = v2(buf, 0x21, 0x11, block, 12 + sizeof(tlvs) - 1);
	assert_int_equal(parse(buf, n), PROXY_BAD);
	assert_non_null(strstr(why, "TLV"));
	/* Two bytes left over: too short for a TLV. */
	n = v2(buf, 0x21, 0x11, block, 12 + 2);
	assert_int_equal(parse(buf, n), PROXY_BAD);
}

static void
test_v2_local_skips_the_block_whatever_it_holds(void **state)
{
	uint8_t buf[64];
	size_t n;

	(void)state;
	n = v2(buf, 0x20, 0x00, NULL, 0);
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_true(hdr.local);
	assert_int_equal(used, 16);
	/* Addresses and a family a LOCAL need not have: still skipped. */
	n = v2(buf, 0x20, 0xff, inet_block, 12);
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_true(hdr.local);
	assert_int_equal(used, 28);
	assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
}

static void
test_v2_unspec_udp_and_unix_use_the_connection(void **state)
{
	uint8_t block[216] = {0}, buf[256];
	size_t n;

	(void)state;
	n = v2(buf, 0x21, 0x00, NULL, 0);
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_true(hdr.local);
	n = v2(buf, 0x21, 0x12, inet_block, 12);
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_true(hdr.local);
	n = v2(buf, 0x21, 0x31, block, 216);
	assert_int_equal(parse(buf, n), PROXY_OK);
	assert_true(hdr.local);
	/* A Unix block that is too short is no header. */
	n = v2(buf, 0x21, 0x31, block, 100);
	assert_int_equal(parse(buf, n), PROXY_BAD);
}

static void
test_v2_refuses_bad_version_command_family_and_short_blocks(void **state)
{
	uint8_t buf[64];
	size_t n;

	(void)state;
	n = v2(buf, 0x11, 0x11, inet_block, 12);
	assert_int_equal(parse(buf, 13), PROXY_BAD); /* at once */
	assert_non_null(strstr(why, "version 1"));
	n = v2(buf, 0x22, 0x11, inet_block, 12);
	assert_int_equal(parse(buf, n), PROXY_BAD);
	assert_non_null(strstr(why, "command 2"));
	n = v2(buf, 0x21, 0x41, inet_block, 12);
	assert_int_equal(parse(buf, n), PROXY_BAD);
	n = v2(buf, 0x21, 0x13, inet_block, 12);
	assert_int_equal(parse(buf, n), PROXY_BAD);
	n = v2(buf, 0x21, 0x11, inet_block, 11);
	assert_int_equal(parse(buf, n), PROXY_BAD);
	n = v2(buf, 0x21, 0x21, inet_block, 12);
	assert_int_equal(parse(buf, n), PROXY_BAD);
	/* A damaged signature. */
	n = v2(buf, 0x21, 0x11, inet_block, 12);
	buf[4] = 'x';
	assert_int_equal(parse(buf, n), PROXY_BAD);
}

static void
test_v2_truncated_waits_and_oversized_is_refused(void **state)
{
	static uint8_t buf[PROXY_MAX + 64];
	size_t n = v2(buf, 0x21, 0x11, inet_block, 12);

	(void)state;
	for (size_t k = 0; k < n; k++)
		assert_int_equal(parse(buf, k), PROXY_MORE);
	assert_int_equal(parse(buf, n), PROXY_OK);
	/* The largest header taken: 16 + 16368 bytes of block. */
	memset(buf + 16, 0, PROXY_MAX);
	memcpy(buf + 16, inet_block, 12);
	buf[28] = 0x04; /* one NOOP TLV filling the rest */
	buf[29] = (uint8_t)((PROXY_MAX - 16 - 12 - 3) >> 8);
	buf[30] = (uint8_t)(PROXY_MAX - 16 - 12 - 3);
	buf[14] = (uint8_t)((PROXY_MAX - 16) >> 8);
	buf[15] = (uint8_t)(PROXY_MAX - 16);
	assert_int_equal(parse(buf, PROXY_MAX - 1), PROXY_MORE);
	assert_int_equal(parse(buf, PROXY_MAX), PROXY_OK);
	assert_int_equal(used, PROXY_MAX);
	/* One more byte, and it is refused from its 16 bytes alone. */
	buf[14] = (uint8_t)((PROXY_MAX - 15) >> 8);
	buf[15] = (uint8_t)(PROXY_MAX - 15);
	assert_int_equal(parse(buf, 16), PROXY_BAD);
	assert_non_null(strstr(why, "over the limit"));
	buf[14] = buf[15] = 0xff;
	assert_int_equal(parse(buf, 16), PROXY_BAD);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_v1_tcp4_gives_both_ends_and_takes_only_the_line),
	    cmocka_unit_test(test_v1_tcp6_reads_compressed_and_full_forms),
	    cmocka_unit_test(
		test_v1_unknown_uses_the_connection_and_ignores_the_rest),
	    cmocka_unit_test(test_v1_waits_for_crlf_within_107_bytes),
	    cmocka_unit_test(test_v1_refuses_what_does_not_match_exactly),
	    cmocka_unit_test(
		test_other_protocols_are_refused_at_their_first_bytes),
	    cmocka_unit_test(test_v2_tcp4_gives_both_ends),
	    cmocka_unit_test(test_v2_tcp6_gives_both_ends),
	    cmocka_unit_test(test_v2_skips_tlvs_and_refuses_broken_ones),
	    cmocka_unit_test(test_v2_local_skips_the_block_whatever_it_holds),
	    cmocka_unit_test(test_v2_unspec_udp_and_unix_use_the_connection),
	    cmocka_unit_test(
		test_v2_refuses_bad_version_command_family_and_short_blocks),
	    cmocka_unit_test(test_v2_truncated_waits_and_oversized_is_refused),
	};

	return cmocka_run_group_tests_name("relay/proxy", tests, NULL, NULL);
}
