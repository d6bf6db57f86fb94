/* Unit tests for ctl/ctl_proto.c: the pure helpers mxspoolctl and the
 * control socket share (age buckets, human sizes and ages). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/ctl_proto.h"

static void
test_age_buckets_double_from_five_minutes(void **state)
{
	(void)state;
	assert_int_equal(ctl_age_bucket(-5), 0);
	assert_int_equal(ctl_age_bucket(0), 0);
	assert_int_equal(ctl_age_bucket(299), 0);
	assert_int_equal(ctl_age_bucket(300), 1);
	assert_int_equal(ctl_age_bucket(599), 1);
	assert_int_equal(ctl_age_bucket(600), 2);
	assert_int_equal(ctl_age_bucket(1280 * 60 - 1), 8);
	assert_int_equal(ctl_age_bucket(1280 * 60), 9);
	assert_int_equal(ctl_age_bucket(INT64_MAX), 9);
	assert_string_equal(ctl_age_bucket_label(0), "5m");
	assert_string_equal(ctl_age_bucket_label(8), "1280m");
	assert_string_equal(ctl_age_bucket_label(9), "1280m+");
	assert_string_equal(ctl_age_bucket_label(10), "?");
	assert_string_equal(ctl_age_bucket_label(-1), "?");
}

static void
test_ages_and_sizes_read_short(void **state)
{
	char b[32];

	(void)state;
	ctl_fmt_age(-3, b, sizeof(b));
	assert_string_equal(b, "0s");
	ctl_fmt_age(42, b, sizeof(b));
	assert_string_equal(b, "42s");
	ctl_fmt_age(12 * 60 + 5, b, sizeof(b));
	assert_string_equal(b, "12m");
	ctl_fmt_age(3 * 3600 + 5 * 60, b, sizeof(b));
	assert_string_equal(b, "3h05m");
	ctl_fmt_age(2 * 86400 + 4 * 3600, b, sizeof(b));
	assert_string_equal(b, "2d04h");
	ctl_fmt_size(512, b, sizeof(b));
	assert_string_equal(b, "512");
	ctl_fmt_size(10445, b, sizeof(b));
	assert_string_equal(b, "10.2K");
	ctl_fmt_size(3565158, b, sizeof(b));
	assert_string_equal(b, "3.4M");
	ctl_fmt_size(UINT64_MAX, b, sizeof(b));
	assert_non_null(strchr(b, 'T'));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_age_buckets_double_from_five_minutes),
	    cmocka_unit_test(test_ages_and_sizes_read_short),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
