/* Unit tests for relay/client_proto.c: replies, enhanced status codes, EHLO
 * keywords, MAIL/RCPT commands and dot-stuffing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/xmem.h"
#include "relay/client_int.h"

static void
add(struct client_reply *r, const char *line)
{
	assert_int_equal(client_reply_add(r, line, strlen(line)), 0);
}

static void
test_reply_reads_a_single_line(void **state)
{
	struct client_reply r;
	char dsn[12];
	char *text;

	(void)state;
	client_reply_init(&r);
	add(&r, "250 2.1.0 Ok");
	assert_true(r.done);
	assert_int_equal(r.code, 250);
	client_reply_dsn(&r, dsn, sizeof(dsn));
	assert_string_equal(dsn, "2.1.0");
	text = client_reply_text(&r);
	assert_string_equal(text, "250 2.1.0 Ok");
	free(text);
	client_reply_fini(&r);
}

static void
test_reply_joins_continuation_lines(void **state)
{
	struct client_reply r;
	char *text;

	(void)state;
	client_reply_init(&r);
	add(&r, "550-5.7.1 first");
	assert_false(r.done);
	add(&r, "550-5.7.1 second");
	add(&r, "550 5.7.1 last");
	assert_true(r.done);
	assert_int_equal(r.nlines, 3);
	text = client_reply_text(&r);
	assert_string_equal(text, "550 5.7.1 first 5.7.1 second 5.7.1 last");
	free(text);
	client_reply_fini(&r);
}

static void
test_reply_takes_a_bare_code_as_last_line(void **state)
{
	struct client_reply r;
	char dsn[12];

	(void)state;
	client_reply_init(&r);
	add(&r, "354");
	assert_true(r.done);
	client_reply_dsn(&r, dsn, sizeof(dsn));
	assert_string_equal(dsn, "3.0.0");
	client_reply_fini(&r);
}

static void
test_reply_rejects_malformed_lines(void **state)
{
	static const char *bad[] = {"", "25", "250x", "abc def", "150 too low",
	    "650 too high", "2a0 x", "250\tx"};
	struct client_reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		client_reply_init(&r);
		assert_int_equal(
		    client_reply_add(&r, bad[i], strlen(bad[i])), -1);
		client_reply_fini(&r);
	}
}

static void
test_reply_rejects_a_code_change_within_a_reply(void **state)
{
	struct client_reply r;

	(void)state;
	client_reply_init(&r);
	add(&r, "250-first");
	assert_int_equal(client_reply_add(&r, "251 second", 10), -1);
	client_reply_fini(&r);
}

static void
test_reply_rejects_a_line_after_the_last(void **state)
{
	struct client_reply r;

	(void)state;
	client_reply_init(&r);
	add(&r, "250 done");
	assert_int_equal(client_reply_add(&r, "250 more", 8), -1);
	client_reply_fini(&r);
}

static void
test_reply_bounds_its_lines_and_text(void **state)
{
	struct client_reply r;
	char line[CLIENT_LINE_MAX + 10];
	char *text;

	(void)state;
	client_reply_init(&r);
	memset(line, 'x', sizeof(line));
	memcpy(line, "250-", 4);
	for (int i = 0; i < CLIENT_REPLY_LINES + 20; i++)
		assert_int_equal(client_reply_add(&r, line, 600), 0);
	assert_int_equal(r.nlines, CLIENT_REPLY_LINES);
	assert_int_equal(r.nextra, 20);
	line[3] = ' ';
	assert_int_equal(client_reply_add(&r, line, sizeof(line)), -1);
	assert_int_equal(client_reply_add(&r, line, 10), 0);
	assert_true(r.done);
	text = client_reply_text(&r);
	assert_true(strlen(text) < CLIENT_TEXT_MAX);
	free(text);
	client_reply_fini(&r);
}

static void
test_reply_text_hides_control_characters(void **state)
{
	struct client_reply r;
	char *text;

	(void)state;
	client_reply_init(&r);
	assert_int_equal(client_reply_add(&r, "550 a\x01\x1b[31mb", 13), 0);
	text = client_reply_text(&r);
	assert_string_equal(text, "550 a  [31mb");
	free(text);
	client_reply_fini(&r);
}

static void
test_esc_must_match_the_reply_class(void **state)
{
	char dsn[12];

	(void)state;
	assert_true(client_parse_esc(550, "5.1.1 no", dsn, sizeof(dsn)));
	assert_string_equal(dsn, "5.1.1");
	assert_true(client_parse_esc(452, "4.2.2", dsn, sizeof(dsn)));
	assert_string_equal(dsn, "4.2.2");
	assert_true(client_parse_esc(250, "2.123.456 x", dsn, sizeof(dsn)));
	assert_string_equal(dsn, "2.123.456");
	assert_false(client_parse_esc(550, "4.1.1 no", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "5.1 no", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "5.1.1234 no", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "5.1.1x no", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "5..1 no", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "no code", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "", dsn, sizeof(dsn)));
	assert_false(client_parse_esc(550, "5.1.1", dsn, 4));
}

static void
test_reply_dsn_falls_back_to_the_class(void **state)
{
	struct client_reply r;
	char dsn[12];

	(void)state;
	client_reply_init(&r);
	add(&r, "451 try later");
	client_reply_dsn(&r, dsn, sizeof(dsn));
	assert_string_equal(dsn, "4.0.0");
	client_reply_fini(&r);
	add(&r, "550-no code here");
	add(&r, "550 5.7.1 but here");
	client_reply_dsn(&r, dsn, sizeof(dsn));
	assert_string_equal(dsn, "5.7.1");
	client_reply_fini(&r);
}

static void
test_ehlo_finds_keywords_and_size(void **state)
{
	struct client_reply r;
	uint64_t size = 1;
	unsigned ext;

	(void)state;
	client_reply_init(&r);
	add(&r, "250-mx.example.com greets PIPELINING");
	add(&r, "250-pipelining");
	add(&r, "250-SIZE 10240000");
	add(&r, "250-8BITMIME");
	add(&r, "250-STARTTLS");
	add(&r, "250-DSN");
	add(&r, "250-ENHANCEDSTATUSCODES");
	add(&r, "250-CHUNKING");
	add(&r, "250-BINARYMIMEX");
	add(&r, "250 SMTPUTF8");
	ext = client_ehlo_parse(&r, &size);
	assert_int_equal(ext, CLIENT_EXT_PIPELINING | CLIENT_EXT_SIZE |
				  CLIENT_EXT_8BITMIME | CLIENT_EXT_STARTTLS |
				  CLIENT_EXT_DSN | CLIENT_EXT_ENHANCED |
				  CLIENT_EXT_CHUNKING | CLIENT_EXT_SMTPUTF8);
	assert_int_equal(size, 10240000);
	client_reply_fini(&r);
}

static void
test_ehlo_ignores_the_greeting_line_and_odd_sizes(void **state)
{
	struct client_reply r;
	uint64_t size = 1;

	(void)state;
	client_reply_init(&r);
	add(&r, "250-STARTTLS");
	add(&r, "250 SIZE");
	assert_int_equal(client_ehlo_parse(&r, &size), CLIENT_EXT_SIZE);
	assert_int_equal(size, 0);
	client_reply_fini(&r);
	add(&r, "250-x");
	add(&r, "250 SIZE 12abc");
	client_ehlo_parse(&r, &size);
	assert_int_equal(size, 0);
	client_reply_fini(&r);
}

static void
check_stuff(const char *in, size_t inlen, const char *want)
{
	size_t n;
	char *out = client_dot_stuff(in, inlen, &n);

	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	free(out);
}

static void
test_dot_stuffing_doubles_leading_dots(void **state)
{
	(void)state;
	check_stuff("a\r\n", 3, "a\r\n.\r\n");
	check_stuff(".a\r\n", 4, "..a\r\n.\r\n");
	check_stuff(".\r\n", 3, "..\r\n.\r\n");
	check_stuff("a\r\n.\r\n..b\r\n", 11, "a\r\n..\r\n...b\r\n.\r\n");
	check_stuff("a.b\r\n", 5, "a.b\r\n.\r\n");
}

static void
test_dot_stuffing_only_counts_crlf_as_a_line_end(void **state)
{
	(void)state;
	check_stuff("a\n.b\r\n", 6, "a\n.b\r\n.\r\n");
	check_stuff("a\r.b\r\n", 6, "a\r.b\r\n.\r\n");
}

static void
test_dot_stuffing_ends_an_unended_last_line(void **state)
{
	(void)state;
	check_stuff("a\r\nb", 4, "a\r\nb\r\n.\r\n");
	check_stuff("a\r", 2, "a\r\r\n.\r\n");
	check_stuff(".", 1, "..\r\n.\r\n");
	check_stuff("", 0, ".\r\n");
}

static void
test_mail_cmd_adds_only_offered_parameters(void **state)
{
	struct client_msg m = {.sender = "a@b.example",
	    .body = BODY_8BITMIME,
	    .smtputf8 = true,
	    .ret = RET_HDRS,
	    .envid = "X+2B1",
	    .len = 1234};
	char *s;

	(void)state;
	s = client_mail_cmd(&m, m.len, 0);
	assert_string_equal(s, "MAIL FROM:<a@b.example>");
	free(s);
	s = client_mail_cmd(&m, m.len,
	    CLIENT_EXT_SIZE | CLIENT_EXT_8BITMIME | CLIENT_EXT_SMTPUTF8 |
		CLIENT_EXT_DSN);
	assert_string_equal(s, "MAIL FROM:<a@b.example> SIZE=1234 "
			       "BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=X+2B1");
	free(s);
	/* SIZE= is what is sent (a 7-bit conversion is longer), and a hop
	 * without 8BITMIME or SMTPUTF8 gets neither parameter. */
	s = client_mail_cmd(&m, 1700, CLIENT_EXT_SIZE);
	assert_string_equal(s, "MAIL FROM:<a@b.example> SIZE=1700");
	free(s);
	m.sender = "";
	m.body = BODY_BINARYMIME;
	m.ret = RET_FULL;
	m.envid = NULL;
	m.smtputf8 = false;
	s = client_mail_cmd(&m, m.len, CLIENT_EXT_BINARYMIME | CLIENT_EXT_DSN);
	assert_string_equal(s, "MAIL FROM:<> BODY=BINARYMIME RET=FULL");
	free(s);
	/* A hand-over's first arrival goes only to a peer that offers it. */
	m.arrival = 1764537600;
	s = client_mail_cmd(&m, m.len, CLIENT_EXT_DSN);
	assert_string_equal(s, "MAIL FROM:<> RET=FULL");
	free(s);
	s = client_mail_cmd(&m, m.len, CLIENT_EXT_DSN | CLIENT_EXT_ARRIVAL);
	assert_string_equal(s, "MAIL FROM:<> RET=FULL ARRIVAL=1764537600");
	free(s);
}

static void
test_rcpt_cmd_writes_notify_and_orcpt(void **state)
{
	struct client_rcpt r = {.addr = "u@example.com",
	    .orcpt = "rfc822;o@example.com",
	    .notify = NOTIFY_SUCCESS | NOTIFY_DELAY};
	char *s;

	(void)state;
	s = client_rcpt_cmd(&r, CLIENT_EXT_DSN);
	assert_string_equal(s, "RCPT TO:<u@example.com> NOTIFY=SUCCESS,DELAY "
			       "ORCPT=rfc822;o@example.com");
	free(s);
	s = client_rcpt_cmd(&r, 0);
	assert_string_equal(s, "RCPT TO:<u@example.com>");
	free(s);
	r.notify = NOTIFY_NEVER;
	r.orcpt = NULL;
	s = client_rcpt_cmd(&r, CLIENT_EXT_DSN);
	assert_string_equal(s, "RCPT TO:<u@example.com> NOTIFY=NEVER");
	free(s);
	r.notify = NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY;
	s = client_rcpt_cmd(&r, CLIENT_EXT_DSN);
	assert_string_equal(
	    s, "RCPT TO:<u@example.com> NOTIFY=SUCCESS,FAILURE,DELAY");
	free(s);
}

static void
check_orcpt(const char *in, const char *want)
{
	char *s = client_orcpt_7bit(in);

	if (want == NULL)
		assert_null(s);
	else
		assert_string_equal(s, want);
	free(s);
}

static void
test_orcpt_7bit_uses_utf8_addr_xtext_for_non_ascii(void **state)
{
	(void)state;
	/* ASCII ones, and other address types, as they are. */
	check_orcpt("rfc822;o@example.com", "rfc822;o@example.com");
	check_orcpt("rfc822;a+2Bb@example.com", "rfc822;a+2Bb@example.com");
	check_orcpt("RFC822;o@example.com", "RFC822;o@example.com");
	check_orcpt(
	    "utf-8;j\\x{F6}rg@example.com", "utf-8;j\\x{F6}rg@example.com");
	check_orcpt("x400;+C3+B6", "x400;+C3+B6");
	/* RFC 6533 3: an rfc822 xtext that decodes to UTF-8 beyond ASCII
	 * is sent as utf-8-addr-xtext: upper-case hex, no leading zeros,
	 * and "+", "=" and "\\" escaped too. */
	check_orcpt(
	    "rfc822;j+C3+B6rg@example.com", "utf-8;j\\x{F6}rg@example.com");
	check_orcpt("rfc822;+E2+82+AC+2B+5C@ex+C3+A9.com",
	    "utf-8;\\x{20AC}\\x{2B}\\x{5C}@ex\\x{E9}.com");
	check_orcpt(
	    "rfc822;+F0+9F+98+80@example.com", "utf-8;\\x{1F600}@example.com");
	/* Not UTF-8 (Latin-1, an overlong, a surrogate, cut short): left
	 * out, as nothing faithful can be sent. */
	check_orcpt("rfc822;j+F6rg@example.com", NULL);
	check_orcpt("rfc822;+C0+AF@example.com", NULL);
	check_orcpt("rfc822;+ED+A0+80@example.com", NULL);
	check_orcpt("rfc822;a+C3", NULL);
}

static void
test_rcpt_cmd_gives_orcpt_in_7bit_form_without_smtputf8(void **state)
{
	struct client_rcpt r = {
	    .addr = "u@example.com", .orcpt = "rfc822;j+C3+B6rg@example.com"};
	char *s;

	(void)state;
	s = client_rcpt_cmd(&r, CLIENT_EXT_DSN);
	assert_string_equal(s, "RCPT TO:<u@example.com> "
			       "ORCPT=utf-8;j\\x{F6}rg@example.com");
	free(s);
	s = client_rcpt_cmd(&r, CLIENT_EXT_DSN | CLIENT_EXT_SMTPUTF8);
	assert_string_equal(s, "RCPT TO:<u@example.com> "
			       "ORCPT=rfc822;j+C3+B6rg@example.com");
	free(s);
	r.orcpt = "rfc822;j+F6rg@example.com";
	s = client_rcpt_cmd(&r, CLIENT_EXT_DSN);
	assert_string_equal(s, "RCPT TO:<u@example.com>");
	free(s);
}

static void
test_addr_ascii_gives_a_labels_for_a_utf8_domain(void **state)
{
	char *out = (char *)1;

	(void)state;
	assert_int_equal(client_addr_ascii("user@example.com", &out), 0);
	assert_null(out);
	assert_int_equal(client_addr_ascii("u3@b\xc3\xbc"
					   "cher.test",
			     &out),
	    0);
	assert_string_equal(out, "u3@xn--bcher-kva.test");
	free(out);
	assert_int_equal(client_addr_ascii("\"a@b\"@B\xc3\x9c"
					   "CHER.test",
			     &out),
	    0);
	assert_string_equal(out, "\"a@b\"@xn--bcher-kva.test");
	free(out);
	assert_int_equal(
	    client_addr_ascii("j\xc3\xb6rg@example.com", &out), -1);
	assert_null(out);
	assert_int_equal(client_addr_ascii("u@xn--zz.t\xc3\xa9st", &out), -1);
	assert_int_equal(client_addr_ascii("\xc3\xa9", &out), -1);
	assert_int_equal(client_addr_ascii("", &out), 0);
	assert_null(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_reads_a_single_line),
	    cmocka_unit_test(test_reply_joins_continuation_lines),
	    cmocka_unit_test(test_reply_takes_a_bare_code_as_last_line),
	    cmocka_unit_test(test_reply_rejects_malformed_lines),
	    cmocka_unit_test(test_reply_rejects_a_code_change_within_a_reply),
	    cmocka_unit_test(test_reply_rejects_a_line_after_the_last),
	    cmocka_unit_test(test_reply_bounds_its_lines_and_text),
	    cmocka_unit_test(test_reply_text_hides_control_characters),
	    cmocka_unit_test(test_esc_must_match_the_reply_class),
	    cmocka_unit_test(test_reply_dsn_falls_back_to_the_class),
	    cmocka_unit_test(test_ehlo_finds_keywords_and_size),
	    cmocka_unit_test(test_ehlo_ignores_the_greeting_line_and_odd_sizes),
	    cmocka_unit_test(test_dot_stuffing_doubles_leading_dots),
	    cmocka_unit_test(test_dot_stuffing_only_counts_crlf_as_a_line_end),
	    cmocka_unit_test(test_dot_stuffing_ends_an_unended_last_line),
	    cmocka_unit_test(test_mail_cmd_adds_only_offered_parameters),
	    cmocka_unit_test(test_rcpt_cmd_writes_notify_and_orcpt),
	    cmocka_unit_test(
		test_orcpt_7bit_uses_utf8_addr_xtext_for_non_ascii),
	    cmocka_unit_test(
		test_rcpt_cmd_gives_orcpt_in_7bit_form_without_smtputf8),
	    cmocka_unit_test(test_addr_ascii_gives_a_labels_for_a_utf8_domain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
