#define LOG_ROLE "qmgr"
/*
 * RocksDB storage. Column families:
 *   meta  queue id -> envelope record (queue/envelope.c)
 *   body  queue id -> message bytes, kept in blob files (BlobDB)
 *   default  "quarantine/" + queue id -> records that did not decode
 *   known    recipient address -> when the store last accepted it (8 bytes,
 *            big-endian unix seconds); older than known_recipients_max_age
 *            is dropped by compaction and ignored before that
 *   dest     destination -> its rejection guard state (queue/sched.c)
 *   index    lane NUL queue id -> when due, size, flags (queue/qindex.h)
 *   lanes    lane -> its counters; "" -> the whole spool's
 * and in default, "format" -> "2" once the index and the counters are
 * kept (a spool from before them is indexed by one scan at start).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xmem.h"
#include "queue/qid.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "queue/spool_wal.h"

#define SPOOL_QUARANTINE "quarantine/"
#define SPOOL_KEY_MAX 64 /* longer keys (only from corruption) are cut */

enum {
	CF_DEFAULT,
	CF_META,
	CF_BODY,
	CF_KNOWN,
	CF_DEST,
	CF_INDEX,
	CF_LANES,
	CF_COUNT
};

/*
 * The last sequence number known synced, 8 bytes big-endian, written
 * (not synced) after every synced write: a log cut short before that
 * point lost acknowledged mail, which the log alone cannot show. Never
 * ahead of the synced log, so a power cut only makes it less telling.
 */
#define SPOOL_MARK "walmark"

#define SPOOL_FORMAT_KEY "format"
#define SPOOL_FORMAT "2"

struct spool {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_options_t *cf_opts[CF_COUNT];
	rocksdb_column_family_handle_t *cf[CF_COUNT];
	rocksdb_writeoptions_t *wsync, *wnosync;
	rocksdb_readoptions_t *ropts;
	rocksdb_compactionfilter_t *known_filter;
	_Atomic int64_t known_max_age; /* seconds; 0: keep for ever */
	char *dir;
	int mark_fd; /* SPOOL_MARK, or -1 */
};

/* A batch is built on the loop and written by the writer thread. */
struct spool_batch {
	struct spool_op {
		int cf;
		char *key; /* owned */
		size_t klen;
		const char *val; /* borrowed; NULL: delete */
		size_t len;
	} * ops;
	size_t nops, cap;
};

static int spool_get_cf(struct spool *sp, int cf, const char *key, size_t klen,
    char **val, size_t *len, char *err, size_t errlen);

/* Errors RocksDB reports as text; tell a full disk from the rest. */
static int
spool_classify(const char *err)
{
	if (strstr(err, "No space left") != NULL ||
	    strstr(err, "NoSpace") != NULL)
		return QUEUE_ENOSPC;
	return QUEUE_EIO;
}

static int
spool_fail(char *rerr, char *err, size_t errlen)
{
	int st = spool_classify(rerr);

	snprintf(err, errlen, "%s", rerr);
	free(rerr);
	return st;
}

/*
 * Options for a write-heavy, fsync-bound workload. Every acknowledged
 * message costs one WAL fsync shared by its whole group commit, so the
 * WAL is the hot path; the rest keeps background work small and steady.
 */
static rocksdb_options_t *
spool_db_options(void)
{
	rocksdb_options_t *o = rocksdb_options_create();

	rocksdb_options_set_create_if_missing(o, 1);
	rocksdb_options_set_create_missing_column_families(o, 1);
	/* Two cores: one flush and one compaction at a time is plenty. */
	rocksdb_options_set_max_background_jobs(o, 2);
	/*
	 * Bound the WAL: past this, memtables are flushed so old logs can
	 * go and a restart replays little.
	 */
	rocksdb_options_set_max_total_wal_size(o, 256 << 20);
	/* Write SST and blob files out gradually, not in one fsync burst. */
	rocksdb_options_set_bytes_per_sync(o, 1 << 20);
	/*
	 * RocksDB's own LOG in the spool: keep a few, fatal errors only.
	 * Once an append to the LOG has failed (a full disk), RocksDB 7.8
	 * as Debian builds it aborts on an assertion at the next line it
	 * logs, and it logs warnings while it recovers from that very
	 * error; mxspoold logs every failed write with RocksDB's text.
	 */
	rocksdb_options_set_keep_log_file_num(o, 3);
	rocksdb_options_set_info_log_level(o, 4 /* FATAL */);
	/*
	 * A record cut short at the end of the log (a crash in the middle
	 * of a write, never acknowledged) is dropped; damage before it is
	 * an error (kTolerateCorruptedTailRecords). spool_wal_check has
	 * looked first and chooses otherwise when it must.
	 */
	rocksdb_options_set_wal_recovery_mode(o, SPOOL_WAL_TOLERATE_TAIL);
	return o;
}

/*
 * Start and stop in constant time: what the WAL holds stays there (it is
 * synced) instead of being flushed to tables while the daemon opens or
 * closes the spool; memtables flush in the background as they fill.
 * RocksDB's C API has no setter for these two.
 */
static rocksdb_options_t *
spool_db_options_fast(int wal_recovery_mode)
{
	rocksdb_options_t *base = spool_db_options();
	rocksdb_options_t *o = rocksdb_options_create();
	char *err = NULL;

	rocksdb_options_set_wal_recovery_mode(base, wal_recovery_mode);
	rocksdb_get_options_from_string(base,
	    "avoid_flush_during_recovery=true;avoid_flush_during_shutdown=true",
	    o, &err);
	if (err != NULL) {
		log_warn("spool: RocksDB options: %s", err);
		free(err);
		rocksdb_options_destroy(o);
		return base;
	}
	rocksdb_options_destroy(base);
	return o;
}

/* Big-endian unix seconds, as the known family stores them. */
void
spool_time_encode(int64_t t, char out[8])
{
	for (int i = 7; i >= 0; i--, t >>= 8)
		out[i] = (char)(t & 0xff);
}

int64_t
spool_time_decode(const char *v, size_t len)
{
	int64_t t = 0;

	if (len != 8)
		return 0;
	for (int i = 0; i < 8; i++)
		t = (t << 8) | (unsigned char)v[i];
	return t;
}

/* Compaction drops learned addresses older than known_recipients_max_age,
 * so the family is bounded by what the store accepted in that time. */
static unsigned char
spool_known_filter(void *state, int level, const char *key, size_t klen,
    const char *val, size_t vlen, char **newval, size_t *newvlen,
    unsigned char *changed)
{
	struct spool *sp = state;
	int64_t max_age = atomic_load(&sp->known_max_age);

	(void)level, (void)key, (void)klen, (void)newval, (void)newvlen;
	*changed = 0;
	return max_age > 0 &&
	       spool_time_decode(val, vlen) < (int64_t)time(NULL) - max_age;
}

static void
spool_known_filter_free(void *state)
{
	(void)state;
}

static const char *
spool_known_filter_name(void *state)
{
	(void)state;
	return "mxspool-known-max-age";
}

static rocksdb_options_t *
spool_cf_options(struct spool *sp, int cf)
{
	rocksdb_options_t *o = rocksdb_options_create();

	/*
	 * Memtables of 16 MiB: a burst of mail is absorbed before a flush,
	 * and a flush (which writes the bodies to blob files) needs little
	 * free disk, well within spool_min_free.
	 */
	rocksdb_options_set_write_buffer_size(o, 16 << 20);
	rocksdb_options_set_max_write_buffer_number(o, 4);
	if (cf == CF_BODY) {
		/*
		 * Bodies go to blob files when memtables flush, so compaction
		 * moves only small pointers, never the bytes again. Tiny
		 * bodies stay inline where a blob would cost more than it
		 * saves. Bodies are text: LZ4 halves them cheaply. Blob GC
		 * reclaims the space of delivered messages during compaction.
		 */
		rocksdb_options_set_enable_blob_files(o, 1);
		rocksdb_options_set_min_blob_size(o, 2048);
		rocksdb_options_set_blob_file_size(o, 256 << 20);
		rocksdb_options_set_blob_compression_type(
		    o, rocksdb_lz4_compression);
		rocksdb_options_set_enable_blob_gc(o, 1);
		rocksdb_options_set_blob_gc_age_cutoff(o, 0.25);
	}
	if (cf == CF_KNOWN) {
		sp->known_filter =
		    rocksdb_compactionfilter_create(sp, spool_known_filter_free,
			spool_known_filter, spool_known_filter_name);
		rocksdb_options_set_compaction_filter(o, sp->known_filter);
	}
	if (cf == CF_KNOWN || cf == CF_DEST || cf == CF_LANES)
		rocksdb_options_set_write_buffer_size(o, 4 << 20);
	rocksdb_options_set_compression(o, rocksdb_lz4_compression);
	return o;
}

/* Opens the database with o (taking it). *corrupt: RocksDB said so. */
static int
spool_open_db(struct spool **spp, const char *dir, rocksdb_options_t *o,
    bool *corrupt, char *err, size_t errlen)
{
	static const char *names[CF_COUNT] = {
	    "default", "meta", "body", "known", "dest", "index", "lanes"};
	struct spool *sp = xcalloc(1, sizeof(*sp));
	char *rerr = NULL, path[PATH_MAX];

	*spp = NULL;
	*corrupt = false;
	sp->mark_fd = -1;
	sp->dir = xstrdup(dir);
	sp->opts = o;
	for (int i = 0; i < CF_COUNT; i++)
		sp->cf_opts[i] = spool_cf_options(sp, i);
	sp->db = rocksdb_open_column_families(sp->opts, dir, CF_COUNT, names,
	    (const rocksdb_options_t *const *)sp->cf_opts, sp->cf, &rerr);
	if (sp->db == NULL) {
		int st;

		if (rerr != NULL && strstr(rerr, "lock") != NULL &&
		    (strstr(rerr, "unavailable") != NULL ||
			strstr(rerr, "Resource") != NULL)) {
			snprintf(err, errlen,
			    "spool %s is in use by another process", dir);
			free(rerr);
			st = QUEUE_EIO;
		} else if (rerr != NULL) {
			*corrupt = strncmp(rerr, "Corruption", 10) == 0;
			st = spool_classify(rerr);
			snprintf(err, errlen, "spool %s: %s", dir, rerr);
			free(rerr);
		} else {
			snprintf(err, errlen, "spool %s: cannot open", dir);
			st = QUEUE_EIO;
		}
		spool_close(sp);
		return st;
	}
	sp->wsync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(sp->wsync, 1);
	sp->wnosync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(sp->wnosync, 0);
	sp->ropts = rocksdb_readoptions_create();
	if (!spool_wal_path(
		path, sizeof(path), dir, SPOOL_MARK, "", err, errlen) ||
	    (sp->mark_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) <
		0) {
		if (sp->mark_fd < 0)
			snprintf(err, errlen, "spool %s: %s: %s", dir, path,
			    strerror(errno));
		spool_close(sp);
		return QUEUE_EIO;
	}
	*spp = sp;
	return QUEUE_OK;
}

int
spool_reopen(struct spool *sp, char *err, size_t errlen)
{
	static const char *names[CF_COUNT] = {
	    "default", "meta", "body", "known", "dest", "index", "lanes"};
	char *rerr = NULL;

	for (int i = 0; i < CF_COUNT; i++)
		if (sp->cf[i] != NULL) {
			rocksdb_column_family_handle_destroy(sp->cf[i]);
			sp->cf[i] = NULL;
		}
	if (sp->db != NULL)
		rocksdb_close(sp->db);
	sp->db =
	    rocksdb_open_column_families(sp->opts, sp->dir, CF_COUNT, names,
		(const rocksdb_options_t *const *)sp->cf_opts, sp->cf, &rerr);
	if (sp->db == NULL) {
		int st = rerr != NULL ? spool_classify(rerr) : QUEUE_EIO;

		snprintf(err, errlen, "spool %s: cannot reopen: %s", sp->dir,
		    rerr != NULL ? rerr : "unknown error");
		free(rerr);
		for (int i = 0; i < CF_COUNT; i++)
			sp->cf[i] = NULL;
		return st;
	}
	return QUEUE_OK;
}

/* The mark's sequence number; 0 if there is none. */
static uint64_t
spool_mark_get(struct spool *sp)
{
	unsigned char b[8];
	uint64_t v = 0;

	if (pread(sp->mark_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}

static void
spool_mark_set(struct spool *sp, uint64_t v)
{
	unsigned char b[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (unsigned char)(v & 0xff);
	if (pwrite(sp->mark_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
		log_warn(
		    "spool %s: %s: %s", sp->dir, SPOOL_MARK, strerror(errno));
}

/*
 * Empties the index and the counters and takes the mark that says they
 * are kept: after a salvage they may count what was lost, so queue_open
 * builds them again from the envelopes.
 */
static int
spool_drop_index(struct spool *sp, char *err, size_t errlen)
{
	static const int cfs[] = {CF_INDEX, CF_LANES};
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	char *rerr = NULL;

	for (size_t i = 0; i < sizeof(cfs) / sizeof(cfs[0]) && rerr == NULL;
	     i++) {
		rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
		    sp->db, sp->ropts, sp->cf[cfs[i]]);

		for (rocksdb_iter_seek_to_first(it);
		     rocksdb_iter_valid(it) && rerr == NULL;
		     rocksdb_iter_next(it)) {
			size_t klen;
			const char *k = rocksdb_iter_key(it, &klen);

			rocksdb_writebatch_delete_cf(
			    wb, sp->cf[cfs[i]], k, klen);
			if (rocksdb_writebatch_count(wb) >= 10000) {
				rocksdb_write(sp->db, sp->wnosync, wb, &rerr);
				rocksdb_writebatch_clear(wb);
			}
		}
		if (rerr == NULL)
			rocksdb_iter_get_error(it, &rerr);
		rocksdb_iter_destroy(it);
	}
	rocksdb_writebatch_delete_cf(
	    wb, sp->cf[CF_DEFAULT], SPOOL_FORMAT_KEY, strlen(SPOOL_FORMAT_KEY));
	if (rerr == NULL)
		rocksdb_write(sp->db, sp->wsync, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr != NULL)
		return spool_fail(rerr, err, errlen);
	return QUEUE_OK;
}

/*
 * Replays the logs, rewritten to their intact batches, skipping whatever
 * still does not read (kSkipAnyCorruptedRecords), and flushes what was
 * read to tables during the recovery, after which RocksDB deletes the
 * logs; drops the index.
 */
static int
spool_salvage(const char *dir, char *err, size_t errlen)
{
	rocksdb_options_t *o = spool_db_options();
	struct spool *sp;
	bool corrupt;
	int st;

	rocksdb_options_set_wal_recovery_mode(o, SPOOL_WAL_SKIP_ANY);
	if ((st = spool_open_db(&sp, dir, o, &corrupt, err, errlen)) !=
	    QUEUE_OK)
		return st;
	st = spool_drop_index(sp, err, errlen);
	spool_close(sp);
	return st;
}

/*
 * Whether sequence numbers known synced (SPOOL_MARK) are missing from
 * what RocksDB replayed: a log cut short before its real end. Then the
 * last log that holds any is marked damaged, at its end.
 */
static bool
spool_check_mark(
    struct spool *sp, struct spool_wals *ws, struct spool_recovery *rec)
{
	uint64_t mark = spool_mark_get(sp);
	uint64_t seq = rocksdb_get_latest_sequence_number(sp->db);
	struct spool_wal *w = NULL;

	if (mark <= seq)
		return false;
	for (size_t i = ws->n; i-- > 0 && w == NULL;)
		if (ws->w[i].wc.batches > 0)
			w = &ws->w[i];
	rec->damaged = true;
	rec->lost_updates = mark - seq;
	snprintf(rec->why, sizeof(rec->why),
	    "cut short: %" PRIu64 " synced updates missing after its end",
	    mark - seq);
	if (w == NULL) {
		snprintf(rec->wal, sizeof(rec->wal), "*.log");
		ws->all = true;
		return true;
	}
	snprintf(rec->wal, sizeof(rec->wal), "%s", w->name);
	rec->wal_offset = w->wc.size;
	w->damaged = true;
	w->wc.damage_at = w->wc.size;
	w->wc.lost_seqs = mark - seq;
	snprintf(w->wc.why, sizeof(w->wc.why), "cut short");
	return true;
}

int
spool_open(struct spool **spp, const char *dir, bool salvage,
    struct spool_recovery *rec, char *err, size_t errlen)
{
	struct spool_recovery mine;
	struct spool_wals ws = {0};
	bool corrupt = false;
	int st = QUEUE_EIO;

	*spp = NULL;
	if (rec == NULL)
		rec = &mine;
	memset(rec, 0, sizeof(*rec));
	if (spool_wal_in_use(dir)) {
		snprintf(
		    err, errlen, "spool %s is in use by another process", dir);
		return QUEUE_EIO;
	}
	if (spool_wal_check(dir, &ws, rec, err, errlen) < 0)
		goto out;
	if (!rec->damaged) {
		st = spool_open_db(spp, dir, spool_db_options_fast(ws.mode),
		    &corrupt, err, errlen);
		if (st == QUEUE_OK) {
			if (spool_check_mark(*spp, &ws, rec)) {
				spool_close(*spp);
				*spp = NULL;
			} else
				goto out;
		} else if (!corrupt) {
			goto out;
		} else {
			/* RocksDB saw what the scan did not: copy every log. */
			rec->damaged = true;
			snprintf(rec->wal, sizeof(rec->wal), "*.log");
			snprintf(rec->why, sizeof(rec->why), "%s",
			    err + strlen("spool ") + strlen(dir) + 2);
			log_warn("spool %s: RocksDB finds its write-ahead log "
				 "damaged (%s)",
			    dir, rec->why);
			ws.all = true;
		}
	}
	if (spool_wal_quarantine(dir, &ws, rec, err, errlen) < 0) {
		st = QUEUE_EIO;
		goto out;
	}
	for (size_t i = 0; i < ws.n; i++)
		if (ws.w[i].damaged)
			log_warn("spool %s: write-ahead log %s damaged at byte "
				 "%" PRIu64 " (%s): %" PRIu64
				 " bytes and %" PRIu64
				 " updates unreadable; %" PRIu64
				 " intact write batches after it; copied to %s",
			    dir, ws.w[i].name, ws.w[i].wc.damage_at,
			    ws.w[i].wc.why, ws.w[i].wc.lost_bytes,
			    ws.w[i].wc.lost_seqs, ws.w[i].wc.after,
			    rec->quarantine);
	if (!salvage) {
		/* One line, with the spool named once: a path may be long. */
		if (ws.all)
			snprintf(err, errlen,
			    "spool %s: write-ahead log damaged (%s), logs "
			    "copied "
			    "to %s/; to keep what still reads, start with "
			    "spool_recovery = salvage",
			    dir, rec->why, rec->quarantine + strlen(dir) + 1);
		else
			snprintf(err, errlen,
			    "spool %s: write-ahead log %s damaged at byte "
			    "%" PRIu64 " (%s; %" PRIu64
			    " bytes unreadable), copied to %s/; to "
			    "keep the %" PRIu64
			    " intact write batches after it, start "
			    "with spool_recovery = salvage",
			    dir, rec->wal, rec->wal_offset, rec->why,
			    rec->lost_bytes, rec->quarantine + strlen(dir) + 1,
			    rec->kept_batches);
		st = QUEUE_EIO;
		goto out;
	}
	if (spool_wal_rewrite(dir, &ws, err, errlen) < 0) {
		st = QUEUE_EIO;
		goto out;
	}
	if ((st = spool_salvage(dir, err, errlen)) != QUEUE_OK)
		goto out;
	/* What salvage left must read cleanly now. */
	{
		struct spool_recovery again = {0};

		if (spool_wal_check(dir, &ws, &again, err, errlen) < 0) {
			st = QUEUE_EIO;
			goto out;
		}
		if (again.damaged) {
			snprintf(err, errlen,
			    "spool %s: write-ahead log %s still damaged after "
			    "salvage (%s); the logs as found are in %s",
			    dir, again.wal, again.why, rec->quarantine);
			st = QUEUE_EIO;
			goto out;
		}
	}
	st = spool_open_db(
	    spp, dir, spool_db_options_fast(ws.mode), &corrupt, err, errlen);
	if (st != QUEUE_OK)
		goto out;
	rec->salvaged = true;
	spool_mark_set(*spp, rocksdb_get_latest_sequence_number((*spp)->db));
	log_warn(
	    "spool %s: SALVAGED after write-ahead log damage: kept %" PRIu64
	    " intact write batches after it, lost %" PRIu64 " bytes (%" PRIu64
	    " updates); the logs as found are in %s; the index is "
	    "rebuilt from the envelopes",
	    dir, rec->kept_batches, rec->lost_bytes, rec->lost_updates,
	    rec->quarantine);
out:
	free(ws.w);
	return st;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	for (int i = 0; i < CF_COUNT; i++)
		if (sp->cf[i] != NULL)
			rocksdb_column_family_handle_destroy(sp->cf[i]);
	if (sp->db != NULL)
		rocksdb_close(sp->db);
	for (int i = 0; i < CF_COUNT; i++)
		rocksdb_options_destroy(sp->cf_opts[i]);
	if (sp->known_filter != NULL)
		rocksdb_compactionfilter_destroy(sp->known_filter);
	rocksdb_options_destroy(sp->opts);
	if (sp->wsync != NULL)
		rocksdb_writeoptions_destroy(sp->wsync);
	if (sp->wnosync != NULL)
		rocksdb_writeoptions_destroy(sp->wnosync);
	if (sp->ropts != NULL)
		rocksdb_readoptions_destroy(sp->ropts);
	if (sp->mark_fd >= 0)
		close(sp->mark_fd);
	free(sp->dir);
	free(sp);
}

struct spool_batch *
spool_batch_new(void)
{
	return xcalloc(1, sizeof(struct spool_batch));
}

void
spool_batch_free(struct spool_batch *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nops; i++)
		free(b->ops[i].key);
	free(b->ops);
	free(b);
}

/* Values are borrowed until spool_write returns. */
static void
spool_batch_add(struct spool_batch *b, int cf, const char *prefix,
    const char *key, size_t klen, const char *val, size_t len)
{
	size_t plen = strlen(prefix);
	struct spool_op *op;

	b->ops = xgrow(b->ops, &b->cap, b->nops + 1, sizeof(*b->ops));
	op = &b->ops[b->nops++];
	op->cf = cf;
	if (klen > SPOOL_KEY_MAX && (cf == CF_META || cf == CF_BODY))
		klen = SPOOL_KEY_MAX;
	op->key = xmalloc(plen + klen + 1);
	memcpy(op->key, prefix, plen);
	memcpy(op->key + plen, key, klen);
	op->klen = plen + klen;
	op->val = val;
	op->len = len;
}

void
spool_batch_put_meta(
    struct spool_batch *b, const char *qid, const char *meta, size_t len)
{
	spool_batch_add(b, CF_META, "", qid, strlen(qid), meta, len);
}

void
spool_batch_put_body(
    struct spool_batch *b, const char *qid, const char *body, size_t len)
{
	spool_batch_add(b, CF_BODY, "", qid, strlen(qid), body, len);
}

void
spool_batch_delete(struct spool_batch *b, const char *qid)
{
	spool_batch_add(b, CF_META, "", qid, strlen(qid), NULL, 0);
	spool_batch_add(b, CF_BODY, "", qid, strlen(qid), NULL, 0);
}

void
spool_batch_quarantine(struct spool_batch *b, const char *key, size_t klen,
    const char *meta, size_t len)
{
	/* The body stays where it is: an operator may want it back. */
	spool_batch_add(b, CF_DEFAULT, SPOOL_QUARANTINE, key, klen, meta, len);
	spool_batch_add(b, CF_META, "", key, klen, NULL, 0);
}

static int
spool_aux_cf(enum spool_aux aux)
{
	switch (aux) {
	case SPOOL_KNOWN:
		return CF_KNOWN;
	case SPOOL_DEST:
		return CF_DEST;
	case SPOOL_INDEX:
		return CF_INDEX;
	case SPOOL_LANES:
		return CF_LANES;
	case SPOOL_META:
		return CF_META;
	}
	return CF_DEFAULT;
}

void
spool_batch_mark_indexed(struct spool_batch *b)
{
	spool_batch_add(b, CF_DEFAULT, "", SPOOL_FORMAT_KEY,
	    strlen(SPOOL_FORMAT_KEY), SPOOL_FORMAT, strlen(SPOOL_FORMAT));
}

bool
spool_indexed(struct spool *sp)
{
	char *v, err[200];
	size_t len;
	bool yes = false;

	if (spool_get_cf(sp, CF_DEFAULT, SPOOL_FORMAT_KEY,
		strlen(SPOOL_FORMAT_KEY), &v, &len, err,
		sizeof(err)) == QUEUE_OK) {
		yes = strcmp(v, SPOOL_FORMAT) == 0;
		free(v);
	}
	return yes;
}

int
spool_iterate(struct spool *sp, enum spool_aux aux, const char *from,
    size_t fromlen, spool_iter_cb *cb, void *arg, char *err, size_t errlen)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
	    sp->db, sp->ropts, sp->cf[spool_aux_cf(aux)]);
	char *rerr = NULL;

	for (rocksdb_iter_seek(it, from, fromlen); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (cb(arg, k, klen, v, vlen) != 0)
			break;
	}
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	if (rerr != NULL)
		return spool_fail(rerr, err, errlen);
	return QUEUE_OK;
}

bool
spool_last_key(struct spool *sp, enum spool_aux aux, char *buf, size_t len)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
	    sp->db, sp->ropts, sp->cf[spool_aux_cf(aux)]);
	bool found = false;

	rocksdb_iter_seek_to_last(it);
	if (rocksdb_iter_valid(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		snprintf(buf, len, "%.*s", (int)klen, k);
		found = true;
	}
	rocksdb_iter_destroy(it);
	return found;
}

void
spool_batch_put_aux(struct spool_batch *b, enum spool_aux aux, const char *key,
    size_t klen, const char *val, size_t len)
{
	spool_batch_add(b, spool_aux_cf(aux), "", key, klen, val, len);
}

size_t
spool_batch_count(const struct spool_batch *b)
{
	return b->nops;
}

int
spool_write(struct spool *sp, struct spool_batch *b, bool sync, char *err,
    size_t errlen)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	char *rerr = NULL;

	for (size_t i = 0; i < b->nops; i++) {
		const struct spool_op *op = &b->ops[i];

		if (op->val != NULL)
			rocksdb_writebatch_put_cf(wb, sp->cf[op->cf], op->key,
			    op->klen, op->val, op->len);
		else
			rocksdb_writebatch_delete_cf(
			    wb, sp->cf[op->cf], op->key, op->klen);
	}
	rocksdb_write(sp->db, sync ? sp->wsync : sp->wnosync, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr != NULL)
		return spool_fail(rerr, err, errlen);
	if (sync)
		spool_mark_set(sp, rocksdb_get_latest_sequence_number(sp->db));
	return QUEUE_OK;
}

/* Calls cb for every record of column family cf, in key order. */
static int
spool_scan_cf(struct spool *sp, int cf, spool_scan_cb *cb, void *arg, char *err,
    size_t errlen)
{
	rocksdb_iterator_t *it =
	    rocksdb_create_iterator_cf(sp->db, sp->ropts, sp->cf[cf]);
	char *rerr = NULL;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		cb(arg, k, klen, v, vlen);
	}
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	if (rerr != NULL)
		return spool_fail(rerr, err, errlen);
	return QUEUE_OK;
}

int
spool_scan(
    struct spool *sp, spool_scan_cb *cb, void *arg, char *err, size_t errlen)
{
	return spool_scan_cf(sp, CF_META, cb, arg, err, errlen);
}

/* Reads key of cf into a malloc'd, NUL-terminated buffer; 1 if none. */
static int
spool_get_cf(struct spool *sp, int cf, const char *key, size_t klen, char **val,
    size_t *len, char *err, size_t errlen)
{
	char *rerr = NULL;
	char *v = rocksdb_get_cf(
	    sp->db, sp->ropts, sp->cf[cf], key, klen, len, &rerr);

	*val = NULL;
	if (rerr != NULL)
		return spool_fail(rerr, err, errlen);
	if (v == NULL)
		return 1;
	*val = xmalloc(*len + 1);
	memcpy(*val, v, *len);
	(*val)[*len] = '\0';
	rocksdb_free(v);
	return QUEUE_OK;
}

int
spool_get_body(struct spool *sp, const char *qid, char **body, size_t *len,
    char *err, size_t errlen)
{
	return spool_get_cf(
	    sp, CF_BODY, qid, strlen(qid), body, len, err, errlen);
}

int
spool_get_meta(struct spool *sp, const char *qid, char **meta, size_t *len,
    char *err, size_t errlen)
{
	return spool_get_cf(
	    sp, CF_META, qid, strlen(qid), meta, len, err, errlen);
}

int
spool_get_aux(struct spool *sp, enum spool_aux aux, const char *key,
    size_t klen, char **val, size_t *len, char *err, size_t errlen)
{
	return spool_get_cf(
	    sp, spool_aux_cf(aux), key, klen, val, len, err, errlen);
}

int
spool_scan_aux(struct spool *sp, enum spool_aux aux, spool_scan_cb *cb,
    void *arg, char *err, size_t errlen)
{
	return spool_scan_cf(sp, spool_aux_cf(aux), cb, arg, err, errlen);
}

void
spool_set_known_max_age(struct spool *sp, int64_t seconds)
{
	atomic_store(&sp->known_max_age, seconds);
}
