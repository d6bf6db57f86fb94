/*
 * mxspoolctl mailq (installed also as mxspool-mailq): the queue in the
 * layout of Postfix's `postqueue -p` (its showq_compat.c, short queue ids)
 * for the tools that parse it. Per message a line of id, size, arrival and
 * sender, the id marked '*' while it is being delivered and '!' while it
 * is held; then the recipients still waiting, indented, each group under
 * the reason it waits for in parentheses, right-aligned to column 78;
 * messages apart by a blank line; a trailer of kilobytes and requests, or
 * "Mail queue is empty".
 */
#include <inttypes.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

#define MAILQ_STRING "%-11s %7s %-20s %s\n"
#define MAILQ_SENDER "%-11s %7" PRId64 " %20.20s %s\n"

static uint64_t mailq_bytes, mailq_count;

/* A reply or error as one line: no control characters. */
static void
mailq_reason(const char *why, char *buf, size_t len)
{
	size_t n = 0;

	for (; *why != '\0' && n + 1 < len; why++)
		buf[n++] = (unsigned char)*why < 0x20 ? ' ' : *why;
	buf[n] = '\0';
}

static void
mailq_item(json_t *m)
{
	json_t *rcpts = json_object_get(m, "recipients"), *r;
	const char *sender = json_string_value(json_object_get(m, "sender"));
	bool held = json_is_true(json_object_get(m, "held"));
	time_t arrival =
	    (time_t)json_integer_value(json_object_get(m, "arrival"));
	int64_t size = (int64_t)json_integer_value(json_object_get(m, "size"));
	char id[32], saved[1024] = "", why[1024], when[32];
	struct tm tm;
	size_t i;

	if (cli_opt.json) {
		json_dumpf(m, stdout, JSON_COMPACT);
		putchar('\n');
		return;
	}
	if (mailq_count++ == 0)
		printf(MAILQ_STRING, "-Queue ID-", "--Size--",
		    "----Arrival Time----", "-Sender/Recipient-------");
	else
		putchar('\n');
	snprintf(id, sizeof(id), "%s%s",
	    json_string_value(json_object_get(m, "id")),
	    held                                         ? "!"
	    : json_is_true(json_object_get(m, "active")) ? "*"
							 : "");
	/* As Postfix: asctime's "Mon Nov 24 06:48:09 2026\n", cut to 20. */
	localtime_r(&arrival, &tm);
	if (asctime_r(&tm, when) == NULL)
		snprintf(when, sizeof(when), "?");
	printf(MAILQ_SENDER, id, size, when,
	    sender == NULL || sender[0] == '\0' ? "MAILER-DAEMON" : sender);
	mailq_bytes += (uint64_t)(size > 0 ? size : 0);
	json_array_foreach(rcpts, i, r)
	{
		const char *state =
		    json_string_value(json_object_get(r, "state"));
		const char *own =
		    json_string_value(json_object_get(r, "last_error"));
		const char *dest =
		    json_string_value(json_object_get(r, "destination_error"));
		const char *dstate =
		    json_string_value(json_object_get(r, "destination_state"));
		const char *show;
		int pad;

		if (state == NULL || strcmp(state, "pending") != 0)
			continue; /* done: postqueue lists what waits */
		/* The reason it waits: its own last reply, else its
		 * destination's; none for a held message (Postfix's hold
		 * queue has none either). */
		mailq_reason(held           ? ""
			     : own != NULL  ? own
			     : dest != NULL ? dest
			     : dstate != NULL && strcmp(dstate, "paused") == 0
				 ? "delivery paused by operator"
				 : "",
		    why, sizeof(why));
		if (strcmp(saved, why) != 0) {
			snprintf(saved, sizeof(saved), "%s", why);
			show = why[0] != '\0' ? why : "reason unavailable";
			pad = 76 - (int)strlen(show);
			printf("%*s(%s)\n", pad > 0 ? pad : 0, "", show);
		}
		printf(MAILQ_STRING, "", "", "",
		    json_string_value(json_object_get(r, "address")));
	}
}

static int
mailq_result(json_t *r)
{
	(void)r;
	if (cli_opt.json)
		return EX_OK;
	if (mailq_count == 0)
		printf("Mail queue is empty\n");
	else
		printf("\n-- %" PRIu64 " Kbytes in %" PRIu64 " Request%s.\n",
		    mailq_bytes / 1024, mailq_count,
		    mailq_count == 1 ? "" : "s");
	return EX_OK;
}

const struct cli_handler cli_mailq_handler = {
    .item = mailq_item, .result = mailq_result};
