/* Unit tests for ctl/ctl_util.c: the daemon's helpers for the control
 * commands (destinations of a message, a message as JSON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/conf.h"
#include "ctl/ctl.h"
#include "queue/envelope.h"
#include "queue/sched.h"

static struct conf *
load(const char *text)
{
	char path[] = "/tmp/test_ctl_XXXXXX";
	int fd = mkstemp(path);
	struct conf *cf = NULL;
	char *errors = NULL;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	if (conf_load(&cf, path, &errors) < 0)
		fail_msg("config: %s", errors);
	unlink(path);
	return cf;
}

static struct envelope *
msg(const char *r1, const char *r2)
{
	struct envelope *env = envelope_new();

	memcpy(env->qid, "1HFQAQS4MNR0", QID_SIZE);
	env->sender = strdup("a@sender.test");
	env->arrival = 1700000000LL * 1000000;
	env->size = 99;
	envelope_add_rcpt(env, r1, NULL, 0);
	if (r2 != NULL)
		envelope_add_rcpt(env, r2, NULL, 0);
	return env;
}

static void
test_destination_is_the_route_or_the_lower_case_domain(void **state)
{
	struct conf *cf = load("relay_domains = {\"example.com\", "
			       "\"example.org\"}\n"
			       "domain \"example.com\" { route = "
			       "\"lmtp:[127.0.0.1]:24\" }\n");
	struct envelope *env = msg("U@Example.COM", "v@EXAMPLE.org");
	char b[256];

	(void)state;
	assert_string_equal(
	    sched_dest_key(cf, env, env->rcpts[0].addr, b, sizeof(b)),
	    "lmtp:[127.0.0.1]:24");
	assert_string_equal(
	    sched_dest_key(cf, env, env->rcpts[1].addr, b, sizeof(b)),
	    "example.org");
	envelope_free(env);
	conf_free(cf);
}

static void
test_message_json_survives_bytes_that_are_not_utf8(void **state)
{
	struct conf *cf = load("relay_domains = {\"example.com\"}\n");
	struct envelope *env = msg("u@example.com", NULL);
	json_t *o, *r;

	(void)state;
	env->flags |= ENV_HELD;
	env->rcpts[0].last_error = strdup("451 caf\xe9 closed");
	env->rcpts[0].dsn_status = strdup("4.3.0");
	o = ctl_msg_json(cf, env);
	assert_string_equal(
	    json_string_value(json_object_get(o, "id")), "1HFQAQS4MNR0");
	assert_int_equal(
	    json_integer_value(json_object_get(o, "arrival")), 1700000000);
	assert_true(json_is_true(json_object_get(o, "held")));
	assert_true(json_is_null(json_object_get(o, "next_attempt")));
	r = json_array_get(json_object_get(o, "recipients"), 0);
	assert_string_equal(
	    json_string_value(json_object_get(r, "state")), "pending");
	assert_string_equal(json_string_value(json_object_get(r, "last_error")),
	    "451 caf? closed");
	assert_string_equal(
	    json_string_value(json_object_get(r, "destination")),
	    "example.com");
	json_decref(o);
	o = ctl_json_str(NULL);
	assert_true(json_is_null(o));
	json_decref(o);
	envelope_free(env);
	conf_free(cf);
}

static void
test_addresses_are_equal_by_exact_local_part_and_any_case_domain(void **state)
{
	(void)state;
	assert_true(ctl_addr_equal("u@example.com", "u@EXAMPLE.Com"));
	assert_false(ctl_addr_equal("u@example.com", "U@example.com"));
	assert_true(ctl_addr_equal("u@xn--bcher-kva.test", "u@b\xc3\xbc"
							   "cher.test"));
	assert_true(ctl_addr_equal("", ""));
	assert_false(ctl_addr_equal("", "u@example.com"));
	assert_false(ctl_addr_equal("u@example.com", "u@example.co"));
	assert_false(ctl_addr_equal("ab@example.com", "a@bexample.com"));
	assert_true(ctl_addr_equal("postmaster", "postmaster"));
	assert_false(ctl_addr_equal("postmaster", "postmaster@x.test"));
}

static void
test_filters_narrow_by_sender_pending_recipient_age_and_hold(void **state)
{
	struct envelope *env = msg("u1@example.com", "u2@example.org");
	struct ctl_filter f = {.older = -1, .younger = -1};

	(void)state;
	f.now = env->arrival / 1000000 + 600; /* ten minutes old */
	assert_false(ctl_filter_any(&f));
	assert_true(ctl_filter_match(&f, env));
	f.sender = "a@SENDER.test";
	assert_true(ctl_filter_match(&f, env));
	f.sender = "";
	assert_false(ctl_filter_match(&f, env));
	f.sender = NULL;
	f.rcpt = "u2@example.org";
	assert_true(ctl_filter_any(&f));
	assert_true(ctl_filter_match(&f, env));
	env->rcpts[1].state = RCPT_DELIVERED; /* no longer waits */
	assert_false(ctl_filter_match(&f, env));
	f.rcpt = NULL;
	f.older = 600;
	assert_true(ctl_filter_match(&f, env));
	f.older = 601;
	assert_false(ctl_filter_match(&f, env));
	f.older = -1;
	f.younger = 601;
	assert_true(ctl_filter_match(&f, env));
	f.younger = 600;
	assert_false(ctl_filter_match(&f, env));
	f.younger = -1;
	f.held = true;
	assert_false(ctl_filter_match(&f, env));
	env->flags |= ENV_HELD;
	assert_true(ctl_filter_match(&f, env));
	envelope_free(env);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_destination_is_the_route_or_the_lower_case_domain),
	    cmocka_unit_test(
		test_message_json_survives_bytes_that_are_not_utf8),
	    cmocka_unit_test(
		test_addresses_are_equal_by_exact_local_part_and_any_case_domain),
	    cmocka_unit_test(
		test_filters_narrow_by_sender_pending_recipient_age_and_hold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
