/*
 * What the parts of mxspoolctl share: cli/mxspoolctl.c reads the command
 * line and builds the request, cli/conn.c finds the control socket and
 * talks to it, cli/print.c turns answers into tables. Like the rest of
 * cli/, it uses the control protocol (ctl/ctl_proto.h), common/ and the C
 * library, nothing of the daemon.
 */
#ifndef MXSPOOL_CLI_H
#define MXSPOOL_CLI_H

#include <jansson.h>
#include <stdbool.h>

#define EX_OK 0
#define EX_FAIL 1
#define EX_USAGE 2

/* The options before the command. */
struct cli_opts {
	const char *config;
	const char *socket;
	bool json;
};

extern struct cli_opts cli_opt;
/* The command running ("" before one is known), for messages. */
extern const char *cli_cmd_name;

/* "mxspoolctl: " and the message on stderr. */
void cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* What the output functions get for each line of the answer. */
struct cli_handler {
	void (*item)(json_t *item);   /* list */
	void (*chunk)(json_t *chunk); /* show --headers/--body */
	int (*result)(json_t *result);
};

/* Sends req (taken) to mxspoold and hands each line of the answer to h.
 * Returns the exit status. */
int cli_call(json_t *req, const struct cli_handler *h);
/* While an answer is handled: the socket the config names (NULL with -s,
 * or for a broken config that names none), and the one the daemon was
 * reached on (-s, the config's, or the locator's word when the config's
 * did not answer). */
extern const char *cli_socket_named;
extern const char *cli_socket_used;

/* The commands' output (cli/print.c). */
extern const struct cli_handler cli_summary_handler;
extern const struct cli_handler cli_list_handler;
extern const struct cli_handler cli_show_handler;
extern const struct cli_handler cli_action_handler;
extern const struct cli_handler cli_guard_handler;
extern const struct cli_handler cli_pause_handler;
extern const struct cli_handler cli_route_handler;
extern const struct cli_handler cli_stats_handler;
extern const struct cli_handler cli_reload_handler;
extern const struct cli_handler cli_xfer_handler;
extern const struct cli_handler cli_xfer_json_handler;
/* mailq, in postqueue -p's layout (cli/mailq.c). */
extern const struct cli_handler cli_mailq_handler;
/* summary --ages: the histogram instead of the table. */
extern bool cli_summary_ages;

#endif
