/*
 * bench/drain: the stopwatch of bench/drain.sh. It watches a drain from
 * outside, the same way for every relay: the backend's own count of the
 * messages it received (smtp-sink -c), then the relay's queue.
 *
 *   drain watch T0 SINKOUT N MAXSECS mx LOG
 *   drain watch T0 SINKOUT N MAXSECS postfix QUEUEDIR
 *	T0 is when the backend started listening (Unix time, fractional
 *	seconds, as `date +%s.%N` prints it). Reads SINKOUT, the output of
 *	`smtp-sink -c` (counters separated by CR, "mesg=N" the messages
 *	received), as it grows, and waits until N messages have arrived and
 *	the relay's queue is empty: for mx, until LOG (mxspoold's) has N
 *	lines ending in ": removed"; for postfix, until no file is left in
 *	QUEUEDIR's incoming, active, deferred, maildrop and hold queues.
 *	Prints, in seconds after T0,
 *	"got=K first_s=.. all_s=.. empty_s=.. max_gap_s=.. done=0|1":
 *	the first message at the backend, the Nth, the empty queue, and the
 *	longest time the backend's count stood still between the first
 *	message and the Nth (a per-message backoff shows up there). After
 *	MAXSECS it stops with done=0; times not reached print as -1.
 *	Exits 0 when done, 1 on a timeout, 2 on a usage or I/O error.
 *
 * It polls every few milliseconds rather than sleeping on the files: the
 * figures it times are seconds long, and polling is the same for both
 * relays. The queue directory is only scanned once the backend has all N
 * messages, so the watch does not load the disk while Postfix drains.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "bench/lib/util.h"

#define POLL_US 5000        /* between looks at the files */
#define QUEUE_POLL_US 20000 /* between scans of Postfix's queue */
#define TAIL_MAX 256        /* the longest partial line kept between reads */

/* A file read as it grows, one record at a time. */
struct tail {
	FILE *f;
	char part[TAIL_MAX];
	size_t len;
};

struct watch {
	double t0, deadline;
	long want;
	long got;     /* the sink's last "mesg=" */
	long removed; /* mxspoold's ": removed" lines */
	double first, all, empty, last_rise, max_gap;
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: drain watch T0 SINKOUT N MAXSECS mx LOG\n"
	    "       drain watch T0 SINKOUT N MAXSECS postfix QUEUEDIR\n");
	exit(2);
}

static long
parse_count(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	if (end == s || *end != '\0' || n < 0 || n > 100000000)
		usage();
	return n;
}

static double
parse_time(const char *s)
{
	char *end;
	double t = strtod(s, &end);

	if (end == s || *end != '\0' || t <= 0)
		usage();
	return t;
}

static int
tail_open(struct tail *t, const char *path)
{
	memset(t, 0, sizeof(*t));
	t->f = fopen(path, "r");
	if (t->f == NULL) {
		fprintf(stderr, "drain: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Calls fn for each whole record (ended by CR or LF) added to the file
 * since the last call. A record longer than TAIL_MAX is cut, which the
 * callers' short records never are.
 */
static void
tail_read(
    struct tail *t, void (*fn)(struct watch *, const char *), struct watch *w)
{
	int c;

	while ((c = getc(t->f)) != EOF) {
		if (c == '\r' || c == '\n') {
			t->part[t->len] = '\0';
			if (t->len > 0)
				fn(w, t->part);
			t->len = 0;
		} else if (t->len < TAIL_MAX - 1) {
			t->part[t->len++] = (char)c;
		}
	}
	clearerr(t->f); /* at EOF now; more may come */
}

/* One counter record of smtp-sink -c: "sess=.. quit=.. mesg=N". */
static void
on_sink_record(struct watch *w, const char *rec)
{
	const char *p = strstr(rec, "mesg=");
	double now;
	long n;

	if (p == NULL)
		return;
	n = strtol(p + 5, NULL, 10);
	if (n <= w->got)
		return;
	now = bench_real_s();
	if (w->got == 0)
		w->first = now;
	else if (w->all < 0 && now - w->last_rise > w->max_gap)
		w->max_gap = now - w->last_rise;
	w->last_rise = now;
	w->got = n;
	if (w->got >= w->want && w->all < 0)
		w->all = now;
}

static void
on_log_line(struct watch *w, const char *line)
{
	size_t len = strlen(line);
	static const char tag[] = ": removed";

	if (len >= sizeof(tag) - 1 &&
	    strcmp(line + len - (sizeof(tag) - 1), tag) == 0)
		w->removed++;
}

/* Files under dir, subdirectories included; 0 for a missing dir. */
static long
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char path[4096];
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (lstat(path, &st) < 0)
			continue; /* moved or removed while we looked */
		if (S_ISDIR(st.st_mode))
			n += count_files(path);
		else
			n++;
	}
	closedir(d);
	return n;
}

static long
postfix_queued(const char *qdir)
{
	static const char *const queues[] = {
	    "incoming", "active", "deferred", "maildrop", "hold"};
	long n = 0;

	for (size_t i = 0; i < sizeof(queues) / sizeof(queues[0]); i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s", qdir, queues[i]);
		n += count_files(path);
	}
	return n;
}

static double
since(const struct watch *w, double t)
{
	if (t < 0)
		return -1;
	return t > w->t0 ? t - w->t0 : 0;
}

static int
cmd_watch(char **argv)
{
	struct watch w = {.first = -1, .all = -1, .empty = -1};
	struct tail sink, log;
	bool mx = strcmp(argv[4], "mx") == 0;
	double next_scan = 0;
	int done = 0;

	if (!mx && strcmp(argv[4], "postfix") != 0)
		usage();
	w.t0 = parse_time(argv[0]);
	w.want = parse_count(argv[2]);
	w.deadline = w.t0 + (double)parse_count(argv[3]);
	if (tail_open(&sink, argv[1]) < 0 ||
	    (mx && tail_open(&log, argv[5]) < 0))
		return 2;
	for (;;) {
		double now;

		tail_read(&sink, on_sink_record, &w);
		if (mx)
			tail_read(&log, on_log_line, &w);
		now = bench_real_s();
		if (w.all >= 0) {
			if (mx && w.removed >= w.want) {
				w.empty = now;
			} else if (!mx && now >= next_scan) {
				if (postfix_queued(argv[5]) == 0)
					w.empty = bench_real_s();
				next_scan =
				    bench_real_s() + QUEUE_POLL_US / 1e6;
			}
		}
		if (w.empty >= 0) {
			done = 1;
			break;
		}
		if (now >= w.deadline)
			break;
		usleep(POLL_US);
	}
	/* A count still standing at the deadline has stood since its rise. */
	if (!done && w.got > 0 && w.all < 0 &&
	    bench_real_s() - w.last_rise > w.max_gap)
		w.max_gap = bench_real_s() - w.last_rise;
	printf("got=%ld first_s=%.2f all_s=%.2f empty_s=%.2f max_gap_s=%.2f "
	       "done=%d\n",
	    w.got, since(&w, w.first), since(&w, w.all), since(&w, w.empty),
	    w.max_gap, done);
	fclose(sink.f);
	if (mx)
		fclose(log.f);
	return done ? 0 : 1;
}

int
main(int argc, char **argv)
{
	if (argc == 8 && strcmp(argv[1], "watch") == 0)
		return cmd_watch(argv + 2);
	usage();
	return 2;
}
