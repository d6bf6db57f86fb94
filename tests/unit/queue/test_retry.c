/* Unit tests for queue/retry.c: backoff maths and destination states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/retry.h"

static const struct conf_retry R = {
    .initial = 30,
    .multiplier = 2.0,
    .max_interval = 600,
    .jitter = 0.1,
    .max_age = 14 * 86400,
    .warn_after = 86400,
    .probe_interval = 10,
    .recovery_connections = 2,
    .max_connections = 20,
    .max_msgs_per_connection = 100,
};

static void
test_retry_backoff_grows_by_the_multiplier(void **state)
{
	(void)state;
	/* rand01 = 0.5 means no jitter. */
	assert_int_equal(retry_backoff_ms(&R, 1, 0.5), 30000);
	assert_int_equal(retry_backoff_ms(&R, 2, 0.5), 60000);
	assert_int_equal(retry_backoff_ms(&R, 3, 0.5), 120000);
	assert_int_equal(retry_backoff_ms(&R, 5, 0.5), 480000);
}

static void
test_retry_caps_interval_at_max(void **state)
{
	(void)state;
	assert_int_equal(retry_backoff_ms(&R, 6, 0.5), 600000);
	assert_int_equal(retry_backoff_ms(&R, 60, 0.5), 600000);
	assert_int_equal(retry_backoff_ms(&R, 4000000, 0.5), 600000);
}

static void
test_retry_jitter_stays_within_its_fraction(void **state)
{
	(void)state;
	assert_int_equal(retry_backoff_ms(&R, 1, 0.0), 27000);
	assert_true(retry_backoff_ms(&R, 1, 0.999) <= 33000);
	assert_true(retry_backoff_ms(&R, 1, 0.999) > 32900);
}

static void
test_retry_never_backs_off_under_a_second(void **state)
{
	struct conf_retry r = R;

	(void)state;
	r.initial = 0;
	assert_int_equal(retry_backoff_ms(&r, 1, 0.5), 1000);
}

static void
test_failed_destination_backs_off_then_probes_once(void **state)
{
	struct dest_policy p;

	(void)state;
	retry_dest_init(&p, &R, 0);
	assert_int_equal(p.state, DEST_UP);
	assert_int_equal(retry_dest_slots(&p), 2);
	retry_dest_failed(&p, &R, 1000, 0.5);
	assert_int_equal(p.state, DEST_BACKOFF);
	assert_int_equal(retry_dest_slots(&p), 0);
	assert_int_equal(p.next_probe, 31000);
	assert_false(retry_dest_tick(&p, &R, 30999));
	assert_true(retry_dest_tick(&p, &R, 31000));
	assert_int_equal(p.state, DEST_PROBING);
	assert_int_equal(retry_dest_slots(&p), 1);
	/* The probe fails: the next gap doubles. */
	retry_dest_failed(&p, &R, 32000, 0.5);
	assert_int_equal(p.state, DEST_BACKOFF);
	assert_int_equal(p.next_probe, 32000 + 60000);
}

static void
test_a_refused_destination_is_probed_every_second_and_keeps_its_backoff(
    void **state)
{
	struct dest_policy p;

	(void)state;
	retry_dest_init(&p, &R, 0);
	retry_dest_failed(&p, &R, 0, 0.5); /* a timeout: 30 s */
	assert_false(p.refused);
	assert_int_equal(p.next_probe, 30000);
	assert_true(retry_dest_tick(&p, &R, 30000));
	/* The probe is refused: next second, whatever the backoff. */
	retry_dest_refused(&p, 30500);
	assert_true(p.refused);
	assert_int_equal(p.state, DEST_BACKOFF);
	assert_int_equal(p.next_probe, 30500 + RETRY_REFUSED_PROBE_MS);
	assert_true(retry_dest_tick(&p, &R, 31500));
	assert_int_equal(p.state, DEST_PROBING);
	/* Then it answers but is sick: the backoff goes on from where it
	 * was (the second failure: 60 s). */
	retry_dest_failed(&p, &R, 32000, 0.5);
	assert_false(p.refused);
	assert_int_equal(p.next_probe, 32000 + 60000);
	/* Recovery forgets all of it. */
	assert_true(retry_dest_tick(&p, &R, 92000));
	assert_true(retry_dest_succeeded(&p, &R, 93000));
	assert_false(p.refused);
	assert_int_equal(p.failures, 0);
}

static void
test_recovery_releases_and_slow_starts(void **state)
{
	struct dest_policy p;
	int64_t t = 0;

	(void)state;
	retry_dest_init(&p, &R, t);
	retry_dest_failed(&p, &R, t, 0.5);
	retry_dest_tick(&p, &R, t += 30000);
	assert_true(retry_dest_succeeded(&p, &R, t));
	assert_int_equal(p.state, DEST_UP);
	assert_int_equal(p.concurrency, 2);
	assert_int_equal(p.failures, 0);
	/* A second success is not a recovery. */
	assert_false(retry_dest_succeeded(&p, &R, t + 1));
	/* Doubling every probe_interval without trouble, up to the max. */
	assert_false(retry_dest_tick(&p, &R, t + 9999));
	assert_true(retry_dest_tick(&p, &R, t += 10000));
	assert_int_equal(p.concurrency, 4);
	assert_true(retry_dest_tick(&p, &R, t += 10000));
	assert_int_equal(p.concurrency, 8);
	assert_true(retry_dest_tick(&p, &R, t += 10000));
	assert_int_equal(p.concurrency, 16);
	assert_true(retry_dest_tick(&p, &R, t += 10000));
	assert_int_equal(p.concurrency, 20);
	assert_false(retry_dest_tick(&p, &R, t += 10000));
	assert_int_equal(p.concurrency, 20);
}

static void
test_trouble_halves_and_pauses_growth(void **state)
{
	struct dest_policy p;

	(void)state;
	retry_dest_init(&p, &R, 0);
	p.concurrency = 16;
	retry_dest_trouble(&p, 5000);
	assert_int_equal(p.concurrency, 8);
	retry_dest_trouble(&p, 5000);
	retry_dest_trouble(&p, 5000);
	retry_dest_trouble(&p, 5000);
	retry_dest_trouble(&p, 5000);
	assert_int_equal(p.concurrency, 1);
	/* The interval with trouble does not double... */
	assert_false(retry_dest_tick(&p, &R, 15000));
	assert_int_equal(p.concurrency, 1);
	/* ...the next clean one does. */
	assert_true(retry_dest_tick(&p, &R, 25000));
	assert_int_equal(p.concurrency, 2);
}

static void
test_recovery_width_is_capped_by_max_connections(void **state)
{
	struct conf_retry r = R;
	struct dest_policy p;

	(void)state;
	r.recovery_connections = 8;
	r.max_connections = 3;
	retry_dest_init(&p, &r, 0);
	assert_int_equal(retry_dest_slots(&p), 3);
}

static void
test_share_is_the_ceiling_of_the_budget_over_the_nodes(void **state)
{
	(void)state;
	assert_int_equal(retry_share(20, 1), 20);
	assert_int_equal(retry_share(20, 0), 20); /* unset: one node */
	assert_int_equal(retry_share(8, 4), 2);
	assert_int_equal(retry_share(20, 3), 7);
	assert_int_equal(retry_share(21, 20), 2);
	assert_int_equal(retry_share(2, 4), 1);
	assert_int_equal(retry_share(1, 1000), 1); /* never none */
}

/* A node of four uses a quarter of both counts, from recovery to the
 * ceiling of its slow start. */
static void
test_cluster_nodes_split_recovery_and_ceiling(void **state)
{
	struct conf_retry r = R;
	struct dest_policy p;
	int64_t t = 0;

	(void)state;
	r.recovery_connections = 4;
	r.max_connections = 8;
	r.cluster_nodes = 4;
	retry_dest_init(&p, &r, t);
	assert_int_equal(retry_dest_slots(&p), 1);
	for (int i = 0; i < 10; i++) {
		t += r.probe_interval * 1000;
		retry_dest_tick(&p, &r, t);
	}
	assert_int_equal(retry_dest_slots(&p), 2);
	r.cluster_nodes = 3; /* ceil(8 / 3) */
	retry_dest_init(&p, &r, t);
	for (int i = 0; i < 10; i++) {
		t += r.probe_interval * 1000;
		retry_dest_tick(&p, &r, t);
	}
	assert_int_equal(retry_dest_slots(&p), 3);
	/* A reload that adds nodes brings a destination at full width down
	 * to the new share at its next tick, not at its next outage. */
	r.cluster_nodes = 8;
	retry_dest_tick(&p, &r, t + 1);
	assert_int_equal(retry_dest_slots(&p), 1);
}

/* The times are wall-clock: a clock stepped back an hour must not leave a
 * down store unprobed for an hour. */
static void
test_a_clock_stepped_back_does_not_delay_the_probe(void **state)
{
	struct dest_policy p;
	int64_t t = 10000000;

	(void)state;
	retry_dest_init(&p, &R, t);
	retry_dest_failed(&p, &R, t, 0.5);
	assert_int_equal(p.state, DEST_BACKOFF);
	t -= 3600 * 1000; /* an hour back */
	assert_false(retry_dest_tick(&p, &R, t));
	assert_true(p.next_probe <= t + p.interval_ms);
	assert_true(retry_dest_tick(&p, &R, t + p.interval_ms));
	assert_int_equal(p.state, DEST_PROBING);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_a_clock_stepped_back_does_not_delay_the_probe),
	    cmocka_unit_test(test_retry_backoff_grows_by_the_multiplier),
	    cmocka_unit_test(test_retry_caps_interval_at_max),
	    cmocka_unit_test(test_retry_jitter_stays_within_its_fraction),
	    cmocka_unit_test(test_retry_never_backs_off_under_a_second),
	    cmocka_unit_test(
		test_failed_destination_backs_off_then_probes_once),
	    cmocka_unit_test(
		test_a_refused_destination_is_probed_every_second_and_keeps_its_backoff),
	    cmocka_unit_test(test_recovery_releases_and_slow_starts),
	    cmocka_unit_test(test_trouble_halves_and_pauses_growth),
	    cmocka_unit_test(test_recovery_width_is_capped_by_max_connections),
	    cmocka_unit_test(
		test_share_is_the_ceiling_of_the_budget_over_the_nodes),
	    cmocka_unit_test(test_cluster_nodes_split_recovery_and_ceiling),
	};

	return cmocka_run_group_tests_name("queue/retry", tests, NULL, NULL);
}
