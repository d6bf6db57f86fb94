/*
 * bench/scale: the stopwatches of bench/scale.sh, which holds millions of
 * messages in mxspoold and times what an operator waits for. Every
 * connection goes to 127.0.0.1; every wait is bounded.
 *
 *   scale greet PORT T0 MAXSECS
 *	connects to PORT every few milliseconds until a connection reads a
 *	reply starting "220"; prints "greet_s=S", S the seconds from T0
 *	(Unix time, fractional, as `date +%s.%N` prints it, taken just
 *	before the daemon's exec) to the "220"; "greet_s=-1" and exit 1
 *	when none came within MAXSECS of now
 *   scale probe PORT SECS INTERVAL_MS LOAD...
 *	for SECS seconds, opens one connection every INTERVAL_MS and times
 *	it from the start of connect() to the "220" read; while LOAD runs
 *	back to back in a thread of its own:
 *	    none                   nothing
 *	    http PORT PATH         GET PATH over HTTP/1.0 (/metrics)
 *	    exec CMD [ARG...]      the command, its output thrown away
 *	prints "n=N errors=E timeouts=T p50_ms=.. p99_ms=.. max_ms=..
 *	load_runs=R load_failed=F load_mean_s=..": a probe that waits
 *	PROBE_TIMEOUT seconds is counted as a timeout at that time; errors
 *	are refused connections and replies other than 220
 *   scale timed COUNT MAXSECS CMD [ARG...]
 *	runs the command COUNT times, one after the other, each killed
 *	after MAXSECS; prints "runs=N failed=F timeouts=T median_s=..
 *	max_s=.." (a run killed counts MAXSECS)
 *   scale term PID MAXSECS
 *	sends SIGTERM to PID and prints "term_s=S", the seconds until the
 *	process has exited (gone, or a zombie waiting for its parent);
 *	"term_s=-1" and exit 1 if it still runs after MAXSECS
 *
 * Exit status 2 is a usage or system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "bench/lib/util.h"

#define GREET_POLL_US 5000 /* between connection attempts while starting */
#define PROBE_TIMEOUT 30   /* seconds, the longest one probe waits */
#define LOAD_TIMEOUT 120   /* seconds, the longest one load run may take */
#define WAIT_POLL_US 500   /* between looks at a child or a process */

extern char **environ;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: scale greet PORT T0 MAXSECS\n"
	    "       scale probe PORT SECS INTERVAL_MS none|http PORT PATH|"
	    "exec CMD...\n"
	    "       scale timed COUNT MAXSECS CMD...\n"
	    "       scale term PID MAXSECS\n");
	exit(2);
}

static long
parse_long(const char *s, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || n < min || n > max) {
		fprintf(stderr, "scale: bad number '%s'\n", s);
		exit(2);
	}
	return n;
}

static void
sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Sleeps until the monotonic time t (no-op if it has passed). */
static void
sleep_until(double t)
{
	double d = t - bench_mono_s();

	if (d > 0)
		sleep_us((long)(d * 1e6));
}

/* A socket connected to 127.0.0.1:port, or -1. */
static int
dial(int port)
{
	struct sockaddr_in sin;
	int fd, one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Reads until want bytes are in buf (or EOF), waiting at most until the
 * monotonic deadline. Returns the bytes read, or -1 on a timeout.
 */
static ssize_t
read_until(int fd, char *buf, size_t want, double deadline)
{
	size_t len = 0;

	while (len < want) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		double left = deadline - bench_mono_s();
		ssize_t r;
		int n;

		if (left <= 0)
			return -1;
		n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			continue; /* the deadline is checked above */
		r = recv(fd, buf + len, want - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	return (ssize_t)len;
}

enum greet_result { GREET_OK, GREET_ERROR, GREET_TIMEOUT };

/* One connection, read to its first three bytes before the deadline. */
static enum greet_result
greet_once(int port, double deadline)
{
	char buf[3];
	int fd = dial(port);
	ssize_t n;

	if (fd < 0)
		return GREET_ERROR;
	n = read_until(fd, buf, sizeof(buf), deadline);
	close(fd);
	if (n < 0)
		return GREET_TIMEOUT;
	return n == 3 && memcmp(buf, "220", 3) == 0 ? GREET_OK : GREET_ERROR;
}

static int
cmd_greet(int port, double t0, long maxsecs)
{
	double deadline = bench_mono_s() + (double)maxsecs;

	for (;;) {
		if (greet_once(port, deadline) == GREET_OK) {
			printf("greet_s=%.3f\n", bench_real_s() - t0);
			return 0;
		}
		if (bench_mono_s() >= deadline)
			break;
		sleep_us(GREET_POLL_US);
	}
	printf("greet_s=-1\n");
	return 1;
}

/*
 * Starts argv with its output thrown away and waits for it, at most
 * maxsecs or until *stop is set (then it is killed). Returns 0 if it
 * exited 0, 1 if it failed, 2 if it was killed; *secs is how long it ran.
 */
static int
run_cmd(char **argv, long maxsecs, atomic_bool *stop, double *secs)
{
	posix_spawn_file_actions_t fa;
	double t0 = bench_mono_s(), deadline = t0 + (double)maxsecs;
	pid_t pid;
	int st, e;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e != 0) {
		fprintf(stderr, "scale: %s: %s\n", argv[0], strerror(e));
		exit(2);
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			perror("scale: waitpid");
			exit(2);
		}
		if (bench_mono_s() >= deadline ||
		    (stop != NULL && atomic_load(stop))) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			*secs = bench_mono_s() - t0;
			return 2;
		}
		sleep_us(WAIT_POLL_US);
	}
	*secs = bench_mono_s() - t0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/*
 * One GET over HTTP/1.0, read to EOF. Returns 0 on a 200, 1 on anything
 * else, 2 when stopped or timed out.
 */
static int
http_get(int port, const char *path, atomic_bool *stop)
{
	double deadline = bench_mono_s() + LOAD_TIMEOUT;
	char req[512], head[16], buf[65536];
	size_t hlen = 0;
	int fd = dial(port), len;

	if (fd < 0)
		return 1;
	len = snprintf(req, sizeof(req),
	    "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (len < 0 || (size_t)len >= sizeof(req) ||
	    send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
		close(fd);
		return 1;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (atomic_load(stop) || bench_mono_s() >= deadline) {
			close(fd);
			return 2;
		}
		if (poll(&p, 1, 100) <= 0)
			continue;
		r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (hlen < sizeof(head)) {
			size_t k = sizeof(head) - hlen;

			if ((size_t)r < k)
				k = (size_t)r;
			memcpy(head + hlen, buf, k);
			hlen += k;
		}
	}
	close(fd);
	/* "HTTP/1.1 200 OK" */
	if (hlen < 12 || memcmp(head, "HTTP/1.", 7) != 0 ||
	    memcmp(head + 8, " 200", 4) != 0)
		return 1;
	return 0;
}

struct load {
	char **argv;      /* exec, or NULL */
	int http_port;    /* http, or 0 */
	const char *path; /* http */
	atomic_bool stop;
	long runs, failed;
	double secs; /* the finished runs' total */
};

static void *
load_main(void *arg)
{
	struct load *l = arg;

	while (!atomic_load(&l->stop)) {
		double t0 = bench_mono_s(), secs;
		int r;

		if (l->argv != NULL)
			r = run_cmd(l->argv, LOAD_TIMEOUT, &l->stop, &secs);
		else
			r = http_get(l->http_port, l->path, &l->stop);
		secs = bench_mono_s() - t0;
		if (r == 2 && atomic_load(&l->stop))
			break; /* cut short by the end of the probe */
		l->runs++;
		l->secs += secs;
		if (r != 0)
			l->failed++;
	}
	return NULL;
}

static int
cmd_probe(int port, long secs, long interval_ms, int argc, char **argv)
{
	struct load l = {0};
	pthread_t th;
	double t_end, next, *lat;
	size_t n = 0, cap;
	long errors = 0, timeouts = 0;
	bool loaded = true;

	if (argc >= 1 && strcmp(argv[0], "none") == 0 && argc == 1)
		loaded = false;
	else if (argc == 3 && strcmp(argv[0], "http") == 0) {
		l.http_port = (int)parse_long(argv[1], 1, 65535);
		l.path = argv[2];
	} else if (argc >= 2 && strcmp(argv[0], "exec") == 0)
		l.argv = argv + 1;
	else
		usage();
	atomic_init(&l.stop, false);
	cap = (size_t)(secs * 1000 / interval_ms) + 2;
	lat = calloc(cap, sizeof(*lat));
	if (lat == NULL) {
		perror("scale");
		return 2;
	}
	if (loaded && pthread_create(&th, NULL, load_main, &l) != 0) {
		fprintf(stderr, "scale: pthread_create failed\n");
		return 2;
	}
	next = bench_mono_s();
	t_end = next + (double)secs;
	while (n + (size_t)errors + (size_t)timeouts < cap) {
		double t0 = bench_mono_s();

		if (t0 >= t_end)
			break;
		switch (greet_once(port, t0 + PROBE_TIMEOUT)) {
		case GREET_OK:
			lat[n++] = (bench_mono_s() - t0) * 1000;
			break;
		case GREET_TIMEOUT:
			timeouts++;
			break;
		case GREET_ERROR:
			errors++;
			break;
		}
		next += (double)interval_ms / 1000;
		if (next < bench_mono_s())
			next = bench_mono_s(); /* late: no burst to catch up */
		sleep_until(next);
	}
	if (loaded) {
		atomic_store(&l.stop, true);
		pthread_join(th, NULL);
	}
	/* A probe that timed out waited PROBE_TIMEOUT: its latency is at least
	 * that, so it counts at that value in the percentiles. */
	for (long i = 0; i < timeouts; i++)
		lat[n++] = PROBE_TIMEOUT * 1000.0;
	qsort(lat, n, sizeof(*lat), bench_cmp_double);
	printf("n=%zu errors=%ld timeouts=%ld p50_ms=%.2f p99_ms=%.2f "
	       "max_ms=%.2f load_runs=%ld load_failed=%ld load_mean_s=%.3f\n",
	    n, errors, timeouts, bench_pct(lat, n, 0.5),
	    bench_pct(lat, n, 0.99), n ? lat[n - 1] : -1.0, l.runs, l.failed,
	    l.runs ? l.secs / (double)l.runs : -1.0);
	free(lat);
	return 0;
}

static int
cmd_timed(long count, long maxsecs, char **argv)
{
	double *t = calloc((size_t)count, sizeof(*t));
	long failed = 0, timeouts = 0;

	if (t == NULL) {
		perror("scale");
		return 2;
	}
	for (long i = 0; i < count; i++) {
		int r = run_cmd(argv, maxsecs, NULL, &t[i]);

		if (r == 2) {
			timeouts++;
			t[i] = (double)maxsecs;
		} else if (r != 0)
			failed++;
	}
	qsort(t, (size_t)count, sizeof(*t), bench_cmp_double);
	printf("runs=%ld failed=%ld timeouts=%ld median_s=%.4f max_s=%.4f\n",
	    count, failed, timeouts, bench_pct(t, (size_t)count, 0.5),
	    t[count - 1]);
	free(t);
	return 0;
}

/* Whether pid has exited: no such process, or a zombie. */
static bool
exited(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	/* "pid (comm) S ...": the state follows the last ')'. */
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static int
cmd_term(pid_t pid, long maxsecs)
{
	double t0 = bench_mono_s(), deadline = t0 + (double)maxsecs;

	if (kill(pid, SIGTERM) < 0) {
		perror("scale: kill");
		return 2;
	}
	while (!exited(pid)) {
		if (bench_mono_s() >= deadline) {
			printf("term_s=-1\n");
			return 1;
		}
		sleep_us(WAIT_POLL_US);
	}
	printf("term_s=%.3f\n", bench_mono_s() - t0);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && strcmp(argv[1], "greet") == 0) {
		char *end = NULL;
		double t0 = bench_real_s();

		if (strcmp(argv[3], "now") != 0) {
			t0 = strtod(argv[3], &end);
			if (end == argv[3] || *end != '\0')
				usage();
		}
		return cmd_greet((int)parse_long(argv[2], 1, 65535), t0,
		    parse_long(argv[4], 1, 86400));
	}
	if (argc >= 6 && strcmp(argv[1], "probe") == 0)
		return cmd_probe((int)parse_long(argv[2], 1, 65535),
		    parse_long(argv[3], 1, 3600), parse_long(argv[4], 1, 60000),
		    argc - 5, argv + 5);
	if (argc >= 5 && strcmp(argv[1], "timed") == 0)
		return cmd_timed(parse_long(argv[2], 1, 1000),
		    parse_long(argv[3], 1, 86400), argv + 4);
	if (argc == 4 && strcmp(argv[1], "term") == 0)
		return cmd_term((pid_t)parse_long(argv[2], 1, 1L << 30),
		    parse_long(argv[3], 1, 86400));
	usage();
	return 2;
}
