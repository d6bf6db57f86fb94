/* Unit tests for dns/mx.c: the backup-MX ranking rules (RFC 5321 5.1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "dns/dns_int.h"

static char *self_names[] = {"mx2.example.test"};

static struct mx_self *
self_new(void)
{
	static struct mx_self self;
	static struct sockaddr_storage addrs[2];
	struct sockaddr_in *sin = (struct sockaddr_in *)&addrs[0];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addrs[1];

	memset(addrs, 0, sizeof(addrs));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "198.51.100.7", &sin->sin_addr);
	sin6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::7", &sin6->sin6_addr);
	self.names = self_names;
	self.nnames = 1;
	self.addrs = addrs;
	self.naddrs = 2;
	return &self;
}

static struct dns_addr *
addr(const char *text)
{
	struct dns_addr *a = calloc(1, sizeof(*a));
	unsigned char buf[16];
	int family = strchr(text, ':') ? AF_INET6 : AF_INET;

	assert_int_equal(inet_pton(family, text, buf), 1);
	dns_addr_fill(a, family, buf, 0);
	return a;
}

/* An input host with one address, or none when text is NULL. */
static struct mx_in
host(const char *name, int pref, const char *text)
{
	struct mx_in h = {name, pref, NULL, 0, DNS_RC_NODATA, "no A or AAAA"};

	if (text != NULL) {
		h.addrs = addr(text);
		h.naddrs = 1;
		h.rc = DNS_RC_OK;
		h.why = NULL;
	}
	return h;
}

static void
hosts_free(struct mx_in *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((void *)(uintptr_t)in[i].addrs);
}

static uint32_t
rnd_zero(void *arg, uint32_t bound)
{
	(void)arg;
	(void)bound;
	return 0;
}

static uint32_t
rnd_libc(void *arg, uint32_t bound)
{
	(void)arg;
	return (uint32_t)rand() % bound;
}

static const char *
drop_why(const struct dns_answer *a, const char *name)
{
	for (size_t i = 0; i < a->ndrops; i++)
		if (strcmp(a->drops[i].name, name) == 0)
			return a->drops[i].why;
	return NULL;
}

static void
test_rank_sorts_hosts_by_preference(void **state)
{
	struct mx_in in[] = {host("c.test", 30, "192.0.2.3"),
	    host("a.test", 10, "192.0.2.1"), host("b.test", 20, "192.0.2.2")};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 3, &o), DNS_OK);
	assert_int_equal(a.nhosts, 3);
	assert_string_equal(a.hosts[0].name, "a.test");
	assert_string_equal(a.hosts[1].name, "b.test");
	assert_string_equal(a.hosts[2].name, "c.test");
	assert_int_equal(a.hosts[0].pref, 10);
	assert_int_equal(a.ndrops, 0);
	assert_string_equal(a.dsn, "2.0.0");
	dns_answer_fini(&a);
	hosts_free(in, 3);
}

static void
test_rank_shuffles_only_equal_preferences(void **state)
{
	struct mx_in in[] = {host("x.test", 20, "192.0.2.9"),
	    host("a.test", 10, "192.0.2.1"), host("b.test", 10, "192.0.2.2")};
	struct mx_rank_opts o = {.port = 25, .rnd = rnd_zero};
	struct dns_answer a = {0};
	int a_first = 0, b_first = 0;

	(void)state;
	/* rnd_zero swaps the last of a run of two to the front. */
	mx_rank(&a, "example.test", in, 3, &o);
	assert_string_equal(a.hosts[0].name, "b.test");
	assert_string_equal(a.hosts[1].name, "a.test");
	assert_string_equal(a.hosts[2].name, "x.test");
	dns_answer_fini(&a);

	srand(7);
	o.rnd = rnd_libc;
	for (int i = 0; i < 200; i++) {
		mx_rank(&a, "example.test", in, 3, &o);
		assert_int_equal(a.nhosts, 3);
		assert_int_equal(a.hosts[0].pref, 10);
		assert_int_equal(a.hosts[1].pref, 10);
		assert_string_equal(a.hosts[2].name, "x.test");
		if (strcmp(a.hosts[0].name, "a.test") == 0)
			a_first++;
		else
			b_first++;
		dns_answer_fini(&a);
	}
	assert_true(a_first > 50);
	assert_true(b_first > 50);
	hosts_free(in, 3);
}

static void
test_rank_drops_self_and_every_mx_not_better(void **state)
{
	struct mx_in in[] = {host("mx1.example.test", 10, "192.0.2.1"),
	    host("MX2.Example.Test.", 20, "192.0.2.2"),
	    host("peer.example.test", 20, "192.0.2.3"),
	    host("last.example.test", 30, "192.0.2.4")};
	struct mx_rank_opts o = {.port = 25, .self = self_new()};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 4, &o), DNS_OK);
	assert_int_equal(a.nhosts, 1);
	assert_string_equal(a.hosts[0].name, "mx1.example.test");
	assert_int_equal(a.ndrops, 3);
	assert_string_equal(drop_why(&a, "MX2.Example.Test."),
	    "is this host (a name in mx_self_names)");
	assert_string_equal(drop_why(&a, "peer.example.test"),
	    "preference 20 is not better than this host's 20");
	assert_string_equal(drop_why(&a, "last.example.test"),
	    "preference 30 is not better than this host's 20");
	assert_false(a.loop);
	dns_answer_fini(&a);
	hosts_free(in, 4);
}

static void
test_rank_finds_self_by_local_address(void **state)
{
	struct mx_in in[] = {host("mx1.example.test", 10, "192.0.2.1"),
	    host("alias.example.test", 15, "2001:db8::7"),
	    host("mx3.example.test", 20, "192.0.2.3")};
	struct mx_rank_opts o = {.port = 25, .self = self_new()};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 3, &o), DNS_OK);
	assert_int_equal(a.nhosts, 1);
	assert_string_equal(a.hosts[0].name, "mx1.example.test");
	assert_string_equal(drop_why(&a, "alias.example.test"),
	    "is this host (its address 2001:db8::7 is local)");
	assert_non_null(drop_why(&a, "mx3.example.test"));
	dns_answer_fini(&a);
	hosts_free(in, 3);
}

static void
test_rank_defers_when_self_is_the_best_mx(void **state)
{
	struct mx_in in[] = {host("mx2.example.test", 10, "192.0.2.2"),
	    host("backup.example.test", 20, "192.0.2.3")};
	struct mx_rank_opts o = {.port = 25, .self = self_new()};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 2, &o), DNS_TEMPFAIL);
	assert_int_equal(a.nhosts, 0);
	assert_true(a.loop);
	assert_string_equal(a.dsn, "4.4.6");
	assert_string_equal(
	    a.reason, "mail for example.test loops back to myself");
	assert_int_equal(a.ndrops, 2);
	dns_answer_fini(&a);
	hosts_free(in, 2);
}

static void
test_rank_detects_loop_through_implicit_mx(void **state)
{
	struct mx_in in[] = {host("example.test", 0, "198.51.100.7")};
	struct mx_rank_opts o = {
	    .port = 25, .self = self_new(), .implicit = true};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 1, &o), DNS_TEMPFAIL);
	assert_true(a.loop);
	dns_answer_fini(&a);
	hosts_free(in, 1);
}

static void
test_rank_ignores_self_without_loop_detection(void **state)
{
	struct mx_in in[] = {host("mx2.example.test", 10, "198.51.100.7")};
	struct mx_rank_opts o = {.port = 24};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 1, &o), DNS_OK);
	assert_int_equal(a.hosts[0].port, 24);
	assert_int_equal(
	    ntohs(((struct sockaddr_in *)&a.hosts[0].addrs[0].sa)->sin_port),
	    24);
	dns_answer_fini(&a);
	hosts_free(in, 1);
}

static void
test_rank_drops_hosts_without_addresses(void **state)
{
	struct mx_in in[] = {host("gone.example.test", 5, NULL),
	    host("mx1.example.test", 10, "192.0.2.1")};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};

	(void)state;
	in[0].rc = DNS_RC_NXDOMAIN;
	in[0].why = "A: NXDOMAIN, AAAA: NXDOMAIN";
	assert_int_equal(mx_rank(&a, "example.test", in, 2, &o), DNS_OK);
	assert_int_equal(a.nhosts, 1);
	assert_string_equal(drop_why(&a, "gone.example.test"),
	    "no address (A: NXDOMAIN, AAAA: NXDOMAIN)");
	dns_answer_fini(&a);
	hosts_free(in, 2);
}

static void
test_rank_defers_when_address_lookups_fail(void **state)
{
	struct mx_in in[] = {host("slow.example.test", 10, NULL),
	    host("gone.example.test", 20, NULL)};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};

	(void)state;
	in[0].rc = DNS_RC_TEMP;
	in[0].why = "A: timeout";
	in[1].rc = DNS_RC_NXDOMAIN;
	assert_int_equal(mx_rank(&a, "example.test", in, 2, &o), DNS_TEMPFAIL);
	assert_string_equal(a.dsn, "4.4.3");
	assert_string_equal(drop_why(&a, "slow.example.test"),
	    "address lookup failed (A: timeout)");
	dns_answer_fini(&a);
	hosts_free(in, 2);
}

static void
test_rank_keeps_nothing_behind_an_mx_that_may_be_this_host(void **state)
{
	/* 20 may be this host (its address is unknown for now): 30, a peer
	 * backup, must not get the mail, or two backups could loop it. */
	struct mx_in in[] = {host("best.example.test", 10, "203.0.113.1"),
	    host("maybe-me.example.test", 20, NULL),
	    host("peer.example.test", 30, "203.0.113.3")};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};

	(void)state;
	in[1].rc = DNS_RC_TEMP;
	in[1].why = "A: timeout";
	assert_int_equal(mx_rank(&a, "example.test", in, 3, &o), DNS_OK);
	assert_int_equal(a.nhosts, 1);
	assert_string_equal(a.hosts[0].name, "best.example.test");
	assert_string_equal(drop_why(&a, "peer.example.test"),
	    "not better than an MX whose address is unknown (it may be this "
	    "host)");
	dns_answer_fini(&a);
	/* And with the best one unknown, nothing is safe: defer. */
	in[0].rc = DNS_RC_TEMP;
	in[0].why = "A: timeout";
	memset(&a, 0, sizeof(a));
	assert_int_equal(mx_rank(&a, "example.test", in, 3, &o), DNS_TEMPFAIL);
	assert_int_equal(a.nhosts, 0);
	assert_string_equal(a.dsn, "4.4.3");
	dns_answer_fini(&a);
	hosts_free(in, 3);
}

static void
test_rank_bounces_when_no_host_has_an_address(void **state)
{
	struct mx_in in[] = {host("gone.example.test", 10, NULL)};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 1, &o), DNS_PERMFAIL);
	assert_string_equal(a.dsn, "5.4.4");
	dns_answer_fini(&a);

	o.implicit = true;
	assert_int_equal(mx_rank(&a, "example.test", in, 1, &o), DNS_PERMFAIL);
	assert_string_equal(
	    a.reason, "example.test has no MX, A or AAAA records");
	dns_answer_fini(&a);
	hosts_free(in, 1);
}

static void
test_rank_as_backup_defers_when_better_mxes_have_no_address(void **state)
{
	struct mx_in in[] = {host("gone.example.test", 10, NULL),
	    host("mx2.example.test", 20, "198.51.100.7")};
	struct mx_rank_opts o = {.port = 25, .self = self_new()};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 2, &o), DNS_TEMPFAIL);
	assert_string_equal(a.dsn, "4.4.4");
	assert_false(a.loop);
	dns_answer_fini(&a);
	hosts_free(in, 2);
}

static void
test_rank_drops_null_mx_among_others(void **state)
{
	struct mx_in in[] = {
	    host("", 0, NULL), host("mx1.example.test", 10, "192.0.2.1")};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};

	(void)state;
	assert_int_equal(mx_rank(&a, "example.test", in, 2, &o), DNS_OK);
	assert_int_equal(a.nhosts, 1);
	assert_non_null(drop_why(&a, "."));
	dns_answer_fini(&a);
	hosts_free(in, 2);
}

static void
test_rank_orders_addresses_by_preferred_family(void **state)
{
	struct dns_addr addrs[4];
	struct mx_in in[] = {host("mx1.example.test", 10, NULL)};
	struct mx_rank_opts o = {.port = 25};
	struct dns_answer a = {0};
	const char *texts[] = {
	    "192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2"};

	(void)state;
	for (int i = 0; i < 4; i++) {
		struct dns_addr *t = addr(texts[i]);

		addrs[i] = *t;
		free(t);
	}
	in[0].addrs = addrs;
	in[0].naddrs = 4;
	in[0].rc = DNS_RC_OK;
	mx_rank(&a, "example.test", in, 1, &o);
	assert_string_equal(a.hosts[0].addrs[0].text, "192.0.2.1");
	assert_string_equal(a.hosts[0].addrs[1].text, "192.0.2.2");
	assert_string_equal(a.hosts[0].addrs[2].text, "2001:db8::1");
	assert_string_equal(a.hosts[0].addrs[3].text, "2001:db8::2");
	dns_answer_fini(&a);

	o.prefer_ipv6 = true;
	mx_rank(&a, "example.test", in, 1, &o);
	assert_string_equal(a.hosts[0].addrs[0].text, "2001:db8::1");
	assert_string_equal(a.hosts[0].addrs[1].text, "2001:db8::2");
	assert_string_equal(a.hosts[0].addrs[2].text, "192.0.2.1");
	assert_int_equal(a.hosts[0].addrs[0].sa.ss_family, AF_INET6);
	dns_answer_fini(&a);
}

static void
test_classify_maps_each_mx_answer(void **state)
{
	struct dns_rr null_rr = {0, "", 0, {0}};
	struct dns_rr two[] = {{0, "", 0, {0}}, {10, "mx.test", 0, {0}}};
	struct dns_rrset s = {0};

	(void)state;
	s.rc = DNS_RC_NXDOMAIN;
	assert_int_equal(mx_classify(&s), MX_NXDOMAIN);
	s.rc = DNS_RC_NODATA;
	assert_int_equal(mx_classify(&s), MX_IMPLICIT);
	s.rc = DNS_RC_TEMP;
	assert_int_equal(mx_classify(&s), MX_TEMP);
	s.rc = DNS_RC_OK;
	s.rr = &null_rr;
	s.nrr = 1;
	assert_int_equal(mx_classify(&s), MX_NULL);
	null_rr.name = ".";
	assert_int_equal(mx_classify(&s), MX_NULL);
	s.rr = two;
	s.nrr = 2;
	assert_int_equal(mx_classify(&s), MX_USE_LIST);
	s.nrr = 0;
	assert_int_equal(mx_classify(&s), MX_IMPLICIT);
}

static void
test_addr_rc_prefers_any_address_then_temporary_failure(void **state)
{
	(void)state;
	assert_int_equal(mx_addr_rc(DNS_RC_TEMP, DNS_RC_OK, 1), DNS_RC_OK);
	assert_int_equal(
	    mx_addr_rc(DNS_RC_TEMP, DNS_RC_NODATA, 0), DNS_RC_TEMP);
	assert_int_equal(
	    mx_addr_rc(DNS_RC_NXDOMAIN, DNS_RC_NXDOMAIN, 0), DNS_RC_NXDOMAIN);
	assert_int_equal(
	    mx_addr_rc(DNS_RC_NODATA, DNS_RC_NXDOMAIN, 0), DNS_RC_NODATA);
}

static void
test_self_name_match_ignores_case_and_trailing_dot(void **state)
{
	struct mx_self *self = self_new();

	(void)state;
	assert_true(mx_is_self_name(self, "MX2.example.test."));
	assert_false(mx_is_self_name(self, "mx2.example.test.evil"));
	assert_false(mx_is_self_name(self, "x.mx2.example.test"));
	assert_false(mx_is_self_name(self, ""));
	assert_false(mx_is_self_name(NULL, "mx2.example.test"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rank_sorts_hosts_by_preference),
	    cmocka_unit_test(test_rank_shuffles_only_equal_preferences),
	    cmocka_unit_test(test_rank_drops_self_and_every_mx_not_better),
	    cmocka_unit_test(test_rank_finds_self_by_local_address),
	    cmocka_unit_test(test_rank_defers_when_self_is_the_best_mx),
	    cmocka_unit_test(test_rank_detects_loop_through_implicit_mx),
	    cmocka_unit_test(test_rank_ignores_self_without_loop_detection),
	    cmocka_unit_test(test_rank_drops_hosts_without_addresses),
	    cmocka_unit_test(test_rank_defers_when_address_lookups_fail),
	    cmocka_unit_test(
		test_rank_keeps_nothing_behind_an_mx_that_may_be_this_host),
	    cmocka_unit_test(test_rank_bounces_when_no_host_has_an_address),
	    cmocka_unit_test(
		test_rank_as_backup_defers_when_better_mxes_have_no_address),
	    cmocka_unit_test(test_rank_drops_null_mx_among_others),
	    cmocka_unit_test(test_rank_orders_addresses_by_preferred_family),
	    cmocka_unit_test(test_classify_maps_each_mx_answer),
	    cmocka_unit_test(
		test_addr_rc_prefers_any_address_then_temporary_failure),
	    cmocka_unit_test(
		test_self_name_match_ignores_case_and_trailing_dot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
