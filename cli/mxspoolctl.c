/*
 * mxspoolctl: look at and act on mxspoold's queue through its control
 * socket (ctl/ctl_proto.h describes the protocol). Human tables by default,
 * the daemon's JSON with --json. Exit status: 0 done, 1 the request failed
 * (or the daemon is not running), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/idn.h"
#include "ctl/ctl_proto.h"
#include "queue/qid.h"

#define EX_OK 0
#define EX_FAIL 1
#define EX_USAGE 2
#define ANSWER_TIMEOUT 120 /* seconds to wait for each reply line */

struct opts {
	const char *config;
	const char *socket;
	bool json;
};

static struct opts opt;
static const char *cmd_name = "";

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mxspoolctl [-c FILE | -s SOCKET] [--json] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  summary [--ages]                   mail held, per destination\n"
	    "  list [--domain D] [--older-than DURATION] [--held] "
	    "[--limit N]\n"
	    "  show ID [--headers | --body]\n"
	    "  flush [ID... | --domain D | --all] retry now\n"
	    "  hold [ID... | --domain D]          stop delivering\n"
	    "  release [ID... | --domain D]       deliver again\n"
	    "  delete [ID... | --domain D] --yes  remove without notice\n"
	    "  bounce ID... --yes                 return to sender with a DSN\n"
	    "  route DOMAIN                       where mail for DOMAIN goes\n"
	    "  trust DEST                         end DEST's suspect state "
	    "(rejection guard)\n"
	    "  bounce-suspect DEST --yes          return DEST's suspect "
	    "recipients\n"
	    "  stats                              counters since start\n"
	    "  reload                             re-read the configuration\n"
	    "options:\n"
	    "  -c, --config FILE  find the socket in FILE "
	    "(default " CONF_DEFAULT_PATH ")\n"
	    "  -s, --socket PATH  the control socket\n"
	    "  -j, --json         print JSON (one object per line)\n"
	    "  -h, --help         print this help\n");
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mxspoolctl: ");
	if (cmd_name[0])
		fprintf(stderr, "%s: ", cmd_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(mxspoolctl --help lists the commands)\n");
	return EX_USAGE;
}

static void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mxspoolctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The control_socket line of a config that does not load, or NULL. */
static char *
socket_from_text(const char *path)
{
	FILE *fp = fopen(path, "r");
	char line[1024], *found = NULL;

	if (fp == NULL)
		return NULL;
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *p = line + strspn(line, " \t"), *q;

		if (strncmp(p, "control_socket", 14) != 0)
			continue;
		p += 14 + strspn(p + 14, " \t");
		if (*p++ != '=')
			continue;
		p += strspn(p, " \t");
		if (*p++ != '"' || (q = strchr(p, '"')) == NULL)
			continue;
		free(found);
		found = strndup(p, (size_t)(q - p));
	}
	fclose(fp);
	if (found == NULL)
		found = strdup(CONF_DEFAULT_CONTROL_SOCKET);
	return found;
}

/* The control socket's path: -s, else the config's control_socket. */
static char *
socket_path(void)
{
	const char *path = opt.config ? opt.config : CONF_DEFAULT_PATH;
	struct conf *cf;
	char *errors = NULL, *s;

	if (opt.socket != NULL)
		return strdup(opt.socket);
	if (conf_load(&cf, path, &errors) < 0) {
		/* A broken file still names the socket, and `reload` must
		 * reach the daemon to report what is broken. */
		free(errors);
		if ((s = socket_from_text(path)) != NULL)
			return s;
		fail("cannot read %s; give the socket with -s", path);
		return NULL;
	}
	s = strdup(cf->control_socket);
	conf_free(cf);
	return s;
}

static FILE *
ctl_connect(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {ANSWER_TIMEOUT, 0};
	FILE *fp;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fail("control socket path too long: %s", path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail("socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			fail("mxspoold is not running (nothing answers on %s)",
			    path);
		else
			fail("cannot reach mxspoold on %s: %s", path,
			    strerror(errno));
		close(fd);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	fp = fdopen(fd, "r+");
	if (fp == NULL)
		close(fd);
	return fp;
}

/* What the output functions get for each line of the answer. */
struct handler {
	void (*item)(json_t *item);   /* list */
	void (*chunk)(json_t *chunk); /* show --headers/--body */
	int (*result)(json_t *result);
};

static size_t
b64_decode(const char *in, unsigned char *out)
{
	size_t n = 0;
	unsigned v = 0;
	int bits = 0;

	for (; *in && *in != '='; in++) {
		const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqr"
				  "stuvwxyz0123456789+/";
		const char *p = strchr(tab, *in);

		if (p == NULL)
			continue;
		v = v << 6 | (unsigned)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(v >> bits & 0xff);
		}
	}
	return n;
}

/* Sends req (taken) and reads the answer to its end. */
static int
ctl_call(json_t *req, const struct handler *h)
{
	char *path = socket_path(), *text, *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;
	int rc = EX_FAIL;

	if (path == NULL) {
		json_decref(req);
		return EX_FAIL;
	}
	fp = ctl_connect(path);
	if (fp == NULL) {
		free(path);
		json_decref(req);
		return EX_FAIL;
	}
	json_object_set_new(req, "id", json_integer(getpid()));
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	fprintf(fp, "%s\n", text);
	fflush(fp);
	free(text);
	for (;;) {
		json_t *o, *v;
		json_error_t je;

		errno = 0;
		if ((n = getline(&line, &cap, fp)) <= 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				fail("no answer from mxspoold within %ds",
				    ANSWER_TIMEOUT);
			else
				fail("mxspoold closed the connection "
				     "without an answer");
			break;
		}
		o = json_loadb(line, (size_t)n, 0, &je);
		if (o == NULL) {
			fail("bad answer from mxspoold: %s", je.text);
			break;
		}
		if ((v = json_object_get(o, "item")) != NULL && h->item)
			h->item(v);
		else if ((v = json_object_get(o, "chunk")) != NULL && h->chunk)
			h->chunk(v);
		else if ((v = json_object_get(o, "error")) != NULL) {
			const char *msg =
			    json_string_value(json_object_get(v, "message"));

			if (opt.json) {
				json_dumpf(o, stdout, JSON_COMPACT);
				putchar('\n');
			}
			if (strcmp(cmd_name, "reload") == 0) {
				fail("reload refused; the running "
				     "configuration stays:");
				fprintf(stderr, "%s\n", msg ? msg : "");
			} else
				fail("%s", msg ? msg : "failed");
			json_decref(o);
			break;
		} else if ((v = json_object_get(o, "result")) != NULL) {
			if (opt.json && h->result == NULL) {
				json_dumpf(v, stdout, JSON_COMPACT);
				putchar('\n');
				rc = EX_OK;
			} else
				rc = h->result ? h->result(v) : EX_OK;
			json_decref(o);
			break;
		}
		json_decref(o);
	}
	free(line);
	free(path);
	fclose(fp);
	return rc;
}

static void
fmt_time(json_t *t, char *buf, size_t len)
{
	time_t s = (time_t)json_integer_value(t);
	struct tm tm;

	if (!json_is_integer(t)) {
		snprintf(buf, len, "-");
		return;
	}
	localtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static const char *
str_or(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : dflt;
}

static int64_t
int_of(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

/* summary */
static bool summary_ages;

static int
summary_result(json_t *r)
{
	json_t *dests = json_object_get(r, "destinations"), *d;
	json_t *total = json_object_get(r, "total");
	int64_t now = int_of(r, "now");
	char size[32], age[32], next[32];
	size_t i;

	if (json_array_size(dests) == 0) {
		printf("The queue is empty.\n");
		return EX_OK;
	}
	if (summary_ages) {
		json_t *labels = json_object_get(r, "age_buckets");

		printf("%-28s %6s", "DESTINATION", "TOTAL");
		for (size_t b = 0; b < json_array_size(labels); b++)
			printf(" %6s",
			    json_string_value(json_array_get(labels, b)));
		printf("\n%-28s %6" PRId64, "TOTAL", int_of(total, "messages"));
		for (size_t b = 0; b < CTL_AGE_BUCKETS; b++)
			printf(" %6" JSON_INTEGER_FORMAT,
			    json_integer_value(json_array_get(
				json_object_get(total, "ages"), b)));
		putchar('\n');
		json_array_foreach(dests, i, d)
		{
			printf("%-28s %6" PRId64, str_or(d, "name", "?"),
			    int_of(d, "messages"));
			for (size_t b = 0; b < CTL_AGE_BUCKETS; b++)
				printf(" %6" JSON_INTEGER_FORMAT,
				    json_integer_value(json_array_get(
					json_object_get(d, "ages"), b)));
			putchar('\n');
		}
		return EX_OK;
	}
	printf("%-28s %5s %7s %7s  %-11s %-8s %s\n", "DESTINATION", "MSGS",
	    "SIZE", "OLDEST", "STATE", "NEXT", "LAST ERROR");
	json_array_foreach(dests, i, d)
	{
		json_t *na = json_object_get(d, "next_attempt");

		ctl_fmt_size((uint64_t)int_of(d, "bytes"), size, sizeof(size));
		ctl_fmt_age(int_of(d, "oldest_age"), age, sizeof(age));
		if (!json_is_integer(na))
			snprintf(next, sizeof(next), "-");
		else if (json_integer_value(na) <= now)
			snprintf(next, sizeof(next), "now");
		else {
			char in[24];

			ctl_fmt_age(
			    json_integer_value(na) - now, in, sizeof(in));
			snprintf(next, sizeof(next), "in %s", in);
		}
		printf("%-28s %5" PRId64 " %7s %7s  %-11s %-8s %s\n",
		    str_or(d, "name", "?"), int_of(d, "messages"), size, age,
		    str_or(d, "state", "?"), next,
		    str_or(d, "last_error", "-"));
	}
	ctl_fmt_size((uint64_t)int_of(total, "bytes"), size, sizeof(size));
	printf("%" PRId64 " message%s, %s%s, %zu destination%s\n",
	    int_of(total, "messages"),
	    int_of(total, "messages") == 1 ? "" : "s", size,
	    int_of(total, "bytes") < 1024 ? " bytes" : "",
	    json_array_size(dests), json_array_size(dests) == 1 ? "" : "s");
	return EX_OK;
}

static const struct handler summary_handler = {.result = summary_result};

/* list and show */
static void
print_msg(json_t *m, bool full)
{
	json_t *rcpts = json_object_get(m, "recipients"), *r;
	char when[32];
	size_t i;
	const char *sender = str_or(m, "sender", "");

	fmt_time(json_object_get(m, "arrival"), when, sizeof(when));
	if (!full) {
		printf("%-12s  %s  %8" PRId64 "  <%s>%s\n",
		    str_or(m, "id", "?"), when, int_of(m, "size"), sender,
		    json_is_true(json_object_get(m, "held")) ? "  (held)" : "");
		json_array_foreach(rcpts, i, r)
		{
			const char *err = str_or(r, "last_error", NULL);

			printf("    %-30s %s", str_or(r, "address", "?"),
			    str_or(r, "state", "?"));
			if (err != NULL)
				printf("  %s %s", str_or(r, "dsn", ""), err);
			putchar('\n');
		}
		return;
	}
	printf("id:           %s\n", str_or(m, "id", "?"));
	printf("arrival:      %s\n", when);
	printf("size:         %" PRId64 "\n", int_of(m, "size"));
	printf("sender:       <%s>\n", sender);
	printf("client:       %s\n", str_or(m, "client", "-"));
	printf("held:         %s\n",
	    json_is_true(json_object_get(m, "held")) ? "yes" : "no");
	printf("attempts:     %" PRId64 "\n", int_of(m, "attempts"));
	fmt_time(json_object_get(m, "last_attempt"), when, sizeof(when));
	printf("last attempt: %s\n", when);
	fmt_time(json_object_get(m, "next_attempt"), when, sizeof(when));
	printf("next attempt: %s\n", when);
	printf("last error:   %s\n", str_or(m, "last_error", "-"));
	json_array_foreach(rcpts, i, r)
	{
		printf("recipient:    <%s> %s via %s",
		    str_or(r, "address", "?"), str_or(r, "state", "?"),
		    str_or(r, "destination", "?"));
		if (json_is_string(json_object_get(r, "last_error")))
			printf(": %s %s", str_or(r, "dsn", ""),
			    str_or(r, "last_error", ""));
		putchar('\n');
	}
}

static size_t list_count;

static void
list_item(json_t *m)
{
	if (opt.json) {
		json_dumpf(m, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		if (list_count == 0)
			printf("%-12s  %-19s  %8s  %s\n", "QUEUE ID", "ARRIVAL",
			    "SIZE", "SENDER / RECIPIENTS");
		print_msg(m, false);
	}
	list_count++;
}

static int
list_result(json_t *r)
{
	(void)r;
	if (!opt.json)
		printf(list_count == 0 ? "No messages match.\n"
				       : "%zu message%s\n",
		    list_count, list_count == 1 ? "" : "s");
	return EX_OK;
}

static const struct handler list_handler = {
    .item = list_item, .result = list_result};

static void
show_chunk(json_t *c)
{
	const char *data = str_or(c, "data", "");

	if (opt.json) {
		json_dumpf(c, stdout, JSON_COMPACT);
		putchar('\n');
		return;
	}
	if (strcmp(str_or(c, "encoding", "text"), "base64") == 0) {
		unsigned char *buf = malloc(strlen(data) + 1);

		if (buf == NULL)
			abort();
		fwrite(buf, 1, b64_decode(data, buf), stdout);
		free(buf);
	} else
		fwrite(data, 1, json_string_length(json_object_get(c, "data")),
		    stdout);
}

static int
show_result(json_t *r)
{
	if (opt.json) {
		json_dumpf(r, stdout, JSON_COMPACT);
		putchar('\n');
	} else if (json_object_get(r, "recipients") != NULL)
		print_msg(r, true);
	return EX_OK;
}

static const struct handler show_handler = {
    .chunk = show_chunk, .result = show_result};

/* flush, hold, release, delete, bounce */
static int
action_result(json_t *r)
{
	const char *key;
	json_t *v;

	json_object_foreach(r, key, v)
	{
		if (strcmp(key, "held") == 0 &&
		    strcmp(cmd_name, "flush") == 0) {
			if (json_integer_value(v) > 0)
				printf("%" JSON_INTEGER_FORMAT
				       " held message%s left alone "
				       "(release them first)\n",
				    json_integer_value(v),
				    json_integer_value(v) == 1 ? "" : "s");
			continue;
		}
		printf("%s %" JSON_INTEGER_FORMAT " message%s\n", key,
		    json_integer_value(v),
		    json_integer_value(v) == 1 ? "" : "s");
	}
	return EX_OK;
}

static const struct handler action_handler = {.result = action_result};

/* trust, bounce-suspect */
static int
guard_result(json_t *r)
{
	int64_t n;

	if (json_object_get(r, "trusted") != NULL) {
		n = int_of(r, "trusted");
		printf("trusted %" PRId64 " destination%s again\n", n,
		    n == 1 ? "" : "s");
	} else {
		n = int_of(r, "bounced");
		printf("returned %" PRId64
		       " suspect recipient%s to their senders\n",
		    n, n == 1 ? "" : "s");
	}
	return EX_OK;
}

static const struct handler guard_handler = {.result = guard_result};

static int
route_result(json_t *r)
{
	json_t *c = json_object_get(r, "candidates"), *h;
	json_t *d = json_object_get(r, "dropped");
	size_t i, j;

	printf("%s: %s (%s) %s\n", str_or(r, "domain", "?"),
	    str_or(r, "status", "?"), str_or(r, "dsn", "?"),
	    str_or(r, "reason", ""));
	printf("route: %s%s%s\n", str_or(r, "route", "mx"),
	    json_is_true(json_object_get(r, "implicit_mx")) ? " (no MX: the "
							      "domain's own "
							      "address)"
							    : "",
	    json_is_true(json_object_get(r, "relay_domain"))
		? ""
		: " (not a relay domain: mail for it is refused)");
	if (json_array_size(c) > 0)
		printf("candidates, in order:\n");
	json_array_foreach(c, i, h)
	{
		json_t *a = json_object_get(h, "addresses");

		if (int_of(h, "pref") >= 0)
			printf("  MX %-4" PRId64, int_of(h, "pref"));
		else
			printf("  route  ");
		printf(" %s port %" PRId64 ":", str_or(h, "name", "?"),
		    int_of(h, "port"));
		for (j = 0; j < json_array_size(a); j++)
			printf(" %s", json_string_value(json_array_get(a, j)));
		putchar('\n');
	}
	if (json_array_size(d) > 0)
		printf("dropped:\n");
	json_array_foreach(d, i, h) printf("  %4" PRId64 "  %s: %s\n",
	    int_of(h, "pref"), str_or(h, "name", "?"), str_or(h, "why", "?"));
	return EX_OK;
}

static const struct handler route_handler = {.result = route_result};

static void
print_by(const char *label, json_t *by)
{
	const char *key;
	json_t *v;

	printf("%-16s", label);
	if (json_object_size(by) == 0)
		printf(" 0");
	json_object_foreach(by, key, v)
	    printf(" %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(v));
	putchar('\n');
}

static void
print_ms(const char *label, json_t *v)
{
	if (json_is_number(v))
		printf(" %s %.1fms", label, json_number_value(v) * 1000);
	else
		printf(" %s -", label);
}

static int
stats_result(json_t *r)
{
	static const char *plain[] = {
	    "accepted", "delivered", "deferred", "bounced"};
	json_t *spool = json_object_get(r, "spool");
	json_t *commit = json_object_get(r, "commit");
	char size[32];

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		printf("%-16s %" PRId64 "\n", plain[i], int_of(r, plain[i]));
	print_by("rejected", json_object_get(r, "rejected"));
	print_by("attempts", json_object_get(r, "attempts"));
	print_by("dns lookups", json_object_get(r, "dns"));
	print_by("reloads", json_object_get(r, "reloads"));
	printf("%-16s %" PRId64 " since start, %" PRId64 " open\n",
	    "connections", int_of(r, "connections"),
	    int_of(r, "connections_open"));
	ctl_fmt_size((uint64_t)int_of(spool, "bytes"), size, sizeof(size));
	printf("%-16s %" PRId64 " messages (%" PRId64 " held), %s; %" PRId64
	       " in memory\n",
	    "spool", int_of(spool, "messages"), int_of(spool, "held"), size,
	    int_of(spool, "in_memory"));
	printf("%-16s", "commit latency");
	print_ms("p50", json_object_get(commit, "p50"));
	print_ms("p90", json_object_get(commit, "p90"));
	print_ms("p99", json_object_get(commit, "p99"));
	printf(" (%" PRId64 " commits)\n", int_of(commit, "count"));
	return EX_OK;
}

static const struct handler stats_handler = {.result = stats_result};

/* The strings of list as "a, b, c" after what, on a line of their own. */
static void
print_names(const char *what, json_t *list)
{
	size_t i;
	json_t *v;

	if (json_array_size(list) == 0)
		return;
	printf("%s", what);
	json_array_foreach(list, i, v)
	{
		printf("%s%s", i > 0 ? ", " : " ", json_string_value(v));
	}
	putchar('\n');
}

static int
reload_result(json_t *r)
{
	json_t *applied = json_object_get(r, "applied");
	json_t *later = json_object_get(r, "at_next_start");
	size_t i;
	json_t *w;

	printf("mxspoold: configuration reloaded from %s\n",
	    str_or(r, "config", "?"));
	print_names("applied:", applied);
	print_names("takes effect at the next start:", later);
	if (json_array_size(applied) == 0 && json_array_size(later) == 0)
		printf("no option changed\n");
	/* The config's warnings say so ("FILE:LINE: warning: ..."); what
	 * failed to apply does not. */
	json_array_foreach(json_object_get(r, "warnings"), i, w)
	{
		const char *s = json_string_value(w);

		if (s != NULL)
			fprintf(stderr, "%s%s\n",
			    strstr(s, "warning: ") ? "" : "warning: ", s);
	}
	return EX_OK;
}

static const struct handler reload_handler = {.result = reload_result};

/* The common options of the commands that act on messages. */
enum {
	O_DOMAIN = 1,
	O_ALL,
	O_YES,
	O_OLDER,
	O_HELD,
	O_LIMIT,
	O_AGES,
	O_HEADERS,
	O_BODY
};

static const struct option cmd_longopts[] = {
    {"domain", required_argument, NULL, O_DOMAIN},
    {"all", no_argument, NULL, O_ALL},
    {"yes", no_argument, NULL, O_YES},
    {"older-than", required_argument, NULL, O_OLDER},
    {"held", no_argument, NULL, O_HELD},
    {"limit", required_argument, NULL, O_LIMIT},
    {"ages", no_argument, NULL, O_AGES},
    {"headers", no_argument, NULL, O_HEADERS},
    {"body", no_argument, NULL, O_BODY},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

/* Which options each command takes (bit per O_*). */
#define B(o) (1u << (o))
static const struct {
	const char *name;
	unsigned opts;
	int minargs, maxargs; /* positional arguments */
	const struct handler *h;
} commands[] = {
    {"summary", B(O_AGES), 0, 0, &summary_handler},
    {"list", B(O_DOMAIN) | B(O_OLDER) | B(O_HELD) | B(O_LIMIT), 0, 0,
	&list_handler},
    {"show", B(O_HEADERS) | B(O_BODY), 1, 1, &show_handler},
    {"flush", B(O_DOMAIN) | B(O_ALL), 0, -1, &action_handler},
    {"hold", B(O_DOMAIN), 0, -1, &action_handler},
    {"release", B(O_DOMAIN), 0, -1, &action_handler},
    {"delete", B(O_DOMAIN) | B(O_YES), 0, -1, &action_handler},
    {"bounce", B(O_YES), 1, -1, &action_handler},
    {"route", 0, 1, 1, &route_handler},
    {"trust", 0, 1, 1, &guard_handler},
    {"bounce-suspect", B(O_YES), 1, 1, &guard_handler},
    {"stats", 0, 0, 0, &stats_handler},
    {"reload", 0, 0, 0, &reload_handler},
};

/*
 * A domain as the daemon knows it, its A-labels (RFC 5890), so that either
 * form names it; anything else (a route as summary shows it) as it is.
 */
static const char *
cli_domain(const char *s, char ace[IDN_NAME_SIZE])
{
	return idn_to_ascii(s, ace, IDN_NAME_SIZE, NULL, 0) == 0 ? ace : s;
}

static int
run(int argc, char **argv)
{
	const struct handler *h = NULL;
	unsigned allowed = 0, given = 0;
	json_t *req, *ids;
	const char *domain = NULL;
	char ace[IDN_NAME_SIZE];
	int64_t older = -1;
	long limit = 0;
	int ch, minargs = 0, maxargs = 0, nargs;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, argv[0]) == 0) {
			h = commands[i].h;
			allowed = commands[i].opts;
			minargs = commands[i].minargs;
			maxargs = commands[i].maxargs;
		}
	cmd_name = argv[0];
	if (h == NULL) {
		cmd_name = "";
		return usage_error("unknown command '%s'", argv[0]);
	}
	optind = 0; /* 0: glibc starts afresh, permuting again */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "j", cmd_longopts, NULL)) != -1) {
		if (ch == 'j') {
			opt.json = true;
			continue;
		}
		if (ch == '?' || ch == ':' || !(allowed & B(ch)))
			return usage_error(
			    "unknown option '%s'", argv[optind - 1]);
		given |= B(ch);
		switch (ch) {
		case O_DOMAIN:
			domain = optarg;
			if (domain[0] == '\0' || strpbrk(domain, " \t") != NULL)
				return usage_error("bad domain '%s'", domain);
			break;
		case O_OLDER:
			if (conf_parse_duration(optarg, &older) < 0)
				return usage_error(
				    "bad duration '%s' (use e.g. "
				    "30s, 5m, 4h, 5d)",
				    optarg);
			break;
		case O_LIMIT: {
			char *end;

			limit = strtol(optarg, &end, 10);
			if (*end != '\0' || limit < 1 || limit > 100000000)
				return usage_error("bad limit '%s'", optarg);
			break;
		}
		default:
			break;
		}
	}
	nargs = argc - optind;
	if (nargs < minargs || (maxargs >= 0 && nargs > maxargs))
		return usage_error(nargs < minargs ? "missing argument"
						   : "too many arguments");
	if ((given & B(O_HEADERS)) && (given & B(O_BODY)))
		return usage_error("--headers or --body, not both");
	if (strcmp(cmd_name, "flush") == 0 || strcmp(cmd_name, "hold") == 0 ||
	    strcmp(cmd_name, "release") == 0 ||
	    strcmp(cmd_name, "delete") == 0) {
		int ways =
		    (nargs > 0) + (domain != NULL) + !!(given & B(O_ALL));

		if (ways != 1)
			return usage_error("give message ids%s or --domain",
			    strcmp(cmd_name, "flush") == 0 ? ", --all" : "");
	}
	if ((strcmp(cmd_name, "delete") == 0 ||
		strcmp(cmd_name, "bounce") == 0 ||
		strcmp(cmd_name, "bounce-suspect") == 0) &&
	    !(given & B(O_YES)))
		return usage_error("this cannot be undone: add --yes");

	req = json_pack("{s:s}", "cmd", cmd_name);
	if (strcmp(cmd_name, "trust") == 0 ||
	    strcmp(cmd_name, "bounce-suspect") == 0) {
		/* A domain, or a route as summary shows it. */
		if (strpbrk(argv[optind], " \t") != NULL ||
		    argv[optind][0] == '\0') {
			json_decref(req);
			return usage_error(
			    "bad destination '%s'", argv[optind]);
		}
		json_object_set_new(
		    req, "domain", json_string(cli_domain(argv[optind], ace)));
	} else if (strcmp(cmd_name, "route") == 0) {
		char why[128];

		if (idn_to_ascii(
			argv[optind], ace, sizeof(ace), why, sizeof(why)) < 0) {
			json_decref(req);
			return usage_error(
			    "bad domain '%s': %s", argv[optind], why);
		}
		json_object_set_new(req, "domain", json_string(ace));
	} else if (strcmp(cmd_name, "show") == 0) {
		if (!qid_valid(argv[optind])) {
			json_decref(req);
			return usage_error(
			    "'%s' is not a queue id", argv[optind]);
		}
		json_object_set_new(req, "qid", json_string(argv[optind]));
		json_object_set_new(req, "part",
		    json_string(given & B(O_HEADERS) ? "headers"
				: given & B(O_BODY)  ? "body"
						     : "envelope"));
	} else if (nargs > 0) {
		ids = json_array();
		for (int i = optind; i < argc; i++) {
			if (!qid_valid(argv[i])) {
				json_decref(ids);
				json_decref(req);
				return usage_error(
				    "'%s' is not a queue id", argv[i]);
			}
			json_array_append_new(ids, json_string(argv[i]));
		}
		json_object_set_new(req, "ids", ids);
	}
	if (domain != NULL)
		json_object_set_new(
		    req, "domain", json_string(cli_domain(domain, ace)));
	if (given & B(O_ALL))
		json_object_set_new(req, "all", json_true());
	if (given & B(O_YES))
		json_object_set_new(req, "yes", json_true());
	if (given & B(O_HELD))
		json_object_set_new(req, "held", json_true());
	if (older >= 0)
		json_object_set_new(req, "older_than", json_integer(older));
	if (limit > 0)
		json_object_set_new(req, "limit", json_integer(limit));
	summary_ages = given & B(O_AGES);
	/* The age histogram reads the whole index: only when asked. */
	if (summary_ages)
		json_object_set_new(req, "ages", json_true());
	if (opt.json && h != &list_handler && h != &show_handler) {
		static struct handler raw;

		h = &raw;
	}
	return ctl_call(req, h);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch, rc;

	opterr = 0;
	while (
	    (ch = getopt_long(argc, argv, "+c:s:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			opt.config = optarg;
			break;
		case 's':
			opt.socket = optarg;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		default:
			return usage_error(
			    "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command given");
	rc = run(argc - optind, argv + optind);
	if (fflush(stdout) != 0 && rc == EX_OK)
		rc = EX_FAIL;
	return rc;
}
