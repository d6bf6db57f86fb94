/*
 * Unit tests for queue/walcheck.c: logs laid out here the way RocksDB's
 * log writer lays them out, then damaged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/walcheck.h"

#define B WALCHECK_BLOCK

struct log {
	unsigned char *p;
	size_t len;
	bool recyclable;
	size_t starts[64]; /* where each batch's first fragment starts */
	size_t nbatches;
};

static void
put(struct log *l, const void *p, size_t n)
{
	l->p = realloc(l->p, l->len + n);
	memcpy(l->p + l->len, p, n);
	l->len += n;
}

static void
fragment(struct log *l, int type, const unsigned char *p, size_t n)
{
	size_t h = l->recyclable ? 11 : 7;
	unsigned char hdr[11] = {0};
	uint32_t c;

	hdr[4] = (unsigned char)(n & 0xff);
	hdr[5] = (unsigned char)(n >> 8);
	hdr[6] = (unsigned char)(l->recyclable ? type + 4 : type);
	hdr[7] = 9; /* log number 9 */
	c = walcheck_crc32c(0, hdr + 6, h - 6);
	c = walcheck_crc32c(c, p, n);
	c = ((c >> 15) | (c << 17)) + 0xa282ead8u;
	for (int i = 0; i < 4; i++)
		hdr[i] = (unsigned char)(c >> (8 * i));
	put(l, hdr, h);
	put(l, p, n);
}

/* A write batch of count entries from seq, len bytes in all. */
static void
add_batch(struct log *l, uint64_t seq, uint32_t count, size_t len)
{
	unsigned char *p = calloc(1, len);
	size_t h = l->recyclable ? 11 : 7, done = 0;
	bool first = true;

	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(seq >> (8 * i));
	for (int i = 0; i < 4; i++)
		p[8 + i] = (unsigned char)(count >> (8 * i));
	for (size_t i = 12; i < len; i++)
		p[i] = (unsigned char)('a' + i % 26);
	for (;;) {
		size_t left = B - l->len % B, n;
		int type;

		if (left < h) {
			static const unsigned char zero[11];

			put(l, zero, left);
			continue;
		}
		if (first)
			l->starts[l->nbatches++] = l->len;
		n = len - done < left - h ? len - done : left - h;
		if (first && done + n == len)
			type = 1;
		else if (first)
			type = 2;
		else if (done + n == len)
			type = 4;
		else
			type = 3;
		fragment(l, type, p + done, n);
		done += n;
		first = false;
		if (done == len)
			break;
	}
	free(p);
}

/* Twenty batches of 3 entries, 3000 bytes each, from sequence 1. */
static void
make_log(struct log *l)
{
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < 20; i++)
		add_batch(l, 1 + 3 * (uint64_t)i, 3, 3000);
}

static void
scan(struct log *l, struct walcheck *wc)
{
	walcheck_scan(l->p, l->len, wc);
}

static void
test_crc32c_matches_the_standard_check_values(void **state)
{
	unsigned char zeros[32] = {0};

	(void)state;
	assert_int_equal(walcheck_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(walcheck_crc32c(0, zeros, 32), 0x8a9136aa);
	/* In two parts, the same. */
	assert_int_equal(
	    walcheck_crc32c(walcheck_crc32c(0, "1234", 4), "56789", 5),
	    0xe3069283);
}

static void
test_an_intact_log_reads_whole(void **state)
{
	struct log l;
	struct walcheck wc;

	(void)state;
	make_log(&l);
	scan(&l, &wc);
	assert_int_equal(wc.size, l.len);
	assert_int_equal(wc.batches, 20);
	assert_int_equal(wc.first_seq, 1);
	assert_int_equal(wc.next_seq, 61);
	assert_int_equal(wc.intact_end, l.len);
	assert_true(wc.damage_at == WALCHECK_NONE);
	assert_int_equal(wc.lost_bytes, 0);
	assert_int_equal(wc.lost_seqs, 0);
	assert_false(wc.tail_garbage);
	free(l.p);
}

static void
test_an_empty_log_and_a_zero_tail_are_no_damage(void **state)
{
	struct log l;
	struct walcheck wc;
	unsigned char zeros[5000] = {0};

	(void)state;
	walcheck_scan(NULL, 0, &wc);
	assert_int_equal(wc.batches, 0);
	assert_true(wc.damage_at == WALCHECK_NONE);
	make_log(&l);
	put(&l, zeros, sizeof(zeros)); /* allocated, never written */
	scan(&l, &wc);
	assert_int_equal(wc.batches, 20);
	assert_true(wc.damage_at == WALCHECK_NONE);
	assert_false(wc.tail_garbage);
	free(l.p);
}

static void
test_a_flipped_bit_in_the_middle_is_damage_with_what_it_cost(void **state)
{
	struct log l;
	struct walcheck wc;
	size_t at;

	(void)state;
	make_log(&l);
	at = l.starts[8] + 1500;
	l.p[at] ^= 0x10;
	scan(&l, &wc);
	assert_true(wc.damage_at != WALCHECK_NONE);
	assert_string_equal(wc.why, "checksum mismatch");
	/* The reader gives up the rest of that 32 KiB block. */
	assert_true(wc.damage_at <= at && wc.damage_at >= at / B * B);
	assert_true(wc.lost_bytes >= 3000);
	assert_int_equal(wc.lost_seqs % 3, 0);
	assert_true(wc.lost_seqs >= 3);
	assert_int_equal(wc.batches + wc.lost_seqs / 3, 20);
	assert_true(wc.after > 0);
	assert_int_equal(wc.next_seq, 61);
	assert_false(wc.tail_garbage);
	free(l.p);
}

static void
test_a_flipped_bit_in_the_last_record_is_only_a_bad_tail(void **state)
{
	struct log l;
	struct walcheck wc;

	(void)state;
	make_log(&l);
	l.p[l.len - 10] ^= 1;
	scan(&l, &wc);
	assert_true(wc.damage_at == WALCHECK_NONE);
	assert_int_equal(wc.batches, 19);
	assert_true(wc.tail_garbage);
	assert_int_equal(wc.intact_end, l.starts[19]);
	free(l.p);
}

static void
test_a_record_cut_short_at_the_end_is_a_torn_tail(void **state)
{
	struct log l;
	struct walcheck wc;

	(void)state;
	make_log(&l);
	for (size_t cut = l.starts[19] + 1; cut < l.len; cut += 97) {
		walcheck_scan(l.p, cut, &wc);
		assert_true(wc.damage_at == WALCHECK_NONE);
		assert_false(wc.tail_garbage);
		assert_int_equal(wc.batches, 19);
		assert_int_equal(wc.next_seq, 58);
	}
	free(l.p);
}

static void
test_a_zeroed_block_in_the_middle_is_damage(void **state)
{
	struct log l;
	struct walcheck wc;

	(void)state;
	make_log(&l);
	/* Zeros from a record's header on, and from inside a payload. */
	for (int k = 0; k < 2; k++) {
		size_t at = k == 0 ? l.starts[7] : l.starts[7] + 100;
		unsigned char *save = malloc(4096);

		memcpy(save, l.p + at, 4096);
		memset(l.p + at, 0, 4096);
		scan(&l, &wc);
		assert_true(wc.damage_at != WALCHECK_NONE);
		assert_true(wc.damage_at <= at);
		assert_true(wc.after > 0);
		assert_true(wc.lost_seqs > 0);
		memcpy(l.p + at, save, 4096);
		free(save);
	}
	free(l.p);
}

static void
test_a_record_across_blocks_is_lost_whole_when_a_middle_goes(void **state)
{
	struct log l = {0};
	struct walcheck wc;

	(void)state;
	add_batch(&l, 1, 2, 1000);
	add_batch(&l, 3, 5, 100000); /* FIRST, MIDDLE, MIDDLE, LAST */
	add_batch(&l, 8, 2, 1000);
	add_batch(&l, 10, 2, 40000);
	add_batch(&l, 12, 2, 1000);
	l.p[2 * B + 500] ^= 0x80; /* in a MIDDLE fragment */
	scan(&l, &wc);
	assert_int_equal(wc.damage_at, l.starts[1]);
	assert_int_equal(wc.lost_seqs, 5);
	assert_int_equal(wc.batches, 4);
	assert_int_equal(wc.after, 3);
	assert_int_equal(wc.next_seq, 14);
	free(l.p);
}

static void
test_missing_sequence_numbers_are_damage_even_if_every_byte_reads(void **state)
{
	struct log l = {0};
	struct walcheck wc;

	(void)state;
	add_batch(&l, 1, 2, 500);
	add_batch(&l, 3, 2, 500);
	add_batch(&l, 9, 2, 500); /* 5 to 8 are gone */
	add_batch(&l, 11, 2, 500);
	scan(&l, &wc);
	assert_int_equal(wc.damage_at, l.starts[2]);
	assert_string_equal(wc.why, "sequence numbers missing");
	assert_int_equal(wc.lost_seqs, 4);
	assert_int_equal(wc.lost_bytes, 0);
	assert_int_equal(wc.after, 2);
	free(l.p);
}

static void
test_a_bad_length_in_the_middle_is_damage(void **state)
{
	struct log l;
	struct walcheck wc;

	(void)state;
	make_log(&l);
	l.p[l.starts[5] + 5] = 0x7f; /* length far past the block */
	scan(&l, &wc);
	assert_true(wc.damage_at != WALCHECK_NONE);
	assert_true(wc.after > 0);
	free(l.p);
}

static void
test_recyclable_records_read_too(void **state)
{
	struct log l = {.recyclable = true};
	struct walcheck wc;

	(void)state;
	for (int i = 0; i < 20; i++)
		add_batch(&l, 1 + 3 * (uint64_t)i, 3, 3000);
	scan(&l, &wc);
	assert_int_equal(wc.batches, 20);
	assert_true(wc.damage_at == WALCHECK_NONE);
	free(l.p);
}

/* Any byte of a log changed any way: an answer, never a crash, and what
 * reads never exceeds what was written. */
static void
test_every_single_byte_damage_is_survived(void **state)
{
	struct log l = {0};
	struct walcheck wc;

	(void)state;
	for (int i = 0; i < 6; i++)
		add_batch(&l, 1 + 2 * (uint64_t)i, 2, i == 3 ? 40000 : 700);
	for (size_t at = 0; at < l.len; at += at < 2000 ? 1 : 61) {
		for (int v = 0; v < 3; v++) {
			unsigned char was = l.p[at];

			l.p[at] = v == 0 ? 0 : v == 1 ? 0xff : was ^ 4;
			scan(&l, &wc);
			assert_true(wc.batches <= 6);
			assert_true(wc.after <= wc.batches);
			assert_true(wc.intact_end <= l.len);
			l.p[at] = was;
		}
	}
	free(l.p);
}

/* A rewritten log holds exactly the batches that read, laid out anew:
 * nothing unreadable left, only the gap in sequence numbers. */
static void
test_a_rewrite_keeps_every_intact_batch_and_nothing_else(void **state)
{
	char from[] = "/tmp/walcheck-from-XXXXXX", to[64], err[256];
	struct log l = {0};
	struct walcheck before, after;
	int fd = mkstemp(from);

	(void)state;
	assert_true(fd >= 0);
	add_batch(&l, 1, 2, 1000);
	add_batch(&l, 3, 5, 100000);
	add_batch(&l, 8, 2, 1000);
	add_batch(&l, 10, 2, 40000);
	add_batch(&l, 12, 2, 1000);
	l.p[2 * B + 500] ^= 0x80;
	assert_int_equal(write(fd, l.p, l.len), (ssize_t)l.len);
	close(fd);
	snprintf(to, sizeof(to), "%s.new", from);
	scan(&l, &before);
	assert_int_equal(walcheck_rewrite(from, to, err, sizeof(err)), 0);
	assert_int_equal(walcheck_file(to, &after, err, sizeof(err)), 0);
	assert_int_equal(after.batches, before.batches);
	assert_int_equal(after.batches, 4);
	assert_int_equal(after.first_seq, 1);
	assert_int_equal(after.next_seq, 14);
	assert_int_equal(after.lost_bytes, 0);
	assert_int_equal(after.lost_seqs, 5);
	assert_string_equal(after.why, "sequence numbers missing");
	assert_int_equal(after.intact_end, after.size);
	assert_false(after.tail_garbage);
	/* A log that does not exist is an error, not a crash. */
	assert_int_equal(
	    walcheck_rewrite("/nonexistent/x", to, err, sizeof(err)), -1);
	unlink(from);
	unlink(to);
	free(l.p);
}

static void
count_batch(void *arg, const unsigned char *batch, size_t len)
{
	(void)batch;
	(void)len;
	(*(int *)arg)++;
}

/* An empty record first, then a batch: the empty one is too short to be
 * a batch, damage before the one that reads. (Scanned with a callback,
 * it once offset the batch buffer before there was one: UBSan's "zero
 * offset to null pointer", found by tests/fuzz/fuzz_walcheck.c.) */
static void
test_an_empty_first_record_is_damage_and_no_batch(void **state)
{
	struct log l = {0};
	struct walcheck wc;
	int calls = 0;

	(void)state;
	fragment(&l, 1, (const unsigned char *)"", 0);
	add_batch(&l, 1, 2, 100);
	walcheck_scan_batches(l.p, l.len, &wc, count_batch, &calls);
	assert_int_equal(calls, 1);
	assert_int_equal(wc.batches, 1);
	assert_int_equal(wc.damage_at, 0);
	assert_string_equal(wc.why, "write batch too short");
	assert_int_equal(wc.lost_bytes, 7);
	free(l.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c_matches_the_standard_check_values),
	    cmocka_unit_test(test_an_intact_log_reads_whole),
	    cmocka_unit_test(test_an_empty_log_and_a_zero_tail_are_no_damage),
	    cmocka_unit_test(
		test_a_flipped_bit_in_the_middle_is_damage_with_what_it_cost),
	    cmocka_unit_test(
		test_a_flipped_bit_in_the_last_record_is_only_a_bad_tail),
	    cmocka_unit_test(test_a_record_cut_short_at_the_end_is_a_torn_tail),
	    cmocka_unit_test(test_a_zeroed_block_in_the_middle_is_damage),
	    cmocka_unit_test(
		test_a_record_across_blocks_is_lost_whole_when_a_middle_goes),
	    cmocka_unit_test(
		test_missing_sequence_numbers_are_damage_even_if_every_byte_reads),
	    cmocka_unit_test(test_a_bad_length_in_the_middle_is_damage),
	    cmocka_unit_test(test_recyclable_records_read_too),
	    cmocka_unit_test(test_every_single_byte_damage_is_survived),
	    cmocka_unit_test(test_an_empty_first_record_is_damage_and_no_batch),
	    cmocka_unit_test(
		test_a_rewrite_keeps_every_intact_batch_and_nothing_else),
	};

	return cmocka_run_group_tests_name("queue/walcheck", tests, NULL, NULL);
}
