/* Unit tests for queue/guard.c: when a 5xx is suspect, and when trust
 * comes back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "queue/guard.h"

static const struct conf_retry R = {
    .rejection_guard = true,
    .reject_storm_ratio = 0.5,
    .reject_storm_min = 20,
    .reject_storm_window = 600,
};

#define MIN 60000 /* ms */

static void
note(struct guard *g, int64_t now, unsigned ok, unsigned bad)
{
	for (unsigned i = 0; i < ok; i++)
		guard_note(g, &R, now, false);
	for (unsigned i = 0; i < bad; i++)
		guard_note(g, &R, now, true);
}

static void
test_an_unknown_user_at_a_healthy_store_is_not_suspect(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 30, 1);
	assert_false(guard_suspect(&g, &R, 10 * MIN, false));
	/* Even with few verdicts, a 2xx in the window is a sign of health. */
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 1, 1);
	assert_false(guard_suspect(&g, &R, 10 * MIN, false));
}

static void
test_a_known_recipient_is_always_suspect(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 30, 1);
	assert_true(guard_suspect(&g, &R, 10 * MIN, true));
}

static void
test_a_storm_makes_every_5xx_suspect(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 9, 10); /* 19 verdicts: too few to judge... */
	assert_false(guard_storm(&g, &R, 10 * MIN));
	assert_false(guard_suspect(&g, &R, 10 * MIN, false));
	note(&g, 10 * MIN, 0, 1); /* ...20, half of them 5xx: a storm */
	assert_true(guard_storm(&g, &R, 10 * MIN));
	assert_true(guard_suspect(&g, &R, 10 * MIN, false));
}

static void
test_no_2xx_at_all_is_no_sign_of_health(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 0, 1);
	assert_true(guard_suspect(&g, &R, 10 * MIN, false));
}

static void
test_the_window_forgets_old_verdicts(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 0, 40);
	assert_true(guard_storm(&g, &R, 10 * MIN));
	assert_true(guard_storm(&g, &R, 19 * MIN));
	assert_false(guard_storm(&g, &R, 21 * MIN)); /* 11 minutes later */
	/* A slot reused a window later starts from zero. */
	note(&g, 30 * MIN, 25, 0);
	assert_false(guard_storm(&g, &R, 30 * MIN));
	unsigned total, rejected;
	guard_counts(&g, &R, 30 * MIN, &total, &rejected);
	assert_int_equal(total, 25);
	assert_int_equal(rejected, 0);
}

static void
test_a_suspect_destination_holds_every_5xx_until_trusted(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 30, 0);
	g.suspect = true;
	assert_true(guard_suspect(&g, &R, 10 * MIN, false));
	/* A 2xx for a recipient it rejected or knew: trust is back. */
	assert_true(guard_trusts(&g, &R, 10 * MIN, true));
	/* Any 2xx once the storm is over. */
	assert_true(guard_trusts(&g, &R, 10 * MIN, false));
	note(&g, 10 * MIN, 0, 40);
	assert_false(guard_trusts(&g, &R, 10 * MIN, false));
}

static void
test_an_operators_trust_lasts_one_window(void **state)
{
	struct guard g;

	(void)state;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 0, 40);
	g.suspect = true;
	guard_trust(&g, &R, 10 * MIN);
	assert_false(g.suspect);
	assert_false(guard_suspect(&g, &R, 10 * MIN, true));
	assert_false(guard_suspect(&g, &R, 19 * MIN, false));
	assert_true(guard_suspect(&g, &R, 20 * MIN, true));
}

static void
test_the_guard_can_be_switched_off(void **state)
{
	struct conf_retry off = R;
	struct guard g;

	(void)state;
	off.rejection_guard = false;
	memset(&g, 0, sizeof(g));
	note(&g, 10 * MIN, 0, 40);
	g.suspect = true;
	assert_false(guard_suspect(&g, &off, 10 * MIN, true));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_an_unknown_user_at_a_healthy_store_is_not_suspect),
	    cmocka_unit_test(test_a_known_recipient_is_always_suspect),
	    cmocka_unit_test(test_a_storm_makes_every_5xx_suspect),
	    cmocka_unit_test(test_no_2xx_at_all_is_no_sign_of_health),
	    cmocka_unit_test(test_the_window_forgets_old_verdicts),
	    cmocka_unit_test(
		test_a_suspect_destination_holds_every_5xx_until_trusted),
	    cmocka_unit_test(test_an_operators_trust_lasts_one_window),
	    cmocka_unit_test(test_the_guard_can_be_switched_off),
	};

	return cmocka_run_group_tests_name("queue/guard", tests, NULL, NULL);
}
