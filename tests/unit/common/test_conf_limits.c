/*
 * Unit tests for common/conf.c: what the config may ask for and what it
 * refuses, at its line, because the daemon could not honour it (issue 14,
 * point 9): numbers past their limits, a file that ends inside a section,
 * paths that would be cut, and the lines of the TLS files.
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
#include "common/xmem.h"
#include "tests/unit/common/conf_load.h"

static void
test_duration_and_size_tell_too_big_from_bad(void **state)
{
	int64_t s = 42;
	uint64_t b = 42;

	(void)state;
	assert_int_equal(conf_parse_duration("9223372036854775807", &s), 0);
	assert_true(s == INT64_MAX);
	assert_int_equal(
	    conf_parse_duration("9223372036854775808", &s), CONF_PARSE_RANGE);
	assert_int_equal(
	    conf_parse_duration("99999999999999999999s", &s), CONF_PARSE_RANGE);
	assert_int_equal(
	    conf_parse_duration("15250284452472w", &s), CONF_PARSE_RANGE);
	assert_int_equal(conf_parse_duration("1h9223372036854775807s", &s),
	    CONF_PARSE_RANGE);
	/* Too big, but written wrong too: wrong comes first. */
	assert_int_equal(
	    conf_parse_duration("99999999999999999999s5", &s), CONF_PARSE_BAD);
	assert_int_equal(
	    conf_parse_duration("99999999999999999999x", &s), CONF_PARSE_BAD);
	assert_int_equal(conf_parse_duration("0s5", &s), CONF_PARSE_BAD);
	assert_true(s == INT64_MAX);

	assert_int_equal(conf_parse_size("2T", &b), 0);
	assert_true(b == (uint64_t)2 << 40);
	assert_int_equal(conf_parse_size("1t", &b), 0);
	assert_true(b == (uint64_t)1 << 40);
	assert_int_equal(conf_parse_size("17179869184G", &b), CONF_PARSE_RANGE);
	assert_int_equal(
	    conf_parse_size("99999999999999999999", &b), CONF_PARSE_RANGE);
	assert_int_equal(
	    conf_parse_size("99999999999999999999x", &b), CONF_PARSE_BAD);
}

static void
test_durations_and_sizes_print_as_written(void **state)
{
	char buf[32];

	(void)state;
	conf_format_duration(86400, buf, sizeof(buf));
	assert_string_equal(buf, "1d");
	conf_format_duration(365 * 86400, buf, sizeof(buf));
	assert_string_equal(buf, "365d");
	conf_format_duration(30 * 3600, buf, sizeof(buf));
	assert_string_equal(buf, "30h");
	conf_format_duration(90, buf, sizeof(buf));
	assert_string_equal(buf, "90s");
	conf_format_duration(0, buf, sizeof(buf));
	assert_string_equal(buf, "0s");
	conf_format_size((uint64_t)64 << 30, buf, sizeof(buf));
	assert_string_equal(buf, "64G");
	conf_format_size((uint64_t)1 << 50, buf, sizeof(buf));
	assert_string_equal(buf, "1024T");
	conf_format_size(1536, buf, sizeof(buf));
	assert_string_equal(buf, "1536");
	conf_format_size(0, buf, sizeof(buf));
	assert_string_equal(buf, "0");
}

/*
 * Each of these was taken before, and then not honoured: INT64_MAX
 * seconds timed every session out at once, dns_timeout overflowed in
 * conf.c (UBSan) or, at 4294968s, wrapped to 704 ms, a retry interval
 * that size logged a negative next probe.
 */
static void
test_numbers_past_their_limits_are_refused_at_their_line(void **state)
{
	(void)state;
	assert_errors(GOOD "command_timeout = 9223372036854775807\n"
			   "dns_timeout = 9223372036854775807\n"
			   "dns_ptr_timeout = 4294968s\n"
			   "retry {\n initial = 9223372036854775807\n"
			   " max_age = 366d\n}\n"
			   "domain \"example.com\" {\n"
			   " retry { max_interval = 1d1s }\n}\n"
			   "known_recipients_max_age = 99999999999999999999d\n"
			   "message_size_limit = 2G\n"
			   "data_memory_limit = 65G\n"
			   "spool_min_free = 1025T\n"
			   "min_data_rate = 1T\n"
			   "dns_tries = 6\n"
			   "max_connections = 1000001\n"
			   "dns_max_ttl = 8d\n",
	    "F:2: command_timeout: 9223372036854775807 is more than the limit "
	    "of 1d\n"
	    "F:3: dns_timeout: 9223372036854775807 is more than the limit of "
	    "30s\n"
	    "F:4: dns_ptr_timeout: 4294968s is more than the limit of 30s\n"
	    "F:6: initial: 9223372036854775807 is more than the limit of 1d\n"
	    "F:7: max_age: 366d is more than the limit of 365d\n"
	    "F:10: max_interval: 1d1s is more than the limit of 1d\n"
	    "F:12: known_recipients_max_age: 99999999999999999999d is more "
	    "than the limit of 365d\n"
	    "F:13: message_size_limit: 2G is more than the limit of 1G\n"
	    "F:14: data_memory_limit: 65G is more than the limit of 64G\n"
	    "F:15: spool_min_free: 1025T is more than the limit of 1024T\n"
	    "F:16: min_data_rate: 1T is more than the limit of 1G\n"
	    "F:17: dns_tries: 6 is more than the limit of 5\n"
	    "F:18: max_connections: 1000001 is more than the limit of "
	    "1000000\n"
	    "F:19: dns_max_ttl: 8d is more than the limit of 7d\n");
	assert_errors(GOOD "max_errors = 10k\nmax_hops = -1\n",
	    "F:2: max_errors: bad number '10k' (use e.g. 20)\n"
	    "F:3: max_hops: bad number '-1' (use e.g. 20)\n");
}

/* A limit is a value the daemon takes, and keeps whole. */
static void
test_every_limit_itself_is_taken(void **state)
{
	struct conf *cf = load_ok(
	    GOOD "command_timeout = 1d\ndata_timeout = 24h\n"
		 "session_deadline = 86400\nshutdown_timeout = 1d\n"
		 "client_final_timeout = 1d\ndns_timeout = 30s\n"
		 "dns_ptr_timeout = 30s\ndns_tries = 5\ndns_max_ttl = 1w\n"
		 "known_recipients_max_age = 365d\nmessage_size_limit = 1G\n"
		 "data_memory_limit = 64G\nspool_min_free = 1024T\n"
		 "active_limit = 1000000\n"
		 "retry {\n initial = 1d\n max_interval = 1d\n"
		 " max_age = 365d\n}\n"
		 /* A delay notice is due before the bounce: at most a year
		  * where mail is kept for ever. */
		 "domain \"example.com\" {\n retry {\n max_age = 0\n"
		 " warn_after = 365d\n }\n}\n");

	(void)state;
	assert_int_equal(cf->command_timeout, 86400);
	assert_int_equal(cf->data_timeout, 86400);
	assert_int_equal(cf->session_deadline, 86400);
	assert_int_equal(cf->shutdown_timeout, 86400);
	assert_int_equal(cf->client_final_timeout, 86400);
	/* In milliseconds, as c-ares takes them: an int. */
	assert_int_equal(cf->dns_timeout_ms, 30000);
	assert_int_equal(cf->dns_ptr_timeout_ms, 30000);
	assert_int_equal(cf->dns_tries, 5);
	assert_int_equal(cf->dns_max_ttl, 7 * 86400);
	assert_int_equal(cf->known_recipients_max_age, 365 * 86400);
	assert_true(cf->message_size_limit == (uint64_t)1 << 30);
	assert_true(cf->data_memory_limit == (uint64_t)64 << 30);
	assert_true(cf->spool_min_free == (uint64_t)1 << 50);
	assert_int_equal(cf->active_limit, 1000000);
	assert_int_equal(cf->retry.initial, 86400);
	assert_int_equal(cf->retry.max_interval, 86400);
	assert_int_equal(cf->retry.max_age, 365 * 86400);
	assert_int_equal(cf->domains[0].retry.warn_after, 365 * 86400);
	conf_free(cf);
}

/* libconfuse takes the end of the file as the end of every section. */
static void
test_a_file_ending_inside_a_section_is_refused(void **state)
{
	(void)state;
	assert_errors(GOOD "retry {\n initial = 5s\n",
	    "F:2: section 'retry' opened here is never closed\n");
	assert_errors(GOOD "domain \"example.com\" {\n"
			   " route = \"lmtp:unix:/run/dovecot/lmtp\"\n",
	    "F:2: section 'domain \"example.com\"' opened here is never "
	    "closed\n");
	/* Both, where a domain's retry block is left open too. */
	assert_errors(GOOD "domain \"example.com\" {\n retry {\n"
			   "  initial = 5s\n",
	    "F:2: section 'domain \"example.com\"' opened here is never "
	    "closed\n"
	    "F:3: section 'retry' opened here is never closed\n");
	/* What follows is read as inside the section: that comes after. */
	assert_errors(GOOD "retry {\n initial = 5s\n\nsoft_bounce = true\n",
	    "F:2: section 'retry' opened here is never closed\n"
	    "F:5: unknown option 'soft_bounce'\n");
	/* Braces in strings and comments, one-line sections and lists do
	 * not count. */
	assert_null(load_errors(
	    GOOD "spool_dir = \"/tmp/{x\" # {\n/* { */ retry { initial = 5s }\n"
		 "domain \"example.com\" { retry { } route = \"mx\" }\n"
		 "mx_self_names = {\"a.example\",\n\"b.example\"}\n"));
	/* A list left open libconfuse reports itself. */
	assert_errors(GOOD "mx_self_names = {\"a.example\",\n",
	    "F:3: premature end of file\n");
}

/* sun_path holds 108 bytes with its NUL: a longer path would be cut. */
static void
test_socket_paths_that_would_be_cut_are_refused(void **state)
{
	char path[200], text[1024];
	struct conf_route r;
	struct conf *cf;

	(void)state;
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(text, sizeof(text),
	    GOOD "control_socket = \"%s\"\ndomain \"example.com\" {\n"
		 " route = \"lmtp:unix:%s\"\n}\n",
	    path, path);
	cf = load_ok(text);
	assert_int_equal(strlen(cf->control_socket), 107);
	assert_int_equal(strlen(cf->domains[0].route.path), 107);
	conf_free(cf);

	path[107] = 'a';
	path[108] = '\0';
	snprintf(text, sizeof(text),
	    GOOD
	    "control_socket = \"%s\"\ndomain \"example.com\" {\n"
	    " route = \"lmtp:unix:%s\"\n}\nbounce_route = \"lmtp:unix:%s\"\n",
	    path, path, path);
	assert_errors(text,
	    "F:2: control_socket: a path of 108 bytes is more than the limit "
	    "of 107 for a Unix socket\n"
	    "F:4: route: a path of 108 bytes is more than the limit of 107 "
	    "for a Unix socket\n"
	    "F:6: bounce_route: a path of 108 bytes is more than the limit of "
	    "107 for a Unix socket\n");
	snprintf(text, sizeof(text), "lmtp:unix:%s", path);
	assert_int_equal(conf_parse_route(text, &r), -1);
}

/* RocksDB's files go below spool_dir: it must leave them room. */
static void
test_a_spool_dir_with_no_room_is_refused(void **state)
{
	char path[CONF_SPOOL_DIR_MAX + 2], *text;
	struct conf *cf;

	(void)state;
	/* CONF_SPOOL_DIR_MAX bytes, in names of 200. */
	memset(path, 'd', sizeof(path));
	for (size_t i = 0; i < CONF_SPOOL_DIR_MAX; i += 201)
		path[i] = '/';
	path[CONF_SPOOL_DIR_MAX] = '\0';
	text = xasprintf(GOOD "spool_dir = \"%s\"\n", path);
	cf = load_ok(text);
	assert_int_equal(strlen(cf->spool_dir), CONF_SPOOL_DIR_MAX);
	conf_free(cf);
	free(text);

	path[CONF_SPOOL_DIR_MAX] = 'd';
	path[CONF_SPOOL_DIR_MAX + 1] = '\0';
	text = xasprintf(GOOD "\nspool_dir = \"%s\"\n", path);
	assert_errors(text, "F:3: spool_dir: a path of 4001 bytes is more than "
			    "the limit of 4000 (PATH_MAX, less room for the "
			    "spool's own files)\n");
	free(text);

	memset(path, 'd', 300);
	path[0] = '/';
	path[300] = '\0';
	text = xasprintf(GOOD "spool_dir = \"/var%s/spool\"\n", path);
	assert_errors(text, "F:2: spool_dir: a name of 299 bytes in the path "
			    "is more than the limit of 255 (NAME_MAX)\n");
	free(text);
}

/* -t and the daemon name the line of the TLS file at fault. */
static void
test_tls_files_keep_their_lines(void **state)
{
	struct conf *cf = load_ok(GOOD "tls_cert_file = \"/dev/null\"\n\n"
				       "tls_key_file = \"/dev/null\"\n");

	(void)state;
	assert_int_equal(cf->tls_cert_line, 2);
	assert_int_equal(cf->tls_key_line, 4);
	conf_free(cf);
	cf = load_ok(GOOD);
	assert_int_equal(cf->tls_cert_line, 0);
	assert_int_equal(cf->tls_key_line, 0);
	conf_free(cf);
	assert_errors(GOOD "\ntls_key_file = \"/dev/null\"\n",
	    "F:3: tls_cert_file and tls_key_file go together: tls_cert_file "
	    "is not set\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_and_size_tell_too_big_from_bad),
	    cmocka_unit_test(test_durations_and_sizes_print_as_written),
	    cmocka_unit_test(
		test_numbers_past_their_limits_are_refused_at_their_line),
	    cmocka_unit_test(test_every_limit_itself_is_taken),
	    cmocka_unit_test(test_a_file_ending_inside_a_section_is_refused),
	    cmocka_unit_test(test_socket_paths_that_would_be_cut_are_refused),
	    cmocka_unit_test(test_a_spool_dir_with_no_room_is_refused),
	    cmocka_unit_test(test_tls_files_keep_their_lines),
	};

	return cmocka_run_group_tests_name(
	    "common/conf limits", tests, NULL, NULL);
}
