/* Unit tests for queue/qindex.c: lanes, index keys and values, and the
 * lane counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue/qindex.h"

#define KEY_SIZE (LANE_SIZE + QID_SIZE)

/* An envelope with the given recipients, all pending. */
static struct envelope *
env_with(uint32_t flags, const char *const *addrs, size_t n)
{
	struct envelope *e = envelope_new();

	strcpy(e->qid, "0123456789AB");
	e->flags = flags;
	for (size_t i = 0; i < n; i++)
		envelope_add_rcpt(e, addrs[i], NULL, 0);
	return e;
}

static void
test_a_lane_is_the_recipients_domain_in_lower_case(void **state)
{
	struct envelope *e = env_with(0, NULL, 0);
	char buf[LANE_SIZE];

	(void)state;
	assert_string_equal(
	    qindex_lane(e, "Bob@Example.COM", buf), "example.com");
	/* The local part never shows, whatever its case. */
	assert_string_equal(
	    qindex_lane(e, "BOB@example.com", buf), "example.com");
	/* The lane is written to buf, which is what comes back. */
	assert_ptr_equal(qindex_lane(e, "bob@a.example", buf), buf);
	assert_string_equal(buf, "a.example");
	envelope_free(e);
}

static void
test_a_lane_keeps_only_what_follows_the_last_at_sign(void **state)
{
	struct envelope *e = env_with(0, NULL, 0);
	char buf[LANE_SIZE];

	(void)state;
	/* A quoted local part may hold an '@': the domain is after the
	 * last one. */
	assert_string_equal(
	    qindex_lane(e, "\"a@b.example\"@C.Example", buf), "c.example");
	assert_string_equal(qindex_lane(e, "a@b@d.example", buf), "d.example");
	envelope_free(e);
}

static void
test_a_notifications_lane_is_its_domain_after_a_bang(void **state)
{
	struct envelope *e = env_with(ENV_DSN, NULL, 0);
	char buf[LANE_SIZE];
	bool notices = false;

	(void)state;
	/* mxspool's own notifications travel by bounce_route: they must not
	 * share a lane with the mail for that domain. */
	assert_string_equal(
	    qindex_lane(e, "Alice@Sender.Example", buf), "!sender.example");
	assert_string_equal(
	    qindex_lane_domain(buf, &notices), "sender.example");
	assert_true(notices);
	/* Other flags do not make a notification. */
	e->flags = ENV_HELD | ENV_SMTPUTF8 | ENV_DELAY_SENT;
	assert_string_equal(
	    qindex_lane(e, "Alice@Sender.Example", buf), "sender.example");
	envelope_free(e);
}

/* RFC 5890: one domain, one lane, in whichever form an address has it. */
static void
test_a_lane_is_the_same_for_both_forms_of_a_domain(void **state)
{
	const char *const rcpts[] = {
	    "u1@bücher.test", "u2@XN--BCHER-KVA.test", "u3@BÜCHER.TEST",
	    "u4@bucher.test", /* no umlaut: another domain */
	};
	struct envelope *e = env_with(0, rcpts, 4);
	char buf[LANE_SIZE];
	struct qindex qi;

	(void)state;
	assert_string_equal(
	    qindex_lane(e, "u@bücher.test", buf), "xn--bcher-kva.test");
	assert_string_equal(
	    qindex_lane(e, "u@Xn--Bcher-Kva.Test", buf), "xn--bcher-kva.test");
	qindex_of(e, &qi);
	assert_int_equal(qi.nlanes, 2);
	assert_string_equal(qi.lanes[0], "xn--bcher-kva.test");
	assert_string_equal(qi.lanes[1], "bucher.test");
	qindex_fini(&qi);
	/* Notifications too, after their bang. */
	e->flags = ENV_DSN;
	assert_string_equal(
	    qindex_lane(e, "a@BÜCHER.test", buf), "!xn--bcher-kva.test");
	/* A name that is not one keeps a lane of its own, as before. */
	e->flags = 0;
	assert_string_equal(
	    qindex_lane(e, "a@XN--ZZ.test", buf), "xn--zz.test");
	envelope_free(e);
}

static void
test_a_mail_lane_stands_for_its_domain(void **state)
{
	bool notices = true;

	(void)state;
	assert_string_equal(
	    qindex_lane_domain("example.com", &notices), "example.com");
	assert_false(notices);
	/* Only a leading '!' marks notifications. */
	notices = true;
	assert_string_equal(
	    qindex_lane_domain("a!b.example", &notices), "a!b.example");
	assert_false(notices);
}

static void
test_an_envelope_is_indexed_once_per_lane_of_its_pending_recipients(
    void **state)
{
	const char *const rcpts[] = {
	    "a@one.example",
	    "gone@two.example",
	    "b@One.Example", /* same lane as the first, in other case */
	    "c@three.example",
	    "bad@four.example",
	    "d@THREE.example",
	};
	struct envelope *e = env_with(0, rcpts, 6);
	struct qindex qi;

	(void)state;
	/* Delivered and failed recipients wait nowhere: no lane for two
	 * and four. */
	e->rcpts[1].state = RCPT_DELIVERED;
	e->rcpts[4].state = RCPT_FAILED;
	qindex_of(e, &qi);
	assert_int_equal(qi.nlanes, 2);
	/* In recipient order. */
	assert_string_equal(qi.lanes[0], "one.example");
	assert_string_equal(qi.lanes[1], "three.example");
	qindex_fini(&qi);
	assert_null(qi.lanes);
	assert_int_equal(qi.nlanes, 0);
	envelope_free(e);
}

static void
test_an_envelope_with_nothing_pending_has_no_lane(void **state)
{
	const char *const rcpts[] = {"a@one.example", "b@two.example"};
	struct envelope *e = env_with(0, rcpts, 2);
	struct qindex qi;

	(void)state;
	e->rcpts[0].state = RCPT_DELIVERED;
	e->rcpts[1].state = RCPT_FAILED;
	qindex_of(e, &qi);
	assert_int_equal(qi.nlanes, 0);
	qindex_fini(&qi);
	envelope_free(e);
}

static void
test_a_notifications_lanes_all_carry_the_bang(void **state)
{
	const char *const rcpts[] = {"a@one.example", "b@ONE.example"};
	struct envelope *e = env_with(ENV_DSN, rcpts, 2);
	struct qindex qi;

	(void)state;
	qindex_of(e, &qi);
	assert_int_equal(qi.nlanes, 1);
	assert_string_equal(qi.lanes[0], "!one.example");
	qindex_fini(&qi);
	envelope_free(e);
}

static void
test_the_index_holds_due_size_and_flags(void **state)
{
	const char *const rcpts[] = {"a@one.example"};
	struct envelope *e = env_with(0, rcpts, 1);
	struct qindex qi;

	(void)state;
	/* next_attempt is in seconds, due in ms. */
	e->next_attempt = 1764000400;
	e->size = 10240;
	qindex_of(e, &qi);
	assert_int_equal(qi.due, 1764000400000LL);
	assert_int_equal(qi.size, 10240);
	assert_int_equal(qi.flags, 0);
	qindex_fini(&qi);

	/* 0 stays 0: at once. */
	e->next_attempt = 0;
	qindex_of(e, &qi);
	assert_int_equal(qi.due, 0);
	qindex_fini(&qi);

	e->flags = ENV_HELD;
	qindex_of(e, &qi);
	assert_int_equal(qi.flags, QI_HELD);
	qindex_fini(&qi);
	e->flags = ENV_DELAY_SENT;
	qindex_of(e, &qi);
	assert_int_equal(qi.flags, QI_DELAY_SENT);
	qindex_fini(&qi);
	/* The other envelope flags have no index flag. */
	e->flags = ENV_HELD | ENV_DELAY_SENT | ENV_SMTPUTF8 | ENV_DSN;
	qindex_of(e, &qi);
	assert_int_equal(qi.flags, QI_HELD | QI_DELAY_SENT);
	qindex_fini(&qi);
	e->flags = ENV_SMTPUTF8 | ENV_DSN;
	qindex_of(e, &qi);
	assert_int_equal(qi.flags, 0);
	qindex_fini(&qi);
	envelope_free(e);
}

static void
test_an_index_key_splits_back_into_lane_and_qid(void **state)
{
	char key[KEY_SIZE], lane[LANE_SIZE], qid[QID_SIZE];
	size_t n;

	(void)state;
	n = qindex_key("example.com", "0123456789AB", key);
	assert_int_equal(n, strlen("example.com") + 1 + QID_LEN);
	assert_memory_equal(key, "example.com\0000123456789AB", n);
	assert_true(qindex_key_split(key, n, lane, qid));
	assert_string_equal(lane, "example.com");
	assert_string_equal(qid, "0123456789AB");

	/* A notifications lane, and the longest lane there is. */
	n = qindex_key("!example.com", "ZZZZZZZZZZZZ", key);
	assert_true(qindex_key_split(key, n, lane, qid));
	assert_string_equal(lane, "!example.com");
	assert_string_equal(qid, "ZZZZZZZZZZZZ");
	char longest[LANE_SIZE];
	memset(longest, 'a', LANE_SIZE - 1);
	longest[0] = '!';
	longest[LANE_SIZE - 1] = '\0';
	n = qindex_key(longest, "0123456789AB", key);
	assert_int_equal(n, LANE_SIZE + QID_LEN);
	assert_true(qindex_key_split(key, n, lane, qid));
	assert_string_equal(lane, longest);
}

static void
test_a_key_that_is_not_an_index_key_is_refused(void **state)
{
	char key[KEY_SIZE + 8], lane[LANE_SIZE], qid[QID_SIZE];
	size_t n;

	(void)state;
	/* No NUL between lane and qid. */
	assert_false(qindex_key_split("example.com0123456789AB",
	    strlen("example.com0123456789AB"), lane, qid));
	/* One byte short, one byte long. */
	n = qindex_key("example.com", "0123456789AB", key);
	assert_false(qindex_key_split(key, n - 1, lane, qid));
	key[n] = 'C';
	assert_false(qindex_key_split(key, n + 1, lane, qid));
	/* The NUL of a lane past the end of the key does not count. */
	assert_false(qindex_key_split(key, strlen("example.com"), lane, qid));
	/* Not a queue id: I, lower case, a NUL inside. */
	n = qindex_key("example.com", "0123456789AI", key);
	assert_false(qindex_key_split(key, n, lane, qid));
	n = qindex_key("example.com", "0123456789ab", key);
	assert_false(qindex_key_split(key, n, lane, qid));
	n = qindex_key("example.com", "0123456789AB", key);
	key[n - 3] = '\0';
	assert_false(qindex_key_split(key, n, lane, qid));
	/* A lane too long for LANE_SIZE. */
	memset(key, 'a', LANE_SIZE);
	key[LANE_SIZE] = '\0';
	memcpy(key + LANE_SIZE + 1, "0123456789AB", QID_LEN);
	assert_false(qindex_key_split(key, LANE_SIZE + 1 + QID_LEN, lane, qid));
}

/* RocksDB's default order: bytewise, a prefix first. */
static int
key_cmp(const void *pa, const void *pb)
{
	const char *a = pa, *b = pb;
	size_t la, lb, l;
	int c;

	la = strlen(a) + 1 + QID_LEN;
	lb = strlen(b) + 1 + QID_LEN;
	l = la < lb ? la : lb;
	if ((c = memcmp(a, b, l)) != 0)
		return c;
	return la < lb ? -1 : la > lb;
}

static void
test_a_lanes_keys_sort_together_in_arrival_order(void **state)
{
	/* Lanes of which "a.com" is a prefix, and one that is its prefix:
	 * a scan of "a.com" from "a.com" NUL must meet only its own keys
	 * until the first key of another lane. */
	const char *lanes[] = {"a.com.evil", "a.com", "a.co", "a.com-x",
	    "a.com", "!a.com", "a.com0", "a.com"};
	const char *qids[] = {"0000000000A0", "0000000000B2", "0000000000A1",
	    "0000000000A2", "0000000000B0", "0000000000A3", "0000000000A4",
	    "0000000000B1"};
	enum { N = sizeof(lanes) / sizeof(lanes[0]) };
	char keys[N][KEY_SIZE];
	int first = -1, last = -1;

	(void)state;
	memset(keys, 0, sizeof(keys));
	for (size_t i = 0; i < N; i++)
		qindex_key(lanes[i], qids[i], keys[i]);
	qsort(keys, N, sizeof(keys[0]), key_cmp);
	for (int i = 0; i < (int)N; i++) {
		if (strcmp(keys[i], "a.com") != 0)
			continue;
		if (first < 0)
			first = i;
		last = i;
	}
	/* All three together... */
	assert_int_equal(last - first, 2);
	/* ...in queue id order... */
	assert_memory_equal(keys[first] + 6, "0000000000B0", QID_LEN);
	assert_memory_equal(keys[first + 1] + 6, "0000000000B1", QID_LEN);
	assert_memory_equal(keys[first + 2] + 6, "0000000000B2", QID_LEN);
	/* ...and before the lanes it is a prefix of, though their qids are
	 * smaller. */
	for (int i = last + 1; i < (int)N; i++)
		assert_int_equal(strncmp(keys[i], "a.com", 5), 0);
	assert_string_equal(keys[last + 1], "a.com-x");
}

static void
test_an_index_value_round_trips_big_endian(void **state)
{
	struct qindex qi = {
	    .due = 0x0102030405060708LL,
	    .size = 0x1112131415161718ULL,
	    .flags = QI_HELD | QI_DELAY_SENT,
	};
	char v[QINDEX_VAL];
	int64_t due;
	uint64_t size;
	uint8_t flags;

	(void)state;
	qindex_val_encode(&qi, v);
	/* The stored layout: due | size | flags, most significant first. */
	assert_memory_equal(v,
	    "\x01\x02\x03\x04\x05\x06\x07\x08"
	    "\x11\x12\x13\x14\x15\x16\x17\x18\x03",
	    QINDEX_VAL);
	assert_true(qindex_val_decode(v, sizeof(v), &due, &size, &flags));
	assert_int_equal(due, qi.due);
	assert_int_equal(size, qi.size);
	assert_int_equal(flags, qi.flags);

	/* Extremes: at once, nothing, every flag bit. */
	qi.due = 0;
	qi.size = UINT64_MAX;
	qi.flags = 0xff;
	qindex_val_encode(&qi, v);
	assert_true(qindex_val_decode(v, sizeof(v), &due, &size, &flags));
	assert_int_equal(due, 0);
	assert_true(size == UINT64_MAX);
	assert_int_equal(flags, 0xff);
	qi.due = INT64_MAX;
	qindex_val_encode(&qi, v);
	assert_true(qindex_val_decode(v, sizeof(v), &due, &size, &flags));
	assert_true(due == INT64_MAX);
}

static void
test_an_index_value_of_the_wrong_length_is_refused(void **state)
{
	char v[QINDEX_VAL + 1] = {0};
	int64_t due = 7;
	uint64_t size = 7;
	uint8_t flags = 7;

	(void)state;
	assert_false(qindex_val_decode(v, QINDEX_VAL - 1, &due, &size, &flags));
	assert_false(qindex_val_decode(v, QINDEX_VAL + 1, &due, &size, &flags));
	assert_false(qindex_val_decode(v, 0, &due, &size, &flags));
	/* Refused, and nothing written. */
	assert_int_equal(due, 7);
	assert_int_equal(size, 7);
	assert_int_equal(flags, 7);
}

static void
test_lane_counters_round_trip(void **state)
{
	struct lane_count c = {
	    .messages = 3, .bytes = 0x0102030405060708ULL, .held = UINT64_MAX};
	struct lane_count d;
	char v[QINDEX_COUNT + 1] = {0};

	(void)state;
	qindex_count_encode(&c, v);
	assert_memory_equal(v, "\0\0\0\0\0\0\0\x03", 8);
	assert_memory_equal(v + 8, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	memset(&d, 0, sizeof(d));
	assert_true(qindex_count_decode(v, QINDEX_COUNT, &d));
	assert_int_equal(d.messages, 3);
	assert_int_equal(d.bytes, c.bytes);
	assert_true(d.held == UINT64_MAX);
	assert_false(qindex_count_decode(v, QINDEX_COUNT - 1, &d));
	assert_false(qindex_count_decode(v, QINDEX_COUNT + 1, &d));
}

static void
test_counting_a_message_in_and_out_adds_and_removes_it(void **state)
{
	struct lane_count c = {0};
	struct qindex plain = {.size = 1000};
	struct qindex held = {.size = 50, .flags = QI_HELD | QI_DELAY_SENT};

	(void)state;
	qindex_count_add(&c, &plain, 1);
	qindex_count_add(&c, &held, 1);
	assert_int_equal(c.messages, 2);
	assert_int_equal(c.bytes, 1050);
	assert_int_equal(c.held, 1);
	/* Only QI_HELD counts as held. */
	struct qindex sent = {.size = 1, .flags = QI_DELAY_SENT};
	qindex_count_add(&c, &sent, 1);
	assert_int_equal(c.held, 1);
	qindex_count_add(&c, &sent, -1);
	qindex_count_add(&c, &held, -1);
	assert_int_equal(c.messages, 1);
	assert_int_equal(c.bytes, 1000);
	assert_int_equal(c.held, 0);
	qindex_count_add(&c, &plain, -1);
	assert_int_equal(c.messages, 0);
	assert_int_equal(c.bytes, 0);
	assert_int_equal(c.held, 0);
}

static void
test_counters_never_go_below_zero(void **state)
{
	struct lane_count c = {0};
	struct qindex held = {.size = 1000, .flags = QI_HELD};

	(void)state;
	/* Taking away from nothing (counters a crash left behind, say)
	 * must not wrap to 2^64. */
	qindex_count_add(&c, &held, -1);
	assert_int_equal(c.messages, 0);
	assert_int_equal(c.bytes, 0);
	assert_int_equal(c.held, 0);
	/* Fewer bytes than the message: down to zero, not below. */
	c = (struct lane_count){.messages = 2, .bytes = 10, .held = 0};
	qindex_count_add(&c, &held, -1);
	assert_int_equal(c.messages, 1);
	assert_int_equal(c.bytes, 0);
	assert_int_equal(c.held, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_a_lane_is_the_same_for_both_forms_of_a_domain),
	    cmocka_unit_test(
		test_a_lane_is_the_recipients_domain_in_lower_case),
	    cmocka_unit_test(
		test_a_lane_keeps_only_what_follows_the_last_at_sign),
	    cmocka_unit_test(
		test_a_notifications_lane_is_its_domain_after_a_bang),
	    cmocka_unit_test(test_a_mail_lane_stands_for_its_domain),
	    cmocka_unit_test(
		test_an_envelope_is_indexed_once_per_lane_of_its_pending_recipients),
	    cmocka_unit_test(test_an_envelope_with_nothing_pending_has_no_lane),
	    cmocka_unit_test(test_a_notifications_lanes_all_carry_the_bang),
	    cmocka_unit_test(test_the_index_holds_due_size_and_flags),
	    cmocka_unit_test(test_an_index_key_splits_back_into_lane_and_qid),
	    cmocka_unit_test(test_a_key_that_is_not_an_index_key_is_refused),
	    cmocka_unit_test(test_a_lanes_keys_sort_together_in_arrival_order),
	    cmocka_unit_test(test_an_index_value_round_trips_big_endian),
	    cmocka_unit_test(
		test_an_index_value_of_the_wrong_length_is_refused),
	    cmocka_unit_test(test_lane_counters_round_trip),
	    cmocka_unit_test(
		test_counting_a_message_in_and_out_adds_and_removes_it),
	    cmocka_unit_test(test_counters_never_go_below_zero),
	};

	return cmocka_run_group_tests_name("queue/qindex", tests, NULL, NULL);
}
