/* Queue ids: time-ordered, unique, 12 characters (see qid.h). */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "queue/qid.h"

/* Crockford's base32: ascending in ASCII, so strings sort as numbers. */
static const char qid_digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define QID_EPOCH_US 1577836800000000ULL /* 2020-01-01T00:00:00Z */
#define QID_SEQ_BITS 8
/* The sequence's high bit: an id for an arrival on another node. */
#define QID_PEER 0x80u

static int
qid_digit_value(char c)
{
	const char *p = c ? strchr(qid_digits, c) : NULL;

	return p ? (int)(p - qid_digits) : -1;
}

static uint64_t
qid_decode(const char *s)
{
	uint64_t v = 0;

	for (int i = 0; i < QID_LEN; i++)
		v = (v << 5) | (uint64_t)qid_digit_value(s[i]);
	return v;
}

static void
qid_encode(uint64_t v, char out[QID_SIZE])
{
	for (int i = QID_LEN - 1; i >= 0; i--) {
		out[i] = qid_digits[v & 31];
		v >>= 5;
	}
	out[QID_LEN] = '\0';
}

bool
qid_valid(const char *s)
{
	for (int i = 0; i < QID_LEN; i++)
		if (qid_digit_value(s[i]) < 0)
			return false;
	return s[QID_LEN] == '\0';
}

void
qid_gen_init(struct qid_gen *g, const char *floor)
{
	g->last = floor != NULL && qid_valid(floor) ? qid_decode(floor) : 0;
	if (getrandom(&g->past, sizeof(g->past), 0) != sizeof(g->past))
		g->past = (uint64_t)time(NULL) * 2654435761u;
}

void
qid_next(struct qid_gen *g, char out[QID_SIZE])
{
	struct timespec ts;
	uint64_t us, v;

	clock_gettime(CLOCK_REALTIME, &ts);
	us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	us = us > QID_EPOCH_US ? us - QID_EPOCH_US : 0;
	v = us << QID_SEQ_BITS;
	/*
	 * Within one microsecond, or when the clock went back, count on from
	 * the last id: the sequence bits absorb bursts, and past 256 ids the
	 * ids run a few microseconds ahead of the clock, never behind.
	 */
	if (v <= g->last)
		v = g->last + 1;
	/* The high half of the sequence is qid_at's. */
	if (v & QID_PEER)
		v = ((v >> QID_SEQ_BITS) + 1) << QID_SEQ_BITS;
	g->last = v;
	qid_encode(v, out);
}

void
qid_at(struct qid_gen *g, int64_t arrival_us, char out[QID_SIZE])
{
	uint64_t n = g->past++, us;

	us = arrival_us > (int64_t)QID_EPOCH_US
		 ? (uint64_t)arrival_us / 1000000 * 1000000 - QID_EPOCH_US
		 : 0;
	/* Within the second of arrival: 10^6 microseconds of 2^7 ids. */
	us += (n >> 7) % 1000000;
	qid_encode((us << QID_SEQ_BITS) | QID_PEER | (n & 0x7f), out);
}

bool
qid_handed_over(const char *qid)
{
	return qid_valid(qid) && (qid_decode(qid) & QID_PEER) != 0;
}

int64_t
qid_time(const char *qid)
{
	if (!qid_valid(qid))
		return 0;
	return (int64_t)((qid_decode(qid) >> QID_SEQ_BITS) + QID_EPOCH_US);
}
