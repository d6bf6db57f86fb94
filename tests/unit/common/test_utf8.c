/* common/utf8: decoding one character, and RFC 6533 utf-8-addr-xtext. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

static size_t
char_of(const char *s, unsigned long *cp)
{
	return utf8_char((const unsigned char *)s, strlen(s), cp);
}

static void
test_utf8_char_takes_only_rfc_3629(void **state)
{
	unsigned long cp = 0;

	(void)state;
	assert_int_equal(char_of("a", &cp), 1);
	assert_int_equal(cp, 'a');
	assert_int_equal(char_of("\xc3\xa9", &cp), 2);
	assert_int_equal(cp, 0xe9);
	assert_int_equal(char_of("\xe2\x82\xac", &cp), 3);
	assert_int_equal(cp, 0x20ac);
	assert_int_equal(char_of("\xf0\x9f\x98\x80", &cp), 4);
	assert_int_equal(cp, 0x1f600);
	assert_int_equal(char_of("\xc0\xaf", &cp), 0);         /* overlong */
	assert_int_equal(char_of("\xe0\x80\xaf", &cp), 0);     /* overlong */
	assert_int_equal(char_of("\xed\xa0\x80", &cp), 0);     /* surrogate */
	assert_int_equal(char_of("\xf4\x90\x80\x80", &cp), 0); /* > 10FFFF */
	assert_int_equal(char_of("\xc3", &cp), 0);             /* cut short */
	assert_int_equal(char_of("\xc3\x41", &cp), 0);
	assert_int_equal(char_of("\x80", &cp), 0);
	assert_int_equal(char_of("\xff", &cp), 0);
}

static void
test_utf8_addr_xtext_is_rfc_6533(void **state)
{
	const char *a = "ren\xc3\xa9"
			"e+x=y\\z@b\xc3\xbc"
			"cher.example";
	char *x;

	(void)state;
	x = utf8_addr_xtext(a, strlen(a));
	assert_string_equal(
	    x, "ren\\x{E9}e\\x{2B}x\\x{3D}y\\x{5C}z@b\\x{FC}cher.example");
	free(x);
	x = utf8_addr_xtext("a b\x7f", 4);
	assert_string_equal(x, "a\\x{20}b\\x{7F}");
	free(x);
	x = utf8_addr_xtext("\xf0\x9f\x98\x80", 4);
	assert_string_equal(x, "\\x{1F600}");
	free(x);
	assert_null(utf8_addr_xtext("caf\xe9", 4)); /* Latin-1 */
	x = utf8_addr_xtext("", 0);
	assert_string_equal(x, "");
	free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8_char_takes_only_rfc_3629),
	    cmocka_unit_test(test_utf8_addr_xtext_is_rfc_6533),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
