/*
 * libFuzzer target for queue/walcheck.c, the reader of RocksDB's
 * write-ahead logs that a start-up runs on whatever a crash or a bad disk
 * left (damaged logs are its input). The input is a whole log file, read
 * as it is and again with every record's checksum made right, so that
 * mutations of the records' types, lengths and contents are read past
 * the checksum too. Invariants checked, both times:
 * - the figures agree: every intact batch is given to the callback, at
 *   least 12 bytes (its header); damage only before an intact batch, with
 *   a reason; lost bytes only with damage; nothing past the file's end;
 * - a round trip: the intact batches laid out afresh (walcheck_rewrite,
 *   through memfds) read back as the same batches, in the same order,
 *   with the same sequence numbers, no lost bytes and no garbage tail;
 *   the only damage such a log may show is sequence numbers missing
 *   between batches (which the original had too).
 *
 *   make fuzz FUZZ_TARGETS=walcheck   (seeds: tests/fuzz/corpus/walcheck/,
 *   logs mxspoold's RocksDB wrote, and damaged copies of them)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/walcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The batches one scan gave, end to end, and where each ends. */
struct seen {
	unsigned char *p;
	size_t len, cap;
	size_t *ends;
	size_t n, capn;
};

static void
on_batch(void *arg, const unsigned char *batch, size_t len)
{
	struct seen *s = arg;

	if (len < 12)
		abort();
	if (s->len + len > s->cap) {
		s->cap = (s->len + len) * 2;
		s->p = realloc(s->p, s->cap);
	}
	memcpy(s->p + s->len, batch, len);
	s->len += len;
	if (s->n == s->capn) {
		s->capn = s->capn ? s->capn * 2 : 16;
		s->ends = realloc(s->ends, s->capn * sizeof(*s->ends));
	}
	s->ends[s->n++] = s->len;
}

static void
check(const struct walcheck *wc, const struct seen *s, size_t size)
{
	bool damaged = wc->damage_at != WALCHECK_NONE;

	if (wc->size != size || wc->batches != s->n || wc->intact_end > size ||
	    wc->after > wc->batches || wc->lost_bytes > size ||
	    memchr(wc->why, '\0', sizeof(wc->why)) == NULL)
		abort();
	if (damaged != (wc->why[0] != '\0') ||
	    (damaged && (wc->damage_at >= wc->intact_end || wc->after == 0)) ||
	    (!damaged && (wc->lost_bytes != 0 || wc->after != 0)))
		abort();
	if (wc->batches == 0 && (wc->first_seq != 0 || wc->next_seq != 0 ||
				    wc->intact_end != 0 || damaged))
		abort();
}

static int
memfd_with(const void *p, size_t len)
{
	int fd = memfd_create("fuzz_walcheck", MFD_CLOEXEC);

	if (fd < 0 || (len > 0 && write(fd, p, len) != (ssize_t)len))
		abort();
	return fd;
}

/*
 * Rewrites the checksum of every record the reader will get to, walking
 * the log the way it does (block trailers, zeroed space, lengths that
 * cross a block are skipped to the next block).
 */
static void
fix_checksums(unsigned char *p, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		size_t off = pos % WALCHECK_BLOCK, left = WALCHECK_BLOCK - off;
		size_t next = pos + left, n, hsz;
		uint32_t c;

		if (left < 7) {
			pos = next;
			continue;
		}
		if (len - pos < 7)
			break;
		n = (size_t)p[pos + 4] | (size_t)p[pos + 5] << 8;
		hsz = p[pos + 6] > 4 ? 11 : 7;
		if ((p[pos + 6] == 0 && n == 0) ||
		    (off + hsz + n > WALCHECK_BLOCK && next <= len)) {
			pos = next;
			continue;
		}
		if (pos + hsz + n > len)
			break;
		c = walcheck_crc32c(0, p + pos + 6, hsz - 6 + n);
		c = ((c >> 15) | (c << 17)) + 0xa282ead8u;
		for (int i = 0; i < 4; i++)
			p[pos + (size_t)i] = (unsigned char)(c >> (8 * i));
		pos += hsz + n;
	}
}

static void
fuzz_log(const uint8_t *data, size_t size)
{
	struct seen a = {0}, b = {0};
	struct walcheck wc, wc2;
	char from[64], to[64], err[256];
	int in, out;
	struct stat st;
	unsigned char *p;

	walcheck_scan_batches(data, size, &wc, on_batch, &a);
	check(&wc, &a, size);

	in = memfd_with(data, size);
	out = memfd_with(NULL, 0);
	snprintf(from, sizeof(from), "/proc/self/fd/%d", in);
	snprintf(to, sizeof(to), "/proc/self/fd/%d", out);
	if (walcheck_rewrite(from, to, err, sizeof(err)) < 0 ||
	    fstat(out, &st) < 0)
		abort();
	p = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (pread(out, p, (size_t)st.st_size, 0) != st.st_size)
		abort();
	walcheck_scan_batches(p, (size_t)st.st_size, &wc2, on_batch, &b);
	check(&wc2, &b, (size_t)st.st_size);
	if (b.n != a.n || b.len != a.len ||
	    (a.len > 0 && memcmp(a.p, b.p, a.len) != 0) ||
	    (a.n > 0 && memcmp(a.ends, b.ends, a.n * sizeof(*a.ends)) != 0) ||
	    wc2.first_seq != wc.first_seq || wc2.next_seq != wc.next_seq ||
	    wc2.lost_seqs != wc.lost_seqs || wc2.lost_bytes != 0 ||
	    wc2.tail_garbage || wc2.intact_end != (uint64_t)st.st_size ||
	    (wc2.damage_at != WALCHECK_NONE &&
		strcmp(wc2.why, "sequence numbers missing") != 0))
		abort();

	free(p);
	close(in);
	close(out);
	free(a.p);
	free(a.ends);
	free(b.p);
	free(b.ends);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *fixed = malloc(size > 0 ? size : 1);

	fuzz_log(data, size);
	memcpy(fixed, data, size);
	fix_checksums(fixed, size);
	fuzz_log(fixed, size);
	free(fixed);
	return 0;
}
