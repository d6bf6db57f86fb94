/* Unit tests for queue/qid.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "queue/qid.h"

#define MILLION 1000000

static void
test_qid_is_twelve_safe_characters(void **state)
{
	struct qid_gen g;
	char id[QID_SIZE];

	(void)state;
	qid_gen_init(&g, NULL);
	qid_next(&g, id);
	assert_int_equal(strlen(id), 12);
	assert_true(qid_valid(id));
	for (int i = 0; i < QID_LEN; i++)
		assert_non_null(strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", id[i]));
}

static void
test_a_million_ids_are_unique_and_strictly_ordered(void **state)
{
	struct qid_gen g;
	char prev[QID_SIZE], id[QID_SIZE];

	(void)state;
	/* Strictly increasing as strings implies unique. */
	qid_gen_init(&g, NULL);
	qid_next(&g, prev);
	for (int i = 0; i < MILLION; i++) {
		qid_next(&g, id);
		if (strcmp(prev, id) >= 0)
			fail_msg("id %d: %s after %s", i, id, prev);
		memcpy(prev, id, QID_SIZE);
	}
}

static void
test_ids_stay_above_the_floor_when_the_clock_went_back(void **state)
{
	/* An id from far in the future, as if the clock had been set back. */
	const char *future = "Z00000000000";
	struct qid_gen g;
	char id[QID_SIZE];

	(void)state;
	qid_gen_init(&g, future);
	qid_next(&g, id);
	assert_true(strcmp(id, future) > 0);
	assert_string_equal(id, "Z00000000001");
}

static void
test_qid_time_is_the_creation_time(void **state)
{
	struct qid_gen g;
	char id[QID_SIZE];
	int64_t now = (int64_t)time(NULL) * 1000000, t;

	(void)state;
	qid_gen_init(&g, NULL);
	qid_next(&g, id);
	t = qid_time(id);
	assert_true(t >= now - 2000000 && t <= now + 2000000);
}

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_an_id_for_an_earlier_arrival_carries_its_second(void **state)
{
	struct qid_gen g;
	char id[QID_SIZE], mine[QID_SIZE];
	int64_t then = ((int64_t)time(NULL) - 3 * 86400) * MILLION, t;

	(void)state;
	qid_gen_init(&g, NULL);
	qid_at(&g, then + 123456, id);
	t = qid_time(id);
	assert_true(t >= then && t < then + MILLION);
	assert_true(qid_handed_over(id));
	qid_next(&g, mine);
	assert_false(qid_handed_over(mine));
	/* It sorts among the ids made three days ago, not now. */
	assert_true(strcmp(id, mine) < 0);
}

static void
test_ids_for_earlier_arrivals_are_unique_and_apart_from_ours(void **state)
{
	enum { N = 300000 };
	struct qid_gen g;
	char(*ids)[QID_SIZE] = malloc((size_t)N * QID_SIZE);
	int64_t then = ((int64_t)time(NULL) - 3600) * MILLION;

	(void)state;
	assert_non_null(ids);
	/* One second of arrivals, handed over all at once. */
	qid_gen_init(&g, NULL);
	for (int i = 0; i < N; i++)
		qid_at(&g, then, ids[i]);
	qsort(ids, N, QID_SIZE, cmp_id);
	for (int i = 1; i < N; i++)
		if (strcmp(ids[i - 1], ids[i]) == 0)
			fail_msg("%s twice", ids[i]);
	/* A burst of our own: more than 128 within a microsecond never
	 * reaches the sequence's high half. */
	for (int i = 0; i < N; i++) {
		qid_next(&g, ids[0]);
		if (qid_handed_over(ids[0]))
			fail_msg("id %d, %s, is in qid_at's space", i, ids[0]);
	}
	/* Nor after a floor that is in it. */
	qid_gen_init(&g, "Z000000000Z0");
	assert_true(qid_handed_over("Z000000000Z0"));
	qid_next(&g, ids[0]);
	assert_false(qid_handed_over(ids[0]));
	assert_true(strcmp(ids[0], "Z000000000Z0") > 0);
	free(ids);
}

static void
test_invalid_ids_are_rejected(void **state)
{
	(void)state;
	assert_false(qid_valid(""));
	assert_false(qid_valid("0123456789A"));
	assert_false(qid_valid("0123456789ABC"));
	assert_false(qid_valid("0123456789AI")); /* I is not a digit */
	assert_false(qid_valid("0123456789a0")); /* lower case */
	assert_false(qid_valid("01234567/9AB"));
	assert_true(qid_valid("0123456789AB"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_qid_is_twelve_safe_characters),
	    cmocka_unit_test(test_a_million_ids_are_unique_and_strictly_ordered),
	    cmocka_unit_test(
		test_ids_stay_above_the_floor_when_the_clock_went_back),
	    cmocka_unit_test(test_qid_time_is_the_creation_time),
	    cmocka_unit_test(
		test_an_id_for_an_earlier_arrival_carries_its_second),
	    cmocka_unit_test(
		test_ids_for_earlier_arrivals_are_unique_and_apart_from_ours),
	    cmocka_unit_test(test_invalid_ids_are_rejected),
	};

	return cmocka_run_group_tests_name("queue/qid", tests, NULL, NULL);
}
