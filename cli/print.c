/*
 * mxspoolctl's output: each command's answer as a table or lines for
 * people (--json prints the daemon's objects as they come instead).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "ctl/ctl_proto.h"

bool cli_summary_ages;

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

/* A time with how far it is from now: "2026-11-24 06:54:09 (in 4m)",
 * "... (12m ago)", "... (now)"; "-" for null. */
static void
fmt_when(json_t *t, char *buf, size_t len)
{
	int64_t d = (int64_t)json_integer_value(t) - (int64_t)time(NULL);
	char abs[32], rel[24];

	fmt_time(t, abs, sizeof(abs));
	if (!json_is_integer(t)) {
		snprintf(buf, len, "%s", abs);
		return;
	}
	ctl_fmt_age(d < 0 ? -d : d, rel, sizeof(rel));
	if (d > 0)
		snprintf(buf, len, "%s (in %s)", abs, rel);
	else if (d < 0)
		snprintf(buf, len, "%s (%s ago)", abs, rel);
	else
		snprintf(buf, len, "%s (now)", abs);
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

static int
summary_result(json_t *r)
{
	json_t *dests = json_object_get(r, "destinations"), *d;
	json_t *total = json_object_get(r, "total");
	int64_t now = int_of(r, "now");
	const char *node = str_or(r, "node", "?");
	char size[32], age[32], next[32];
	size_t i;

	if (json_array_size(dests) == 0) {
		printf("The queue is empty.\n");
		return EX_OK;
	}
	if (cli_summary_ages) {
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
		printf("node %s\n", node);
		return EX_OK;
	}
	/* HELD: of MSGS, those an operator held; the state is the
	 * destination's, for the rest. */
	printf("%-28s %5s %5s %7s %7s  %-11s %-8s %s\n", "DESTINATION", "MSGS",
	    "HELD", "SIZE", "OLDEST", "STATE", "NEXT", "LAST ERROR");
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
		printf("%-28s %5" PRId64 " %5" PRId64
		       " %7s %7s  %-11s %-8s %s\n",
		    str_or(d, "name", "?"), int_of(d, "messages"),
		    int_of(d, "held"), size, age, str_or(d, "state", "?"), next,
		    str_or(d, "last_error", "-"));
	}
	ctl_fmt_size((uint64_t)int_of(total, "bytes"), size, sizeof(size));
	printf("%" PRId64 " message%s (%" PRId64 " held), %s%s, %zu "
	       "destination%s, node %s\n",
	    int_of(total, "messages"),
	    int_of(total, "messages") == 1 ? "" : "s", int_of(total, "held"),
	    size, int_of(total, "bytes") < 1024 ? " bytes" : "",
	    json_array_size(dests), json_array_size(dests) == 1 ? "" : "s",
	    node);
	return EX_OK;
}

const struct cli_handler cli_summary_handler = {.result = summary_result};

/* list and show */
static void
print_msg(json_t *m, bool full)
{
	json_t *rcpts = json_object_get(m, "recipients"), *r;
	char when[64];
	size_t i;
	const char *sender = str_or(m, "sender", "");
	bool held = json_is_true(json_object_get(m, "held"));

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
	fmt_when(json_object_get(m, "arrival"), when, sizeof(when));
	printf("arrival:      %s\n", when);
	printf("size:         %" PRId64 "\n", int_of(m, "size"));
	printf("sender:       <%s>\n", sender);
	printf("client:       %s\n", str_or(m, "client", "-"));
	printf("held:         %s\n", held ? "yes" : "no");
	printf("attempts:     %" PRId64 "\n", int_of(m, "attempts"));
	fmt_when(json_object_get(m, "last_attempt"), when, sizeof(when));
	printf("last attempt: %s\n", when);
	fmt_when(json_object_get(m, "next_attempt"), when, sizeof(when));
	printf("next attempt: %s%s\n", when,
	    !json_is_integer(json_object_get(m, "next_attempt")) && held
		? " (held: mxspoolctl release lets it go)"
		: "");
	printf("last error:   %s\n", str_or(m, "last_error", "-"));
	json_array_foreach(rcpts, i, r)
	{
		const char *state = str_or(r, "state", "?");
		const char *dstate = str_or(r, "destination_state", NULL);

		printf("recipient:    <%s> %s via %s",
		    str_or(r, "address", "?"), state,
		    str_or(r, "destination", "?"));
		if (strcmp(state, "pending") != 0) {
			/* Done: its last answer says how. */
			if (json_is_string(json_object_get(r, "last_error")))
				printf(": %s %s", str_or(r, "dsn", ""),
				    str_or(r, "last_error", ""));
			putchar('\n');
			continue;
		}
		if (dstate != NULL && strcmp(dstate, "up") != 0)
			printf(" (%s)", dstate);
		putchar('\n');
		fmt_when(
		    json_object_get(r, "next_attempt"), when, sizeof(when));
		printf("  next attempt: %s%s\n", when,
		    held                                  ? " (held)"
		    : dstate && !strcmp(dstate, "paused") ? " (paused)"
							  : "");
		if (json_is_string(json_object_get(r, "last_error")))
			printf("  last error:   %s %s\n", str_or(r, "dsn", ""),
			    str_or(r, "last_error", ""));
		else if (json_is_string(
			     json_object_get(r, "destination_error")))
			printf("  last error:   - (its destination's: %s)\n",
			    str_or(r, "destination_error", ""));
		else
			printf("  last error:   -\n");
	}
}

static size_t list_count;

static void
list_item(json_t *m)
{
	if (cli_opt.json) {
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
	json_t *total = json_object_get(r, "total");

	if (cli_opt.json)
		return EX_OK; /* the items alone, one per line */
	if (json_is_integer(total) && json_integer_value(total) > 0)
		printf("%zu of %" JSON_INTEGER_FORMAT " message%s\n",
		    list_count, json_integer_value(total),
		    json_integer_value(total) == 1 ? "" : "s");
	else
		printf(list_count == 0 ? "No messages match.\n"
				       : "%zu message%s\n",
		    list_count, list_count == 1 ? "" : "s");
	return EX_OK;
}

const struct cli_handler cli_list_handler = {
    .item = list_item, .result = list_result};

static void
show_chunk(json_t *c)
{
	const char *data = str_or(c, "data", "");

	if (cli_opt.json) {
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
	if (cli_opt.json) {
		json_dumpf(r, stdout, JSON_COMPACT);
		putchar('\n');
	} else if (json_object_get(r, "recipients") != NULL)
		print_msg(r, true);
	return EX_OK;
}

const struct cli_handler cli_show_handler = {
    .chunk = show_chunk, .result = show_result};

/* flush, hold, release, delete, bounce */
static int
action_result(json_t *r)
{
	const char *key;
	json_t *v;

	if (strcmp(cli_cmd_name, "flush") == 0) {
		int64_t n = int_of(r, "flushed"), held = int_of(r, "held");

		printf("flushed %" PRId64 " message%s", n, n == 1 ? "" : "s");
		if (held > 0)
			printf("; %" PRId64 " held message%s left alone "
			       "(release them first)",
			    held, held == 1 ? "" : "s");
		putchar('\n');
		return EX_OK;
	}
	json_object_foreach(r, key, v)
	    printf("%s %" JSON_INTEGER_FORMAT " message%s\n", key,
		json_integer_value(v), json_integer_value(v) == 1 ? "" : "s");
	return EX_OK;
}

const struct cli_handler cli_action_handler = {.result = action_result};

/* xfer: the counts, then each message that failed or was skipped. */
static int
xfer_result(json_t *r)
{
	int64_t n = int_of(r, "transferred"), failed = int_of(r, "failed");
	int64_t skipped = int_of(r, "skipped");
	json_t *v;
	size_t i;

	printf("transferred %" PRId64 " message%s to %s, failed %" PRId64
	       ", skipped %" PRId64 "\n",
	    n, n == 1 ? "" : "s", str_or(r, "to", "?"), failed, skipped);
	json_array_foreach(json_object_get(r, "failures"), i, v) printf(
	    "failed  %s: %s\n", str_or(v, "id", "?"), str_or(v, "error", "?"));
	json_array_foreach(json_object_get(r, "skips"), i, v) printf(
	    "skipped %s: %s\n", str_or(v, "id", "?"), str_or(v, "reason", "?"));
	return failed > 0 ? EX_FAIL : EX_OK;
}

/* xfer's progress, every 10 s of a long hand-over: on stderr, so that
 * stdout holds the result alone. */
static void
xfer_item(json_t *it)
{
	fprintf(stderr,
	    "xfer: %" PRId64 " of %" PRId64 " transferred so far, %" PRId64
	    " failed, %" PRId64 " skipped\n",
	    int_of(it, "transferred"), int_of(it, "of"), int_of(it, "failed"),
	    int_of(it, "skipped"));
}

const struct cli_handler cli_xfer_handler = {
    .item = xfer_item, .result = xfer_result};

/* xfer --json: the result as it came, with the text's exit status, so
 * that a script emptying a node sees a failure. */
static int
xfer_json_result(json_t *r)
{
	json_dumpf(r, stdout, JSON_COMPACT);
	putchar('\n');
	return int_of(r, "failed") > 0 ? EX_FAIL : EX_OK;
}

/* --json: each progress line as it came, then the result. */
static void
xfer_json_item(json_t *it)
{
	json_dumpf(it, stdout, JSON_COMPACT);
	putchar('\n');
	fflush(stdout);
}

const struct cli_handler cli_xfer_json_handler = {
    .item = xfer_json_item, .result = xfer_json_result};

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

const struct cli_handler cli_guard_handler = {.result = guard_result};

/* pause, resume */
static int
pause_result(json_t *r)
{
	int64_t n = int_of(r, "messages");

	if (json_is_true(json_object_get(r, "already")))
		printf("%s was paused already\n", str_or(r, "paused", "?"));
	else if (json_object_get(r, "paused") != NULL)
		printf("paused %s: no delivery there until mxspoolctl resume "
		       "(%" PRId64 " message%s)\n",
		    str_or(r, "paused", "?"), n, n == 1 ? " waits" : "s wait");
	else
		printf("resumed %s: %" PRId64 " message%s due now\n",
		    str_or(r, "resumed", "?"), n, n == 1 ? "" : "s");
	return EX_OK;
}

const struct cli_handler cli_pause_handler = {.result = pause_result};

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

const struct cli_handler cli_route_handler = {.result = route_result};

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

const struct cli_handler cli_stats_handler = {.result = stats_result};

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
	const char *now = str_or(r, "control_socket", NULL);
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
	if (now != NULL && cli_socket_used != NULL &&
	    strcmp(now, cli_socket_used) != 0)
		printf("mxspoold: control socket now %s (was %s)\n", now,
		    cli_socket_used);
	if (now != NULL && cli_socket_named != NULL &&
	    strcmp(now, cli_socket_named) != 0)
		fprintf(stderr,
		    "mxspoolctl: note: mxspoold still listens on %s: it could "
		    "not open %s (its log says why)\n",
		    now, cli_socket_named);
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

const struct cli_handler cli_reload_handler = {.result = reload_result};
