#define LOG_ROLE "qmgr"
/*
 * The spool's write-ahead log files (spool_wal.h). A log is judged with
 * its neighbours: a cut-short end is a crash's torn write only if the
 * next log goes on from the last sequence number it holds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/xmem.h"
#include "queue/spool_wal.h"

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
		size_t len = strlen(de->d_name);
		char *end;
		unsigned long long num;
		struct spool_wal *w;

		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    len >= sizeof(w->name))
			continue;
		errno = 0;
		num = strtoull(de->d_name, &end, 10);
		if (errno != 0 || strcmp(end, ".log") != 0)
			continue;
		ws->w = xgrow(ws->w, &ws->cap, ws->n + 1, sizeof(*ws->w));
		w = &ws->w[ws->n++];
		memset(w, 0, sizeof(*w));
		w->number = num;
		memcpy(w->name, de->d_name, len + 1);
	}
	closedir(d);
	if (ws->n > 1)
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
 * but RocksDB refuses it in kTolerateCorruptedTailRecords mode, and in
 * point-in-time mode would stop there and not replay the later logs: as
 * nothing intact is in it, it is read skipping what does not read.
 */
int
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
			ws->mode = SPOOL_WAL_SKIP_ANY;
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
bool
spool_wal_path(char *buf, size_t len, const char *dir, const char *name,
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
int
spool_wal_quarantine(const char *dir, const struct spool_wals *ws,
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
		if (!spool_wal_path(rec->quarantine, sizeof(rec->quarantine),
			top, stamp, suffix, err, errlen))
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
		if (!spool_wal_path(from, sizeof(from), dir, ws->w[i].name, "",
			err, errlen) ||
		    !spool_wal_path(to, sizeof(to), rec->quarantine,
			ws->w[i].name, "", err, errlen) ||
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
bool
spool_wal_in_use(const char *dir)
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

int
spool_wal_rewrite(
    const char *dir, const struct spool_wals *ws, char *err, size_t errlen)
{
	for (size_t i = 0; i < ws->n; i++) {
		char path[PATH_MAX], tmp[PATH_MAX];

		if (!ws->w[i].damaged && !ws->all)
			continue;
		if (!spool_wal_path(path, sizeof(path), dir, ws->w[i].name, "",
			err, errlen) ||
		    !spool_wal_path(tmp, sizeof(tmp), dir, ws->w[i].name,
			".salvaged", err, errlen) ||
		    walcheck_rewrite(path, tmp, err, errlen) < 0)
			return -1;
		if (rename(tmp, path) < 0) {
			snprintf(err, errlen, "spool %s: cannot rename %s: %s",
			    dir, tmp, strerror(errno));
			return -1;
		}
	}
	if (spool_sync_dir(dir) < 0) {
		snprintf(err, errlen, "spool %s: cannot sync it: %s", dir,
		    strerror(errno));
		return -1;
	}
	return 0;
}
