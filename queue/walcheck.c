/*
 * RocksDB's write-ahead log, read the way its own reader does (a bad
 * fragment costs the rest of its 32 KiB block, a record missing a
 * fragment is dropped whole) so that what is reported here is what a
 * recovery that skips damage would lose.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xmem.h"
#include "queue/walcheck.h"

enum {
	REC_ZERO = 0,
	REC_FULL = 1,
	REC_FIRST = 2,
	REC_MIDDLE = 3,
	REC_LAST = 4,
	REC_RECYCLABLE = 4, /* add to the above: 5 to 8 */
	HDR = 7,
	HDR_RECYCLABLE = 11,
	BATCH_HDR = 12 /* sequence (8) count (4) */
};

#define CRC_MASK_DELTA 0xa282ead8u

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

#if defined(__x86_64__)
/* SSE 4.2's crc32 instruction is CRC-32C: a 256 MiB log in 0.1 s, not
 * the 0.6 s of the table, at every start. */
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(uint32_t crc, const unsigned char *b, size_t len)
{
	uint64_t c = crc;

	for (; len >= 8; b += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, b, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	crc = (uint32_t)c;
	while (len-- > 0)
		crc = __builtin_ia32_crc32qi(crc, *b++);
	return crc;
}
#endif

uint32_t
walcheck_crc32c(uint32_t crc, const void *p, size_t len)
{
	const unsigned char *b = p;

	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc_sse42(crc, b, len);
#endif
	pthread_once(&crc_once, crc_init);
	while (len-- > 0)
		crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint64_t
le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The stored CRC is masked (rotated and offset), over type and payload. */
static bool
walcheck_crc_ok(const unsigned char *rec, uint64_t hsz, uint64_t n)
{
	uint32_t c = walcheck_crc32c(0, rec + 6, hsz - 6 + n);

	return (uint32_t)(((c >> 15) | (c << 17)) + CRC_MASK_DELTA) ==
	       (uint32_t)le(rec, 4);
}

struct scan {
	struct walcheck *wc;
	uint64_t pending; /* start of an unreadable region, or _NONE */
	const char *pending_why;
	bool pending_garbage;  /* not only zeros or a cut-short record */
	walcheck_batch_cb *cb; /* given each intact batch, or NULL */
	void *arg;
	unsigned char *batch; /* the record being put together, for cb */
	size_t batchlen, batchcap;
	bool in_frag; /* inside a FIRST ... LAST record */
	uint64_t frag_start;
	unsigned char head[BATCH_HDR];
	size_t headn;
};

/* Something at `at` does not read; the record in progress is lost too. */
static void
scan_problem(struct scan *s, uint64_t at, const char *why, bool garbage)
{
	if (s->in_frag) {
		at = s->frag_start;
		s->in_frag = false;
	}
	if (s->pending == WALCHECK_NONE) {
		s->pending = at;
		s->pending_why = why;
	}
	if (garbage)
		s->pending_garbage = true;
}

static void
scan_head(struct scan *s, const unsigned char *p, size_t n)
{
	/* An empty fragment (RocksDB writes one where a block has just a
	 * header's room left) adds nothing, and must not offset a buffer
	 * not yet made. */
	if (s->cb != NULL && n > 0) {
		s->batch = xgrow(s->batch, &s->batchcap, s->batchlen + n, 1);
		memcpy(s->batch + s->batchlen, p, n);
		s->batchlen += n;
	}
	size_t take = BATCH_HDR - s->headn;

	if (take > n)
		take = n;
	memcpy(s->head + s->headn, p, take);
	s->headn += take;
}

/* An intact record from start to end: a write batch, or damage. */
static void
scan_batch(struct scan *s, uint64_t start, uint64_t end)
{
	struct walcheck *wc = s->wc;
	uint64_t seq, count;

	if (s->headn < BATCH_HDR) {
		scan_problem(s, start, "write batch too short", true);
		return;
	}
	seq = le(s->head, 8);
	count = le(s->head + 8, 4);
	if (wc->next_seq != 0 && seq != wc->next_seq &&
	    s->pending == WALCHECK_NONE) {
		/* Whole blocks gone, or batches out of order. */
		s->pending = start;
		s->pending_why = "sequence numbers missing";
	}
	if (wc->next_seq != 0 && seq > wc->next_seq)
		wc->lost_seqs += seq - wc->next_seq;
	if (s->pending != WALCHECK_NONE) {
		if (wc->damage_at == WALCHECK_NONE) {
			wc->damage_at = s->pending;
			snprintf(
			    wc->why, sizeof(wc->why), "%s", s->pending_why);
		}
		wc->lost_bytes += start - s->pending;
		s->pending = WALCHECK_NONE;
		s->pending_garbage = false;
	}
	if (wc->damage_at != WALCHECK_NONE)
		wc->after++;
	if (wc->batches++ == 0)
		wc->first_seq = seq;
	wc->next_seq = seq + count;
	wc->intact_end = end;
	if (s->cb != NULL)
		s->cb(s->arg, s->batch, s->batchlen);
}

void
walcheck_scan(const unsigned char *buf, size_t len, struct walcheck *wc)
{
	walcheck_scan_batches(buf, len, wc, NULL, NULL);
}

void
walcheck_scan_batches(const unsigned char *buf, size_t len, struct walcheck *wc,
    walcheck_batch_cb *cb, void *arg)
{
	struct scan s = {
	    .wc = wc, .pending = WALCHECK_NONE, .cb = cb, .arg = arg};
	uint64_t pos = 0;

	memset(wc, 0, sizeof(*wc));
	wc->size = len;
	wc->damage_at = WALCHECK_NONE;
	while (pos < len) {
		uint64_t off = pos % WALCHECK_BLOCK,
			 left = WALCHECK_BLOCK - off;
		uint64_t next_block = pos + left, n, hsz, end;
		unsigned type;

		if (left < HDR) { /* the block's zero trailer */
			pos = next_block;
			continue;
		}
		if (len - pos < HDR) {
			scan_problem(&s, pos, "record cut short", false);
			break;
		}
		n = le(buf + pos + 4, 2);
		type = buf[pos + 6];
		hsz = type > REC_RECYCLABLE ? HDR_RECYCLABLE : HDR;
		if (type == REC_ZERO && n == 0) {
			/* Never written by RocksDB: zeros past the end of
			 * what was written, or a zeroed region. */
			scan_problem(&s, pos, "zeroed region", false);
			pos = next_block;
			continue;
		}
		end = pos + hsz + n;
		if (off + hsz + n > WALCHECK_BLOCK && next_block <= len) {
			/* The writer never crosses a block: damage. */
			scan_problem(&s, pos, "bad record length", true);
			pos = next_block;
			continue;
		}
		if (end > len) {
			/* Cut short: a crash's torn write, if nothing
			 * intact follows (and nothing can: this is EOF). */
			scan_problem(&s, pos, "record cut short", false);
			break;
		}
		if (!walcheck_crc_ok(buf + pos, hsz, n)) {
			scan_problem(&s, pos, "checksum mismatch", true);
			pos = next_block;
			continue;
		}
		if (type > REC_RECYCLABLE)
			type -= REC_RECYCLABLE;
		switch (type) {
		case REC_FULL:
			if (s.in_frag)
				scan_problem(
				    &s, pos, "record without its end", true);
			s.headn = 0;
			s.batchlen = 0;
			scan_head(&s, buf + pos + hsz, n);
			scan_batch(&s, pos, end);
			break;
		case REC_FIRST:
			if (s.in_frag)
				scan_problem(
				    &s, pos, "record without its end", true);
			s.in_frag = true;
			s.frag_start = pos;
			s.headn = 0;
			s.batchlen = 0;
			scan_head(&s, buf + pos + hsz, n);
			break;
		case REC_MIDDLE:
		case REC_LAST:
			if (!s.in_frag) {
				scan_problem(&s, pos,
				    "fragment without its start", true);
				break;
			}
			scan_head(&s, buf + pos + hsz, n);
			if (type == REC_LAST) {
				s.in_frag = false;
				scan_batch(&s, s.frag_start, end);
			}
			break;
		default:
			scan_problem(&s, pos, "unknown record type", true);
			break;
		}
		pos = end;
	}
	if (s.in_frag)
		scan_problem(&s, s.frag_start, "record cut short", false);
	/* What is left unreadable at the end is the tail. */
	wc->tail_garbage = s.pending != WALCHECK_NONE && s.pending_garbage;
	free(s.batch);
}

/* A log being written: where the next byte goes, and the file. */
struct wout {
	FILE *fp;
	uint64_t off;
};

/* Lays out one write batch as RocksDB's writer does: fragments that
 * never cross a block, a block's last bytes (too few for a header) zero. */
static void
wout_batch(struct wout *w, const unsigned char *p, size_t len)
{
	static const unsigned char zero[HDR];
	size_t done = 0;
	bool first = true;

	while (first || done < len) {
		size_t left = WALCHECK_BLOCK - w->off % WALCHECK_BLOCK, n;
		unsigned char hdr[HDR];
		uint32_t c;

		if (left < HDR) {
			fwrite(zero, 1, left, w->fp);
			w->off += left;
			continue;
		}
		n = len - done < left - HDR ? len - done : left - HDR;
		hdr[4] = (unsigned char)(n & 0xff);
		hdr[5] = (unsigned char)(n >> 8);
		if (first)
			hdr[6] = done + n == len ? REC_FULL : REC_FIRST;
		else
			hdr[6] = done + n == len ? REC_LAST : REC_MIDDLE;
		c = walcheck_crc32c(
		    walcheck_crc32c(0, hdr + 6, 1), p + done, n);
		c = ((c >> 15) | (c << 17)) + CRC_MASK_DELTA;
		for (int i = 0; i < 4; i++)
			hdr[i] = (unsigned char)(c >> (8 * i));
		fwrite(hdr, 1, HDR, w->fp);
		fwrite(p + done, 1, n, w->fp);
		w->off += HDR + n;
		done += n;
		first = false;
	}
}

static void
walcheck_on_batch(void *arg, const unsigned char *p, size_t len)
{
	wout_batch(arg, p, len);
}

/* Maps path read-only; *p NULL and *len 0 for an empty file. */
static int
walcheck_map(const char *path, void **p, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	*p = NULL;
	*len = 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_size > 0) {
		*p = mmap(
		    NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (*p == MAP_FAILED) {
			*p = NULL;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		*len = (size_t)st.st_size;
	}
	close(fd);
	return 0;
}

int
walcheck_rewrite(const char *from, const char *to, char *err, size_t errlen)
{
	struct walcheck wc;
	struct wout w = {0};
	void *p;
	size_t len;
	int fd, e = 0;

	if (walcheck_map(from, &p, &len, err, errlen) < 0)
		return -1;
	fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (w.fp = fdopen(fd, "w")) == NULL) {
		e = errno;
		if (fd >= 0)
			close(fd);
	} else {
		walcheck_scan_batches(p, len, &wc, walcheck_on_batch, &w);
		if (fflush(w.fp) != 0 || ferror(w.fp) || fsync(fd) < 0)
			e = errno != 0 ? errno : EIO;
		if (fclose(w.fp) != 0 && e == 0)
			e = errno;
	}
	if (p != NULL)
		munmap(p, len);
	if (e != 0) {
		snprintf(err, errlen, "%s: %s", to, strerror(e));
		return -1;
	}
	return 0;
}

int
walcheck_file(const char *path, struct walcheck *wc, char *err, size_t errlen)
{
	void *p;
	size_t len;

	if (walcheck_map(path, &p, &len, err, errlen) < 0)
		return -1;
	walcheck_scan(p, len, wc);
	if (p != NULL)
		munmap(p, len);
	return 0;
}
