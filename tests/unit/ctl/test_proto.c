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

static void
test_locator_names_the_config_or_its_hash_when_long(void **state)
{
	char a[CTL_LOCATOR_SIZE], b[CTL_LOCATOR_SIZE], path[300];

	(void)state;
	assert_int_equal(ctl_locator_name("/etc/mxspool/mxspool.conf", a),
	    strlen("mxspoold:/etc/mxspool/mxspool.conf"));
	assert_string_equal(a, "mxspoold:/etc/mxspool/mxspool.conf");
	/* The longest that fits: 107 bytes after the leading NUL. */
	memset(path, 'x', sizeof(path));
	path[0] = '/';
	path[107 - 9] = '\0';
	assert_int_equal(ctl_locator_name(path, a), 107);
	assert_memory_equal(a + 9, path, 98);
	path[107 - 9] = 'x';
	path[108 - 9] = '\0';
	assert_int_equal(ctl_locator_name(path, a), 9 + 16);
	assert_memory_equal(a, "mxspoold#", 9);
	/* Another long path, another name; the same path, the same one. */
	path[5] = 'y';
	ctl_locator_name(path, b);
	assert_string_not_equal(a, b);
	path[5] = 'x';
	ctl_locator_name(path, b);
	assert_string_equal(a, b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_age_buckets_double_from_five_minutes),
	    cmocka_unit_test(test_ages_and_sizes_read_short),
	    cmocka_unit_test(
		test_locator_names_the_config_or_its_hash_when_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
