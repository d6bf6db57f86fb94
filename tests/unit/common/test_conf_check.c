/*
 * Unit tests for common/conf_check.c and the text pass it reads
 * (conf_items in common/conf_text.c): the config mistakes that libconfuse
 * lets through or reports without help (issue 15, point 5), each refused
 * at its line, and the one that is only a warning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/conf.h"
#include "common/conf_int.h"
#include "tests/unit/common/conf_load.h"

static void
test_items_give_each_option_its_line_and_section(void **state)
{
	const char *text =
	    "relay_domains = {\"a\",\n \"b\"}\n"
	    "relay_domains += {\"c\"}\n"
	    "domain \"a\" {\n route = \"mx\"\n retry { max_age = 1d }\n}\n"
	    "hostname = \"x\" log = \"stderr\"\n";
	struct conf_item *it;
	size_t n;

	(void)state;
	it = conf_items(text, &n);
	assert_int_equal(n, 8);
	assert_int_equal(it[0].name.line, 1);
	assert_false(it[0].append);
	assert_int_equal(it[0].value.p[0], '{');
	assert_int_equal(it[1].name.line, 3);
	assert_true(it[1].append);
	assert_true(it[2].section);
	assert_int_equal(it[2].name.line, 4);
	assert_int_equal(it[2].title.len, 3); /* with its quotes */
	assert_int_equal(it[3].parent, 2);    /* route */
	assert_true(it[4].section);           /* retry */
	assert_int_equal(it[5].parent, 4);    /* max_age */
	assert_int_equal(it[5].name.line, 6);
	assert_int_equal(it[6].parent, -1); /* hostname */
	assert_int_equal(it[7].parent, -1); /* log, on the same line */
	assert_int_equal(it[7].name.line, 8);
	assert_ptr_equal(conf_item_find(it, n, -1, "relay_domains"), &it[1]);
	assert_ptr_equal(conf_item_find(it, n, 4, "max_age"), &it[5]);
	assert_null(conf_item_find(it, n, -1, "max_age"));
	free(it);
}

/* A second relay_domains line replaced the first: mail for the first
 * domain got 554 Relay access denied. */
static void
test_an_option_given_twice_is_refused_at_the_second(void **state)
{
	(void)state;
	assert_errors("relay_domains = {\"a.example\"}\n"
		      "hostname = \"mx.example.net\"\n"
		      "relay_domains = {\"b.example\"}\n",
	    "F:3: relay_domains: given twice (first at line 1); a list is "
	    "written once: relay_domains = {\"a\", \"b\"}\n");
	assert_errors(GOOD "log_level = \"info\"\n\nlog_level = \"debug\"\n",
	    "F:4: log_level: given twice (first at line 2)\n");
	/* In a section, and a section itself. */
	assert_errors(GOOD "retry {\n initial = 5s\n initial = 6s\n}\n"
			   "retry {\n}\n",
	    "F:4: initial: given twice (first at line 3)\n"
	    "F:6: retry: given twice (first at line 2)\n");
	assert_errors(GOOD "domain \"example.com\" {\n route = \"mx\"\n"
			   " route = \"smtp:[127.0.0.1]\"\n}\n",
	    "F:4: route: given twice (first at line 3)\n");
}

static void
test_the_same_name_in_other_sections_or_appended_is_not_twice(void **state)
{
	struct conf *cf;

	(void)state;
	cf = load_ok(
	    "relay_domains = {\"example.com\"}\n"
	    "relay_domains += {\"example.org\"}\n"
	    "max_connections = 10\n"
	    "retry { max_connections = 5 }\n"
	    "domain \"example.com\" { retry { max_connections = 2 } }\n"
	    "domain \"example.org\" { retry { max_connections = 3 } }\n");
	assert_int_equal(cf->nrelay_domains, 2);
	assert_int_equal(cf->max_connections, 10);
	assert_int_equal(cf->retry.max_connections, 5);
	assert_int_equal(cf->domains[1].retry.max_connections, 3);
	conf_free(cf);
}

static void
test_a_typo_of_a_known_option_says_which_was_meant(void **state)
{
	(void)state;
	assert_errors(GOOD "relay_domain = {\"b.example\"}\n",
	    "F:2: unknown option 'relay_domain' (did you mean "
	    "'relay_domains'?)\n");
	/* Among the options of the section it is in. */
	assert_errors(GOOD "retry {\n max_ages = 1d\n}\n",
	    "F:3: unknown option 'max_ages' (did you mean 'max_age'?)\n");
	assert_errors(GOOD "domain \"example.com\" {\n rout = \"mx\"\n}\n",
	    "F:3: unknown option 'rout' (did you mean 'route'?)\n");
	assert_errors(GOOD "Log_Levle = \"debug\"\n",
	    "F:2: unknown option 'Log_Levle' (did you mean 'log_level'?)\n");
	/* Nothing close: no guess. */
	assert_errors(GOOD "foo = 1\n", "F:2: unknown option 'foo'\n");
	assert_errors(
	    GOOD "frobnicate = 1\n", "F:2: unknown option 'frobnicate'\n");
}

static void
test_edit_distance_counts_a_swap_as_one(void **state)
{
	(void)state;
	assert_int_equal(conf_distance("relay_domains", "relay_domains"), 0);
	assert_int_equal(conf_distance("relay_domain", "relay_domains"), 1);
	assert_int_equal(conf_distance("relya_domains", "relay_domains"), 1);
	assert_int_equal(conf_distance("LISTEN", "listen"), 0);
	assert_int_equal(conf_distance("", "tls"), 3);
	assert_true(conf_close_enough("relay_domain", 2));
	assert_false(conf_close_enough("foo", 2));
	assert_true(conf_close_enough("tl", 1));
}

static void
test_a_domain_section_for_mail_never_accepted_is_refused(void **state)
{
	struct conf *cf;

	(void)state;
	assert_errors(GOOD "domain \"example.net\" {\n route = \"mx\"\n}\n",
	    "F:2: domain \"example.net\": not in relay_domains, so no mail "
	    "for it is accepted and this section is never used\n");
	/* .example.com is the names below example.com, not it. */
	assert_errors(GOOD "\ndomain \".example.com\" {\n}\n",
	    "F:3: domain \".example.com\": not in relay_domains, so no mail "
	    "for it is accepted and this section is never used\n");
	/* What a pattern covers: names below it, and patterns below it. */
	cf = load_ok("relay_domains = {\"a.example\", \".example.org\", "
		     "\"x.example.net\"}\n"
		     "domain \"A.Example\" { }\n"
		     "domain \"sub.example.org\" { }\n"
		     "domain \".example.org\" { }\n"
		     "domain \".deep.example.org\" { }\n"
		     "domain \".example.net\" { }\n");
	assert_int_equal(cf->ndomains, 5);
	conf_free(cf);
	/* The postmaster's domain takes mail to <Postmaster>. */
	cf = load_ok(GOOD "postmaster = \"hostmaster@OPS.example\"\n"
			  "domain \"ops.example\" { route = \"mx\" }\n");
	conf_free(cf);
}

static void
test_a_wildcard_points_to_the_pattern_mxspool_takes(void **state)
{
	(void)state;
	assert_errors("relay_domains = {\"example.com\", \"*.example.org\"}\n",
	    "F:1: relay_domains: '*.example.org' is a wildcard: write "
	    "'.example.org' for the names below example.org\n");
	assert_errors(GOOD "domain \"*.example.com\" {\n}\n",
	    "F:3: domain: '*.example.com' is a wildcard: write "
	    "'.example.com' for the names below example.com\n");
}

static void
test_a_delay_notice_due_after_the_bounce_is_refused(void **state)
{
	struct conf *cf;

	(void)state;
	assert_errors(GOOD "retry {\n max_age = 2d\n warn_after = 2d\n}\n",
	    "F:4: warn_after: 2d is not less than max_age (2d, line 3): the "
	    "delay notice would never be sent\n");
	assert_errors(GOOD "retry {\n warn_after = 15d\n}\n",
	    "F:3: warn_after: 15d is not less than max_age (14d, the "
	    "default): the delay notice would never be sent\n");
	/* A domain's block, with what it inherits. */
	assert_errors(GOOD "retry {\n warn_after = 2d\n}\n"
			   "domain \"example.com\" {\n retry {\n"
			   "  max_age = 1d\n }\n}\n",
	    "F:7: max_age: 1d is not more than warn_after (2d, line 3): the "
	    "delay notice would never be sent\n");
	assert_errors(GOOD "domain \"example.com\" {\n retry {\n"
			   "  warn_after = 3d\n  max_age = 1d\n }\n}\n",
	    "F:4: warn_after: 3d is not less than max_age (1d, line 5): the "
	    "delay notice would never be sent\n");
	/* warn_after left to its default yields to a short max_age, and
	 * max_age = 0 keeps mail for ever. */
	cf = load_ok(GOOD "retry {\n max_age = 3s\n}\n"
			  "domain \"example.com\" {\n retry {\n"
			  "  warn_after = 30d\n  max_age = 0\n }\n}\n");
	assert_int_equal(cf->retry.warn_after, 86400);
	conf_free(cf);
}

static void
test_dns_ttl_bounds_out_of_order_are_refused(void **state)
{
	struct conf *cf;

	(void)state;
	assert_errors(GOOD "dns_max_ttl = 5s\ndns_min_ttl = 1m\n",
	    "F:3: dns_min_ttl: 1m is more than dns_max_ttl (5s, line 2)\n");
	assert_errors(GOOD "dns_min_ttl = 2d\n",
	    "F:2: dns_min_ttl: 2d is more than dns_max_ttl (1d, the "
	    "default)\n");
	assert_errors(GOOD "dns_max_ttl = 5s\n",
	    "F:2: dns_max_ttl: 5s is less than dns_min_ttl (10s, the "
	    "default)\n");
	cf = load_ok(GOOD "dns_min_ttl = 1m\ndns_max_ttl = 1m\n");
	conf_free(cf);
}

static void
test_a_host_name_not_fully_qualified_is_a_warning(void **state)
{
	struct conf *cf;
	char *w;

	(void)state;
	cf = load_ok(GOOD "\nhostname = \"mx\"\n");
	assert_non_null(cf->warnings);
	w = strstr(cf->warnings, ":3: warning: hostname: 'mx' is not a fully "
				 "qualified domain name");
	assert_non_null(w);
	assert_int_equal(
	    strncmp(cf->warnings, conf_path, strlen(conf_path)), 0);
	assert_ptr_equal(w, cf->warnings + strlen(conf_path));
	conf_free(cf);
	cf = load_ok(GOOD "hostname = \"mx.example.net\"\n");
	assert_null(cf->warnings);
	conf_free(cf);
	/* "" is the system's name: not the config's to judge. */
	cf = load_ok(GOOD "hostname = \"\"\n");
	assert_null(cf->warnings);
	conf_free(cf);
}

static void
test_a_missing_required_option_names_the_file_not_a_line(void **state)
{
	(void)state;
	assert_errors("hostname = \"mx.example.net\"\n\n\n",
	    "F: relay_domains is required (the domains this backup MX "
	    "accepts mail for)\n");
	assert_errors("", "F: relay_domains is required (the domains this "
			  "backup MX accepts mail for)\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_items_give_each_option_its_line_and_section),
	    cmocka_unit_test(
		test_an_option_given_twice_is_refused_at_the_second),
	    cmocka_unit_test(
		test_the_same_name_in_other_sections_or_appended_is_not_twice),
	    cmocka_unit_test(
		test_a_typo_of_a_known_option_says_which_was_meant),
	    cmocka_unit_test(test_edit_distance_counts_a_swap_as_one),
	    cmocka_unit_test(
		test_a_domain_section_for_mail_never_accepted_is_refused),
	    cmocka_unit_test(
		test_a_wildcard_points_to_the_pattern_mxspool_takes),
	    cmocka_unit_test(
		test_a_delay_notice_due_after_the_bounce_is_refused),
	    cmocka_unit_test(test_dns_ttl_bounds_out_of_order_are_refused),
	    cmocka_unit_test(test_a_host_name_not_fully_qualified_is_a_warning),
	    cmocka_unit_test(
		test_a_missing_required_option_names_the_file_not_a_line),
	};

	return cmocka_run_group_tests_name(
	    "common/conf_check", tests, NULL, NULL);
}
