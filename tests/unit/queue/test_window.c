/* Unit tests for queue/window.c: what a destination reads from the spool,
 * and when a lane is read again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/window.h"

#define LIMIT 100000 /* active_limit: far from every test's in_memory */

/* A destination in state, with nready jobs ready and in_memory messages in
 * a window of LIMIT; now is well after any probe_read_at. */
static struct window_dest
dest(enum dest_state state, size_t nready, size_t in_memory)
{
	struct window_dest d = {
	    .state = state,
	    .nready = nready,
	    .in_memory = in_memory,
	    .limit = LIMIT,
	    .now = 1000000,
	    .probe_read_at = 0,
	};

	return d;
}

/* window_refill's answer, with *n poisoned first so that a path which
 * forgets to set it shows. */
static enum window_read
refill(const struct window_dest *d, size_t *n)
{
	*n = 99999;
	return window_refill(d, n);
}

static void
test_a_destination_backing_off_reads_nothing(void **state)
{
	struct window_dest d = dest(DEST_BACKOFF, 0, 0);
	size_t n;

	(void)state;
	/* Nothing ready and room everywhere: still nothing, its probe reads
	 * for it. */
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	d.probe_read_at = 0;
	d.now = INT64_MAX;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
}

static void
test_a_probing_destination_reads_one_message_only_when_none_is_ready(
    void **state)
{
	struct window_dest d = dest(DEST_PROBING, 0, 0);
	size_t n;

	(void)state;
	assert_int_equal(refill(&d, &n), WINDOW_PROBE);
	assert_int_equal(n, 1);
	/* One ready job is enough for the probe: no second one. */
	d.nready = 1;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	/* Far below half of WINDOW_READY: a probing destination is not
	 * topped up like one that is up. */
	d.nready = 5;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
}

static void
test_a_probing_destination_reads_nothing_before_probe_read_at(void **state)
{
	struct window_dest d = dest(DEST_PROBING, 0, 0);
	size_t n;

	(void)state;
	/* An empty lane asked to wait a second before it is read again. */
	d.probe_read_at = d.now + 1;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	d.now = d.probe_read_at;
	assert_int_equal(refill(&d, &n), WINDOW_PROBE);
	assert_int_equal(n, 1);
	d.now = d.probe_read_at + 5000;
	assert_int_equal(refill(&d, &n), WINDOW_PROBE);
	assert_int_equal(n, 1);
}

static void
test_a_probe_message_is_read_even_when_the_window_is_full(void **state)
{
	struct window_dest d = dest(DEST_PROBING, 0, LIMIT);
	size_t n;

	(void)state;
	/* Without its one message a destination could never recover while
	 * other destinations fill the window. */
	assert_int_equal(refill(&d, &n), WINDOW_PROBE);
	assert_int_equal(n, 1);
	d.in_memory = LIMIT + 50; /* active_limit lowered by a reload */
	assert_int_equal(refill(&d, &n), WINDOW_PROBE);
	assert_int_equal(n, 1);
}

static void
test_an_up_destination_reads_nothing_while_it_has_half_its_ready_jobs(
    void **state)
{
	struct window_dest d = dest(DEST_UP, WINDOW_READY / 2, 0);
	size_t n;

	(void)state;
	/* window.c reads only below half: exactly half reads nothing. */
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	d.nready = WINDOW_READY;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	/* More than WINDOW_READY (jobs released at once after an outage)
	 * must not wrap the unsigned arithmetic into a read. */
	d.nready = WINDOW_READY * 3;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
}

static void
test_an_up_destination_below_half_reads_a_page_at_most(void **state)
{
	struct window_dest d = dest(DEST_UP, WINDOW_READY / 2 - 1, 0);
	size_t n;

	(void)state;
	/* One below half: it tops up, but one page per read. */
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, WINDOW_PAGE);
	d.nready = 0;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, WINDOW_PAGE);
	/* The probe_read_at of a past probe does not hold a fill back. */
	d.probe_read_at = d.now + 60000;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, WINDOW_PAGE);
}

static void
test_a_fill_never_goes_beyond_the_window_limit(void **state)
{
	struct window_dest d = dest(DEST_UP, 0, LIMIT - 1);
	size_t n;

	(void)state;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, 1);
	d.in_memory = LIMIT - 10;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, 10);
	/* The room left is the bound whatever the destination has ready. */
	d.nready = WINDOW_READY / 2 - 1;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, 10);
	/* Room for more than a page: the page is the bound again. */
	d.in_memory = LIMIT - WINDOW_PAGE - 1;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, WINDOW_PAGE);
}

static void
test_a_full_window_still_reads_one_message_for_a_destination_with_none_ready(
    void **state)
{
	struct window_dest d = dest(DEST_UP, 0, LIMIT);
	size_t n;

	(void)state;
	/* No destination starves because others filled the window. */
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, 1);
	/* Over the limit (active_limit lowered by a reload): still one, and
	 * no unsigned wrap of limit - in_memory. */
	d.in_memory = LIMIT + 1000;
	assert_int_equal(refill(&d, &n), WINDOW_FILL);
	assert_int_equal(n, 1);
}

static void
test_a_full_window_reads_nothing_for_a_destination_with_jobs_ready(void **state)
{
	struct window_dest d = dest(DEST_UP, 1, LIMIT);
	size_t n;

	(void)state;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	d.nready = WINDOW_READY / 2 - 1;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
	d.in_memory = LIMIT + 1000;
	assert_int_equal(refill(&d, &n), WINDOW_NONE);
	assert_int_equal(n, 0);
}

static void
test_reread_takes_every_message_again_from_the_start(void **state)
{
	struct window_lane l = {.more = false, .all = false, .wrap_at = 5000};
	bool restart = true;

	(void)state;
	window_lane_reread(&l);
	assert_true(l.more);
	assert_true(l.all);
	/* The pass it starts reads everything: no wrap is pending. */
	assert_int_equal(l.wrap_at, INT64_MAX);
	/* Due at once; the caller moved its cursor itself. */
	assert_true(window_lane_due(&l, 0, &restart));
	assert_false(restart);
}

static void
test_a_lane_with_more_to_read_is_due_without_restarting(void **state)
{
	struct window_lane l = {.more = true, .all = false, .wrap_at = 1000};
	bool restart = true;

	(void)state;
	assert_true(window_lane_due(&l, 0, &restart));
	assert_false(restart);
	/* A wrap that came due in the middle of a pass does not send the
	 * cursor back: it waits for the pass to end. */
	assert_true(window_lane_due(&l, 5000, &restart));
	assert_false(restart);
	assert_true(l.more);
	assert_int_equal(l.wrap_at, 1000);
	/* The pass ends: then the wrap starts over at once. */
	window_lane_page(&l, true, INT64_MAX);
	assert_true(window_lane_due(&l, 5000, &restart));
	assert_true(restart);
}

static void
test_a_read_lane_is_not_due_before_its_wrap(void **state)
{
	struct window_lane l = {.more = false, .all = false, .wrap_at = 5000};
	bool restart = true;

	(void)state;
	assert_false(window_lane_due(&l, 4999, &restart));
	assert_false(restart);
	/* Asking changes nothing. */
	assert_false(l.more);
	assert_int_equal(l.wrap_at, 5000);
	/* No wrap at all: never due by the clock. */
	l.wrap_at = INT64_MAX;
	assert_false(window_lane_due(&l, INT64_MAX - 1, &restart));
	assert_false(restart);
}

static void
test_a_read_lane_restarts_at_its_wrap(void **state)
{
	struct window_lane l = {.more = false, .all = false, .wrap_at = 5000};
	bool restart = false;

	(void)state;
	assert_true(window_lane_due(&l, 5000, &restart));
	assert_true(restart);
	assert_true(l.more);
	assert_int_equal(l.wrap_at, INT64_MAX);
	/* A restart by the clock reads what is due, not everything. */
	assert_false(l.all);
	/* The restart is said once: the pass is now under way. */
	assert_true(window_lane_due(&l, 5000, &restart));
	assert_false(restart);

	/* Late (the timer fired after the wrap) is the same. */
	l.more = false;
	l.wrap_at = 5000;
	assert_true(window_lane_due(&l, 90000, &restart));
	assert_true(restart);
	assert_int_equal(l.wrap_at, INT64_MAX);
}

static void
test_a_page_with_more_after_it_keeps_the_lane_going(void **state)
{
	struct window_lane l = {.more = true, .all = true, .wrap_at = 9000};
	bool restart = true;

	(void)state;
	window_lane_page(&l, false, INT64_MAX);
	assert_true(l.more);
	/* A reread pass stays a reread pass until its end. */
	assert_true(l.all);
	assert_int_equal(l.wrap_at, 9000);
	assert_true(window_lane_due(&l, 0, &restart));
	assert_false(restart);
}

static void
test_the_last_page_ends_the_pass_and_keeps_the_earliest_due(void **state)
{
	struct window_lane l = {.more = true, .all = true, .wrap_at = 9000};
	bool restart = true;

	(void)state;
	/* A message passed over is due before the wrap: it wins. */
	window_lane_page(&l, true, 7000);
	assert_false(l.more);
	assert_false(l.all);
	assert_int_equal(l.wrap_at, 7000);
	assert_false(window_lane_due(&l, 6999, &restart));
	assert_true(window_lane_due(&l, 7000, &restart));
	assert_true(restart);

	/* One due after the wrap: the wrap stays. */
	l = (struct window_lane){.more = true, .all = false, .wrap_at = 5000};
	window_lane_page(&l, true, 7000);
	assert_false(l.more);
	assert_int_equal(l.wrap_at, 5000);

	/* Nothing passed over: the wrap stays, even none. */
	window_lane_page(&l, true, INT64_MAX);
	assert_int_equal(l.wrap_at, 5000);
	l = (struct window_lane){
	    .more = true, .all = true, .wrap_at = INT64_MAX};
	window_lane_page(&l, true, INT64_MAX);
	assert_false(l.more);
	assert_int_equal(l.wrap_at, INT64_MAX);
	assert_false(window_lane_due(&l, INT64_MAX - 1, &restart));
}

static void
test_a_deferred_message_brings_the_wrap_forward_never_back(void **state)
{
	struct window_lane l = {
	    .more = false, .all = false, .wrap_at = INT64_MAX};

	(void)state;
	window_lane_later(&l, 8000);
	assert_int_equal(l.wrap_at, 8000);
	/* A later due must not delay the earlier one. */
	window_lane_later(&l, 9000);
	assert_int_equal(l.wrap_at, 8000);
	window_lane_later(&l, 3000);
	assert_int_equal(l.wrap_at, 3000);
	/* Deferring does not start reading by itself. */
	assert_false(l.more);
	assert_false(l.all);
}

static void
test_an_arrival_is_read_after_the_cursor_and_keeps_the_wrap(void **state)
{
	struct window_lane l = {.more = false, .all = false, .wrap_at = 7000};
	bool restart = true;

	(void)state;
	window_lane_arrived(&l);
	assert_true(l.more);
	assert_false(l.all);
	/* The new id is after every id read: no need to start over... */
	assert_true(window_lane_due(&l, 1000, &restart));
	assert_false(restart);
	/* ...and the deferred message's wrap is not lost. */
	assert_int_equal(l.wrap_at, 7000);
	window_lane_page(&l, true, INT64_MAX);
	assert_false(window_lane_due(&l, 6999, &restart));
	assert_true(window_lane_due(&l, 7000, &restart));
	assert_true(restart);
}

/*
 * A small model of a lane in the spool, read as dest_refill and
 * sched_on_page read it: ids are indexes in arrival order, the cursor is
 * the last index looked at (-1: before the first).
 */
#define NMSG 5

struct lane_model {
	int64_t due[NMSG];
	bool gone[NMSG]; /* delivered: no longer in the lane */
	int cursor;
};

/* Reads up to limit messages after the cursor, as queue_scan does: a
 * pass with all takes every message, else only those due by now. Puts
 * the ids read in got and returns how many. */
static size_t
read_page(struct lane_model *m, struct window_lane *l, int64_t now,
    size_t limit, int got[NMSG])
{
	int64_t next_due = INT64_MAX;
	size_t n = 0;

	for (int i = m->cursor + 1; i < NMSG && n < limit; i++) {
		if (m->gone[i])
			continue;
		m->cursor = i;
		if (!l->all && m->due[i] > now) {
			if (m->due[i] < next_due)
				next_due = m->due[i];
			continue;
		}
		got[n++] = i;
	}
	/* queue_scan says end only when the page was not filled. */
	window_lane_page(l, n < limit, next_due);
	return n;
}

/* The lane's next read, if it has one: the cursor goes back to the
 * start on a restart, as dest_next_lane does. */
static bool
lane_due(struct lane_model *m, struct window_lane *l, int64_t now)
{
	bool restart;

	if (!window_lane_due(l, now, &restart))
		return false;
	if (restart)
		m->cursor = -1;
	return true;
}

static void
test_a_lane_is_read_in_pages_then_again_from_the_start_when_a_deferral_is_due(
    void **state)
{
	/* At start, message 1 is not due for a while: read anyway. */
	struct lane_model m = {.due = {0, 60000, 0, 0, 0}, .cursor = -1};
	struct window_lane l;
	int got[NMSG];

	(void)state;
	window_lane_reread(&l);

	/* Pages of two until the end: every message, due or not. */
	assert_true(lane_due(&m, &l, 0));
	assert_int_equal(read_page(&m, &l, 0, 2, got), 2);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 1);
	assert_true(lane_due(&m, &l, 0));
	assert_int_equal(read_page(&m, &l, 0, 2, got), 2);
	assert_int_equal(got[0], 2);
	assert_int_equal(got[1], 3);
	assert_true(lane_due(&m, &l, 0));
	assert_int_equal(read_page(&m, &l, 0, 2, got), 1);
	assert_int_equal(got[0], 4);
	assert_false(l.more);
	assert_false(l.all);
	assert_false(lane_due(&m, &l, 0));

	/* All delivered but 1, which goes back to the spool deferred. */
	m.gone[0] = m.gone[2] = m.gone[3] = m.gone[4] = true;
	window_lane_later(&l, m.due[1]);
	assert_false(lane_due(&m, &l, 59999));

	/* The timer reaches its due: the lane starts over from the first
	 * id, and the page finds it. */
	assert_true(lane_due(&m, &l, 60000));
	assert_int_equal(m.cursor, -1);
	assert_int_equal(read_page(&m, &l, 60000, 2, got), 1);
	assert_int_equal(got[0], 1);
	assert_false(l.more);
	assert_int_equal(l.wrap_at, INT64_MAX);
	assert_false(lane_due(&m, &l, 120000));
}

static void
test_a_message_passed_over_in_the_last_page_is_read_when_due(void **state)
{
	struct lane_model m = {.due = {0, 60000, 0, 90000, 0}, .cursor = -1};
	struct window_lane l = {.more = false, .all = false, .wrap_at = 60000};
	int got[NMSG];

	(void)state;
	m.gone[0] = m.gone[2] = m.gone[4] = true;
	/* At 60000 the pass reads 1 and passes over 3, due later. */
	assert_true(lane_due(&m, &l, 60000));
	assert_int_equal(read_page(&m, &l, 60000, 2, got), 1);
	assert_int_equal(got[0], 1);
	assert_int_equal(l.wrap_at, 90000);
	m.gone[1] = true;
	assert_false(lane_due(&m, &l, 89999));
	assert_true(lane_due(&m, &l, 90000));
	assert_int_equal(m.cursor, -1);
	assert_int_equal(read_page(&m, &l, 90000, 2, got), 1);
	assert_int_equal(got[0], 3);
}

/* A message passed over on a page before the last is still read when it
 * is due: every page's next_due counts, not the last page's alone. */
static void
test_a_due_time_seen_on_any_page_starts_the_next_pass(void **state)
{
	struct window_lane l = {
	    .more = true, .all = false, .wrap_at = INT64_MAX};
	bool restart = false;

	(void)state;
	window_lane_page(&l, false, 5000);
	assert_true(l.more);
	window_lane_page(&l, true, INT64_MAX);
	assert_false(l.more);
	assert_false(window_lane_due(&l, 4999, &restart));
	assert_true(window_lane_due(&l, 5000, &restart));
	assert_true(restart);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_a_due_time_seen_on_any_page_starts_the_next_pass),
	    cmocka_unit_test(test_a_destination_backing_off_reads_nothing),
	    cmocka_unit_test(
		test_a_probing_destination_reads_one_message_only_when_none_is_ready),
	    cmocka_unit_test(
		test_a_probing_destination_reads_nothing_before_probe_read_at),
	    cmocka_unit_test(
		test_a_probe_message_is_read_even_when_the_window_is_full),
	    cmocka_unit_test(
		test_an_up_destination_reads_nothing_while_it_has_half_its_ready_jobs),
	    cmocka_unit_test(
		test_an_up_destination_below_half_reads_a_page_at_most),
	    cmocka_unit_test(test_a_fill_never_goes_beyond_the_window_limit),
	    cmocka_unit_test(
		test_a_full_window_still_reads_one_message_for_a_destination_with_none_ready),
	    cmocka_unit_test(
		test_a_full_window_reads_nothing_for_a_destination_with_jobs_ready),
	    cmocka_unit_test(
		test_reread_takes_every_message_again_from_the_start),
	    cmocka_unit_test(
		test_a_lane_with_more_to_read_is_due_without_restarting),
	    cmocka_unit_test(test_a_read_lane_is_not_due_before_its_wrap),
	    cmocka_unit_test(test_a_read_lane_restarts_at_its_wrap),
	    cmocka_unit_test(
		test_a_page_with_more_after_it_keeps_the_lane_going),
	    cmocka_unit_test(
		test_the_last_page_ends_the_pass_and_keeps_the_earliest_due),
	    cmocka_unit_test(
		test_a_deferred_message_brings_the_wrap_forward_never_back),
	    cmocka_unit_test(
		test_an_arrival_is_read_after_the_cursor_and_keeps_the_wrap),
	    cmocka_unit_test(
		test_a_lane_is_read_in_pages_then_again_from_the_start_when_a_deferral_is_due),
	    cmocka_unit_test(
		test_a_message_passed_over_in_the_last_page_is_read_when_due),
	};

	return cmocka_run_group_tests_name("queue/window", tests, NULL, NULL);
}
