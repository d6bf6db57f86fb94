/*
 * mxroute: where would mxspool send mail for these domains? Resolves each
 * through dns/ on a real event loop, all at once, and prints one JSON
 * object per domain (dns_answer_json), in the order given. The
 * integration tests drive it; `mxspoolctl route` shows the same data.
 *
 *   mxroute -c CONF [-S] DOMAIN|ptr:ADDR ...
 *   mxroute -c CONF -i       commands on stdin, answers as they come:
 *                            DOMAIN, "ptr ADDR", "cancel DOMAIN", "stats"
 *
 * -S prints the resolver's counters last; -t MS bounds PTR lookups.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/xmem.h"
#include "dns/dns.h"

struct job {
	char *arg;
	json_t *out; /* the answer, once it came */
};

static struct event_base *base;
static struct dns *dns;
static struct job *jobs;
static size_t njobs, nleft;
static bool interactive, eof;
static unsigned ptr_timeout_ms = 2000;

static void
print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

	printf("%s\n", s);
	fflush(stdout);
	free(s);
}

static void
job_done(size_t i, json_t *o)
{
	nleft--;
	if (interactive) {
		print_json(o);
		json_decref(o);
	} else {
		jobs[i].out = o;
	}
	if (nleft == 0 && (!interactive || eof))
		event_base_loopexit(base, NULL);
}

static void
on_route(void *arg, const struct dns_answer *ans)
{
	job_done((size_t)(uintptr_t)arg, dns_answer_json(ans));
}

static void
on_ptr(void *arg, enum dns_status st, const char *name)
{
	size_t i = (size_t)(uintptr_t)arg;
	json_t *o = json_object();

	json_object_set_new(o, "ptr", json_string(jobs[i].arg));
	json_object_set_new(o, "status", json_string(dns_status_str(st)));
	json_object_set_new(o, "name", name ? json_string(name) : json_null());
	job_done(i, o);
}

static size_t
job_add(const char *arg)
{
	jobs = xrealloc(jobs, (njobs + 1) * sizeof(*jobs));
	jobs[njobs].arg = xstrdup(arg);
	jobs[njobs].out = NULL;
	nleft++;
	return njobs++;
}

static void
start_ptr(const char *addr)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	size_t i = job_add(addr);

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
	} else {
		fprintf(stderr, "mxroute: bad address '%s'\n", addr);
		exit(2);
	}
	dns_ptr(dns, (struct sockaddr *)&ss, ptr_timeout_ms, on_ptr,
	    (void *)(uintptr_t)i);
}

static json_t *
stats_json(void)
{
	struct dns_stats st;
	json_t *o = json_object();

	dns_get_stats(dns, &st);
	json_object_set_new(o, "queries", json_integer((json_int_t)st.queries));
	json_object_set_new(
	    o, "cache_hits", json_integer((json_int_t)st.cache_hits));
	json_object_set_new(
	    o, "coalesced", json_integer((json_int_t)st.coalesced));
	json_object_set_new(
	    o, "in_flight", json_integer((json_int_t)st.in_flight));
	json_object_set_new(
	    o, "cache_size", json_integer((json_int_t)st.cache_size));
	json_object_set_new(
	    o, "requests", json_integer((json_int_t)st.requests));
	return json_pack("{so}", "stats", o);
}

static void
command(char *line)
{
	json_t *o;
	uint64_t id;

	if (line[0] == '\0')
		return;
	if (strncmp(line, "ptr ", 4) == 0) {
		start_ptr(line + 4);
	} else if (strcmp(line, "stats") == 0) {
		o = stats_json();
		print_json(o);
		json_decref(o);
	} else if (strncmp(line, "cancel ", 7) == 0) {
		/* Its callback must never run: it would print. */
		id = dns_route(dns, line + 7, on_route, (void *)(uintptr_t)0);
		dns_cancel(dns, id);
		o = json_pack("{ss}", "cancelled", line + 7);
		print_json(o);
		json_decref(o);
	} else {
		size_t i = job_add(line);

		dns_route(dns, line, on_route, (void *)(uintptr_t)i);
	}
}

static void
on_stdin(evutil_socket_t fd, short what, void *arg)
{
	static char buf[4096];
	static size_t len;
	struct event *ev = arg;
	ssize_t n;
	char *nl;

	(void)what;
	n = read(fd, buf + len, sizeof(buf) - 1 - len);
	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return;
		eof = true;
		event_del(ev);
		if (nleft == 0)
			event_base_loopexit(base, NULL);
		return;
	}
	len += (size_t)n;
	buf[len] = '\0';
	while ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		command(buf);
		len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, len + 1);
	}
	if (len == sizeof(buf) - 1)
		len = 0; /* a line too long to be a domain: dropped */
}

static void
usage(void)
{
	fprintf(stderr, "usage: mxroute -c CONF [-S] [-t MS] "
			"DOMAIN|ptr:ADDR ...\n"
			"       mxroute -c CONF -i [-t MS]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	struct event *in_ev = NULL;
	struct conf *cf;
	bool stats = false;
	char *errors = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "c:iSt:")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'i':
			interactive = true;
			break;
		case 'S':
			stats = true;
			break;
		case 't':
			ptr_timeout_ms = (unsigned)atoi(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (path == NULL || (argc == 0 && !interactive))
		usage();
	if (conf_load(&cf, path, &errors) < 0) {
		fprintf(stderr, "%s", errors ? errors : "bad config\n");
		return 2;
	}
	log_open("mxroute", NULL, LOG_TO_STDERR, cf->log_level);
	base = event_base_new();
	if (base == NULL || dns_new(&dns, cf, base) < 0)
		return 2;

	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "ptr:", 4) == 0) {
			start_ptr(argv[i] + 4);
		} else {
			size_t j = job_add(argv[i]);

			dns_route(dns, argv[i], on_route, (void *)(uintptr_t)j);
		}
	}
	if (interactive) {
		in_ev = event_new(base, 0, EV_READ | EV_PERSIST, on_stdin,
		    event_self_cbarg());
		event_add(in_ev, NULL);
	}
	if (nleft > 0 || interactive)
		event_base_dispatch(base);

	for (size_t i = 0; i < njobs; i++) {
		if (jobs[i].out != NULL) {
			print_json(jobs[i].out);
			json_decref(jobs[i].out);
		}
		free(jobs[i].arg);
	}
	free(jobs);
	if (stats) {
		json_t *o = stats_json();

		print_json(o);
		json_decref(o);
	}
	if (in_ev != NULL)
		event_free(in_ev);
	dns_free(dns);
	event_base_free(base);
	conf_free(cf);
	return 0;
}
