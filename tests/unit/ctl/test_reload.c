/*
 * Unit tests for ctl/reload.c: every option has its row, and a reload
 * reports each one that changed as applied or as taking effect at the
 * next start (issue 15, point 4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/conf.h"
#include "ctl/reload.h"
#include "tests/unit/common/conf_load.h"

#define BASE                                                                   \
	"relay_domains = {\"example.com\", \"example.org\"}\n"                 \
	"hostname = \"mx.example.net\"\n"                                      \
	"spool_dir = \"/tmp/a\"\n"                                             \
	"domain \"example.com\" {\n route = \"smtp:[127.0.0.1]:2525\"\n}\n"

/* The report of a reload from BASE to BASE followed by more. */
static void
diff(const char *more, struct reload_report *r)
{
	struct conf *a = load_ok(BASE), *b;
	char text[1024];

	snprintf(text, sizeof(text), "%s%s", BASE, more);
	b = load_ok(text);
	memset(r, 0, sizeof(*r));
	reload_diff(a, a, b, r);
	conf_free(a);
	conf_free(b);
}

/* The list, as "a, b, c". */
static char *
joined(char *const *v, size_t n)
{
	static char buf[1024];

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
		    i > 0 ? ", " : "", v[i]);
	return buf;
}

static void
test_every_option_has_a_row(void **state)
{
	const char *name;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; (name = conf_option_name(i)) != NULL; i++, n++)
		if (!reload_knows(name))
			fail_msg("option %s has no row in ctl/reload.c", name);
	assert_true(n > 60);
	assert_true(reload_knows("domain.route"));
	assert_false(reload_knows("no_such_option"));
}

static void
test_what_a_restart_needs_is_said_so(void **state)
{
	static const char *const at_start[] = {"spool_dir", "spool_recovery",
	    "spool_dir_check", "user", "group", "dns_timeout", "dns_tries",
	    "dns_cache_size"};
	static const char *const applied[] = {"spool_min_free", "log",
	    "log_level", "listen", "hostname", "control_socket",
	    "metrics_listen", "tls_cert_file", "retry.max_age", "domain.route"};

	(void)state;
	for (size_t i = 0; i < sizeof(at_start) / sizeof(at_start[0]); i++)
		assert_int_equal(reload_when(at_start[i]), RELOAD_AT_START);
	for (size_t i = 0; i < sizeof(applied) / sizeof(applied[0]); i++)
		assert_int_equal(reload_when(applied[i]), RELOAD_APPLIED);
}

static void
test_changed_options_are_listed_by_when_they_apply(void **state)
{
	struct reload_report r;

	(void)state;
	diff("", &r);
	assert_int_equal(r.napplied + r.nat_next_start + r.nwarnings, 0);
	reload_report_fini(&r);

	/* A later line than BASE's would be given twice: these replace. */
	diff("spool_min_free = 1G\nlog_level = \"debug\"\nlog = \"syslog\"\n"
	     "dns_tries = 3\nretry { max_age = 1d }\n",
	    &r);
	assert_string_equal(joined(r.applied, r.napplied),
	    "spool_min_free, log_level, log, retry.max_age");
	assert_string_equal(
	    joined(r.at_next_start, r.nat_next_start), "dns_tries");
	reload_report_fini(&r);
}

static void
test_a_new_spool_dir_takes_effect_at_the_next_start(void **state)
{
	struct conf *a = load_ok(BASE);
	struct conf *b = load_ok("relay_domains = {\"example.com\", "
				 "\"example.org\"}\n"
				 "hostname = \"mx.example.net\"\n"
				 "spool_dir = \"/tmp/b\"\n"
				 "domain \"example.com\" {\n"
				 " route = \"smtp:[127.0.0.1]:2525\"\n}\n");
	struct reload_report r = {0};
	json_t *j;
	char *s;

	(void)state;
	reload_diff(a, a, b, &r);
	assert_int_equal(r.napplied, 0);
	assert_string_equal(
	    joined(r.at_next_start, r.nat_next_start), "spool_dir");
	reload_warn(&r, "%s: %d", "a warning", 1);
	j = reload_report_json(&r);
	s = json_dumps(j, JSON_COMPACT);
	assert_string_equal(s,
	    "{\"applied\":[],\"at_next_start\":"
	    "[\"spool_dir\"],\"warnings\":[\"a warning: 1\"]}");
	free(s);
	json_decref(j);
	reload_report_fini(&r);
	assert_null(r.applied);
	conf_free(a);
	conf_free(b);
}

/* Compared with the one the daemon started with: a second reload still
 * says so, and one that puts it back says nothing. */
static void
test_a_restart_is_wanted_until_the_value_is_the_one_in_use(void **state)
{
	struct conf *a = load_ok(GOOD "spool_dir = \"/tmp/a\"\n");
	struct conf *b = load_ok(GOOD "spool_dir = \"/tmp/b\"\n");
	struct conf *c = load_ok(GOOD "spool_dir = \"/tmp/b\"\n");
	struct reload_report r = {0};

	(void)state;
	reload_diff(a, b, c, &r);
	assert_string_equal(
	    joined(r.at_next_start, r.nat_next_start), "spool_dir");
	reload_report_fini(&r);
	reload_diff(a, c, a, &r);
	assert_int_equal(r.napplied + r.nat_next_start, 0);
	reload_report_fini(&r);
	conf_free(a);
	conf_free(b);
	conf_free(c);
}

/* Back to resolv.conf's servers is a change like any other. */
static void
test_dns_servers_are_applied_even_when_dropped(void **state)
{
	struct conf *a = load_ok(GOOD "dns_servers = {\"127.0.0.1:53\"}\n");
	struct conf *b = load_ok(GOOD);
	struct reload_report r = {0};

	(void)state;
	reload_diff(a, a, b, &r);
	assert_string_equal(joined(r.applied, r.napplied), "dns_servers");
	assert_int_equal(r.nat_next_start, 0);
	reload_report_fini(&r);
	conf_free(a);
	conf_free(b);
}

static void
test_domain_sections_are_named_once_when_they_change(void **state)
{
	struct reload_report r;

	(void)state;
	/* Added, and changed in a retry option of its own. */
	diff("domain \"example.org\" { }\n"
	     "retry { initial = 1m }\n",
	    &r);
	assert_string_equal(joined(r.applied, r.napplied),
	    "retry.initial, domain \"example.org\"");
	reload_report_fini(&r);
	/* A global retry change that example.com inherits is the global
	 * block's; one example.com sets itself is its own. */
	{
		struct conf *a = load_ok(BASE);
		struct conf *b = load_ok(
		    "relay_domains = {\"example.com\", \"example.org\"}\n"
		    "hostname = \"mx.example.net\"\n"
		    "spool_dir = \"/tmp/a\"\n"
		    "retry { initial = 1m }\n"
		    "domain \"example.com\" {\n"
		    " route = \"smtp:[127.0.0.1]:2525\"\n"
		    " retry { max_age = 1d }\n}\n");

		memset(&r, 0, sizeof(r));
		reload_diff(a, a, b, &r);
		assert_string_equal(joined(r.applied, r.napplied),
		    "retry.initial, domain \"example.com\"");
		reload_report_fini(&r);
		reload_diff(a, b, a, &r);
		assert_string_equal(joined(r.applied, r.napplied),
		    "retry.initial, domain \"example.com\"");
		reload_report_fini(&r);
		conf_free(a);
		conf_free(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_option_has_a_row),
	    cmocka_unit_test(test_what_a_restart_needs_is_said_so),
	    cmocka_unit_test(
		test_changed_options_are_listed_by_when_they_apply),
	    cmocka_unit_test(
		test_a_new_spool_dir_takes_effect_at_the_next_start),
	    cmocka_unit_test(
		test_a_restart_is_wanted_until_the_value_is_the_one_in_use),
	    cmocka_unit_test(test_dns_servers_are_applied_even_when_dropped),
	    cmocka_unit_test(
		test_domain_sections_are_named_once_when_they_change),
	};

	return cmocka_run_group_tests_name("ctl/reload", tests, NULL, NULL);
}
