/* Unit tests for common/idn.c: the two forms of an international domain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/idn.h"

/* Converts s, which must succeed, and checks the A-label form. */
static void
assert_ascii(const char *s, const char *want)
{
	char out[IDN_NAME_SIZE], why[128] = "";

	if (idn_to_ascii(s, out, sizeof(out), why, sizeof(why)) < 0)
		fail_msg("'%s' refused: %s", s, why);
	assert_string_equal(out, want);
}

/* Converts s, which must fail, and checks the reason has want in it. */
static void
assert_refused(const char *s, const char *want)
{
	char out[IDN_NAME_SIZE] = "x", why[128] = "";

	if (idn_to_ascii(s, out, sizeof(out), why, sizeof(why)) == 0)
		fail_msg("'%s' accepted as '%s'", s, out);
	assert_string_equal(out, "");
	if (strstr(why, want) == NULL)
		fail_msg("'%s': reason '%s' lacks '%s'", s, why, want);
}

static void
test_u_label_in_gives_lower_case_a_labels(void **state)
{
	(void)state;
	assert_ascii("bücher.test", "xn--bcher-kva.test");
	assert_ascii("mail.bücher.test", "mail.xn--bcher-kva.test");
	assert_ascii("bücher.bücher", "xn--bcher-kva.xn--bcher-kva");
	assert_ascii("ΑΒΓ.test", "xn--mxacd.test");
}

static void
test_a_label_in_is_kept_in_lower_case(void **state)
{
	(void)state;
	assert_ascii("xn--bcher-kva.test", "xn--bcher-kva.test");
	assert_ascii("XN--BCHER-KVA.TEST", "xn--bcher-kva.test");
	assert_ascii("Xn--Bcher-Kva.Test", "xn--bcher-kva.test");
}

static void
test_upper_case_u_labels_fold_to_the_same_domain(void **state)
{
	(void)state;
	assert_ascii("BÜCHER.test", "xn--bcher-kva.test");
	assert_ascii("BüCHER.TEST", "xn--bcher-kva.test");
	/* UTS #46 non-transitional: ß stays ß (IDNA2008), not "ss". */
	assert_ascii("faß.de", "xn--fa-hia.de");
	/* An ideographic full stop is a dot (UTS #46 mapping). */
	assert_ascii("bücher\u3002test", "xn--bcher-kva.test");
	/* NFC: u and a combining diaeresis are ü. */
	assert_ascii("bu\u0308cher.test", "xn--bcher-kva.test");
}

static void
test_ascii_names_are_only_lower_cased(void **state)
{
	(void)state;
	assert_ascii("Example.COM", "example.com");
	assert_ascii("mx-2.example.net", "mx-2.example.net");
	assert_ascii("localhost", "localhost");
	/* "--" in the third and fourth places: IDNA refuses it in a U-label,
	 * DNS has always allowed it in a host name. */
	assert_ascii("ab--c.example", "ab--c.example");
}

static void
test_invalid_punycode_is_refused(void **state)
{
	(void)state;
	assert_refused("xn--zz.test", "punycode");
	assert_refused("xn--.test", "punycode");
	assert_refused("mail.xn--abc-123.test", "punycode");
}

static void
test_disallowed_code_points_are_refused(void **state)
{
	(void)state;
	assert_refused("\u2603.test", "disallowed");  /* a snowman */
	assert_refused("xn--n3h.test", "disallowed"); /* the same, encoded */
	assert_refused("a\u200db.test", "context");   /* a bare ZWJ */
	assert_refused("ab--cü.test", "hyphen");
}

static void
test_empty_labels_and_trailing_dots_are_refused(void **state)
{
	(void)state;
	assert_refused("", "empty name");
	assert_refused("a..b", "empty label");
	assert_refused(".a.b", "empty label");
	assert_refused("a.b.", "empty label");
	assert_refused("bücher.test.", "empty label");
	assert_refused("bücher..test", "empty label");
}

static void
test_bad_ascii_labels_are_refused(void **state)
{
	(void)state;
	assert_refused("-a.test", "hyphen");
	assert_refused("a-.test", "hyphen");
	assert_refused("a_b.test", "'_' not allowed");
	assert_refused("a b.test", "' ' not allowed");
	assert_refused("bücher_x.test", "'_' not allowed");
}

static void
test_too_long_labels_and_names_are_refused(void **state)
{
	char s[1200], out[IDN_NAME_SIZE];
	size_t n = 0;

	(void)state;
	/* 63 octets is a label; 64 is not. */
	memset(s, 'a', 63);
	strcpy(s + 63, ".test");
	assert_int_equal(idn_to_ascii(s, out, sizeof(out), NULL, 0), 0);
	memset(s, 'a', 64);
	strcpy(s + 64, ".test");
	assert_refused(s, "63");
	/* 60 a and an ü are 62 octets of UTF-8 but 68 as an A-label: a
	 * label's limit holds for the A-label (RFC 5890 2.3.2.1). */
	memset(s, 'a', 60);
	strcpy(s + 60, "ü.test");
	assert_int_equal(strchr(s, '.') - s, 62);
	assert_refused(s, "63");
	/* 4 labels of 63 and one more: 256 octets, over 253. */
	n = 0;
	for (int i = 0; i < 4; i++) {
		memset(s + n, 'a', 63);
		n += 63;
		s[n++] = '.';
	}
	strcpy(s + n, "bc");
	assert_refused(s, "253");
	/* Any length in is safe. */
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	assert_refused(s, "253");
}

static void
test_a_short_buffer_is_an_error_not_an_overflow(void **state)
{
	char out[8] = "";

	(void)state;
	assert_int_equal(
	    idn_to_ascii("example.com", out, sizeof(out), NULL, 0), -1);
	assert_string_equal(out, "");
	assert_int_equal(idn_to_unicode("bücher.test", out, sizeof(out)), -1);
}

static void
test_unicode_form_for_logs(void **state)
{
	char out[4 * IDN_NAME_SIZE];

	(void)state;
	assert_int_equal(
	    idn_to_unicode("xn--bcher-kva.test", out, sizeof(out)), 0);
	assert_string_equal(out, "bücher.test");
	assert_int_equal(idn_to_unicode("BÜCHER.Test", out, sizeof(out)), 0);
	assert_string_equal(out, "bücher.test");
	assert_int_equal(idn_to_unicode("Example.COM", out, sizeof(out)), 0);
	assert_string_equal(out, "example.com");
	assert_int_equal(idn_to_unicode("xn--zz.test", out, sizeof(out)), -1);
}

static void
test_other_form_is_given_only_where_there_is_one(void **state)
{
	char out[4 * IDN_NAME_SIZE];

	(void)state;
	assert_true(idn_other_form("bücher.test", out, sizeof(out)));
	assert_string_equal(out, "xn--bcher-kva.test");
	assert_true(idn_other_form("XN--BCHER-KVA.test", out, sizeof(out)));
	assert_string_equal(out, "bücher.test");
	assert_false(idn_other_form("example.com", out, sizeof(out)));
	assert_string_equal(out, "");
	assert_false(idn_other_form("xn--zz.test", out, sizeof(out)));
	assert_false(idn_other_form("\u2603.test", out, sizeof(out)));
}

static void
test_equal_and_key_see_both_forms_as_one(void **state)
{
	char buf[IDN_NAME_SIZE];

	(void)state;
	assert_true(idn_equal("bücher.test", "xn--bcher-kva.test"));
	assert_true(idn_equal("XN--BCHER-KVA.TEST", "BÜCHER.test"));
	assert_true(idn_equal("Example.com", "example.COM"));
	assert_false(idn_equal("bücher.test", "bucher.test"));
	assert_false(idn_equal("bücher.test", "xn--bcher-kva.example"));
	/* ASCII comes back as it is, without work. */
	const char *in = "Example.COM";
	assert_ptr_equal(idn_key(in, buf), in);
	assert_string_equal(idn_key("bücher.test", buf), "xn--bcher-kva.test");
	/* An invalid name is its own key and matches no valid name. */
	assert_string_equal(idn_key("\u2603.test", buf), "\u2603.test");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_u_label_in_gives_lower_case_a_labels),
	    cmocka_unit_test(test_a_label_in_is_kept_in_lower_case),
	    cmocka_unit_test(test_upper_case_u_labels_fold_to_the_same_domain),
	    cmocka_unit_test(test_ascii_names_are_only_lower_cased),
	    cmocka_unit_test(test_invalid_punycode_is_refused),
	    cmocka_unit_test(test_disallowed_code_points_are_refused),
	    cmocka_unit_test(test_empty_labels_and_trailing_dots_are_refused),
	    cmocka_unit_test(test_bad_ascii_labels_are_refused),
	    cmocka_unit_test(test_too_long_labels_and_names_are_refused),
	    cmocka_unit_test(test_a_short_buffer_is_an_error_not_an_overflow),
	    cmocka_unit_test(test_unicode_form_for_logs),
	    cmocka_unit_test(test_other_form_is_given_only_where_there_is_one),
	    cmocka_unit_test(test_equal_and_key_see_both_forms_as_one),
	};

	return cmocka_run_group_tests_name("common/idn", tests, NULL, NULL);
}
