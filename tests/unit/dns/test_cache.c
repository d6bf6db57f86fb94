/* Unit tests for dns/cache.c: TTLs, negative caching, LRU eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dns/dns_int.h"

static struct dns_rrset
mx_set(const char *name, int64_t ttl)
{
	static struct dns_rr rr;
	struct dns_rrset s = {0};

	rr.pref = 10;
	rr.name = (char *)(uintptr_t)name;
	s.rc = DNS_RC_OK;
	s.rr = &rr;
	s.nrr = 1;
	s.ttl = ttl;
	return s;
}

static void
test_cache_answers_until_the_ttl_expires(void **state)
{
	struct dns_cache *c = dns_cache_new(8);
	struct dns_rrset s = mx_set("mx1.example.test", 60);
	const struct dns_rrset *got;

	(void)state;
	dns_cache_put(c, DNS_T_MX, "example.test", &s, 60, 1000);
	got = dns_cache_get(c, DNS_T_MX, "example.test", 1000 + 59999);
	assert_non_null(got);
	assert_int_equal(got->nrr, 1);
	assert_string_equal(got->rr[0].name, "mx1.example.test");
	assert_ptr_not_equal(got->rr[0].name, s.rr[0].name);
	assert_null(dns_cache_get(c, DNS_T_A, "example.test", 1000));
	assert_null(dns_cache_get(c, DNS_T_MX, "example.test", 1000 + 60000));
	assert_int_equal(dns_cache_count(c), 0);
	dns_cache_free(c);
}

static void
test_cache_names_ignore_case(void **state)
{
	struct dns_cache *c = dns_cache_new(8);
	struct dns_rrset s = mx_set("mx1.example.test", 60);

	(void)state;
	dns_cache_put(c, DNS_T_MX, "Example.TEST", &s, 60, 0);
	assert_non_null(dns_cache_get(c, DNS_T_MX, "example.test", 0));
	dns_cache_free(c);
}

static void
test_cache_evicts_the_least_recently_used(void **state)
{
	struct dns_cache *c = dns_cache_new(3);
	struct dns_rrset s = mx_set("mx.test", 60);

	(void)state;
	dns_cache_put(c, DNS_T_MX, "a.test", &s, 60, 0);
	dns_cache_put(c, DNS_T_MX, "b.test", &s, 60, 0);
	dns_cache_put(c, DNS_T_MX, "c.test", &s, 60, 0);
	assert_non_null(dns_cache_get(c, DNS_T_MX, "a.test", 1));
	dns_cache_put(c, DNS_T_MX, "d.test", &s, 60, 2);
	assert_int_equal(dns_cache_count(c), 3);
	assert_null(dns_cache_get(c, DNS_T_MX, "b.test", 3));
	assert_non_null(dns_cache_get(c, DNS_T_MX, "a.test", 3));
	assert_non_null(dns_cache_get(c, DNS_T_MX, "c.test", 3));
	assert_non_null(dns_cache_get(c, DNS_T_MX, "d.test", 3));
	dns_cache_free(c);
}

static void
test_cache_put_replaces_an_entry(void **state)
{
	struct dns_cache *c = dns_cache_new(4);
	struct dns_rrset s1 = mx_set("old.test", 60);
	struct dns_rrset s2;

	(void)state;
	dns_cache_put(c, DNS_T_MX, "a.test", &s1, 60, 0);
	s2 = mx_set("new.test", 60);
	dns_cache_put(c, DNS_T_MX, "a.test", &s2, 60, 0);
	assert_int_equal(dns_cache_count(c), 1);
	assert_string_equal(
	    dns_cache_get(c, DNS_T_MX, "a.test", 0)->rr[0].name, "new.test");
	/* A zero TTL removes what was there and stores nothing. */
	dns_cache_put(c, DNS_T_MX, "a.test", &s2, 0, 0);
	assert_int_equal(dns_cache_count(c), 0);
	dns_cache_free(c);
}

static void
test_cache_of_size_zero_keeps_nothing(void **state)
{
	struct dns_cache *c = dns_cache_new(0);
	struct dns_rrset s = mx_set("mx.test", 60);

	(void)state;
	dns_cache_put(c, DNS_T_MX, "a.test", &s, 60, 0);
	assert_null(dns_cache_get(c, DNS_T_MX, "a.test", 0));
	dns_cache_free(c);
}

static void
test_ttl_clamps_positive_answers(void **state)
{
	struct dns_rrset s = mx_set("mx.test", 5);

	(void)state;
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 30);
	s.ttl = 100000;
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 3600);
	s.ttl = 300;
	assert_int_equal(dns_cache_ttl(&s, 0, 3600, 900), 300);
	s.ttl = 0;
	assert_int_equal(dns_cache_ttl(&s, 0, 3600, 900), 0);
}

static void
test_ttl_caches_negative_answers_only_with_an_soa(void **state)
{
	struct dns_rrset s = {0};

	(void)state;
	s.rc = DNS_RC_NXDOMAIN;
	s.ttl = -1; /* no SOA in the reply: RFC 2308 5 */
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 0);
	s.ttl = 60;
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 60);
	s.ttl = 86400;
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 900);
	s.rc = DNS_RC_NODATA;
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 900);
}

static void
test_ttl_never_caches_temporary_failures(void **state)
{
	struct dns_rrset s = {0};

	(void)state;
	s.rc = DNS_RC_TEMP;
	s.ttl = 600;
	assert_int_equal(dns_cache_ttl(&s, 30, 3600, 900), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cache_answers_until_the_ttl_expires),
	    cmocka_unit_test(test_cache_names_ignore_case),
	    cmocka_unit_test(test_cache_evicts_the_least_recently_used),
	    cmocka_unit_test(test_cache_put_replaces_an_entry),
	    cmocka_unit_test(test_cache_of_size_zero_keeps_nothing),
	    cmocka_unit_test(test_ttl_clamps_positive_answers),
	    cmocka_unit_test(test_ttl_caches_negative_answers_only_with_an_soa),
	    cmocka_unit_test(test_ttl_never_caches_temporary_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
