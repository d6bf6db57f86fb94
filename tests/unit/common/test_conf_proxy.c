/*
 * Unit tests for the PROXY protocol's options and node_id in
 * common/conf.c, and the network lists of common/confval.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/conf.h"
#include "tests/unit/common/conf_load.h"

/* Whether text (an address) is inside network cidr. */
static bool
inside(const char *cidr, const char *text)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct conf_cidr c;

	assert_int_equal(conf_parse_cidr(cidr, &c), 0);
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		fail_msg("bad address %s", text);
	return conf_cidr_match(&c, (struct sockaddr *)&ss);
}

static void
test_cidr_matches_prefixes_of_either_family(void **state)
{
	(void)state;
	assert_true(inside("127.0.0.1/32", "127.0.0.1"));
	assert_false(inside("127.0.0.1/32", "127.0.0.2"));
	assert_true(inside("127.0.0.1", "127.0.0.1"));
	assert_true(inside("10.0.0.0/8", "10.255.1.2"));
	assert_false(inside("10.0.0.0/8", "11.0.0.1"));
	assert_true(inside("192.0.2.128/25", "192.0.2.200"));
	assert_false(inside("192.0.2.128/25", "192.0.2.127"));
	assert_true(inside("0.0.0.0/0", "203.0.113.9"));
	assert_false(inside("0.0.0.0/0", "::1"));
	assert_true(inside("::1/128", "::1"));
	assert_false(inside("::1/128", "::2"));
	assert_true(inside("2001:db8::/33", "2001:db8:7fff::1"));
	assert_false(inside("2001:db8::/33", "2001:db8:8000::1"));
	assert_true(inside("::/0", "2001:db8::1"));
	/* An IPv4 client on an IPv6 socket is matched as IPv4. */
	assert_true(inside("127.0.0.0/8", "::ffff:127.0.0.9"));
	assert_false(inside("::1/128", "127.0.0.1"));
}

static void
test_cidr_refuses_bad_forms_and_host_bits(void **state)
{
	static const char *const bad[] = {"", "/8", "10.0.0.0/", "10.0.0.0/33",
	    "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0/8", "::1/129", "example.com",
	    "10.0.0.0/ 8"};
	struct conf_cidr c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_cidr(bad[i], &c) != CONF_CIDR_BAD)
			fail_msg("taken: '%s'", bad[i]);
	assert_int_equal(
	    conf_parse_cidr("10.0.0.1/8", &c), CONF_CIDR_HOST_BITS);
	assert_int_equal(
	    conf_parse_cidr("2001:db8::1/64", &c), CONF_CIDR_HOST_BITS);
	assert_int_equal(conf_parse_cidr("10.0.0.0/8", &c), 0);
	assert_int_equal(c.bits, 8);
	assert_int_equal(c.family, AF_INET);
}

static void
test_proxy_options_default_to_none_listening_and_loopback_trusted(void **state)
{
	struct conf *cf = load_ok(GOOD "hostname = \"mx1.example.net\"\n");

	(void)state;
	assert_int_equal(cf->nproxy_listen, 0);
	assert_int_equal(cf->nproxy_trusted, 2);
	assert_int_equal(cf->proxy_trusted[0].family, AF_INET);
	assert_int_equal(cf->proxy_trusted[0].bits, 32);
	assert_int_equal(cf->proxy_trusted[1].family, AF_INET6);
	assert_int_equal(cf->proxy_trusted[1].bits, 128);
	assert_int_equal(cf->proxy_timeout, 5);
	assert_string_equal(cf->node_id, "mx1");
	conf_free(cf);
}

static void
test_proxy_options_are_read(void **state)
{
	struct conf *cf =
	    load_ok(GOOD "proxy_listen = {\"127.0.0.1:2527\", \"[::1]:2527\"}\n"
			 "proxy_trusted = {\"10.0.0.0/8\", \"2001:db8::/32\"}\n"
			 "proxy_timeout = 1m\n"
			 "node_id = \"eu-west-2\"\n");

	(void)state;
	assert_int_equal(cf->nproxy_listen, 2);
	assert_string_equal(cf->proxy_listen[0].text, "127.0.0.1:2527");
	assert_string_equal(cf->proxy_listen[1].text, "[::1]:2527");
	assert_int_equal(cf->nproxy_trusted, 2);
	assert_int_equal(cf->proxy_trusted[1].bits, 32);
	assert_int_equal(cf->proxy_timeout, 60);
	assert_string_equal(cf->node_id, "eu-west-2");
	conf_free(cf);
	/* An empty list trusts nobody. */
	cf = load_ok(GOOD "proxy_trusted = {}\n");
	assert_int_equal(cf->nproxy_trusted, 0);
	conf_free(cf);
}

static void
test_node_id_defaults_to_a_valid_first_label(void **state)
{
	struct conf *cf = load_ok(GOOD "hostname = \"mx\"\n");

	(void)state;
	assert_string_equal(cf->node_id, "mx");
	conf_free(cf);
	assert_true(conf_valid_node_id("a"));
	assert_true(conf_valid_node_id("Node-7"));
	assert_false(conf_valid_node_id(""));
	assert_false(conf_valid_node_id("mx1.example"));
	assert_false(conf_valid_node_id("mx_1"));
	assert_false(conf_valid_node_id("m\"x"));
	assert_true(conf_valid_node_id(
	    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123"));
	assert_false(conf_valid_node_id("abcdefghijabcdefghijabcdefghijabcdefgh"
					"ijabcdefghijabcdefghij1234"));
}

static void
test_proxy_options_report_bad_values_with_their_lines(void **state)
{
	(void)state;
	assert_errors(GOOD "proxy_listen = {\"127.0.0.1\"}\n"
			   "proxy_trusted = {\"10.0.0.1/8\", \"10.0.0.0/40\"}\n"
			   "proxy_timeout = 0\n"
			   "node_id = \"mx1.example.net\"\n",
	    "F:2: proxy_listen: bad address '127.0.0.1' (use 127.0.0.1:25 or "
	    "[::1]:25)\n"
	    "F:3: proxy_trusted: '10.0.0.1/8' has bits set past its prefix "
	    "length (use the network's first address, e.g. 10.0.0.0/8)\n"
	    "F:3: proxy_trusted: bad network '10.0.0.0/40' (use 10.0.0.0/8, "
	    "2001:db8::/32 or an address)\n"
	    "F:4: proxy_timeout: must be at least 1s\n"
	    "F:5: node_id: bad node id 'mx1.example.net' (letters, digits and "
	    "hyphens, at most 63)\n");
	assert_errors(GOOD "proxy_timeout = 2d\n",
	    "F:2: proxy_timeout: 2d is more than the limit of 1d\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cidr_matches_prefixes_of_either_family),
	    cmocka_unit_test(test_cidr_refuses_bad_forms_and_host_bits),
	    cmocka_unit_test(
		test_proxy_options_default_to_none_listening_and_loopback_trusted),
	    cmocka_unit_test(test_proxy_options_are_read),
	    cmocka_unit_test(test_node_id_defaults_to_a_valid_first_label),
	    cmocka_unit_test(
		test_proxy_options_report_bad_values_with_their_lines),
	};

	return cmocka_run_group_tests_name(
	    "common/conf (proxy)", tests, NULL, NULL);
}
