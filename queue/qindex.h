/*
 * The spool's index of pending mail, and its counters. Pure code (no
 * RocksDB, no libevent): the queue, the tools and the tests share it.
 *
 * A lane is where a recipient's mail waits: its domain in lower case, as
 * A-labels when it is an international one (RFC 5890), or
 * "!" and the domain for mxspool's own notifications (they travel by
 * bounce_route). Lanes do not depend on the routes configured, so a reload
 * never moves the index; the scheduler maps lanes to destinations.
 *
 * The index family holds one key per message and lane it has pending
 * recipients in: the lane, a NUL, and the queue id, so "every message for
 * a lane" is one range scan in arrival order (queue ids sort by time).
 * The value says when the message is due and what the counters need:
 *
 *   due (unix ms, 8 bytes big-endian) | size (8 bytes) | flags (1 byte)
 *
 * The lanes family holds each lane's counters (messages, bytes, held,
 * 8 bytes big-endian each) and, under the empty key, the whole spool's.
 * Both are written in the same batch as the envelope they follow from,
 * so they are exact after any crash (DESIGN.md, contract 7).
 */
#ifndef MXSPOOL_QINDEX_H
#define MXSPOOL_QINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

#define LANE_SIZE 260   /* "!" + a domain of up to 255 octets + NUL */
#define QINDEX_VAL 17   /* bytes of an index value */
#define QINDEX_COUNT 24 /* bytes of a lanes record */

#define QI_HELD 0x1       /* held by the operator: never due */
#define QI_DELAY_SENT 0x2 /* its delay notice went out */

/* What the index holds for one message. */
struct qindex {
	char (*lanes)[LANE_SIZE]; /* distinct, in recipient order; owned */
	size_t nlanes;
	int64_t due;   /* unix ms; 0: at once */
	uint64_t size; /* body bytes */
	uint8_t flags; /* QI_* */
};

struct lane_count {
	uint64_t messages, bytes, held;
};

/* The lane of recipient addr of env, into buf (LANE_SIZE bytes). */
const char *qindex_lane(
    const struct envelope *env, const char *addr, char buf[LANE_SIZE]);
/* The domain a lane stands for, and whether it holds notifications. */
const char *qindex_lane_domain(const char *lane, bool *notices);
/* The index entries env must have now: one lane per distinct lane of its
 * pending recipients. Fills out (free with qindex_fini). */
void qindex_of(const struct envelope *env, struct qindex *out);
void qindex_fini(struct qindex *qi);

/* Index keys: lane NUL qid. Returns the length written to key (which
 * has room for LANE_SIZE + QID_SIZE bytes). */
size_t qindex_key(const char *lane, const char *qid, char *key);
/* Splits a key; false if it is not one. */
bool qindex_key_split(
    const char *key, size_t klen, char lane[LANE_SIZE], char qid[QID_SIZE]);
void qindex_val_encode(const struct qindex *qi, char out[QINDEX_VAL]);
/* false if val is not an index value. */
bool qindex_val_decode(
    const char *val, size_t len, int64_t *due, uint64_t *size, uint8_t *flags);

void qindex_count_encode(const struct lane_count *c, char out[QINDEX_COUNT]);
bool qindex_count_decode(const char *val, size_t len, struct lane_count *c);
/* Adds (sign 1) or takes away (sign -1) one message of qi to c. */
void qindex_count_add(struct lane_count *c, const struct qindex *qi, int sign);

#endif
