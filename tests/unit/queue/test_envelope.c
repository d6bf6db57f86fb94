/* Unit tests for queue/envelope.c: round trips and hostile records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue/envelope.h"

static struct envelope *
sample(void)
{
	struct envelope *e = envelope_new();
	struct env_rcpt *r;

	strcpy(e->qid, "0123456789AB");
	e->arrival = 1764000000123456;
	e->client_addr = strdup("192.0.2.7");
	e->client_name = strdup("mail.sender.example");
	e->helo = strdup("mail.sender.example");
	e->sender = strdup("alice@sender.example");
	e->size = 10240;
	e->body = BODY_8BITMIME;
	e->ret = RET_HDRS;
	e->envid = strdup("QQ314159");
	e->flags = ENV_SMTPUTF8 | ENV_HELD;
	e->attempts = 3;
	e->last_attempt = 1764000100;
	e->next_attempt = 1764000400;
	e->last_error = strdup("connect to store[10.0.0.5]:24: Connection refused");
	r = envelope_add_rcpt(e, "bob@example.com", "rfc822;bob@example.com",
	    NOTIFY_FAILURE | NOTIFY_DELAY);
	r->state = RCPT_FAILED;
	r->dsn_status = strdup("5.1.1");
	r->last_error = strdup("550 5.1.1 no such user");
	for (int i = 0; i < 20; i++) {
		char a[64];
		snprintf(a, sizeof(a), "user%d@example.com", i);
		envelope_add_rcpt(e, a, NULL, 0);
	}
	return e;
}

static void
assert_same(const struct envelope *a, const struct envelope *b)
{
	assert_string_equal(a->qid, b->qid);
	assert_int_equal(a->arrival, b->arrival);
	assert_string_equal(a->client_addr, b->client_addr);
	assert_string_equal(a->client_name, b->client_name);
	assert_string_equal(a->helo, b->helo);
	assert_string_equal(a->sender, b->sender);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->body, b->body);
	assert_int_equal(a->ret, b->ret);
	assert_string_equal(a->envid, b->envid);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->attempts, b->attempts);
	assert_int_equal(a->last_attempt, b->last_attempt);
	assert_int_equal(a->next_attempt, b->next_attempt);
	assert_string_equal(a->last_error, b->last_error);
	assert_int_equal(a->nrcpts, b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++) {
		assert_string_equal(a->rcpts[i].addr, b->rcpts[i].addr);
		if (a->rcpts[i].orcpt || b->rcpts[i].orcpt)
			assert_string_equal(a->rcpts[i].orcpt, b->rcpts[i].orcpt);
		assert_int_equal(a->rcpts[i].notify, b->rcpts[i].notify);
		assert_int_equal(a->rcpts[i].state, b->rcpts[i].state);
	}
	assert_string_equal(a->rcpts[0].dsn_status, b->rcpts[0].dsn_status);
	assert_string_equal(a->rcpts[0].last_error, b->rcpts[0].last_error);
	assert_null(b->rcpts[1].orcpt);
	assert_null(b->rcpts[1].last_error);
}

static void
test_envelope_round_trips_every_field(void **state)
{
	struct envelope *e = sample(), *d;
	char why[128];
	size_t len;
	char *buf = envelope_encode(e, &len);

	(void)state;
	d = envelope_decode(buf, len, why, sizeof(why));
	assert_non_null(d);
	assert_same(e, d);
	envelope_free(d);
	d = envelope_dup(e);
	assert_same(e, d);
	envelope_free(d);
	envelope_free(e);
	free(buf);
}

static void
test_null_sender_round_trips_as_empty(void **state)
{
	struct envelope *e = envelope_new(), *d;
	char why[128], *buf;
	size_t len;

	(void)state;
	strcpy(e->qid, "0123456789AC");
	e->sender = strdup("");
	envelope_add_rcpt(e, "postmaster@example.com", NULL, 0);
	buf = envelope_encode(e, &len);
	d = envelope_decode(buf, len, why, sizeof(why));
	assert_non_null(d);
	assert_string_equal(d->sender, "");
	assert_null(d->helo);
	envelope_free(d);
	envelope_free(e);
	free(buf);
}

static void
test_every_truncation_is_refused_with_a_reason(void **state)
{
	struct envelope *e = sample();
	char why[128];
	size_t len;
	char *buf = envelope_encode(e, &len);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		why[0] = '\0';
		if (envelope_decode(buf, n, why, sizeof(why)) != NULL)
			fail_msg("accepted a record cut at %zu of %zu", n, len);
		assert_true(why[0] != '\0');
	}
	envelope_free(e);
	free(buf);
}

static void
test_garbage_never_crashes(void **state)
{
	struct envelope *e = sample(), *d;
	char why[128];
	size_t len;
	char *buf = envelope_encode(e, &len);

	(void)state;
	srand(42);
	/* Flip bytes at random: decode must either refuse or return a record. */
	for (int round = 0; round < 20000; round++) {
		char *copy = malloc(len);
		memcpy(copy, buf, len);
		for (int k = 0; k < 1 + round % 4; k++)
			copy[rand() % len] = (char)rand();
		d = envelope_decode(copy, len, why, sizeof(why));
		envelope_free(d);
		free(copy);
	}
	envelope_free(e);
	free(buf);
}

static void
test_specific_corruptions_are_named(void **state)
{
	char why[128];

	(void)state;
	assert_null(envelope_decode("X\001", 2, why, sizeof(why)));
	assert_string_equal(why, "not an envelope record");
	assert_null(envelope_decode("E\011", 2, why, sizeof(why)));
	assert_string_equal(why, "unknown record version 9");
	/* A string length far past the end. */
	assert_null(envelope_decode("E\001\377\377\377\017", 6, why, sizeof(why)));
	assert_string_equal(why, "truncated in queue id");
	/* A bad queue id. */
	assert_null(envelope_decode("E\001\015abcdefghijkl", 15, why, sizeof(why)));
	assert_string_equal(why, "bad queue id");
}

#define HSA(s) header_section_ascii(s, sizeof(s) - 1)

static void
test_header_section_ascii_stops_at_the_first_empty_line(void **state)
{
	(void)state;
	assert_true(
	    HSA("Subject: hi\r\nFrom: a@b\r\n\r\nbody caf\xc3\xa9\r\n"));
	/* A bare LF ends the header section too. */
	assert_true(HSA("Subject: hi\n\nbody \xe9\n"));
	assert_true(HSA("\r\n\xff"));
	assert_true(HSA("\n\xff"));
	/* The 8-bit octet after a non-empty line is still a header's. */
	assert_false(HSA("Subject: hi\r\n\xc3\xa9: x\r\n\r\nbody\r\n"));
	/* A line of one space is a continuation, not the end. */
	assert_false(HSA("Subject: hi\r\n \r\n caf\xc3\xa9\r\n\r\n"));
	/* A CR alone is no line end. */
	assert_false(HSA("Subject: hi\r\r\xc3\xa9\r\n\r\n"));
}

static void
test_header_section_ascii_reads_all_of_a_message_without_body(void **state)
{
	(void)state;
	assert_true(header_section_ascii("", 0));
	assert_true(HSA("Subject: hi\r\nFrom: a@b\r\n"));
	assert_true(HSA("Subject: no line end"));
	assert_false(HSA("Subject: no line end \x80"));
	assert_false(HSA("To: J\xc3\xb6rg <j@example.com>\r\n"));
	/* The first octet; and a lone \\r at the very end. */
	assert_false(HSA("\xc3\xa9: x\r\n\r\n"));
	assert_true(HSA("Subject: x\r"));
	/* Length is honoured: the 8-bit octet past it is not read. */
	assert_true(header_section_ascii("ab\xff", 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_envelope_round_trips_every_field),
	    cmocka_unit_test(test_null_sender_round_trips_as_empty),
	    cmocka_unit_test(test_every_truncation_is_refused_with_a_reason),
	    cmocka_unit_test(test_garbage_never_crashes),
	    cmocka_unit_test(test_specific_corruptions_are_named),
	    cmocka_unit_test(
		test_header_section_ascii_stops_at_the_first_empty_line),
	    cmocka_unit_test(
		test_header_section_ascii_reads_all_of_a_message_without_body),
	};

	return cmocka_run_group_tests_name("queue/envelope", tests, NULL, NULL);
}
