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
#include <dirent.h>
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
#include "queue/walcheck.h"

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

/* RocksDB's WALRecoveryMode, which its C API takes as a plain int. */
enum {
	SPOOL_WAL_TOLERATE_TAIL = 0,
	SPOOL_WAL_POINT_IN_TIME = 2,
	SPOOL_WAL_SKIP_ANY = 3
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
	/* RocksDB's own LOG in the spool: keep a few, warnings and up. */
	rocksdb_options_set_keep_log_file_num(o, 3);
	rocksdb_options_set_info_log_level(o, 2 /* WARN */);
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

static int
spool_wal_cmp(const void *a, const void *b)
{
	const struct spool_wal *x = a, *y = b;

	return x->number < y->number ? -1 : x->number > y->number;
}

/* Lists dir's logs by number; a directory not made yet has none. */
static int
spool_wal_list(const char *dir, struct spool_wals *ws, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	ws->n = 0;
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		unsigned long long num;
		struct spool_wal *w;

		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    strlen(de->d_name) >= sizeof(w->name))
			continue;
		errno = 0;
		num = strtoull(de->d_name, &end, 10);
		if (errno != 0 || strcmp(end, ".log") != 0)
			continue;
		ws->w = xgrow(ws->w, &ws->cap, ws->n + 1, sizeof(*ws->w));
		w = &ws->w[ws->n++];
		memset(w, 0, sizeof(*w));
		w->number = num;
		snprintf(w->name, sizeof(w->name), "%s", de->d_name);
	}
	closedir(d);
	qsort(ws->w, ws->n, sizeof(*ws->w), spool_wal_cmp);
	return 0;
}

/*
 * Reads every log, marks the damaged ones and adds up what they lost in
 * rec. Damaged: something unreadable before a log's tail, or a log
 * whose successor does not go on from its last sequence number (then
 * what its cut-short end held had been acknowledged: the next log was
 * only started after it). A tail that is more than a cut-short record
 * (garbage a power cut left in an unsynced write) is no damage either,
 * but RocksDB refuses it unless it stops there (point-in-time mode).
 */
static int
spool_wal_check(const char *dir, struct spool_wals *ws,
    struct spool_recovery *rec, char *err, size_t errlen)
{
	struct spool_wal *prev = NULL;
	bool seen = false;

	ws->mode = SPOOL_WAL_TOLERATE_TAIL;
	if (spool_wal_list(dir, ws, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < ws->n; i++) {
		struct spool_wal *w = &ws->w[i];
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s", dir, w->name);
		if (walcheck_file(path, &w->wc, err, errlen) < 0)
			return -1;
		w->damaged = w->wc.damage_at != WALCHECK_NONE;
		if (w->wc.tail_garbage)
			ws->mode = SPOOL_WAL_POINT_IN_TIME;
		if (w->wc.batches == 0)
			continue;
		if (prev != NULL && w->wc.first_seq != prev->wc.next_seq) {
			struct walcheck *p = &prev->wc;

			prev->damaged = true;
			if (p->damage_at == WALCHECK_NONE) {
				p->damage_at = p->intact_end;
				snprintf(p->why, sizeof(p->why),
				    "sequence numbers missing after it");
			}
			p->lost_bytes += p->size - p->intact_end;
			if (w->wc.first_seq > p->next_seq)
				p->lost_seqs += w->wc.first_seq - p->next_seq;
		}
		prev = w;
	}
	for (size_t i = 0; i < ws->n; i++) {
		struct spool_wal *w = &ws->w[i];

		if (seen) {
			rec->kept_batches += w->wc.batches;
		} else if (w->damaged) {
			seen = true;
			rec->damaged = true;
			snprintf(rec->wal, sizeof(rec->wal), "%s", w->name);
			rec->wal_offset = w->wc.damage_at;
			snprintf(rec->why, sizeof(rec->why), "%s", w->wc.why);
			rec->kept_batches += w->wc.after;
		}
		if (w->damaged) {
			rec->lost_bytes += w->wc.lost_bytes;
			rec->lost_updates += w->wc.lost_seqs;
		}
	}
	return 0;
}

/* Copies from to a new file to, synced. */
static int
spool_copy_file(const char *from, const char *to, char *err, size_t errlen)
{
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, e = 0;
	char buf[1 << 16];
	ssize_t r = 0;

	if (in < 0 ||
	    (out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		e = errno;
	while (e == 0 && (r = read(in, buf, sizeof(buf))) != 0) {
		if (r < 0) {
			if (errno != EINTR)
				e = errno;
			continue;
		}
		for (ssize_t off = 0; e == 0 && off < r;) {
			ssize_t w = write(out, buf + off, (size_t)(r - off));

			if (w < 0 && errno != EINTR)
				e = errno;
			else if (w > 0)
				off += w;
		}
	}
	if (e == 0 && fsync(out) < 0)
		e = errno;
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0 && e == 0)
		e = errno;
	if (e != 0) {
		snprintf(err, errlen, "cannot copy %s to %s: %s", from, to,
		    strerror(e));
		return -1;
	}
	return 0;
}

/* dir/name+suffix into buf; false, with err set, if it is too long. */
static bool
spool_path(char *buf, size_t len, const char *dir, const char *name,
    const char *suffix, char *err, size_t errlen)
{
	int n = snprintf(buf, len, "%s/%s%s", dir, name, suffix);

	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "spool %s: path too long", dir);
		return false;
	}
	return true;
}

static int
spool_sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/*
 * Copies the damaged logs into a new DIR/quarantine/YYYYMMDDTHHMMSSZ/, before a
 * salvage lets RocksDB delete them. RocksDB leaves a directory in the spool
 * alone.
 */
static int
spool_quarantine(const char *dir, const struct spool_wals *ws,
    struct spool_recovery *rec, char *err, size_t errlen)
{
	char top[PATH_MAX], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int n = 0;

	snprintf(top, sizeof(top), "%s/quarantine", dir);
	if (mkdir(top, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "spool %s: cannot make %s: %s", dir, top,
		    strerror(errno));
		return -1;
	}
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	for (;;) {
		char suffix[16] = "";

		if (n > 0)
			snprintf(suffix, sizeof(suffix), "-%d", n);
		if (!spool_path(rec->quarantine, sizeof(rec->quarantine), top,
			stamp, suffix, err, errlen))
			return -1;
		if (mkdir(rec->quarantine, 0700) == 0)
			break;
		if (errno != EEXIST || ++n > 1000) {
			snprintf(err, errlen, "spool %s: cannot make %s: %s",
			    dir, rec->quarantine, strerror(errno));
			return -1;
		}
	}
	for (size_t i = 0; i < ws->n; i++) {
		char from[PATH_MAX], to[PATH_MAX];

		if (!ws->w[i].damaged && !ws->all)
			continue;
		if (!spool_path(from, sizeof(from), dir, ws->w[i].name, "", err,
			errlen) ||
		    !spool_path(to, sizeof(to), rec->quarantine, ws->w[i].name,
			"", err, errlen) ||
		    spool_copy_file(from, to, err, errlen) < 0)
			return -1;
	}
	if (spool_sync_dir(rec->quarantine) < 0 || spool_sync_dir(top) < 0 ||
	    spool_sync_dir(dir) < 0) {
		snprintf(err, errlen, "spool %s: cannot sync %s: %s", dir,
		    rec->quarantine, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Whether another process has the spool open (holds RocksDB's lock on
 * DIR/LOCK), asked before its logs are read: the logs of a live spool
 * grow while they are read.
 */
static bool
spool_in_use(const char *dir)
{
	char path[PATH_MAX];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	bool busy;
	int fd;

	snprintf(path, sizeof(path), "%s/LOCK", dir);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return false;
	busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return busy;
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
	if (!spool_path(path, sizeof(path), dir, SPOOL_MARK, "", err, errlen) ||
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
 * Replays the logs skipping whatever does not read (RocksDB's
 * kSkipAnyCorruptedRecords), flushing what was read to tables during the
 * recovery, after which RocksDB deletes the logs; drops the index.
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
	if (spool_in_use(dir)) {
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
	if (spool_quarantine(dir, &ws, rec, err, errlen) < 0) {
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
