/*
 * bench/accept: the client side of bench/accept.sh that smtp-source does
 * not cover. Every connection goes to 127.0.0.1.
 *
 *   accept freeport
 *	a TCP port on 127.0.0.1 that nothing listens on right now
 *   accept waitport PORT SECONDS
 *	exits 0 as soon as a connection to PORT succeeds, 1 after SECONDS
 *   accept idle PORT COUNT HOLD
 *	opens COUNT connections, each read to its greeting and EHLO reply,
 *	prints "ready open=N", keeps them HOLD seconds, then prints
 *	"held=N" (those the server kept open, silent) and closes them
 *   accept latency PORT SESSIONS RATE STOPFILE MAXSECS
 *	SESSIONS threads each sending 10 KiB messages, one per connection
 *	(as smtp-source does), at most RATE a second each, until STOPFILE
 *	exists or MAXSECS pass; times each from the write of the final
 *	".\r\n" to the whole 250 reply and prints
 *	"n=N errors=E p50_ms=.. p99_ms=.. max_ms=.."
 *	The rate cap keeps the probe a sample: unpaced, it would send
 *	thousands a second to a fast server and only tens to a slow one,
 *	and so load the servers unequally.
 *
 * Sockets are blocking with timeouts: the probe is a measuring device and
 * should add as little scheduling noise of its own as it can.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "bench/lib/util.h"
#include "common/xmem.h"

#define BODY_SIZE 10240
#define IO_TIMEOUT 30 /* seconds, any one read or write */

struct conn {
	int fd;
	char buf[4096];
	size_t len;
};

static int
parse_port(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	if (end == s || *end != '\0' || n < 1 || n > 65535) {
		fprintf(stderr, "accept: bad port '%s'\n", s);
		exit(2);
	}
	return (int)n;
}

static long
parse_count(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	if (end == s || *end != '\0' || n < 0 || n > 1000000) {
		fprintf(stderr, "accept: bad number '%s'\n", s);
		exit(2);
	}
	return n;
}

static void
loopback(struct sockaddr_in *sin, int port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* A connected socket with I/O timeouts and no Nagle delay, or -1. */
static int
dial(int port)
{
	struct sockaddr_in sin;
	struct timeval tv = {.tv_sec = IO_TIMEOUT};
	int fd, one = 1;

	loopback(&sin, port);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Reads one whole reply, possibly multi-line; returns its code, or -1 on
 * EOF, timeout or a malformed reply.
 */
static int
read_reply(struct conn *c)
{
	for (;;) {
		char *eol;
		ssize_t r;

		while ((eol = memchr(c->buf, '\n', c->len)) != NULL) {
			size_t linelen = (size_t)(eol - c->buf) + 1;
			int code, last;

			if (linelen < 4 || c->buf[0] < '2' || c->buf[0] > '5')
				return -1;
			code = atoi(c->buf);
			last = c->buf[3] != '-';
			memmove(c->buf, eol + 1, c->len - linelen);
			c->len -= linelen;
			if (last)
				return code;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

/* Sends cmd and expects a reply in the class of want (2 or 3). */
static int
command(struct conn *c, const char *cmd, int want)
{
	int code;

	if (send_all(c->fd, cmd, strlen(cmd)) < 0)
		return -1;
	code = read_reply(c);
	return code / 100 == want ? 0 : -1;
}

static int
cmd_freeport(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	loopback(&sin, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		perror("accept: freeport");
		return 1;
	}
	printf("%d\n", ntohs(sin.sin_port));
	close(fd);
	return 0;
}

static int
cmd_waitport(int port, long secs)
{
	double deadline = bench_mono_s() + (double)secs;
	int fd;

	while ((fd = dial(port)) < 0) {
		if (bench_mono_s() >= deadline) {
			fprintf(stderr, "accept: nothing listens on port %d\n",
			    port);
			return 1;
		}
		usleep(20000);
	}
	close(fd);
	return 0;
}

static int
cmd_idle(int port, long count, long hold)
{
	int *fds = xcalloc((size_t)count, sizeof(*fds));
	long open = 0, held = 0;
	struct conn *c = xmalloc(sizeof(*c));

	for (; open < count; open++) {
		c->fd = dial(port);
		c->len = 0;
		if (c->fd < 0) {
			fprintf(stderr, "accept: idle: connection %ld: %s\n",
			    open + 1, strerror(errno));
			break;
		}
		if (read_reply(c) != 220 ||
		    command(c, "EHLO idle.bench.invalid\r\n", 2) < 0) {
			fprintf(stderr,
			    "accept: idle: connection %ld: no greeting or EHLO "
			    "refused\n",
			    open + 1);
			close(c->fd);
			break;
		}
		fds[open] = c->fd;
	}
	printf("ready open=%ld\n", open);
	fflush(stdout);
	sleep((unsigned)hold);

	/* Still open and silent: no EOF, no 421, nothing to read. */
	for (long i = 0; i < open; i++) {
		char b;
		ssize_t r = recv(fds[i], &b, 1, MSG_DONTWAIT | MSG_PEEK);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			held++;
		close(fds[i]);
	}
	printf("held=%ld\n", held);
	free(c);
	free(fds);
	return 0;
}

struct probe {
	pthread_t tid;
	int port;
	const char *stopfile;
	double deadline;
	double interval; /* seconds between message starts */
	const char *msg; /* headers and 10 KiB body, without the final dot */
	size_t msglen;
	double *lat;
	size_t nlat, cap;
	long errors;
};

static bool
probe_stopping(const struct probe *p)
{
	return bench_mono_s() >= p->deadline || access(p->stopfile, F_OK) == 0;
}

/* One session, one message; -1 on any failure. */
static int
probe_once(struct probe *p, struct conn *c)
{
	double t0, dt;

	if (read_reply(c) != 220 ||
	    command(c, "EHLO probe.bench.invalid\r\n", 2) < 0 ||
	    command(c, "MAIL FROM:<probe@bench.invalid>\r\n", 2) < 0 ||
	    command(c, "RCPT TO:<probe@example.com>\r\n", 2) < 0 ||
	    command(c, "DATA\r\n", 3) < 0 ||
	    send_all(c->fd, p->msg, p->msglen) < 0)
		return -1;
	t0 = bench_mono_s();
	if (command(c, ".\r\n", 2) < 0)
		return -1;
	dt = bench_mono_s() - t0;
	p->lat = xgrow(p->lat, &p->cap, p->nlat + 1, sizeof(*p->lat));
	p->lat[p->nlat++] = dt;
	(void)command(c, "QUIT\r\n", 2);
	return 0;
}

static void *
probe_run(void *arg)
{
	struct probe *p = arg;
	struct conn *c = xmalloc(sizeof(*c));
	double next = bench_mono_s();

	while (!probe_stopping(p)) {
		double wait = next - bench_mono_s();

		if (wait > 0) {
			usleep((useconds_t)(wait * 1e6));
			continue; /* look at the stop file again first */
		}
		next += p->interval;
		if (next <
		    bench_mono_s()) /* late: do not catch up in a burst */
			next = bench_mono_s();
		c->len = 0;
		c->fd = dial(p->port);
		if (c->fd < 0 || probe_once(p, c) < 0) {
			p->errors++;
			usleep(10000); /* a refusing server: do not spin */
		}
		if (c->fd >= 0)
			close(c->fd);
	}
	free(c);
	return NULL;
}

static char *
make_message(size_t *lenp)
{
	const char *hdr = "From: <probe@bench.invalid>\r\n"
			  "To: <probe@example.com>\r\n"
			  "Subject: accept latency probe\r\n"
			  "\r\n";
	size_t len = strlen(hdr);
	char *m = xmalloc(len + BODY_SIZE + 1);

	memcpy(m, hdr, len);
	/* Lines of 78 characters and CRLF, the last one shorter. */
	for (size_t i = 0; i < BODY_SIZE; i++) {
		size_t col = i % 80, left = BODY_SIZE - i;

		if (left <= 2)
			m[len + i] = left == 2 ? '\r' : '\n';
		else
			m[len + i] = col == 78 ? '\r' : col == 79 ? '\n' : 'x';
	}
	*lenp = len + BODY_SIZE;
	m[*lenp] = '\0';
	return m;
}

static int
cmd_latency(
    int port, long sessions, long rate, const char *stopfile, long maxsecs)
{
	struct probe *ps = xcalloc((size_t)sessions, sizeof(*ps));
	size_t msglen, n = 0, cap = 0;
	char *msg = make_message(&msglen);
	double *all = NULL, deadline = bench_mono_s() + (double)maxsecs;
	long errors = 0;

	for (long i = 0; i < sessions; i++) {
		ps[i].port = port;
		ps[i].stopfile = stopfile;
		ps[i].deadline = deadline;
		ps[i].interval = 1.0 / (double)(rate > 0 ? rate : 1);
		ps[i].msg = msg;
		ps[i].msglen = msglen;
		if (pthread_create(&ps[i].tid, NULL, probe_run, &ps[i]) != 0) {
			fprintf(stderr, "accept: pthread_create failed\n");
			return 1;
		}
	}
	for (long i = 0; i < sessions; i++) {
		pthread_join(ps[i].tid, NULL);
		all = xgrow(all, &cap, n + ps[i].nlat, sizeof(*all));
		memcpy(all + n, ps[i].lat, ps[i].nlat * sizeof(*all));
		n += ps[i].nlat;
		errors += ps[i].errors;
		free(ps[i].lat);
	}
	qsort(all, n, sizeof(*all), bench_cmp_double);
	printf("n=%zu errors=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", n,
	    errors, bench_pct(all, n, 0.50) * 1e3,
	    bench_pct(all, n, 0.99) * 1e3, n ? all[n - 1] * 1e3 : 0.0);
	free(all);
	free(msg);
	free(ps);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: accept freeport\n"
	    "       accept waitport PORT SECONDS\n"
	    "       accept idle PORT COUNT HOLD\n"
	    "       accept latency PORT SESSIONS RATE STOPFILE MAXSECS\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "freeport") == 0)
		return cmd_freeport();
	if (argc == 4 && strcmp(argv[1], "waitport") == 0)
		return cmd_waitport(parse_port(argv[2]), parse_count(argv[3]));
	if (argc == 5 && strcmp(argv[1], "idle") == 0)
		return cmd_idle(parse_port(argv[2]), parse_count(argv[3]),
		    parse_count(argv[4]));
	if (argc == 7 && strcmp(argv[1], "latency") == 0)
		return cmd_latency(parse_port(argv[2]), parse_count(argv[3]),
		    parse_count(argv[4]), argv[5], parse_count(argv[6]));
	usage();
	return 2;
}
