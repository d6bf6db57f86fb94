/*
 * The spool's write-ahead log files as files: found, read with
 * queue/walcheck.c and judged together, copied aside when damaged.
 * No RocksDB calls: the database is closed while these run. Private to
 * queue/ (queue/spool.c).
 */
#ifndef MXSPOOL_SPOOL_WAL_H
#define MXSPOOL_SPOOL_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/spool.h"
#include "queue/walcheck.h"

/* RocksDB's WALRecoveryMode, which its C API takes as a plain int. */
enum { SPOOL_WAL_TOLERATE_TAIL = 0, SPOOL_WAL_SKIP_ANY = 3 };

/* The write-ahead logs in the spool: RocksDB's NNNNNN.log files. */
struct spool_wal {
	uint64_t number;
	char name[32];
	struct walcheck wc;
	bool damaged;
};

struct spool_wals {
	struct spool_wal *w;
	size_t n, cap;
	int mode; /* the WALRecoveryMode that reads them */
	bool all; /* damage not placed in one: copy them all */
};

/*
 * Reads every log in dir (none if dir is not made yet) into ws, which the
 * caller frees with free(ws->w), marks the damaged ones and adds up what
 * they lost in rec. Returns 0, or -1 with err set if a log cannot be read.
 */
int spool_wal_check(const char *dir, struct spool_wals *ws,
    struct spool_recovery *rec, char *err, size_t errlen);
/* Copies the damaged logs (all with ws->all), synced, into a new
 * DIR/quarantine/YYYYMMDDTHHMMSSZ/, named in rec->quarantine. 0 or -1. */
int spool_wal_quarantine(const char *dir, const struct spool_wals *ws,
    struct spool_recovery *rec, char *err, size_t errlen);
/*
 * Replaces each damaged log (all with ws->all) by one of its intact write
 * batches alone (walcheck_rewrite), so that the recovery reads every one
 * of them and nothing else: RocksDB's own skipping, past damage, can put
 * together fragments that do not belong together. 0, or -1 with err set.
 */
int spool_wal_rewrite(
    const char *dir, const struct spool_wals *ws, char *err, size_t errlen);
/* Whether another process holds RocksDB's lock on DIR/LOCK. */
bool spool_wal_in_use(const char *dir);
/* dir/name+suffix into buf; false, with err set, if it is too long. */
bool spool_wal_path(char *buf, size_t len, const char *dir, const char *name,
    const char *suffix, char *err, size_t errlen);

#endif
