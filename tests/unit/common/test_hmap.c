/* Unit tests for common/hmap.c, against a plain array as the reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/hmap.h"

#define NKEYS 5000

static void
test_hmap_matches_a_reference_under_random_churn(void **state)
{
	static char keys[NKEYS][16];
	static bool present[NKEYS];
	struct hmap *m = hmap_new();
	size_t n = 0;

	(void)state;
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
	srand(7);
	for (int round = 0; round < 200000; round++) {
		int k = rand() % NKEYS;

		if (rand() % 3 == 0) {
			void *v = hmap_del(m, keys[k]);
			assert_ptr_equal(v, present[k] ? keys[k] : NULL);
			if (present[k])
				n--;
			present[k] = false;
		} else {
			void *v = hmap_put(m, keys[k], keys[k]);
			assert_ptr_equal(v, present[k] ? keys[k] : NULL);
			if (!present[k])
				n++;
			present[k] = true;
		}
		assert_int_equal(hmap_count(m), n);
	}
	for (int i = 0; i < NKEYS; i++)
		assert_ptr_equal(hmap_get(m, keys[i]), present[i] ? keys[i] : NULL);

	size_t pos = 0, seen = 0;
	const char *key;
	void *val;
	while (hmap_next(m, &pos, &key, &val)) {
		assert_ptr_equal(key, val);
		seen++;
	}
	assert_int_equal(seen, n);
	hmap_free(m);
}

static void
test_hmap_missing_key_is_null(void **state)
{
	struct hmap *m = hmap_new();

	(void)state;
	assert_null(hmap_get(m, "nope"));
	assert_null(hmap_del(m, "nope"));
	assert_int_equal(hmap_count(m), 0);
	hmap_free(m);
	hmap_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hmap_matches_a_reference_under_random_churn),
	    cmocka_unit_test(test_hmap_missing_key_is_null),
	};

	return cmocka_run_group_tests_name("common/hmap", tests, NULL, NULL);
}
