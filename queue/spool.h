/*
 * The spool's storage on RocksDB: synchronous calls, made only by the
 * writer thread (queue/commit.c) and, before the loop starts, by the
 * recovery scan. Private to queue/.
 */
#ifndef MXSPOOL_SPOOL_H
#define MXSPOOL_SPOOL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;
struct spool_batch;

/* What spool_open found wrong in the write-ahead log, and did about it. */
struct spool_recovery {
	bool damaged;              /* unreadable before the tail: mail lost */
	bool salvaged;             /* and the intact records after it kept */
	uint64_t lost_bytes;       /* of log that held no readable record */
	uint64_t lost_updates;     /* sequence numbers (one key written each)
				      missing; 0 when RocksDB found the damage */
	uint64_t kept_batches;     /* intact write batches after the damage */
	uint64_t wal_offset;       /* where the damage starts in wal, bytes */
	char wal[PATH_MAX];        /* the first damaged log */
	char why[160];             /* what the damage looked like */
	char quarantine[PATH_MAX]; /* the copies of the damaged logs */
};

/*
 * Opens the spool in dir, made if missing, replaying its write-ahead log.
 * A record cut short at the log's end (a crash during a write that was
 * never acknowledged) is dropped quietly. Damage before it (acknowledged
 * mail) is logged with what it covers and the damaged logs are copied to
 * DIR/quarantine/<UTC time>/ first; then with salvage, every intact
 * record after the damage is kept (the logs rewritten to their intact
 * write batches, replayed with kSkipAnyCorruptedRecords and flushed,
 * after which RocksDB deletes them) and the index and counters are
 * dropped to be rebuilt from the envelopes; without, the open fails and
 * err names the file and the way to salvage it. rec (may be NULL) says
 * what was found. Returns a queue_status; err says why in one line.
 */
int spool_open(struct spool **sp, const char *dir, bool salvage,
    struct spool_recovery *rec, char *err, size_t errlen);
void spool_close(struct spool *sp);
/*
 * Closes sp's database and opens it again in place, with the same options:
 * the error state a failed write (a full disk) leaves in RocksDB is
 * cleared, and what the write-ahead log holds is kept. Only on the thread
 * that owns sp, with no iterator or read in flight. On failure sp has no
 * database: nothing but spool_reopen and spool_close may be called then.
 * Returns a queue_status; err says why in one line.
 */
int spool_reopen(struct spool *sp, char *err, size_t errlen);

struct spool_batch *spool_batch_new(void);
void spool_batch_free(struct spool_batch *b);
void spool_batch_put_meta(
    struct spool_batch *b, const char *qid, const char *meta, size_t len);
void spool_batch_put_body(
    struct spool_batch *b, const char *qid, const char *body, size_t len);
void spool_batch_delete(struct spool_batch *b, const char *qid);
/* Moves a meta record that does not decode aside, out of the schedule. */
void spool_batch_quarantine(struct spool_batch *b, const char *key, size_t klen,
    const char *meta, size_t len);
/* The families beside the bodies: learned recipients, the destinations'
 * guard state, the index and its counters (queue/qindex.h), and the
 * envelopes. val NULL deletes the key. */
enum spool_aux {
	SPOOL_KNOWN,
	SPOOL_DEST,
	SPOOL_INDEX,
	SPOOL_LANES,
	SPOOL_META
};
void spool_batch_put_aux(struct spool_batch *b, enum spool_aux aux,
    const char *key, size_t klen, const char *val, size_t len);
size_t spool_batch_count(const struct spool_batch *b);

/*
 * Applies b atomically; with sync, only after the write-ahead log is on
 * disk. Returns a queue_status (QUEUE_ENOSPC when the disk is full).
 */
int spool_write(struct spool *sp, struct spool_batch *b, bool sync, char *err,
    size_t errlen);

/* key is the raw key: normally a queue id, but corruption happens. */
typedef void spool_scan_cb(
    void *arg, const char *key, size_t klen, const char *meta, size_t len);
/* Calls cb for every meta record, in queue id (arrival) order. */
int spool_scan(
    struct spool *sp, spool_scan_cb *cb, void *arg, char *err, size_t errlen);
/* Reads a body into a malloc'd buffer. Returns a queue_status, or 1 if
 * there is no such body. */
int spool_get_body(struct spool *sp, const char *qid, char **body, size_t *len,
    char *err, size_t errlen);
/* Reads one key of an aux family into a malloc'd, NUL-terminated buffer.
 * Returns a queue_status, or 1 if there is no such key. */
int spool_get_aux(struct spool *sp, enum spool_aux aux, const char *key,
    size_t klen, char **val, size_t *len, char *err, size_t errlen);
/* Calls cb for every record of an aux family, in key order. */
int spool_scan_aux(struct spool *sp, enum spool_aux aux, spool_scan_cb *cb,
    void *arg, char *err, size_t errlen);
/* Reads a meta record (malloc'd, NUL-terminated); 1 if there is none. */
int spool_get_meta(struct spool *sp, const char *qid, char **meta, size_t *len,
    char *err, size_t errlen);
/*
 * Calls cb for the records of family aux from the first key at or after
 * `from`, in key order, until cb returns non-zero.
 */
typedef int spool_iter_cb(
    void *arg, const char *key, size_t klen, const char *val, size_t len);
int spool_iterate(struct spool *sp, enum spool_aux aux, const char *from,
    size_t fromlen, spool_iter_cb *cb, void *arg, char *err, size_t errlen);
/* The last key of family aux, cut to len - 1 bytes; false if it is empty. */
bool spool_last_key(
    struct spool *sp, enum spool_aux aux, char *buf, size_t len);
/* Whether the spool keeps the index and counters (else they must be
 * built by a scan), and the mark that says so, set in the batch that
 * completes them. */
bool spool_indexed(struct spool *sp);
void spool_batch_mark_indexed(struct spool_batch *b);
/* Learned recipients older than this (seconds; 0: never) are dropped. */
void spool_set_known_max_age(struct spool *sp, int64_t seconds);
/* The known family's values: big-endian unix seconds. */
void spool_time_encode(int64_t t, char out[8]);
int64_t spool_time_decode(const char *v, size_t len);

#endif
