/*
 * Queue ids: 12 characters of Crockford base32 ("0-9A-Z" less I, L, O, U)
 * for a 60-bit number: microseconds since 2020-01-01 shifted left 8 bits,
 * plus a sequence for ids made within one microsecond. They sort in time
 * order as strings and as RocksDB keys, and are safe in file names and logs.
 */
#ifndef MXSPOOL_QID_H
#define MXSPOOL_QID_H

#include <stdbool.h>
#include <stdint.h>

#define QID_LEN 12
#define QID_SIZE (QID_LEN + 1)

struct qid_gen {
	uint64_t last; /* the last number issued */
};

/*
 * Never issues a number at or below floor: at start the spool passes the
 * largest id it holds, so ids stay unique even if the clock went back.
 */
void qid_gen_init(struct qid_gen *g, const char *floor);
/* The next id, strictly greater than every id issued before. */
void qid_next(struct qid_gen *g, char out[QID_SIZE]);
bool qid_valid(const char *s);
/* The arrival time encoded in an id, in unix microseconds. */
int64_t qid_time(const char *qid);

#endif
