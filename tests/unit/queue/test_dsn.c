/*
 * Unit tests for queue/dsn.c: NOTIFY rules, and the notification text
 * against golden files in tests/unit/queue/dsn/ (NAME.ref). After a
 * deliberate change of the text, regenerate them with
 *
 *   DSN_REGEN=1 build/tests/unit/queue/test_dsn
 *
 * and review the diff. DSN_GOLDEN_DIR overrides where they are read from
 * (default: tests/unit/queue/dsn/, relative to the repository root).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/xmem.h"
#include "queue/dsn.h"
#include "queue/envelope.h"

#define ARRIVAL 1700000000LL
#define NOW (ARRIVAL + 3 * 86400 + 3600 + 120)

static const char ORIG[] =
    "Received: from client.example.org ([192.0.2.10])\r\n"
    "\tby mx2.example.net (mxspool) with ESMTP id "
    "0C8A5KZ4M2N1;\r\n"
    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: Sender <sender@example.org>\r\n"
    "To: user@example.com\r\n"
    "Subject: Quarterly report\r\n"
    "Message-ID: <abc123@example.org>\r\n"
    "\r\n"
    "Hello,\r\n"
    "\r\n"
    "the report is attached.\r\n";

/* An envelope like those the spool holds after some failed attempts. */
static struct envelope *
env_make(void)
{
	struct envelope *env = envelope_new();

	strcpy(env->qid, "0C8A5KZ4M2N1");
	env->arrival = ARRIVAL * 1000000 + 123456;
	env->client_addr = xstrdup("192.0.2.10");
	env->helo = xstrdup("client.example.org");
	env->sender = xstrdup("sender@example.org");
	env->attempts = 14;
	env->last_attempt = NOW - 600;
	return env;
}

static char *
build(const struct envelope *env, enum dsn_action a, const struct dsn_rcpt *dr,
    size_t ndr, const char *body, size_t blen, int64_t until, size_t *len)
{
	struct dsn_info info = {
	    .reporting_mta = "mx2.example.net",
	    .env = env,
	    .body = body,
	    .len = blen,
	    .action = a,
	    .rcpts = dr,
	    .nrcpts = ndr,
	    .now = NOW,
	    .will_retry_until = until,
	};
	char *out = dsn_build(&info, len);

	assert_non_null(out);
	assert_int_equal(strlen(out), *len); /* NUL-terminated, no NULs */
	return out;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = xmalloc((size_t)n + 1);
	*len = fread(p, 1, (size_t)n, f);
	p[*len] = '\0';
	fclose(f);
	return p;
}

/* Prints line n (1-based) of s, made visible: CR as \r. */
static void
show_line(const char *tag, const char *s, size_t len, size_t n)
{
	const char *p = s, *end = s + len;
	char line[200];
	size_t o = 0;

	for (size_t i = 1; i < n && p < end; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
	}
	if (p >= end) {
		print_error("  %s %zu: (end of text)\n", tag, n);
		return;
	}
	for (; p < end && *p != '\n' && o < sizeof(line) - 3; p++) {
		if (*p == '\r') {
			line[o++] = '\\';
			line[o++] = 'r';
		} else
			line[o++] = *p;
	}
	line[o] = '\0';
	print_error("  %s %zu: %s\n", tag, n, line);
}

/*
 * Compares got with NAME.ref; on a mismatch prints the first differing
 * line with two lines of context from both sides. With DSN_REGEN set,
 * writes the file instead.
 */
static void
golden(const char *name, const char *got, size_t glen)
{
	const char *dir = getenv("DSN_GOLDEN_DIR");
	char path[512];
	size_t wlen = 0, line = 1, i;
	char *want;

	snprintf(path, sizeof(path), "%s/%s.ref",
	    dir ? dir : "tests/unit/queue/dsn", name);
	if (getenv("DSN_REGEN")) {
		FILE *f = fopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(got, 1, glen, f), glen);
		assert_int_equal(fclose(f), 0);
		return;
	}
	want = slurp(path, &wlen);
	if (want == NULL)
		fail_msg("%s: cannot read (run from the repository root, or "
			 "set DSN_REGEN=1 to create it)",
		    path);
	if (wlen == glen && memcmp(want, got, glen) == 0) {
		free(want);
		return;
	}
	for (i = 0; i < wlen && i < glen && want[i] == got[i]; i++)
		if (want[i] == '\n')
			line++;
	print_error("%s differs from the built DSN at line %zu "
		    "(DSN_REGEN=1 rewrites it):\n",
	    path, line);
	for (size_t l = line > 2 ? line - 2 : 1; l <= line + 2; l++) {
		show_line("want", want, wlen, l);
		show_line("got ", got, glen, l);
	}
	free(want);
	fail();
}

/* Every line ends in CRLF and holds at most 998 octets before it. */
static void
assert_lines_ok(const char *s, size_t len)
{
	size_t col = 0, line = 1;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n') {
			if (i == 0 || s[i - 1] != '\r')
				fail_msg("bare LF at line %zu", line);
			col = 0;
			line++;
			continue;
		}
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))
			fail_msg("bare CR at line %zu", line);
		if (s[i] != '\r' && ++col > 998)
			fail_msg("line %zu passes 998 octets", line);
	}
	assert_true(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n');
}

/* The number of lines of s that are exactly `line` (without CRLF). */
static size_t
count_lines(const char *s, const char *line)
{
	size_t n = 0, l = strlen(line);

	for (const char *p = s; p && *p;) {
		if (strncmp(p, line, l) == 0 && p[l] == '\r')
			n++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return n;
}

/* Whether some line of s starts with prefix. */
static bool
has_line_prefix(const char *s, const char *prefix)
{
	size_t l = strlen(prefix);

	for (const char *p = s; p && *p;) {
		if (strncmp(p, prefix, l) == 0)
			return true;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return false;
}

/* The boundary parameter of the top-level Content-Type. */
static void
get_boundary(const char *dsn, char *out, size_t n)
{
	const char *p = strstr(dsn, "boundary=\"");
	const char *q;

	assert_non_null(p);
	p += 10;
	q = strchr(p, '"');
	assert_non_null(q);
	assert_true((size_t)(q - p) < n);
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
}

static void
test_dsn_failure_matches_golden(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr[2] = {
	    {0, "5.1.1", "mx.example.com",
		"550 5.1.1 <user@example.com>: Recipient address rejected: "
		"User unknown in virtual mailbox table"},
	    {1, "5.2.2", "mx.example.com", "552 5.2.2 Mailbox full"},
	};
	size_t len;
	char *out;

	(void)state;
	env->envid = xstrdup("QQ+2B314159");
	envelope_add_rcpt(
	    env, "user@example.com", "rfc822;user+40example.com", 0);
	envelope_add_rcpt(env, "full@example.com", NULL, NOTIFY_FAILURE);
	out = build(env, DSN_FAILED, dr, 2, ORIG, strlen(ORIG), 0, &len);
	golden("failed", out, len);
	assert_lines_ok(out, len);
	free(out);
	envelope_free(env);
}

static void
test_dsn_failure_with_ret_hdrs_matches_golden(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {
	    0, "5.7.1", "mx.example.com", "554 5.7.1 Message rejected as spam"};
	size_t len;
	char *out;

	(void)state;
	env->ret = RET_HDRS;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	golden("failed-hdrs", out, len);
	assert_non_null(strstr(out, "Content-Type: text/rfc822-headers\r\n"));
	assert_null(strstr(out, "message/rfc822"));
	assert_null(strstr(out, "the report is attached"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_expiry_matches_golden(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "4.4.7", NULL, NULL};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	golden("failed-expired", out, len);
	assert_non_null(strstr(out, "Status: 4.4.7\r\n"));
	assert_non_null(strstr(out, "too old to keep trying"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_delay_matches_golden(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "4.4.1", "store.example.com",
	    "451 4.4.1 connect to store.example.com[192.0.2.25]:24: "
	    "Connection refused"};
	size_t len;
	char *out;

	(void)state;
	env->ret = RET_FULL; /* a delay still returns only the header */
	envelope_add_rcpt(env, "user@example.com", NULL, NOTIFY_DELAY);
	out = build(env, DSN_DELAYED, &dr, 1, ORIG, strlen(ORIG),
	    ARRIVAL + 14 * 86400, &len);
	golden("delayed", out, len);
	assert_non_null(strstr(out, "Will-Retry-Until: Tue, 28 Nov 2023 "
				    "22:13:20 +0000\r\n"));
	assert_non_null(strstr(out, "Content-Type: text/rfc822-headers\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_delay_without_limit_says_so(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, NULL, NULL, NULL};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_DELAYED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	assert_null(strstr(out, "Will-Retry-Until"));
	assert_non_null(strstr(out, "Status: 4.0.0\r\n"));
	assert_non_null(strstr(out, "without a time limit"));
	assert_non_null(strstr(out, "Subject: Delayed Mail (still being "
				    "retried)\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_delivery_matches_golden(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "2.0.0", "store.example.com",
	    "250 2.0.0 <user@example.com> Saved"};
	size_t len;
	char *out;

	(void)state;
	env->ret = RET_FULL;
	env->envid = xstrdup("ID-7");
	envelope_add_rcpt(env, "user@example.com", "rfc822;user@example.com",
	    NOTIFY_SUCCESS | NOTIFY_FAILURE);
	out = build(env, DSN_DELIVERED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	golden("delivered", out, len);
	assert_non_null(strstr(out, "Content-Type: message/rfc822\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_relay_matches_golden(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {
	    0, "2.0.0", "mx1.example.com", "250 2.0.0 Ok: queued as 4VxYz"};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, NOTIFY_SUCCESS);
	out = build(env, DSN_RELAYED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	golden("relayed", out, len);
	assert_non_null(strstr(out, "Action: relayed\r\n"));
	assert_non_null(strstr(out, "Content-Type: text/rfc822-headers\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_smtputf8_matches_golden(void **state)
{
	static const char orig[] =
	    "From: J\xc3\xb6rg <j\xc3\xb6rg@example.org>\r\n"
	    "To: Ren\xc3\xa9"
	    "e <ren\xc3\xa9"
	    "e@b\xc3\xbc"
	    "cher.example>\r\n"
	    "Subject: Gr\xc3\xbc\xc3\x9f"
	    "e\r\n"
	    "\r\n"
	    "Sch\xc3\xb6nen Tag!\r\n";
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1",
	    "mx.b\xc3\xbc"
	    "cher.example",
	    "550 5.1.1 Ren\xc3\xa9"
	    "e ist unbekannt \xff"};
	size_t len;
	char *out;

	(void)state;
	free(env->sender);
	env->sender = xstrdup("j\xc3\xb6rg@example.org");
	env->flags |= ENV_SMTPUTF8;
	env->body = BODY_8BITMIME;
	envelope_add_rcpt(env,
	    "ren\xc3\xa9"
	    "e@b\xc3\xbc"
	    "cher.example",
	    "utf-8;ren\\x{E9}e@b\\x{FC}cher.example", 0);
	out = build(env, DSN_FAILED, &dr, 1, orig, strlen(orig), 0, &len);
	golden("smtputf8", out, len);
	assert_lines_ok(out, len);
	assert_non_null(strstr(out, "report-type=global-delivery-status"));
	assert_non_null(
	    strstr(out, "Content-Type: message/global-delivery-status\r\n"));
	assert_non_null(strstr(out, "Content-Type: message/global\r\n"));
	assert_non_null(strstr(out, "Final-Recipient: utf-8; ren\xc3\xa9"
				    "e@b\xc3\xbc"
				    "cher.example\r\n"));
	assert_non_null(strstr(out, "Original-Recipient: utf-8;ren\xc3\xa9"
				    "e@b\xc3\xbc"
				    "cher.example\r\n"));
	/* The invalid octet in the reply did not get through. */
	assert_non_null(strstr(out, "unbekannt ?"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_is_the_same_for_the_same_input(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1", "mx.example.com", "550 No"};
	size_t l1, l2;
	char *a, *b;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	a = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &l1);
	b = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(a, b, l1);
	free(a);
	free(b);
	envelope_free(env);
}

static void
test_dsn_keeps_lines_short_whatever_the_reply(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr[3];
	char *word = xmalloc(5001), *words = xmalloc(30001), *orcpt;
	size_t len;
	char *out;

	(void)state;
	memset(word, 'x', 5000);
	word[5000] = '\0';
	for (size_t i = 0; i < 30000; i++)
		words[i] = i % 7 == 6 ? ' ' : 'a' + (char)(i % 26);
	words[30000] = '\0';
	orcpt = xmalloc(510);
	strcpy(orcpt, "rfc822;");
	memset(orcpt + 7, 'o', 490);
	orcpt[497] = '\0';
	free(env->sender);
	env->sender = xstrdup(word); /* absurd, but must not break lines */
	envelope_add_rcpt(env, "a@example.com", orcpt, 0);
	envelope_add_rcpt(env, "b@example.com", NULL, 0);
	envelope_add_rcpt(env, "c@example.com", NULL, 0);
	dr[0] = (struct dsn_rcpt){0, "5.0.0", word, word};
	dr[1] = (struct dsn_rcpt){1, "5.0.0", "mx.example.com", words};
	dr[2] = (struct dsn_rcpt){2, NULL, NULL, "550\r\n\r\n\r\n"};
	out = build(env, DSN_FAILED, dr, 3, ORIG, strlen(ORIG), 0, &len);
	assert_lines_ok(out, len);
	/* A CRLF-only reply leaves "550", not an empty continuation. */
	assert_non_null(strstr(out, "Diagnostic-Code: smtp; 550\r\n"));
	free(out);
	env->flags |= ENV_SMTPUTF8;
	memset(word, 0, 5001);
	for (size_t i = 0; i + 2 <= 5000; i += 2)
		memcpy(word + i, "\xc3\xa9", 2);
	out = build(env, DSN_FAILED, dr, 3, ORIG, strlen(ORIG), 0, &len);
	assert_lines_ok(out, len);
	free(out);
	free(word);
	free(words);
	free(orcpt);
	envelope_free(env);
}

/* A string of n random octets (no NUL), malloc'd. */
static char *
random_text(unsigned *seed, size_t n)
{
	char *s = xmalloc(n + 1);

	for (size_t i = 0; i < n; i++)
		s[i] = (char)(rand_r(seed) % 255 + 1);
	s[n] = '\0';
	return s;
}

static void
test_dsn_survives_random_fields(void **state)
{
	unsigned seed = 3464;

	(void)state;
	for (int round = 0; round < 300; round++) {
		struct envelope *env = env_make();
		char *remote = random_text(&seed, (size_t)rand_r(&seed) % 1500);
		char *diag = random_text(&seed, (size_t)rand_r(&seed) % 3000);
		char *addr = random_text(&seed, (size_t)rand_r(&seed) % 300);
		char *orcpt = random_text(&seed, (size_t)rand_r(&seed) % 500);
		struct dsn_rcpt dr = {0, NULL, remote, diag};
		size_t len;
		char *out;

		free(env->sender);
		env->sender = random_text(&seed, (size_t)rand_r(&seed) % 300);
		env->envid = random_text(&seed, (size_t)rand_r(&seed) % 100);
		if (round % 2)
			env->flags |= ENV_SMTPUTF8;
		envelope_add_rcpt(env, addr, orcpt, 0);
		dr.status = round % 3 ? diag : "5.1.1";
		out = build(env, (enum dsn_action)(round % 4), &dr, 1, ORIG,
		    strlen(ORIG), round % 5 ? NOW + 86400 : 0, &len);
		assert_lines_ok(out, len);
		assert_int_equal(count_lines(out, "Action: failed") +
				     count_lines(out, "Action: delayed") +
				     count_lines(out, "Action: delivered") +
				     count_lines(out, "Action: relayed"),
		    1);
		free(out);
		free(remote);
		free(diag);
		free(addr);
		free(orcpt);
		envelope_free(env);
	}
}

static void
test_dsn_reply_cannot_add_fields_or_boundaries(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1", "mx.example.com\r\nX-Evil: 1",
	    "550 no\r\nBcc: victim@example.net\r\n\r\n"
	    "--=_0C8A5KZ4M2N1.1700262920\r\nContent-Type: text/html\r\n"
	    "\x01\x7f"};
	char bound[80], delim[96];
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	assert_false(has_line_prefix(out, "Bcc:"));
	assert_false(has_line_prefix(out, "X-Evil:"));
	assert_false(has_line_prefix(out, "Content-Type: text/html"));
	assert_null(strchr(out, '\x01'));
	assert_null(strchr(out, '\x7f'));
	get_boundary(out, bound, sizeof(bound));
	snprintf(delim, sizeof(delim), "--%s", bound);
	assert_int_equal(count_lines(out, delim), 3);
	snprintf(delim, sizeof(delim), "--%s--", bound);
	assert_int_equal(count_lines(out, delim), 1);
	free(out);
	envelope_free(env);
}

static void
test_dsn_boundary_avoids_the_original(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1", NULL, NULL};
	char body[512], bound[80], delim[96];
	size_t len;
	char *out;

	(void)state;
	/* The boundary this message would get if nothing clashed. */
	snprintf(body, sizeof(body),
	    "Subject: x\r\n\r\n--=_0C8A5KZ4M2N1.%lld\r\n"
	    "--=_0C8A5KZ4M2N1.%lld.1\r\n",
	    (long long)NOW, (long long)NOW);
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, body, strlen(body), 0, &len);
	get_boundary(out, bound, sizeof(bound));
	snprintf(delim, sizeof(delim), "=_0C8A5KZ4M2N1.%lld.2", (long long)NOW);
	assert_string_equal(bound, delim);
	snprintf(delim, sizeof(delim), "--%s", bound);
	assert_int_equal(count_lines(out, delim), 3);
	free(out);
	envelope_free(env);
}

static void
test_dsn_returns_only_the_header_of_big_messages(void **state)
{
	size_t blen = 2 * 1024 * 1024, len;
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1", NULL, NULL};
	char *body = xmalloc(blen + 1), *out;
	size_t hl = strlen("Subject: big\r\n\r\n");

	(void)state;
	memcpy(body, "Subject: big\r\n\r\n", hl);
	for (size_t i = hl; i < blen; i++)
		body[i] = (i % 76 == 74) ? '\r' : (i % 76 == 75) ? '\n' : 'b';
	body[blen] = '\0';
	env->ret = RET_FULL;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, body, blen, 0, &len);
	assert_true(len < 16384);
	assert_non_null(strstr(out, "Content-Type: text/rfc822-headers\r\n"));
	assert_non_null(strstr(out, "\r\n\r\nSubject: big\r\n\r\n--=_"));
	assert_non_null(strstr(out, "larger than 1 MiB"));
	free(out);
	/* At exactly 1 MiB it is still returned whole. */
	out = build(env, DSN_FAILED, &dr, 1, body, 1024 * 1024, 0, &len);
	assert_true(len > 1024 * 1024);
	assert_non_null(strstr(out, "Content-Type: message/rfc822\r\n"));
	free(out);
	free(body);
	envelope_free(env);
}

static void
test_dsn_ret_decides_what_is_returned(void **state)
{
	static const struct {
		enum dsn_action a;
		enum dsn_ret ret;
		bool full;
	} t[] = {
	    {DSN_FAILED, RET_DEFAULT, true},
	    {DSN_FAILED, RET_FULL, true},
	    {DSN_FAILED, RET_HDRS, false},
	    {DSN_DELAYED, RET_DEFAULT, false},
	    {DSN_DELAYED, RET_FULL, false},
	    {DSN_DELAYED, RET_HDRS, false},
	    {DSN_DELIVERED, RET_DEFAULT, false},
	    {DSN_DELIVERED, RET_FULL, true},
	    {DSN_DELIVERED, RET_HDRS, false},
	    {DSN_RELAYED, RET_DEFAULT, false},
	    {DSN_RELAYED, RET_FULL, true},
	    {DSN_RELAYED, RET_HDRS, false},
	};
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, NULL, NULL, NULL};
	size_t len;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out;
		bool full, hdrs;

		env->ret = t[i].ret;
		out = build(env, t[i].a, &dr, 1, ORIG, strlen(ORIG), 0, &len);
		full = strstr(out, "Content-Type: message/rfc822\r\n") != NULL;
		hdrs = strstr(out, "Content-Type: text/rfc822-headers\r\n") !=
		       NULL;
		if (full != t[i].full || hdrs == t[i].full ||
		    (strstr(out, "the report is attached") != NULL) != full)
			fail_msg("%s with RET %d: expected %s",
			    dsn_action_str(t[i].a), (int)t[i].ret,
			    t[i].full ? "the full message" : "the header only");
		free(out);
	}
	envelope_free(env);
}

static void
test_dsn_decodes_envid_and_orcpt_only_when_safe(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr[3] = {{0, NULL, NULL, NULL}, {1, NULL, NULL, NULL},
	    {2, NULL, NULL, NULL}};
	size_t len;
	char *out;

	(void)state;
	env->envid = xstrdup("A+0D+0ABcc:x");
	envelope_add_rcpt(env, "a@example.com", "rfc822;a+0Ab", 0);
	envelope_add_rcpt(env, "b@example.com", "rfc822;b+2", 0);
	envelope_add_rcpt(
	    env, "c@example.com", "RFC822;c+2Bx+40example.com", 0);
	out = build(env, DSN_FAILED, dr, 3, ORIG, strlen(ORIG), 0, &len);
	assert_non_null(strstr(out, "Original-Envelope-Id: A+0D+0ABcc:x\r\n"));
	assert_non_null(strstr(out, "Original-Recipient: rfc822;a+0Ab\r\n"));
	assert_non_null(strstr(out, "Original-Recipient: rfc822;b+2\r\n"));
	assert_non_null(
	    strstr(out, "Original-Recipient: RFC822;c+x@example.com\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_orcpt_and_envid_appear_only_when_given(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, NULL, NULL, NULL};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "a@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	assert_null(strstr(out, "Original-Recipient:"));
	assert_null(strstr(out, "Original-Envelope-Id:"));
	assert_non_null(strstr(out, "Final-Recipient: rfc822; a@example.com"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_plain_report_has_no_8bit_from_replies(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1", "mx.example.com",
	    "550 Benutzer unbekannt: J\xc3\xb6rg"};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "a@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	for (size_t i = 0; i < len; i++)
		assert_true((unsigned char)out[i] < 0x80);
	assert_non_null(strstr(out, "unbekannt: J??rg"));
	assert_non_null(strstr(out, "report-type=delivery-status;"));
	assert_non_null(strstr(out, "Content-Transfer-Encoding: 7bit\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_status_must_fit_the_action(void **state)
{
	static const struct {
		enum dsn_action a;
		const char *given, *want;
	} t[] = {
	    {DSN_FAILED, "5.1.1", "5.1.1"},
	    {DSN_FAILED, "4.4.7", "4.4.7"},
	    {DSN_FAILED, "2.0.0", "5.0.0"},
	    {DSN_FAILED, "5.1", "5.0.0"},
	    {DSN_FAILED, "5.1.1\r\nX: y", "5.0.0"},
	    {DSN_FAILED, "5.1111.1", "5.0.0"},
	    {DSN_FAILED, NULL, "5.0.0"},
	    {DSN_DELAYED, "5.1.1", "4.0.0"},
	    {DSN_DELAYED, "4.4.1", "4.4.1"},
	    {DSN_DELIVERED, NULL, "2.0.0"},
	    {DSN_RELAYED, "4.0.0", "2.0.0"},
	    {DSN_RELAYED, "2.1.5", "2.1.5"},
	};
	struct envelope *env = env_make();
	size_t len;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct dsn_rcpt dr = {0, t[i].given, NULL, NULL};
		char want[32], *out;

		out = build(env, t[i].a, &dr, 1, ORIG, strlen(ORIG), 0, &len);
		snprintf(want, sizeof(want), "\r\nStatus: %s\r\n", t[i].want);
		if (strstr(out, want) == NULL)
			fail_msg("%s with status %s: want %s",
			    dsn_action_str(t[i].a),
			    t[i].given ? t[i].given : "NULL", t[i].want);
		free(out);
	}
	envelope_free(env);
}

static void
test_dsn_empty_remote_and_reply_count_as_none(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, "5.1.1", "", ""};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, &dr, 1, ORIG, strlen(ORIG), 0, &len);
	assert_null(strstr(out, "Remote-MTA"));
	assert_null(strstr(out, "Diagnostic-Code"));
	assert_non_null(strstr(out, "<user@example.com>: the mailbox does not "
				    "exist (5.1.1)\r\n"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_ignores_a_bad_recipient_index(void **state)
{
	struct envelope *env = env_make();
	struct dsn_rcpt dr[2] = {
	    {7, "5.1.1", NULL, NULL}, {0, "5.1.1", NULL, NULL}};
	size_t len;
	char *out;

	(void)state;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	out = build(env, DSN_FAILED, dr, 2, ORIG, strlen(ORIG), 0, &len);
	assert_int_equal(count_lines(out, "Action: failed"), 1);
	assert_non_null(strstr(out, "the recipient listed below"));
	free(out);
	envelope_free(env);
}

static void
test_dsn_takes_the_header_of_odd_originals(void **state)
{
	static const struct {
		const char *body, *want;
	} t[] = {
	    /* LF-only lines: the header still ends at the empty line. */
	    {"Subject: a\nX: b\n\nbody\n",
		"\r\n\r\nSubject: a\nX: b\n\r\n\r\n--"},
	    /* No body at all: everything is header. */
	    {"Subject: a\r\nX: b", "\r\n\r\nSubject: a\r\nX: b\r\n\r\n--"},
	    /* No header at all. */
	    {"\r\nbody only\r\n", "Content-Transfer-Encoding: 7bit\r\n\r\n"
				  "\r\n\r\n--"},
	    {"", "Content-Transfer-Encoding: 7bit\r\n\r\n\r\n\r\n--"},
	};
	struct envelope *env = env_make();
	struct dsn_rcpt dr = {0, NULL, NULL, NULL};
	size_t len;

	(void)state;
	env->ret = RET_HDRS;
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = build(env, DSN_FAILED, &dr, 1, t[i].body,
		    strlen(t[i].body), 0, &len);
		const char *part = strstr(out, "text/rfc822-headers");

		assert_non_null(part);
		if (strstr(part, t[i].want) == NULL)
			fail_msg(
			    "original %zu: header part not as expected", i);
		free(out);
	}
	envelope_free(env);
}

static void
test_dsn_wanted_follows_notify(void **state)
{
	static const struct {
		unsigned notify;
		bool failed, delayed, delivered, relayed;
	} t[] = {
	    {0, true, true, false, false},
	    {NOTIFY_NEVER, false, false, false, false},
	    {NOTIFY_SUCCESS, false, false, true, true},
	    {NOTIFY_FAILURE, true, false, false, false},
	    {NOTIFY_DELAY, false, true, false, false},
	    {NOTIFY_SUCCESS | NOTIFY_FAILURE, true, false, true, true},
	    {NOTIFY_FAILURE | NOTIFY_DELAY, true, true, false, false},
	    {NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY, true, true, true,
		true},
	    /* Not valid from the parser; NEVER wins all the same. */
	    {NOTIFY_NEVER | NOTIFY_FAILURE, false, false, false, false},
	};
	struct envelope *env = env_make();

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct env_rcpt *r =
		    envelope_add_rcpt(env, "u@example.com", NULL, t[i].notify);

		if (dsn_wanted(env, r, DSN_FAILED) != t[i].failed ||
		    dsn_wanted(env, r, DSN_DELAYED) != t[i].delayed ||
		    dsn_wanted(env, r, DSN_DELIVERED) != t[i].delivered ||
		    dsn_wanted(env, r, DSN_RELAYED) != t[i].relayed)
			fail_msg("NOTIFY bits 0x%x: wrong answer", t[i].notify);
	}
	envelope_free(env);
}

static void
test_dsn_wanted_never_for_the_null_sender(void **state)
{
	struct envelope *env = env_make();
	struct env_rcpt *r;
	unsigned all = NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY;

	(void)state;
	free(env->sender);
	env->sender = xstrdup("");
	r = envelope_add_rcpt(env, "u@example.com", NULL, all);
	for (int a = DSN_FAILED; a <= DSN_RELAYED; a++)
		assert_false(dsn_wanted(env, r, (enum dsn_action)a));
	r->notify = 0;
	for (int a = DSN_FAILED; a <= DSN_RELAYED; a++)
		assert_false(dsn_wanted(env, r, (enum dsn_action)a));
	free(env->sender);
	env->sender = NULL;
	assert_false(dsn_wanted(env, r, DSN_FAILED));
	envelope_free(env);
}

static void
test_dsn_action_names_are_rfc_3464_values(void **state)
{
	(void)state;
	assert_string_equal(dsn_action_str(DSN_FAILED), "failed");
	assert_string_equal(dsn_action_str(DSN_DELAYED), "delayed");
	assert_string_equal(dsn_action_str(DSN_DELIVERED), "delivered");
	assert_string_equal(dsn_action_str(DSN_RELAYED), "relayed");
}

/* The remote's reply in a diagnostic text, and nothing of ours. */
static void
test_dsn_diag_reply_finds_the_remotes_words(void **state)
{
	const char *t;

	(void)state;
	t = "550 5.1.1 no such user";
	assert_ptr_equal(dsn_diag_reply(t), t);
	assert_string_equal(dsn_diag_reply("550"), "550");
	assert_string_equal(dsn_diag_reply("250-first line"), "250-first line");
	assert_string_equal(
	    dsn_diag_reply(
		"host h[192.0.2.1] refused to talk to me: 554 5.7.1 no"),
	    "554 5.7.1 no");
	/* The first ": " followed by a code, not a port or a time. */
	assert_string_equal(dsn_diag_reply("connect to h[192.0.2.1]:25: "
					   "timed out: 421 4.4.2 gone"),
	    "421 4.4.2 gone");
	assert_null(dsn_diag_reply("connect to h[192.0.2.1]:25: refused"));
	assert_null(dsn_diag_reply("lost connection at 12:30: 5551"));
	assert_null(dsn_diag_reply("delivery timed out: 600 seconds"));
	assert_null(dsn_diag_reply("1234 not a reply"));
	assert_null(dsn_diag_reply(""));
	assert_null(dsn_diag_reply(NULL));
}

static void
test_dsn_mta_name_is_a_host_name(void **state)
{
	char *n;

	(void)state;
	n = dsn_mta_name("mx.example.com[192.0.2.1]:25");
	assert_string_equal(n, "mx.example.com");
	free(n);
	n = dsn_mta_name("127.0.0.1[127.0.0.1]:2525");
	assert_string_equal(n, "127.0.0.1");
	free(n);
	n = dsn_mta_name("mx.example.com");
	assert_string_equal(n, "mx.example.com");
	free(n);
	assert_null(dsn_mta_name("/run/dovecot/lmtp"));
	assert_null(dsn_mta_name("[192.0.2.1]:25"));
	assert_null(dsn_mta_name(""));
	assert_null(dsn_mta_name(NULL));
}

static void
test_dsn_body_type_follows_the_text(void **state)
{
	char *line = xmalloc(1002);

	(void)state;
	assert_int_equal(dsn_body_type("a\r\nb\r\n", 6), BODY_7BIT);
	assert_int_equal(dsn_body_type("", 0), BODY_7BIT);
	assert_int_equal(dsn_body_type("caf\xc3\xa9\r\n", 7), BODY_8BITMIME);
	assert_int_equal(dsn_body_type("a\nb\r\n", 5), BODY_BINARYMIME);
	assert_int_equal(dsn_body_type("a\rb\r\n", 5), BODY_BINARYMIME);
	assert_int_equal(dsn_body_type("a\0b\r\n", 5), BODY_BINARYMIME);
	memset(line, 'x', 998);
	memcpy(line + 998, "\r\n", 2);
	assert_int_equal(dsn_body_type(line, 1000), BODY_7BIT);
	memset(line, 'x', 999);
	memcpy(line + 999, "\r\n", 2);
	assert_int_equal(dsn_body_type(line, 1001), BODY_BINARYMIME);
	free(line);
}

static void
test_dsn_needs_smtputf8_only_for_a_utf8_sender(void **state)
{
	struct envelope *env = envelope_new();

	(void)state;
	env->flags = ENV_SMTPUTF8;
	env->sender = xstrdup("s@example.org");
	envelope_add_rcpt(env,
	    "ren\xc3\xa9"
	    "e@example.com",
	    NULL, 0);
	assert_false(dsn_needs_smtputf8(env));
	free(env->sender);
	env->sender = xstrdup("j\xc3\xb6rg@example.org");
	assert_true(dsn_needs_smtputf8(env));
	free(env->sender);
	env->sender = xstrdup("");
	assert_false(dsn_needs_smtputf8(env));
	envelope_free(env);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dsn_failure_matches_golden),
	    cmocka_unit_test(test_dsn_failure_with_ret_hdrs_matches_golden),
	    cmocka_unit_test(test_dsn_expiry_matches_golden),
	    cmocka_unit_test(test_dsn_delay_matches_golden),
	    cmocka_unit_test(test_dsn_delay_without_limit_says_so),
	    cmocka_unit_test(test_dsn_delivery_matches_golden),
	    cmocka_unit_test(test_dsn_relay_matches_golden),
	    cmocka_unit_test(test_dsn_smtputf8_matches_golden),
	    cmocka_unit_test(test_dsn_is_the_same_for_the_same_input),
	    cmocka_unit_test(test_dsn_keeps_lines_short_whatever_the_reply),
	    cmocka_unit_test(test_dsn_survives_random_fields),
	    cmocka_unit_test(test_dsn_reply_cannot_add_fields_or_boundaries),
	    cmocka_unit_test(test_dsn_boundary_avoids_the_original),
	    cmocka_unit_test(test_dsn_returns_only_the_header_of_big_messages),
	    cmocka_unit_test(test_dsn_ret_decides_what_is_returned),
	    cmocka_unit_test(test_dsn_decodes_envid_and_orcpt_only_when_safe),
	    cmocka_unit_test(test_dsn_orcpt_and_envid_appear_only_when_given),
	    cmocka_unit_test(test_dsn_plain_report_has_no_8bit_from_replies),
	    cmocka_unit_test(test_dsn_status_must_fit_the_action),
	    cmocka_unit_test(test_dsn_empty_remote_and_reply_count_as_none),
	    cmocka_unit_test(test_dsn_ignores_a_bad_recipient_index),
	    cmocka_unit_test(test_dsn_takes_the_header_of_odd_originals),
	    cmocka_unit_test(test_dsn_wanted_follows_notify),
	    cmocka_unit_test(test_dsn_wanted_never_for_the_null_sender),
	    cmocka_unit_test(test_dsn_action_names_are_rfc_3464_values),
	    cmocka_unit_test(test_dsn_diag_reply_finds_the_remotes_words),
	    cmocka_unit_test(test_dsn_mta_name_is_a_host_name),
	    cmocka_unit_test(test_dsn_body_type_follows_the_text),
	    cmocka_unit_test(test_dsn_needs_smtputf8_only_for_a_utf8_sender),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
