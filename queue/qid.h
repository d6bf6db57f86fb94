/*
 * Queue ids: 12 characters of Crockford base32 ("0-9A-Z" less I, L, O, U)
 * for a 60-bit number: microseconds since 2020-01-01 shifted left 8 bits,
 * plus a sequence for ids made within one microsecond. They sort in time
 * order as strings and as RocksDB keys, and are safe in file names and logs.
 *
 * The time is the message's first arrival: the spool finds mail due for
 * warn_after and max_age by it. A message handed over by another node
 * (ARRIVAL=) gets an id at its first arrival there, from a space of its
 * own: the sequence's high bit set, which ids made here never have.
 */
#ifndef MXSPOOL_QID_H
#define MXSPOOL_QID_H

#include <stdbool.h>
#include <stdint.h>

#define QID_LEN 12
#define QID_SIZE (QID_LEN + 1)

struct qid_gen {
	uint64_t last; /* the last number issued */
	uint64_t past; /* counts the ids made for earlier arrivals */
};

/*
 * Never issues a number at or below floor: at start the spool passes the
 * largest id it holds, so ids stay unique even if the clock went back.
 */
void qid_gen_init(struct qid_gen *g, const char *floor);
/* The next id, strictly greater than every id issued before. */
void qid_next(struct qid_gen *g, char out[QID_SIZE]);
/*
 * An id for a message that first arrived at arrival_us (unix
 * microseconds; only its second counts), on another node. Unique among
 * the ids this generator made (2^7 * 10^6 for each second of arrival
 * before they repeat) and never equal to one qid_next makes; an id made
 * by an earlier run may come again (its counter starts at random), so
 * the spool refuses to store a message over another (queue/commit.c).
 */
void qid_at(struct qid_gen *g, int64_t arrival_us, char out[QID_SIZE]);
/* Whether qid was made by qid_at. */
bool qid_handed_over(const char *qid);
bool qid_valid(const char *s);
/* The arrival time encoded in an id, in unix microseconds. */
int64_t qid_time(const char *qid);

#endif
