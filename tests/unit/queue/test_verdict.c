/* Unit tests for queue/verdict.c: which replies fail a recipient, which
 * defer it, and which say that the store itself is in trouble. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/verdict.h"

static void
test_2xx_is_sent_at_any_stage(void **state)
{
	(void)state;
	assert_int_equal(verdict_of(STAGE_RCPT, 250, "2.1.5"), VERDICT_SENT);
	assert_int_equal(verdict_of(STAGE_DOT, 250, NULL), VERDICT_SENT);
}

static void
test_4xx_about_the_address_defers_it_alone(void **state)
{
	(void)state;
	assert_int_equal(verdict_of(STAGE_RCPT, 452, "4.2.2"), VERDICT_DEFER);
	assert_int_equal(verdict_of(STAGE_RCPT, 450, "4.2.1"), VERDICT_DEFER);
	assert_int_equal(verdict_of(STAGE_RCPT, 450, "4.1.1"), VERDICT_DEFER);
	assert_int_equal(verdict_of(STAGE_MAIL, 451, "4.1.8"), VERDICT_DEFER);
}

static void
test_other_4xx_and_no_reply_are_transient(void **state)
{
	(void)state;
	/* A sick store: "451 4.2.0", "451 4.3.0", no enhanced code. */
	assert_int_equal(
	    verdict_of(STAGE_RCPT, 451, "4.2.0"), VERDICT_TRANSIENT);
	assert_int_equal(
	    verdict_of(STAGE_DOT, 451, "4.3.0"), VERDICT_TRANSIENT);
	assert_int_equal(
	    verdict_of(STAGE_MAIL, 450, "4.0.0"), VERDICT_TRANSIENT);
	assert_int_equal(
	    verdict_of(STAGE_DATA, 421, "4.4.2"), VERDICT_TRANSIENT);
	assert_int_equal(verdict_of(STAGE_NONE, 0, "4.4.1"), VERDICT_TRANSIENT);
	assert_int_equal(verdict_of(STAGE_RCPT, 0, NULL), VERDICT_TRANSIENT);
	assert_int_equal(
	    verdict_of(STAGE_RCPT, 999, "5.1.1"), VERDICT_TRANSIENT);
}

static void
test_5xx_about_the_recipient_or_message_fails(void **state)
{
	(void)state;
	assert_int_equal(verdict_of(STAGE_RCPT, 550, "5.1.1"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_RCPT, 552, "5.2.2"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_DOT, 552, "5.3.4"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_DOT, 554, "5.6.0"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_DOT, 550, "5.7.1"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_MAIL, 553, "5.1.7"), VERDICT_FAIL);
	/* Even with a protocol code, the status says it is the address. */
	assert_int_equal(verdict_of(STAGE_RCPT, 501, "5.1.3"), VERDICT_FAIL);
	/* mxspool's own check (SMTPUTF8 not offered): no stage, a status. */
	assert_int_equal(verdict_of(STAGE_NONE, 554, "5.6.7"), VERDICT_FAIL);
	/* Without an enhanced code: 550-554 to RCPT or the end of data. */
	assert_int_equal(verdict_of(STAGE_RCPT, 550, "5.0.0"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_RCPT, 553, NULL), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_DOT, 554, "5.0.0"), VERDICT_FAIL);
	assert_int_equal(verdict_of(STAGE_RCPT, 554, "5.4.6"), VERDICT_FAIL);
}

static void
test_5xx_about_the_session_is_the_stores_trouble(void **state)
{
	(void)state;
	/* aiosmtpd without its mailbox directory, then confused. */
	assert_int_equal(verdict_of(STAGE_DOT, 500, "5.0.0"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_MAIL, 503, "5.0.0"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_RCPT, 501, NULL), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_RCPT, 502, "5.5.1"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_DATA, 504, "5.5.4"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_RCPT, 550, "5.5.0"), VERDICT_STORE);
	/* 5xx to MAIL or DATA that names no recipient or message cause. */
	assert_int_equal(verdict_of(STAGE_MAIL, 550, "5.0.0"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_DATA, 554, "5.0.0"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_DATA, 554, "5.3.0"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_RCPT, 530, "5.0.0"), VERDICT_STORE);
	/* A malformed status is no status. */
	assert_int_equal(verdict_of(STAGE_MAIL, 550, "5.1"), VERDICT_STORE);
	assert_int_equal(verdict_of(STAGE_MAIL, 550, "5.1.1x"), VERDICT_STORE);
}

static void
test_a_transaction_fails_its_destination_only_when_nothing_escaped(void **state)
{
	const enum verdict all_451[] = {VERDICT_TRANSIENT, VERDICT_TRANSIENT};
	const enum verdict some_451[] = {VERDICT_TRANSIENT, VERDICT_SENT};
	const enum verdict full[] = {VERDICT_DEFER, VERDICT_DEFER};
	const enum verdict confused[] = {VERDICT_SENT, VERDICT_STORE};
	const enum verdict bounced[] = {VERDICT_FAIL};
	struct verdict_sum s;

	(void)state;
	s = verdict_sum(all_451, NULL, 2, false);
	assert_true(s.failing && !s.healthy && !s.trouble);
	s = verdict_sum(some_451, NULL, 2, false);
	assert_true(!s.failing && s.healthy && s.trouble);
	s = verdict_sum(full, NULL, 2, false); /* the users' own trouble */
	assert_true(!s.failing && s.healthy && !s.trouble);
	s = verdict_sum(confused, NULL, 2, false);
	assert_true(s.failing && !s.trouble);
	s = verdict_sum(bounced, NULL, 1, false);
	assert_true(!s.failing && s.healthy);
	s = verdict_sum(NULL, NULL, 0, false);
	assert_true(!s.failing && !s.healthy && !s.trouble);
}

static void
test_a_recipient_deferred_again_proves_nothing_unless_the_store_is_quiet(
    void **state)
{
	const enum verdict one_451[] = {VERDICT_TRANSIENT};
	const enum verdict two_451[] = {VERDICT_TRANSIENT, VERDICT_TRANSIENT};
	const bool again[] = {true, true}, new_one[] = {true, false};
	struct verdict_sum s;

	(void)state;
	/* The busy user's retry, while the store answers others. */
	s = verdict_sum(one_451, again, 1, false);
	assert_true(!s.failing && s.trouble);
	/* The same with a first try beside it: the store fails. */
	s = verdict_sum(two_451, new_one, 2, false);
	assert_true(s.failing && !s.trouble);
	/* Nothing healthy from the store lately: it fails. */
	s = verdict_sum(one_451, again, 1, true);
	assert_true(s.failing);
	/* A protocol error fails it whatever came before. */
	const enum verdict store[] = {VERDICT_STORE};
	s = verdict_sum(store, again, 1, false);
	assert_true(s.failing);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_2xx_is_sent_at_any_stage),
	    cmocka_unit_test(test_4xx_about_the_address_defers_it_alone),
	    cmocka_unit_test(test_other_4xx_and_no_reply_are_transient),
	    cmocka_unit_test(test_5xx_about_the_recipient_or_message_fails),
	    cmocka_unit_test(test_5xx_about_the_session_is_the_stores_trouble),
	    cmocka_unit_test(
		test_a_transaction_fails_its_destination_only_when_nothing_escaped),
	    cmocka_unit_test(
		test_a_recipient_deferred_again_proves_nothing_unless_the_store_is_quiet),
	};

	return cmocka_run_group_tests_name("queue/verdict", tests, NULL, NULL);
}
