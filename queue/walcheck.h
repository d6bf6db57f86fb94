/*
 * A reader of RocksDB's write-ahead log format that tells a torn tail (a
 * crash in the middle of a write: normal) from damage before it (lost
 * acknowledged mail), and says how much each covers. Pure: no RocksDB
 * include, so unit tests and fuzzers link it alone. Private to queue/.
 *
 * The format (RocksDB's log_format.h, as written by 7.x): 32 KiB blocks;
 * each record fragment has a header crc32c (4, masked, over the type byte
 * and the payload) length (2) type (1), little-endian; FULL, FIRST,
 * MIDDLE and LAST fragments (1-4), or the recyclable 5-8 with a 4-byte
 * log number in an 11-byte header; a block's last bytes, too few for a
 * header, are zero. An assembled record is a WriteBatch: sequence (8)
 * count (4) and then its entries, each taking one sequence number.
 */
#ifndef MXSPOOL_WALCHECK_H
#define MXSPOOL_WALCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WALCHECK_BLOCK 32768
#define WALCHECK_NONE UINT64_MAX

/* What one log file holds. Offsets and sizes are bytes. */
struct walcheck {
	uint64_t size;       /* of the file */
	uint64_t batches;    /* intact write batches */
	uint64_t first_seq;  /* of the first intact batch; 0 if none */
	uint64_t next_seq;   /* after the last intact batch; 0 if none */
	uint64_t intact_end; /* where the last intact batch ends */
	uint64_t damage_at;  /* first damage before the tail, or _NONE */
	uint64_t lost_bytes; /* in damaged regions before the tail */
	uint64_t lost_seqs;  /* sequence numbers missing between batches */
	uint64_t after;      /* intact batches after the first damage */
	bool tail_garbage;   /* the tail is more than a cut-short record */
	char why[48];        /* what the first damage looked like */
};

/* CRC-32C (Castagnoli) of p, continuing from crc (0 to start). */
uint32_t walcheck_crc32c(uint32_t crc, const void *p, size_t len);

/*
 * Reads a whole log held in buf (len bytes) into wc. A region that holds
 * no intact record counts as damage when an intact batch follows it (in
 * this file), else as the tail: bytes a crash left cut short. Always
 * succeeds: the answer is in wc.
 */
void walcheck_scan(const unsigned char *buf, size_t len, struct walcheck *wc);

/* walcheck_scan, giving cb each intact write batch (borrowed for the
 * call), in order. */
typedef void walcheck_batch_cb(
    void *arg, const unsigned char *batch, size_t len);
void walcheck_scan_batches(const unsigned char *buf, size_t len,
    struct walcheck *wc, walcheck_batch_cb *cb, void *arg);

/*
 * Writes to the file `to` (made or emptied, mode 0600, synced) a log of
 * the intact write batches of the log at `from`, laid out afresh: what
 * a recovery can read whole, the damage left out. Returns 0, or -1 with
 * err set.
 */
int walcheck_rewrite(
    const char *from, const char *to, char *err, size_t errlen);

/* walcheck_scan on the file at path. Returns 0, or -1 with err set. */
int walcheck_file(
    const char *path, struct walcheck *wc, char *err, size_t errlen);

#endif
