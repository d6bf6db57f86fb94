/*
 * Unit tests for dns/reply.c: reading records and TTLs out of DNS replies,
 * which are untrusted bytes from the network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <cmocka.h>

#include "dns/dns_int.h"

struct pkt {
	unsigned char b[1024];
	size_t len;
};

static void
put16(struct pkt *p, unsigned v)
{
	p->b[p->len++] = (unsigned char)(v >> 8);
	p->b[p->len++] = (unsigned char)v;
}

static void
put32(struct pkt *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}

static void
put_name(struct pkt *p, const char *name)
{
	while (*name) {
		size_t n = strcspn(name, ".");

		p->b[p->len++] = (unsigned char)n;
		memcpy(p->b + p->len, name, n);
		p->len += n;
		name += n;
		if (*name == '.')
			name++;
	}
	p->b[p->len++] = 0;
}

static void
header(struct pkt *p, unsigned rcode, unsigned an, unsigned ns)
{
	p->len = 0;
	put16(p, 0x1234);
	put16(p, 0x8180 | rcode);
	put16(p, 1);
	put16(p, an);
	put16(p, ns);
	put16(p, 0);
	put_name(p, "example.test");
	put16(p, DNS_T_MX);
	put16(p, 1);
}

static void
mx_rr(struct pkt *p, uint32_t ttl, const char *target)
{
	size_t rdlen_at;

	p->b[p->len++] = 0xc0; /* compressed: the question's name */
	p->b[p->len++] = 12;
	put16(p, DNS_T_MX);
	put16(p, 1);
	put32(p, ttl);
	rdlen_at = p->len;
	put16(p, 0);
	put16(p, 10);
	put_name(p, target);
	p->b[rdlen_at] = (unsigned char)((p->len - rdlen_at - 2) >> 8);
	p->b[rdlen_at + 1] = (unsigned char)(p->len - rdlen_at - 2);
}

static void
soa_rr(struct pkt *p, uint32_t ttl, uint32_t minimum)
{
	size_t rdlen_at;

	put_name(p, "test");
	put16(p, 6);
	put16(p, 1);
	put32(p, ttl);
	rdlen_at = p->len;
	put16(p, 0);
	put_name(p, "ns.test");
	put_name(p, "hostmaster.test");
	put32(p, 1);
	put32(p, 3600);
	put32(p, 600);
	put32(p, 86400);
	put32(p, minimum);
	p->b[rdlen_at] = (unsigned char)((p->len - rdlen_at - 2) >> 8);
	p->b[rdlen_at + 1] = (unsigned char)(p->len - rdlen_at - 2);
}

static void
test_reply_ttls_takes_the_smallest_answer_ttl(void **state)
{
	struct pkt p;
	int64_t ans, neg;

	(void)state;
	header(&p, 0, 3, 0);
	mx_rr(&p, 300, "mx1.example.test");
	mx_rr(&p, 60, "mx2.example.test");
	mx_rr(&p, 3600, "mx3.example.test");
	dns_reply_ttls(p.b, (int)p.len, DNS_T_MX, &ans, &neg);
	assert_int_equal(ans, 60);
	assert_int_equal(neg, -1);
	/* Records of another type do not count. */
	dns_reply_ttls(p.b, (int)p.len, DNS_T_A, &ans, &neg);
	assert_int_equal(ans, -1);
}

static void
test_reply_ttls_reads_the_negative_ttl_from_the_soa(void **state)
{
	struct pkt p;
	int64_t ans, neg;

	(void)state;
	header(&p, 3, 0, 1);
	soa_rr(&p, 900, 300);
	dns_reply_ttls(p.b, (int)p.len, DNS_T_MX, &ans, &neg);
	assert_int_equal(ans, -1);
	assert_int_equal(neg, 300);
	header(&p, 3, 0, 1);
	soa_rr(&p, 100, 300);
	dns_reply_ttls(p.b, (int)p.len, DNS_T_MX, &ans, &neg);
	assert_int_equal(neg, 100);
}

static void
test_reply_ttls_counts_a_top_bit_ttl_as_zero(void **state)
{
	struct pkt p;
	int64_t ans, neg;

	(void)state;
	header(&p, 0, 2, 0);
	mx_rr(&p, 300, "mx1.example.test");
	mx_rr(&p, 0x80000010u, "mx2.example.test");
	dns_reply_ttls(p.b, (int)p.len, DNS_T_MX, &ans, &neg);
	assert_int_equal(ans, 0);
}

static void
test_reply_ttls_gives_nothing_for_a_cut_reply(void **state)
{
	struct pkt p;
	int64_t ans, neg;

	(void)state;
	header(&p, 0, 2, 1);
	mx_rr(&p, 300, "mx1.example.test");
	mx_rr(&p, 60, "mx2.example.test");
	soa_rr(&p, 900, 300);
	for (size_t len = 0; len < p.len; len++) {
		/* A copy of exactly len bytes, so ASan sees any overread. */
		unsigned char *b = malloc(len ? len : 1);

		memcpy(b, p.b, len);
		dns_reply_ttls(b, (int)len, DNS_T_MX, &ans, &neg);
		if (ans != -1 || neg != -1)
			fail_msg("cut at %zu of %zu: ttls %lld %lld", len,
			    p.len, (long long)ans, (long long)neg);
		free(b);
	}
	dns_reply_ttls(p.b, (int)p.len, DNS_T_MX, &ans, &neg);
	assert_int_equal(ans, 60);
	assert_int_equal(neg, 300);
	dns_reply_ttls(NULL, 0, DNS_T_MX, &ans, &neg);
	assert_int_equal(ans, -1);
}

static void
test_reply_ttls_rejects_a_compression_loop(void **state)
{
	struct pkt p;
	int64_t ans, neg;

	(void)state;
	header(&p, 0, 1, 0);
	/* An answer whose owner name points at itself. */
	p.b[p.len] = 0xc0;
	p.b[p.len + 1] = (unsigned char)p.len;
	p.len += 2;
	put16(&p, DNS_T_MX);
	put16(&p, 1);
	put32(&p, 300);
	put16(&p, 0);
	dns_reply_ttls(p.b, (int)p.len, DNS_T_MX, &ans, &neg);
	assert_int_equal(ans, -1);
	assert_int_equal(neg, -1);
}

static void
test_reply_ttls_survives_random_bytes(void **state)
{
	unsigned char b[128];
	int64_t ans, neg;

	(void)state;
	srand(5);
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(rand() % (int)sizeof(b));

		for (size_t j = 0; j < len; j++)
			b[j] = (unsigned char)rand();
		/* Small counts, so that some get past the header. */
		if (len >= 12) {
			b[4] = b[6] = b[8] = 0;
			b[5] &= 3;
			b[7] &= 3;
			b[9] &= 3;
		}
		dns_reply_ttls(b, (int)len, DNS_T_MX, &ans, &neg);
		assert_true(ans >= -1 && neg >= -1);
	}
}

static void
test_reply_rrset_gives_the_mx_records_and_their_smallest_ttl(void **state)
{
	struct dns_rrset s;
	struct pkt p;

	(void)state;
	header(&p, 0, 2, 0);
	mx_rr(&p, 300, "mx1.example.test");
	mx_rr(&p, 60, "mx2.example.test");
	dns_reply_rrset(&s, DNS_T_MX, ARES_SUCCESS, p.b, (int)p.len);
	assert_int_equal(s.rc, DNS_RC_OK);
	assert_null(s.why);
	assert_int_equal(s.nrr, 2);
	assert_int_equal(s.rr[0].pref, 10);
	assert_string_equal(s.rr[0].name, "mx1.example.test");
	assert_string_equal(s.rr[1].name, "mx2.example.test");
	assert_int_equal(s.ttl, 60);
	dns_rrset_fini(&s);
}

static void
test_reply_rrset_caches_nxdomain_for_the_soa_ttl(void **state)
{
	struct dns_rrset s;
	struct pkt p;

	(void)state;
	header(&p, 3, 0, 1);
	soa_rr(&p, 900, 300);
	dns_reply_rrset(&s, DNS_T_MX, ARES_ENOTFOUND, p.b, (int)p.len);
	assert_int_equal(s.rc, DNS_RC_NXDOMAIN);
	assert_int_equal(s.nrr, 0);
	assert_int_equal(s.ttl, 300);
	dns_rrset_fini(&s);
}

static void
test_reply_rrset_makes_a_timeout_or_a_bad_reply_temporary(void **state)
{
	struct dns_rrset s;
	struct pkt p;

	(void)state;
	dns_reply_rrset(&s, DNS_T_A, ARES_ETIMEOUT, NULL, 0);
	assert_int_equal(s.rc, DNS_RC_TEMP);
	assert_string_equal(s.why, "timeout");
	assert_int_equal(s.ttl, -1);
	dns_rrset_fini(&s);
	/* Success, but the records do not parse: the next try may do
	 * better. */
	header(&p, 0, 1, 0);
	mx_rr(&p, 300, "mx1.example.test");
	dns_reply_rrset(&s, DNS_T_MX, ARES_SUCCESS, p.b, (int)p.len - 3);
	assert_int_equal(s.rc, DNS_RC_TEMP);
	assert_non_null(s.why);
	assert_int_equal(s.nrr, 0);
	assert_int_equal(s.ttl, -1);
	dns_rrset_fini(&s);
}

static void
test_reply_rrset_gives_no_ttl_to_mx_records_that_do_not_parse(void **state)
{
	struct dns_rrset s;
	struct pkt p;

	(void)state;
	/* Whole as far as the TTL walk goes (an MX record of 4 bytes), but
	 * its target starts with a reserved label type (0x80): c-ares
	 * refuses the name. Found by tests/fuzz/fuzz_dns.c. */
	header(&p, 0, 1, 0);
	p.b[p.len++] = 0xc0;
	p.b[p.len++] = 12;
	put16(&p, DNS_T_MX);
	put16(&p, 1);
	put32(&p, 60);
	put16(&p, 4);
	put16(&p, 10);
	p.b[p.len++] = 0x80;
	p.b[p.len++] = 0;
	dns_reply_rrset(&s, DNS_T_MX, ARES_SUCCESS, p.b, (int)p.len);
	assert_int_equal(s.rc, DNS_RC_TEMP);
	assert_int_equal(s.nrr, 0);
	assert_int_equal(s.ttl, -1);
	dns_rrset_fini(&s);
}

static void
a_rr(struct pkt *p, uint32_t ttl, unsigned char last)
{
	p->b[p->len++] = 0xc0; /* the question's name */
	p->b[p->len++] = 12;
	put16(p, DNS_T_A);
	put16(p, 1);
	put32(p, ttl);
	put16(p, 4);
	put32(p, 0xc0000200u | last); /* 192.0.2.last */
}

static void
test_reply_rrset_counts_a_top_bit_address_ttl_as_zero(void **state)
{
	struct dns_rrset s;
	struct pkt p;

	(void)state;
	/* c-ares gives 0x80000010 as a negative int; it neither shows as
	 * such nor loses to the next record's TTL. Found by
	 * tests/fuzz/fuzz_dns.c. */
	header(&p, 0, 2, 0);
	p.b[p.len - 3] = DNS_T_A; /* the question's type */
	a_rr(&p, 0x80000010u, 1);
	a_rr(&p, 300, 2);
	dns_reply_rrset(&s, DNS_T_A, ARES_SUCCESS, p.b, (int)p.len);
	assert_int_equal(s.rc, DNS_RC_OK);
	assert_int_equal(s.nrr, 2);
	assert_int_equal(s.ttl, 0);
	dns_rrset_fini(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_ttls_takes_the_smallest_answer_ttl),
	    cmocka_unit_test(
		test_reply_ttls_reads_the_negative_ttl_from_the_soa),
	    cmocka_unit_test(test_reply_ttls_counts_a_top_bit_ttl_as_zero),
	    cmocka_unit_test(test_reply_ttls_gives_nothing_for_a_cut_reply),
	    cmocka_unit_test(test_reply_ttls_rejects_a_compression_loop),
	    cmocka_unit_test(test_reply_ttls_survives_random_bytes),
	    cmocka_unit_test(
		test_reply_rrset_gives_the_mx_records_and_their_smallest_ttl),
	    cmocka_unit_test(test_reply_rrset_caches_nxdomain_for_the_soa_ttl),
	    cmocka_unit_test(
		test_reply_rrset_makes_a_timeout_or_a_bad_reply_temporary),
	    cmocka_unit_test(
		test_reply_rrset_gives_no_ttl_to_mx_records_that_do_not_parse),
	    cmocka_unit_test(
		test_reply_rrset_counts_a_top_bit_address_ttl_as_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
