/* Unit tests for relay/parse.c: commands, addresses, parameters, DATA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/parse.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char reply[PARSE_REPLY_SIZE];

static void
test_split_separates_verb_and_args(void **state)
{
	char a[] = "MAIL FROM:<a@b> SIZE=1", b[] = "QUIT", c[] = "NOOP ";
	char *args;

	(void)state;
	assert_string_equal(parse_split(a, &args), "MAIL");
	assert_string_equal(args, "FROM:<a@b> SIZE=1");
	assert_string_equal(parse_split(b, &args), "QUIT");
	assert_string_equal(args, "");
	assert_string_equal(parse_split(c, &args), "NOOP");
	assert_string_equal(args, "");
}

static void
test_helo_takes_one_word(void **state)
{
	char out[PARSE_HELO_MAX + 1], big[300];

	(void)state;
	assert_int_equal(
	    parse_helo("EHLO", "client.example", out, reply, sizeof(reply)), 0);
	assert_string_equal(out, "client.example");
	assert_int_equal(
	    parse_helo("EHLO", "[192.0.2.1]", out, reply, sizeof(reply)), 0);
	assert_int_equal(parse_helo("EHLO", "", out, reply, sizeof(reply)), -1);
	assert_string_equal(reply, "501 5.5.4 Syntax: EHLO hostname");
	assert_int_equal(
	    parse_helo("HELO", "a b", out, reply, sizeof(reply)), -1);
	assert_string_equal(reply, "501 5.5.4 Syntax: HELO hostname");
	assert_int_equal(
	    parse_helo("HELO", "a\tb", out, reply, sizeof(reply)), -1);
	assert_int_equal(
	    parse_helo("HELO", "caf\xc3", out, reply, sizeof(reply)), -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(
	    parse_helo("EHLO", big, out, reply, sizeof(reply)), -1);
	assert_string_equal(reply, "501 5.5.4 EHLO name too long");
}

static void
test_mail_accepts_plain_null_and_lenient_forms(void **state)
{
	struct parse_mail m;

	(void)state;
	assert_int_equal(
	    parse_mail("FROM:<a@b.example>", &m, reply, sizeof(reply)), 0);
	assert_string_equal(m.addr, "a@b.example");
	assert_false(m.has_size);
	assert_int_equal(parse_mail("from:<>", &m, reply, sizeof(reply)), 0);
	assert_string_equal(m.addr, "");
	/* Postfix tolerates these, and so do we. */
	assert_int_equal(
	    parse_mail("FROM: <a@b.example>", &m, reply, sizeof(reply)), 0);
	assert_string_equal(m.addr, "a@b.example");
	assert_int_equal(
	    parse_mail("FROM:a@b.example SIZE=5", &m, reply, sizeof(reply)), 0);
	assert_string_equal(m.addr, "a@b.example");
	assert_int_equal(m.size, 5);
	assert_int_equal(parse_mail("FROM:<\"john doe\"@b.example>", &m, reply,
			     sizeof(reply)),
	    0);
	assert_string_equal(m.addr, "\"john doe\"@b.example");
	/* A reverse path is not routed through us: @ in quotes is kept. */
	assert_int_equal(parse_mail("FROM:<\"a@b\\\"c\"@d.example>", &m, reply,
			     sizeof(reply)),
	    0);
	assert_string_equal(m.addr, "\"a@b\\\"c\"@d.example");
	assert_int_equal(
	    parse_mail("FROM:<\"a\tb\"@d.example>", &m, reply, sizeof(reply)),
	    -1);
	assert_string_equal(reply, "501 5.1.7 Bad sender address syntax: bad "
				   "character in quoted local part");
	assert_int_equal(
	    parse_mail("FROM:<a@[192.0.2.1]>", &m, reply, sizeof(reply)), 0);
	assert_int_equal(
	    parse_mail("FROM:<a@[IPv6:2001:db8::1]>", &m, reply, sizeof(reply)),
	    0);
}

static void
test_mail_reads_every_parameter(void **state)
{
	struct parse_mail m;

	(void)state;
	assert_int_equal(
	    parse_mail("FROM:<a@b.example> SIZE=12345 BODY=8BITMIME "
		       "RET=HDRS ENVID=QQ+2B314 SMTPUTF8",
		&m, reply, sizeof(reply)),
	    0);
	assert_true(m.has_size);
	assert_int_equal(m.size, 12345);
	assert_int_equal(m.body, BODY_8BITMIME);
	assert_int_equal(m.ret, RET_HDRS);
	assert_true(m.has_envid);
	assert_string_equal(m.envid, "QQ+2B314");
	assert_true(m.smtputf8);
	assert_int_equal(
	    parse_mail("FROM:<> body=7bit ret=full", &m, reply, sizeof(reply)),
	    0);
	assert_int_equal(m.body, BODY_7BIT);
	assert_int_equal(m.ret, RET_FULL);
	/* A SIZE beyond 64 bits saturates, so it is over any limit. */
	assert_int_equal(parse_mail("FROM:<> SIZE=99999999999999999999", &m,
			     reply, sizeof(reply)),
	    0);
	assert_true(m.size == UINT64_MAX);
	/* A peer's first arrival (XMXSPOOL-ARRIVAL); 0 when not given. */
	assert_int_equal(
	    parse_mail("FROM:<> ARRIVAL=1764537600", &m, reply, sizeof(reply)),
	    0);
	assert_true(m.arrival == 1764537600);
	assert_int_equal(
	    parse_mail("FROM:<> SIZE=1", &m, reply, sizeof(reply)), 0);
	assert_true(m.arrival == 0);
}

static void
test_mail_rejects_bad_syntax_and_parameters(void **state)
{
	static const struct {
		const char *args, *want;
	} bad[] = {
	    {"", "501 5.5.4 Syntax: MAIL FROM:<address>"},
	    {"TO:<a@b>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
	    {"FROM:", "501 5.1.7 Bad sender address syntax: bad local part"},
	    {"FROM:<a@b", "501 5.1.7 Bad sender address syntax: bad address"},
	    {"FROM:<a>",
		"501 5.1.7 Bad sender address syntax: domain name required"},
	    {"FROM:<a@>",
		"501 5.1.7 Bad sender address syntax: bad domain name"},
	    {"FROM:<a@-b.c>",
		"501 5.1.7 Bad sender address syntax: bad domain name"},
	    {"FROM:<a@b..c>",
		"501 5.1.7 Bad sender address syntax: bad domain name"},
	    {"FROM:<a..b@c>",
		"501 5.1.7 Bad sender address syntax: bad local part"},
	    {"FROM:<.a@c>",
		"501 5.1.7 Bad sender address syntax: bad local part"},
	    {"FROM:<a@[1.2.3]>",
		"501 5.1.7 Bad sender address syntax: bad address literal"},
	    {"FROM:<a b@c>",
		"501 5.1.7 Bad sender address syntax: domain name required"},
	    {"FROM:<a@b>x", "501 5.1.7 Bad sender address syntax: bad address"},
	    {"FROM:<@x.example:a@b.example>",
		"553 5.1.7 Source routes are not accepted"},
	    {"FROM:<a@b> SIZE", "501 5.5.4 Bad SIZE parameter"},
	    {"FROM:<a@b> SIZE=1x", "501 5.5.4 Bad SIZE parameter"},
	    {"FROM:<a@b> SIZE=123456789012345678901",
		"501 5.5.4 Bad SIZE parameter"},
	    {"FROM:<a@b> BODY=BINARYMIME", "501 5.5.4 Unsupported BODY type"},
	    {"FROM:<a@b> RET=ALL", "501 5.5.4 Bad RET parameter"},
	    {"FROM:<a@b> ENVID=a=b", "501 5.5.4 Bad parameter syntax"},
	    {"FROM:<a@b> ENVID=a+zz", "501 5.5.4 Bad ENVID parameter"},
	    {"FROM:<a@b> ENVID=a+4", "501 5.5.4 Bad ENVID parameter"},
	    {"FROM:<a@b> SMTPUTF8=yes", "501 5.5.4 SMTPUTF8 takes no value"},
	    {"FROM:<a@b> AUTH=<>", "555 5.5.4 Unsupported parameter AUTH"},
	    {"FROM:<a@b> ARRIVAL=0", "501 5.5.4 Bad ARRIVAL parameter"},
	    {"FROM:<a@b> ARRIVAL=-5", "501 5.5.4 Bad ARRIVAL parameter"},
	    {"FROM:<a@b> ARRIVAL=12x", "501 5.5.4 Bad ARRIVAL parameter"},
	    {"FROM:<a@b> ARRIVAL=999999999999",
		"501 5.5.4 Bad ARRIVAL parameter"},
	    {"FROM:<a@b> ARRIVAL", "501 5.5.4 Bad ARRIVAL parameter"},
	    {"FROM:<a@b> ARRIVAL=1 ARRIVAL=2",
		"501 5.5.4 Duplicate parameter ARRIVAL"},
	    {"FROM:<a@b> SIZE=1 SIZE=2", "501 5.5.4 Duplicate parameter SIZE"},
	    {"FROM:<a@b> =x", "501 5.5.4 Bad parameter syntax"},
	    {"FROM:<a@b> SIZE=", "501 5.5.4 Bad parameter syntax"},
	    {"FROM:<\xc3\xa9@b.example>",
		"553 5.6.7 UTF-8 address without SMTPUTF8"},
	    {"FROM:<\xc3@b.example> SMTPUTF8",
		"501 5.1.7 Bad sender address syntax: bad UTF-8"},
	    {"FROM:<\xed\xa0\x80@b.example> SMTPUTF8",
		"501 5.1.7 Bad sender address syntax: bad UTF-8"},
	};
	struct parse_mail m;

	(void)state;
	for (size_t i = 0; i < NELEM(bad); i++) {
		reply[0] = '\0';
		if (parse_mail(bad[i].args, &m, reply, sizeof(reply)) == 0)
			fail_msg("accepted MAIL %s", bad[i].args);
		if (strcmp(reply, bad[i].want) != 0)
			fail_msg("MAIL %s: got '%s', want '%s'", bad[i].args,
			    reply, bad[i].want);
	}
}

static void
test_mail_accepts_utf8_with_smtputf8(void **state)
{
	struct parse_mail m;

	(void)state;
	assert_int_equal(parse_mail("FROM:<J\xc3\xb6rg@b\xc3\xbc"
				    "cher.example> SMTPUTF8",
			     &m, reply, sizeof(reply)),
	    0);
	assert_true(m.eight_bit);
	assert_string_equal(m.addr, "J\xc3\xb6rg@b\xc3\xbc"
				    "cher.example");
}

static void
test_mail_enforces_rfc5321_length_limits(void **state)
{
	char args[600], local[70];
	struct parse_mail m;

	(void)state;
	memset(local, 'a', 65);
	local[65] = '\0';
	snprintf(args, sizeof(args), "FROM:<%s@b.example>", local);
	assert_int_equal(parse_mail(args, &m, reply, sizeof(reply)), -1);
	assert_string_equal(
	    reply, "501 5.1.7 Bad sender address syntax: local part too long");
	local[64] = '\0';
	snprintf(args, sizeof(args), "FROM:<%s@b.example>", local);
	assert_int_equal(parse_mail(args, &m, reply, sizeof(reply)), 0);
	/* 64 + 1 + 4 * 48 = 257 with brackets: over the 256 for a path. */
	snprintf(args, sizeof(args), "FROM:<%s@", local);
	for (int i = 0; i < 47; i++)
		strcat(args, "abc.");
	strcat(args, "abcd>");
	assert_int_equal(parse_mail(args, &m, reply, sizeof(reply)), -1);
	assert_string_equal(
	    reply, "501 5.1.7 Bad sender address syntax: address too long");
}

static void
test_rcpt_accepts_plain_and_returns_parts(void **state)
{
	struct parse_rcpt r;

	(void)state;
	assert_int_equal(parse_rcpt("TO:<User.Name+tag@Example.COM>", false, &r,
			     reply, sizeof(reply)),
	    0);
	assert_string_equal(r.addr, "User.Name+tag@Example.COM");
	assert_string_equal(r.local, "User.Name+tag");
	assert_string_equal(r.domain, "example.com");
	assert_int_equal(r.notify, 0);
	assert_false(r.has_orcpt);
	assert_false(r.postmaster);
}

static void
test_rcpt_keeps_quoted_local_parts_byte_for_byte(void **state)
{
	static const struct {
		const char *args, *addr, *local;
	} good[] = {
	    {"TO:<\"odd user\"@x.test>", "\"odd user\"@x.test", "odd user"},
	    {"TO:<\"odd\\\"q\"@x.test>", "\"odd\\\"q\"@x.test", "odd\"q"},
	    {"TO:<\"back\\\\slash\"@x.test>", "\"back\\\\slash\"@x.test",
		"back\\slash"},
	    /* A quoted plain word stays quoted: the destination decides. */
	    {"to: <\"user\"@X.Test>", "\"user\"@X.Test", "user"},
	    /* Quoted-string = DQUOTE *QcontentSMTP DQUOTE: may be empty. */
	    {"TO:<\"\"@x.test>", "\"\"@x.test", ""},
	    {"TO:<\" \"@x.test>", "\" \"@x.test", " "},
	    {"TO:<\"a..b.\"@x.test>", "\"a..b.\"@x.test", "a..b."},
	    {"TO:<\"<a>,[b];c:\"@x.test>", "\"<a>,[b];c:\"@x.test",
		"<a>,[b];c:"},
	    {"TO:<\"\\a\\ \\~\"@x.test>", "\"\\a\\ \\~\"@x.test", "a ~"},
	    {"TO:\"unbracketed x\"@x.test NOTIFY=NEVER",
		"\"unbracketed x\"@x.test", "unbracketed x"},
	};
	struct parse_rcpt r;

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++) {
		if (parse_rcpt(good[i].args, false, &r, reply, sizeof(reply)) <
		    0)
			fail_msg("refused RCPT %s: %s", good[i].args, reply);
		assert_string_equal(r.addr, good[i].addr);
		assert_string_equal(r.local, good[i].local);
		assert_string_equal(r.domain, "x.test");
	}
}

static void
test_rcpt_quoted_local_part_limits(void **state)
{
	char args[200], local[70];
	struct parse_rcpt r;

	(void)state;
	/* 64 octets as sent, quotes included, is the most. */
	memset(local, 'a', 62);
	local[62] = '\0';
	snprintf(args, sizeof(args), "TO:<\"%s\"@x.test>", local);
	assert_int_equal(parse_rcpt(args, false, &r, reply, sizeof(reply)), 0);
	assert_int_equal(strlen(r.local), 62);
	local[60] = '\\'; /* a backslash counts too */
	snprintf(args, sizeof(args), "TO:<\"%s\"@x.test>", local);
	assert_int_equal(parse_rcpt(args, false, &r, reply, sizeof(reply)), 0);
	assert_int_equal(strlen(r.local), 61);
	local[60] = 'a';
	strcat(local, "a");
	snprintf(args, sizeof(args), "TO:<\"%s\"@x.test>", local);
	assert_int_equal(parse_rcpt(args, false, &r, reply, sizeof(reply)), -1);
	assert_string_equal(reply,
	    "501 5.1.3 Bad recipient address syntax: local part too long");
	/* UTF-8 only with SMTPUTF8, and only well formed. */
	assert_int_equal(parse_rcpt("TO:<\"\xc3\xa9 x\"@x.test>", true, &r,
			     reply, sizeof(reply)),
	    0);
	assert_string_equal(r.addr, "\"\xc3\xa9 x\"@x.test");
	assert_int_equal(parse_rcpt("TO:<\"\xc3\xa9 x\"@x.test>", false, &r,
			     reply, sizeof(reply)),
	    -1);
	assert_string_equal(reply, "553 5.6.7 UTF-8 address without SMTPUTF8");
	assert_int_equal(parse_rcpt("TO:<\"\xc3 x\"@x.test>", true, &r, reply,
			     sizeof(reply)),
	    -1);
	assert_string_equal(
	    reply, "501 5.1.3 Bad recipient address syntax: bad UTF-8");
}

static void
test_rcpt_refuses_malformed_quoted_local_parts(void **state)
{
	static const struct {
		const char *args, *want;
	} bad[] = {
	    {"TO:<\"abc@x.test>", "unterminated quoted local part"},
	    {"TO:<\"abc", "unterminated quoted local part"},
	    {"TO:<\"abc\\", "unterminated quoted local part"},
	    {"TO:<\"abc\\\"@x.test>", "unterminated quoted local part"},
	    {"TO:<\"a\tb\"@x.test>", "bad character in quoted local part"},
	    {"TO:<\"a\x01\"@x.test>", "bad character in quoted local part"},
	    {"TO:<\"a\x7f\"@x.test>", "bad character in quoted local part"},
	    {"TO:<\"a\\\t\"@x.test>", "bad character in quoted local part"},
	    {"TO:<\"a\\\xc3\xa9\"@x.test>",
		"bad character in quoted local part"},
	    {"TO:<\"a\"b@x.test>", "domain name required"},
	    {"TO:<a\"b\"@x.test>", "domain name required"},
	    {"TO:<\"a\".b@x.test>", "domain name required"},
	    {"TO:<\"a\"@x.test", "bad address"},
	};
	char want[PARSE_REPLY_SIZE];
	struct parse_rcpt r;

	(void)state;
	for (size_t i = 0; i < NELEM(bad); i++) {
		reply[0] = '\0';
		if (parse_rcpt(bad[i].args, true, &r, reply, sizeof(reply)) ==
		    0)
			fail_msg("accepted RCPT %s", bad[i].args);
		snprintf(want, sizeof(want),
		    "501 5.1.3 Bad recipient address syntax: %s", bad[i].want);
		if (strcmp(reply, want) != 0)
			fail_msg("RCPT %s: got '%s', want '%s'", bad[i].args,
			    reply, want);
	}
}

static void
test_rcpt_takes_postmaster_without_a_domain(void **state)
{
	static const char *good[] = {"TO:<Postmaster>", "TO:<postmaster>",
	    "TO:<POSTMASTER>", "to:<pOstMaster> NOTIFY=NEVER",
	    "TO: <Postmaster>", "TO:Postmaster"};
	static const struct {
		const char *args, *want;
	} bad[] = {
	    {"TO:<\"Postmaster\">",
		"501 5.1.3 Bad recipient address syntax: domain name required"},
	    {"TO:<postmasters>",
		"501 5.1.3 Bad recipient address syntax: domain name required"},
	    {"TO:<abuse>",
		"501 5.1.3 Bad recipient address syntax: domain name required"},
	    {"TO:<post.master>",
		"501 5.1.3 Bad recipient address syntax: domain name required"},
	    {"TO:<Postmaster x>",
		"501 5.1.3 Bad recipient address syntax: bad address"},
	    {"TO:<Postmaster@>",
		"501 5.1.3 Bad recipient address syntax: bad domain name"},
	    {"TO:<@a.example:Postmaster>",
		"553 5.1.3 Source routes are not accepted"},
	};
	struct parse_rcpt r;
	struct parse_mail m;

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++) {
		if (parse_rcpt(good[i], false, &r, reply, sizeof(reply)) < 0)
			fail_msg("refused RCPT %s: %s", good[i], reply);
		assert_true(r.postmaster);
		assert_string_equal(r.domain, "");
		assert_int_equal(strcasecmp(r.addr, "postmaster"), 0);
	}
	assert_int_equal(
	    parse_rcpt("TO:<PostMaster>", false, &r, reply, sizeof(reply)), 0);
	assert_string_equal(r.addr, "PostMaster"); /* as given, for the log */
	assert_int_equal(parse_rcpt("TO:<Postmaster@Example.com>", false, &r,
			     reply, sizeof(reply)),
	    0);
	assert_false(r.postmaster);
	assert_string_equal(r.domain, "example.com");
	for (size_t i = 0; i < NELEM(bad); i++) {
		reply[0] = '\0';
		if (parse_rcpt(bad[i].args, false, &r, reply, sizeof(reply)) ==
		    0)
			fail_msg("accepted RCPT %s", bad[i].args);
		if (strcmp(reply, bad[i].want) != 0)
			fail_msg("RCPT %s: got '%s', want '%s'", bad[i].args,
			    reply, bad[i].want);
	}
	/* RFC 5321 asks it of RCPT only: a sender needs a domain. */
	assert_int_equal(
	    parse_mail("FROM:<Postmaster>", &m, reply, sizeof(reply)), -1);
	assert_string_equal(
	    reply, "501 5.1.7 Bad sender address syntax: domain name required");
}

static void
test_rcpt_reads_dsn_parameters(void **state)
{
	struct parse_rcpt r;

	(void)state;
	assert_int_equal(parse_rcpt("TO:<a@example.com> NOTIFY=SUCCESS,delay "
				    "ORCPT=rfc822;a+40example.com",
			     false, &r, reply, sizeof(reply)),
	    0);
	assert_int_equal(r.notify, NOTIFY_SUCCESS | NOTIFY_DELAY);
	assert_true(r.has_orcpt);
	assert_string_equal(r.orcpt, "rfc822;a+40example.com");
	assert_int_equal(parse_rcpt("TO:<a@example.com> NOTIFY=NEVER", false,
			     &r, reply, sizeof(reply)),
	    0);
	assert_int_equal(r.notify, NOTIFY_NEVER);
}

static void
test_rcpt_refuses_relay_tricks_and_bad_syntax(void **state)
{
	static const struct {
		const char *args, *want;
	} bad[] = {
	    {"TO:<@relay.example:user@example.com>",
		"553 5.1.3 Source routes are not accepted"},
	    {"TO:<@a.example,@b.example:user@example.com>",
		"553 5.1.3 Source routes are not accepted"},
	    {"TO:<user%other.example@example.com>",
		"553 5.1.3 % and ! in addresses are not accepted"},
	    {"TO:<other.example!user@example.com>",
		"553 5.1.3 % and ! in addresses are not accepted"},
	    {"TO:<\"user@other.example\"@example.com>",
		"553 5.1.3 @, % and ! in quoted local parts are not accepted"},
	    {"TO:<\"user%other\"@example.com>",
		"553 5.1.3 @, % and ! in quoted local parts are not accepted"},
	    {"TO:<\"other!user\"@example.com>",
		"553 5.1.3 @, % and ! in quoted local parts are not accepted"},
	    {"TO:<\"user\\@other\"@example.com>",
		"553 5.1.3 @, % and ! in quoted local parts are not accepted"},
	    {"TO:<\"@other:user\"@example.com>",
		"553 5.1.3 @, % and ! in quoted local parts are not accepted"},
	    {"TO:<user@[192.0.2.1]>",
		"553 5.1.3 Address literals are not accepted"},
	    {"TO:<>", "501 5.1.3 Bad recipient address syntax: empty address"},
	    {"TO:<user>",
		"501 5.1.3 Bad recipient address syntax: domain name required"},
	    {"TO:<@a.example>",
		"501 5.1.3 Bad recipient address syntax: bad source route"},
	    {"TO:<a@example.com",
		"501 5.1.3 Bad recipient address syntax: bad address"},
	    {"TO:<a@example.com> NOTIFY=NEVER,SUCCESS",
		"501 5.5.4 Bad NOTIFY parameter"},
	    {"TO:<a@example.com> NOTIFY=SOMETIMES",
		"501 5.5.4 Bad NOTIFY parameter"},
	    {"TO:<a@example.com> NOTIFY=SUCCESS,",
		"501 5.5.4 Bad NOTIFY parameter"},
	    {"TO:<a@example.com> NOTIFY", "501 5.5.4 Bad NOTIFY parameter"},
	    {"TO:<a@example.com> ORCPT=a@example.com",
		"501 5.5.4 Bad ORCPT parameter"},
	    {"TO:<a@example.com> ORCPT=rfc822;",
		"501 5.5.4 Bad ORCPT parameter"},
	    {"TO:<a@example.com> ORCPT=rfc822;a+4",
		"501 5.5.4 Bad ORCPT parameter"},
	    {"TO:<a@example.com> SIZE=1",
		"555 5.5.4 Unsupported parameter SIZE"},
	    {"TO:<a@example.com> NOTIFY=DELAY NOTIFY=DELAY",
		"501 5.5.4 Duplicate parameter NOTIFY"},
	    {"TO:<\xc3\xa9@example.com>",
		"553 5.6.7 UTF-8 address without SMTPUTF8"},
	    {"FROM:<a@example.com>", "501 5.5.4 Syntax: RCPT TO:<address>"},
	};
	struct parse_rcpt r;

	(void)state;
	for (size_t i = 0; i < NELEM(bad); i++) {
		reply[0] = '\0';
		if (parse_rcpt(bad[i].args, false, &r, reply, sizeof(reply)) ==
		    0)
			fail_msg("accepted RCPT %s", bad[i].args);
		if (strcmp(reply, bad[i].want) != 0)
			fail_msg("RCPT %s: got '%s', want '%s'", bad[i].args,
			    reply, bad[i].want);
	}
}

static void
test_rcpt_accepts_utf8_in_smtputf8_transactions(void **state)
{
	struct parse_rcpt r;

	(void)state;
	assert_int_equal(parse_rcpt("TO:<\xc3\xa9@example.com>", true, &r,
			     reply, sizeof(reply)),
	    0);
	assert_string_equal(r.local, "\xc3\xa9");
}

static void
test_bdat_reads_size_and_last(void **state)
{
	static const struct {
		const char *args;
		uint64_t size;
		bool last;
	} good[] = {
	    {"100", 100, false},
	    {"0 LAST", 0, true},
	    {"0", 0, false},
	    {"7 last", 7, true},
	    {"7 LaSt", 7, true},
	    {"3  LAST", 3, true},
	    {" 3 LAST", 3, true},
	    {"003", 3, false},
	    {"0000000000000000000000000000003 LAST", 3, true},
	    {"18446744073709551615", UINT64_MAX, false},
	};
	uint64_t n;
	bool last;

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++) {
		if (parse_bdat(good[i].args, &n, &last, reply, sizeof(reply)) !=
		    PARSE_BDAT_OK)
			fail_msg("refused BDAT %s", good[i].args);
		assert_true(n == good[i].size);
		assert_int_equal(last, good[i].last);
	}
}

static void
test_bdat_tells_an_unknown_size_from_bad_words_after_it(void **state)
{
	/* Without a size the chunk cannot be skipped. */
	static const char *nosize[] = {"", "x", "-3 LAST", "+3", "1x", "3,5",
	    "LAST", "18446744073709551616", "99999999999999999999",
	    "123456789012345678901234567890"};
	/* The size is known: the chunk can be read past. */
	static const struct {
		const char *args;
		uint64_t size;
	} badarg[] = {
	    {"3 LAST EXTRA", 3},
	    {"1 FIRST", 1},
	    {"1 LASTX", 1},
	    {"3 3", 3},
	    {"5 LAST LAST", 5},
	};
	uint64_t n;
	bool last;

	(void)state;
	for (size_t i = 0; i < NELEM(nosize); i++) {
		if (parse_bdat(nosize[i], &n, &last, reply, sizeof(reply)) !=
		    PARSE_BDAT_NOSIZE)
			fail_msg("BDAT %s: not a missing size", nosize[i]);
		assert_string_equal(
		    reply, "501 5.5.4 Syntax: BDAT size [LAST]");
	}
	for (size_t i = 0; i < NELEM(badarg); i++) {
		if (parse_bdat(badarg[i].args, &n, &last, reply,
			sizeof(reply)) != PARSE_BDAT_BADARG)
			fail_msg("BDAT %s: not a bad argument", badarg[i].args);
		assert_true(n == badarg[i].size);
		assert_false(last);
		assert_string_equal(
		    reply, "501 5.5.4 Syntax: BDAT size [LAST]");
	}
}

/* Feeds in to a fresh decoder in pieces of step bytes. */
static size_t
decode(
    const char *in, size_t len, size_t step, struct parse_data *d, bool *done)
{
	size_t used = 0;

	*done = false;
	while (used < len && !*done) {
		size_t n = len - used < step ? len - used : step;
		used += parse_data_feed(d, in + used, n, done);
	}
	return used;
}

static void
test_data_unstuffs_dots_and_ends_only_at_crlf_dot_crlf(void **state)
{
	static const char in[] = "Subject: x\r\n\r\n..leading dot\r\n.\r\n"
				 "MAIL FROM:<a@b>\r\n";
	size_t steps[] = {1, 2, 3, 7, sizeof(in)};

	(void)state;
	for (size_t k = 0; k < NELEM(steps); k++) {
		struct parse_data d;
		bool done;
		size_t used, len;
		char *out;

		parse_data_init(&d, 1000);
		used = decode(in, sizeof(in) - 1, steps[k], &d, &done);
		assert_true(done);
		out = parse_data_take(&d, &len);
		assert_int_equal(
		    len, strlen("Subject: x\r\n\r\n.leading dot\r\n"));
		assert_memory_equal(
		    out, "Subject: x\r\n\r\n.leading dot\r\n", len);
		assert_int_equal(
		    used, strlen("Subject: x\r\n\r\n..leading dot\r\n.\r\n"));
		free(out);
		parse_data_fini(&d);
	}
}

/* What the buffer will hold is known before it grows (data_memory_limit
 * is checked against it), and it matches what storing does. */
static void
test_data_grown_cap_predicts_the_buffer(void **state)
{
	static char big[40000];
	struct parse_data d;
	bool done;

	(void)state;
	memset(big, 'x', sizeof(big));
	parse_data_init(&d, 50000);
	assert_int_equal(parse_data_grown_cap(&d, 0), 0);
	assert_int_equal(parse_data_grown_cap(&d, 1), 16384);
	assert_int_equal(parse_data_grown_cap(&d, 16385), 32768);
	assert_int_equal(parse_data_grown_cap(&d, 40000), 50000); /* limit */
	assert_int_equal(parse_data_feed(&d, "x", 1, &done), 1);
	assert_int_equal(d.cap, 16384);
	assert_int_equal(parse_data_grown_cap(&d, 16383), 16384); /* fits */
	assert_int_equal(parse_data_grown_cap(&d, 16384), 32768);
	assert_int_equal(
	    parse_data_feed(&d, big, sizeof(big), &done), sizeof(big));
	assert_int_equal(d.cap, parse_data_grown_cap(&d, 0));
	assert_int_equal(d.cap, 50000);
	assert_int_equal(d.len, 40001);
	/* Past the limit nothing more is stored: no growth. */
	assert_int_equal(parse_data_grown_cap(&d, 1000000), 50000);
	parse_data_fini(&d);
}

/* A dropped message is still decoded to its end, counted, and checked for
 * bare newlines, with nothing stored. */
static void
test_data_drop_frees_and_reads_on_to_the_end(void **state)
{
	static const char in[] = "more\r\nbare\nLF\r\n.\r\nNOOP\r\n";
	struct parse_data d;
	bool done;
	size_t len;
	char *out;

	(void)state;
	parse_data_init(&d, 1000);
	assert_int_equal(parse_data_feed(&d, "first\r\n", 7, &done), 7);
	parse_data_drop(&d);
	assert_null(d.buf);
	assert_int_equal(d.cap, 0);
	assert_int_equal(parse_data_grown_cap(&d, 100), 0);
	assert_int_equal(decode(in, sizeof(in) - 1, 3, &d, &done),
	    sizeof(in) - 1 - strlen("NOOP\r\n"));
	assert_true(done);
	assert_int_equal(d.total, 7 + strlen("more\r\nbare\nLF\r\n"));
	assert_int_equal(d.bare_lf, 1);
	out = parse_data_take(&d, &len);
	assert_null(out);
	assert_int_equal(len, 0);
	parse_data_fini(&d);
}

static void
test_data_keeps_empty_and_dotdot_lines(void **state)
{
	static const char in[] = "a\r\n\r\n..\r\n...x\r\n.\r\n";
	static const char want[] = "a\r\n\r\n.\r\n..x\r\n";
	struct parse_data d;
	bool done;
	size_t len;
	char *out;

	(void)state;
	parse_data_init(&d, 1000);
	assert_int_equal(
	    decode(in, sizeof(in) - 1, 1, &d, &done), sizeof(in) - 1);
	assert_true(done);
	out = parse_data_take(&d, &len);
	assert_int_equal(len, sizeof(want) - 1);
	assert_memory_equal(out, want, len);
	assert_int_equal(d.bare_cr + d.bare_lf, 0);
	free(out);
	parse_data_fini(&d);
}

static void
test_data_ends_at_once_for_an_empty_message(void **state)
{
	struct parse_data d;
	bool done;
	size_t len;
	char *out;

	(void)state;
	parse_data_init(&d, 1000);
	assert_int_equal(parse_data_feed(&d, ".\r\nQUIT\r\n", 9, &done), 3);
	assert_true(done);
	out = parse_data_take(&d, &len);
	assert_int_equal(len, 0);
	free(out);
	parse_data_fini(&d);
}

static void
test_data_smuggling_sequences_never_end_the_data(void **state)
{
	static const char *seqs[] = {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n",
	    "\r.\r\n", "\n.\r", "\r\n.\r", "\r\n.\rX"};

	(void)state;
	for (size_t i = 0; i < NELEM(seqs); i++) {
		char in[200];
		struct parse_data d;
		bool done;
		size_t used, n;

		n = (size_t)snprintf(in, sizeof(in),
		    "Subject: x\r\n\r\nbody%sMAIL FROM:<evil@x>\r\n", seqs[i]);
		parse_data_init(&d, 1000);
		used = decode(in, n, 1, &d, &done);
		if (done)
			fail_msg("sequence %zu ended the data", i);
		assert_int_equal(used, n);
		if (d.bare_cr + d.bare_lf == 0)
			fail_msg("sequence %zu not flagged", i);
		/* The real end still ends it. */
		used = decode("\r\n.\r\n", 5, 1, &d, &done);
		assert_true(done);
		parse_data_fini(&d);
	}
}

static void
test_data_stores_at_most_the_limit_but_counts_all(void **state)
{
	struct parse_data d;
	bool done;
	char big[5000];
	size_t len;
	char *out;

	(void)state;
	memset(big, 'x', sizeof(big));
	for (size_t i = 78; i < sizeof(big); i += 80) {
		big[i] = '\r';
		big[i + 1] = '\n';
	}
	parse_data_init(&d, 100);
	decode(big, sizeof(big), 333, &d, &done);
	assert_false(done);
	decode("\r\n.\r\n", 5, 5, &d, &done);
	assert_true(done);
	assert_true(d.total > 5000);
	out = parse_data_take(&d, &len);
	assert_int_equal(len, 100);
	free(out);
	parse_data_fini(&d);
}

static void
test_data_counts_long_lines(void **state)
{
	struct parse_data d;
	char line[1001];
	bool done;

	(void)state;
	memset(line, 'x', sizeof(line));
	parse_data_init(&d, 1 << 20);
	decode(line, 998, 998, &d, &done);
	decode("\r\n", 2, 2, &d, &done);
	assert_int_equal(d.long_lines, 0);
	decode(line, 999, 999, &d, &done);
	decode("\r\n.\r\n", 5, 5, &d, &done);
	assert_true(done);
	assert_int_equal(d.long_lines, 1);
	parse_data_fini(&d);
}

static void
test_bare_newlines_are_found_across_chunks(void **state)
{
	bool cr = false;

	(void)state;
	assert_int_equal(parse_bare_newlines("a\r\nb\r\n", 6, &cr), 0);
	assert_int_equal(parse_bare_newlines("a\r", 2, &cr), 0);
	assert_int_equal(parse_bare_newlines("\nb", 2, &cr), 0);
	assert_int_equal(parse_bare_newlines("a\nb", 3, &cr), 1);
	assert_int_equal(parse_bare_newlines("a\rb", 3, &cr), 1);
	assert_int_equal(parse_bare_newlines("\r", 1, &cr), 0);
	assert_int_equal(parse_bare_newlines("x", 1, &cr), 1);
}

static void
test_bdat_chunks_are_stored_raw_and_checked_for_bare_newlines(void **state)
{
	struct parse_data d;
	size_t len;
	char *out;

	(void)state;
	parse_data_init(&d, 1000);
	parse_data_raw(&d, "a\r\n.\r", 5, false);
	parse_data_raw(&d, "\nb\r\n", 4, false);
	parse_data_raw(&d, "", 0, true);
	assert_int_equal(d.bare_cr + d.bare_lf, 0);
	out = parse_data_take(&d, &len);
	assert_int_equal(len, 9);
	assert_memory_equal(out, "a\r\n.\r\nb\r\n", 9);
	free(out);
	parse_data_fini(&d);

	parse_data_init(&d, 1000);
	parse_data_raw(&d, "a\nb\rc", 5, false);
	assert_int_equal(d.bare_lf, 1);
	assert_int_equal(d.bare_cr, 1);
	parse_data_raw(&d, "x\r", 2, true);
	assert_int_equal(d.bare_cr, 2);
	parse_data_fini(&d);
}

static void
test_received_headers_are_counted_in_the_header_only(void **state)
{
	static const char msg[] = "Received: a\r\n\tcontinued\r\n"
				  "received : b\r\nX-Received: no\r\n"
				  "RECEIVED:c\r\nSubject: s\r\n\r\n"
				  "Received: in the body\r\n";

	(void)state;
	assert_int_equal(parse_count_received(msg, sizeof(msg) - 1), 3);
	assert_int_equal(parse_count_received("", 0), 0);
	assert_int_equal(parse_count_received("Received: x", 11), 1);
}

static void
test_received_header_has_every_field(void **state)
{
	struct parse_trace t = {
	    .helo = "client.example",
	    .addr = "192.0.2.1",
	    .by = "mx.example.net",
	    .protocol = "ESMTPS",
	    .qid = "0ABCDEFGHJKM",
	    .tls = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
	    .rcpt = "user@example.com",
	    .when = 1700000000,
	};
	size_t len;
	char *h;

	(void)state;
	setenv("TZ", "UTC", 1);
	h = parse_received(&t, &len);
	assert_string_equal(h,
	    "Received: from client.example (unknown [192.0.2.1])\r\n"
	    "\tby mx.example.net (mxspool) with ESMTPS id 0ABCDEFGHJKM\r\n"
	    "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 "
	    "bits))\r\n"
	    "\tfor <user@example.com>;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n");
	assert_int_equal(len, strlen(h));
	free(h);
	t.helo = "evil)\r\nX: y";
	t.addr = "2001:db8::1";
	t.tls = NULL;
	t.rcpt = NULL;
	t.protocol = "ESMTP";
	h = parse_received(&t, &len);
	assert_string_equal(h,
	    "Received: from evil???X:?y (unknown [IPv6:2001:db8::1])\r\n"
	    "\tby mx.example.net (mxspool) with ESMTP id 0ABCDEFGHJKM;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n");
	free(h);
	/* A verified PTR name stands where "unknown" did. */
	t.helo = "client.example";
	t.addr = "192.0.2.1";
	t.name = "mail.client.example";
	h = parse_received(&t, &len);
	assert_string_equal(h,
	    "Received: from client.example (mail.client.example "
	    "[192.0.2.1])\r\n"
	    "\tby mx.example.net (mxspool) with ESMTP id 0ABCDEFGHJKM;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n");
	free(h);
	/* The node, in the comment after our name; cleaned like the rest. */
	t.node = "mx2";
	h = parse_received(&t, &len);
	assert_non_null(strstr(h, "\r\n\tby mx.example.net (mxspool node mx2) "
				  "with ESMTP id 0ABCDEFGHJKM;\r\n"));
	free(h);
	t.node = "a)b\r\n";
	h = parse_received(&t, &len);
	assert_non_null(strstr(h, "(mxspool node a?b?\?) with"));
	free(h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_separates_verb_and_args),
	    cmocka_unit_test(test_helo_takes_one_word),
	    cmocka_unit_test(test_mail_accepts_plain_null_and_lenient_forms),
	    cmocka_unit_test(test_mail_reads_every_parameter),
	    cmocka_unit_test(test_mail_rejects_bad_syntax_and_parameters),
	    cmocka_unit_test(test_mail_accepts_utf8_with_smtputf8),
	    cmocka_unit_test(test_mail_enforces_rfc5321_length_limits),
	    cmocka_unit_test(test_rcpt_accepts_plain_and_returns_parts),
	    cmocka_unit_test(test_rcpt_keeps_quoted_local_parts_byte_for_byte),
	    cmocka_unit_test(test_rcpt_quoted_local_part_limits),
	    cmocka_unit_test(test_rcpt_refuses_malformed_quoted_local_parts),
	    cmocka_unit_test(test_rcpt_takes_postmaster_without_a_domain),
	    cmocka_unit_test(test_rcpt_reads_dsn_parameters),
	    cmocka_unit_test(test_rcpt_refuses_relay_tricks_and_bad_syntax),
	    cmocka_unit_test(test_rcpt_accepts_utf8_in_smtputf8_transactions),
	    cmocka_unit_test(test_bdat_reads_size_and_last),
	    cmocka_unit_test(
		test_bdat_tells_an_unknown_size_from_bad_words_after_it),
	    cmocka_unit_test(
		test_data_unstuffs_dots_and_ends_only_at_crlf_dot_crlf),
	    cmocka_unit_test(test_data_keeps_empty_and_dotdot_lines),
	    cmocka_unit_test(test_data_grown_cap_predicts_the_buffer),
	    cmocka_unit_test(test_data_drop_frees_and_reads_on_to_the_end),
	    cmocka_unit_test(test_data_ends_at_once_for_an_empty_message),
	    cmocka_unit_test(test_data_smuggling_sequences_never_end_the_data),
	    cmocka_unit_test(test_data_stores_at_most_the_limit_but_counts_all),
	    cmocka_unit_test(test_data_counts_long_lines),
	    cmocka_unit_test(test_bare_newlines_are_found_across_chunks),
	    cmocka_unit_test(
		test_bdat_chunks_are_stored_raw_and_checked_for_bare_newlines),
	    cmocka_unit_test(
		test_received_headers_are_counted_in_the_header_only),
	    cmocka_unit_test(test_received_header_has_every_field),
	};

	return cmocka_run_group_tests_name("relay/parse", tests, NULL, NULL);
}
