/*
 * mxspoolctl: look at and act on mxspoold's queue through its control
 * socket (ctl/ctl_proto.h describes the protocol). Human tables by default,
 * the daemon's JSON with --json. Exit status: 0 done, 1 the request failed
 * (or the daemon is not running, or the config is not one), 2 usage.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/conf.h"
#include "common/idn.h"
#include "ctl/ctl_proto.h"
#include "queue/qid.h"

struct cli_opts cli_opt;
const char *cli_cmd_name = "";

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mxspoolctl [-c FILE | -s SOCKET] [--json] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  summary [--ages]                   mail held, per destination\n"
	    "  list [--domain D] [FILTER...] [--held] [--limit N]\n"
	    "  show ID [--headers | --body]\n"
	    "  mailq [--domain D] [FILTER...] [--held]\n"
	    "                                     the queue as postqueue -p "
	    "shows it\n"
	    "  flush ID... | (--domain D | --all) [FILTER...]\n"
	    "                                     retry now\n"
	    "  hold ID... | (--domain D | --all) [FILTER...]\n"
	    "                                     stop delivering\n"
	    "  release ID... | (--domain D | --all) [FILTER...]\n"
	    "                                     deliver again\n"
	    "  delete ID... | (--domain D | --all) [FILTER...] [--held] --yes\n"
	    "                                     remove without notice\n"
	    "  bounce ID... --yes                 return to sender with a DSN\n"
	    "  route DOMAIN                       where mail for DOMAIN goes\n"
	    "  trust DEST                         end DEST's suspect state "
	    "(rejection guard)\n"
	    "  bounce-suspect DEST --yes          return DEST's suspect "
	    "recipients\n"
	    "  pause DEST                         no delivery to DEST until "
	    "resume\n"
	    "  resume DEST                        deliver to DEST again\n"
	    "  stats                              counters since start\n"
	    "  reload                             re-read the configuration\n"
	    "  xfer --to smtp:[HOST]:PORT ID... | (--domain D | --all) "
	    "[FILTER...]\n"
	    "                                     hand messages over to "
	    "another node\n"
	    "filters (each narrows; all must match):\n"
	    "  --sender ADDR          from ADDR (<> the null sender)\n"
	    "  --rcpt ADDR            to ADDR, still pending\n"
	    "  --older-than DURATION  queued at least this long (30s, 5m, 4h, "
	    "5d)\n"
	    "  --younger-than DURATION\n"
	    "                         queued less than this long\n"
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
	if (cli_cmd_name[0])
		fprintf(stderr, "%s: ", cli_cmd_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(mxspoolctl --help lists the commands)\n");
	return EX_USAGE;
}

void
cli_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mxspoolctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Says what is wrong with the option getopt_long stopped at (ch is its
 * '?' or ':'), naming the option as the table has it when it is known.
 */
static int
option_error(char *const *argv, const struct option *lo, int ch)
{
	const char *arg = argv[optind - 1];
	const struct option *o = NULL;
	bool islong = strncmp(arg, "--", 2) == 0;
	char name[64];

	for (size_t i = 0; optopt != 0 && lo[i].name != NULL; i++)
		if (lo[i].val == optopt)
			o = &lo[i];
	if (islong && o != NULL)
		snprintf(name, sizeof(name), "--%s", o->name);
	else if (islong)
		snprintf(
		    name, sizeof(name), "%.*s", (int)strcspn(arg, "="), arg);
	else
		snprintf(name, sizeof(name), "-%c", optopt);
	if (ch == ':')
		return usage_error("option %s needs a value", name);
	if (islong && o != NULL && strchr(arg, '=') != NULL)
		return usage_error("option %s takes no value", name);
	if (cli_cmd_name[0] != '\0' && islong && strlen(name) > 3 &&
	    (strncmp(name, "--config", strlen(name)) == 0 ||
		strncmp(name, "--socket", strlen(name)) == 0))
		snprintf(name, sizeof(name), "%s",
		    name[2] == 'c' ? "--config" : "--socket");
	if (cli_cmd_name[0] != '\0' &&
	    (strcmp(name, "-c") == 0 || strcmp(name, "-s") == 0 ||
		strcmp(name, "--config") == 0 || strcmp(name, "--socket") == 0))
		return usage_error("option %s goes before the command "
				   "(mxspoolctl %s ... %s)",
		    name, name, cli_cmd_name);
	return usage_error("unknown option %s", name);
}

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
	O_BODY,
	O_SENDER,
	O_RCPT,
	O_YOUNGER,
	O_TO
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
    {"sender", required_argument, NULL, O_SENDER},
    {"rcpt", required_argument, NULL, O_RCPT},
    {"younger-than", required_argument, NULL, O_YOUNGER},
    {"to", required_argument, NULL, O_TO},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

/* The name of a command option. */
static const char *
long_name(int val)
{
	for (size_t i = 0; cmd_longopts[i].name != NULL; i++)
		if (cmd_longopts[i].val == val)
			return cmd_longopts[i].name;
	return "?";
}

/* Which options each command takes (bit per O_*). */
#define B(o) (1u << (o))
/* The filters of list and the bulk commands. */
#define FILTERS (B(O_SENDER) | B(O_RCPT) | B(O_OLDER) | B(O_YOUNGER))
#define SELECT (B(O_DOMAIN) | B(O_ALL) | FILTERS)
static const struct {
	const char *name;
	unsigned opts;
	int minargs, maxargs; /* positional arguments */
	const struct cli_handler *h;
} commands[] = {
    {"summary", B(O_AGES), 0, 0, &cli_summary_handler},
    {"list", B(O_DOMAIN) | FILTERS | B(O_HELD) | B(O_LIMIT), 0, 0,
	&cli_list_handler},
    {"show", B(O_HEADERS) | B(O_BODY), 1, 1, &cli_show_handler},
    {"mailq", B(O_DOMAIN) | FILTERS | B(O_HELD), 0, 0, &cli_mailq_handler},
    {"flush", SELECT, 0, -1, &cli_action_handler},
    {"hold", SELECT, 0, -1, &cli_action_handler},
    {"release", SELECT, 0, -1, &cli_action_handler},
    {"delete", SELECT | B(O_HELD) | B(O_YES), 0, -1, &cli_action_handler},
    {"bounce", B(O_YES), 1, -1, &cli_action_handler},
    {"route", 0, 1, 1, &cli_route_handler},
    {"trust", 0, 1, 1, &cli_guard_handler},
    {"bounce-suspect", B(O_YES), 1, 1, &cli_guard_handler},
    {"pause", 0, 1, 1, &cli_pause_handler},
    {"resume", 0, 1, 1, &cli_pause_handler},
    {"stats", 0, 0, 0, &cli_stats_handler},
    {"reload", 0, 0, 0, &cli_reload_handler},
    {"xfer", SELECT | B(O_TO), 0, -1, &cli_xfer_handler},
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

/*
 * An address a filter names, as given or in angle brackets, into buf;
 * "<>" (or "") is the null sender. Returns NULL for one no message can
 * have.
 */
static const char *
cli_addr(const char *s, bool sender, char *buf, size_t len)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s++;
		n -= 2;
	}
	if ((n == 0 && !sender) || n >= len || n > 512)
		return NULL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return strpbrk(buf, " \t\r\n<>") == NULL ? buf : NULL;
}

static int
run(int argc, char **argv)
{
	const struct cli_handler *h = NULL;
	unsigned allowed = 0, given = 0;
	json_t *req, *ids;
	const char *domain = NULL, *sender = NULL, *rcpt = NULL, *to = NULL;
	char ace[IDN_NAME_SIZE], sbuf[516], rbuf[516];
	int64_t older = -1, younger = -1;
	long limit = 0;
	int ch, minargs = 0, maxargs = 0, nargs;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, argv[0]) == 0) {
			h = commands[i].h;
			allowed = commands[i].opts;
			minargs = commands[i].minargs;
			maxargs = commands[i].maxargs;
		}
	cli_cmd_name = argv[0];
	if (h == NULL) {
		cli_cmd_name = "";
		return usage_error("unknown command '%s'", argv[0]);
	}
	optind = 0; /* 0: glibc starts afresh, permuting again */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":j", cmd_longopts, NULL)) != -1) {
		if (ch == 'j') {
			cli_opt.json = true;
			continue;
		}
		if (ch == '?' || ch == ':')
			return option_error(argv, cmd_longopts, ch);
		if (!(allowed & B(ch)))
			return usage_error("option --%s does not apply to %s",
			    long_name(ch), cli_cmd_name);
		given |= B(ch);
		switch (ch) {
		case O_DOMAIN:
			domain = optarg;
			if (domain[0] == '\0' || strpbrk(domain, " \t") != NULL)
				return usage_error("bad domain '%s'", domain);
			break;
		case O_OLDER:
		case O_YOUNGER:
			if (conf_parse_duration(
				optarg, ch == O_OLDER ? &older : &younger) < 0)
				return usage_error(
				    "bad duration '%s' for --%s (use e.g. "
				    "30s, 5m, 4h, 5d)",
				    optarg, long_name(ch));
			break;
		case O_SENDER:
		case O_RCPT:
			if ((*(ch == O_SENDER ? &sender : &rcpt) =
				    cli_addr(optarg, ch == O_SENDER,
					ch == O_SENDER ? sbuf : rbuf,
					sizeof(sbuf))) == NULL)
				return usage_error("bad address '%s' for --%s",
				    optarg, long_name(ch));
			break;
		case O_TO:
			to = optarg;
			if (strncmp(to, "smtp:", 5) != 0 ||
			    strpbrk(to, " \t") != NULL)
				return usage_error(
				    "bad peer '%s' for --to (use "
				    "smtp:[HOST]:PORT)",
				    to);
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
	if (strcmp(cli_cmd_name, "flush") == 0 ||
	    strcmp(cli_cmd_name, "hold") == 0 ||
	    strcmp(cli_cmd_name, "release") == 0 ||
	    strcmp(cli_cmd_name, "delete") == 0 ||
	    strcmp(cli_cmd_name, "xfer") == 0) {
		int ways =
		    (nargs > 0) + (domain != NULL) + !!(given & B(O_ALL));

		if (ways != 1)
			return usage_error(
			    "give message ids, --domain or --all");
		if (nargs > 0 && (given & (FILTERS | B(O_HELD))))
			return usage_error("filters narrow --domain or --all, "
					   "not message ids");
	}
	if (strcmp(cli_cmd_name, "xfer") == 0 && to == NULL)
		return usage_error("give the peer: --to smtp:[HOST]:PORT");
	if ((strcmp(cli_cmd_name, "delete") == 0 ||
		strcmp(cli_cmd_name, "bounce") == 0 ||
		strcmp(cli_cmd_name, "bounce-suspect") == 0) &&
	    !(given & B(O_YES)))
		return usage_error("this cannot be undone: add --yes");

	/* mailq is a list, shown as Postfix shows its queue. */
	req = json_pack("{s:s}", "cmd",
	    strcmp(cli_cmd_name, "mailq") == 0 ? "list" : cli_cmd_name);
	if (strcmp(cli_cmd_name, "trust") == 0 ||
	    strcmp(cli_cmd_name, "bounce-suspect") == 0 ||
	    strcmp(cli_cmd_name, "pause") == 0 ||
	    strcmp(cli_cmd_name, "resume") == 0) {
		/* A domain, or a route as summary shows it. */
		if (strpbrk(argv[optind], " \t") != NULL ||
		    argv[optind][0] == '\0') {
			json_decref(req);
			return usage_error(
			    "bad destination '%s'", argv[optind]);
		}
		json_object_set_new(req,
		    cli_cmd_name[0] == 'p' || cli_cmd_name[0] == 'r'
			? "destination"
			: "domain",
		    json_string(cli_domain(argv[optind], ace)));
	} else if (strcmp(cli_cmd_name, "route") == 0) {
		char why[128];

		if (idn_to_ascii(
			argv[optind], ace, sizeof(ace), why, sizeof(why)) < 0) {
			json_decref(req);
			return usage_error(
			    "bad domain '%s': %s", argv[optind], why);
		}
		json_object_set_new(req, "domain", json_string(ace));
	} else if (strcmp(cli_cmd_name, "show") == 0) {
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
	if (to != NULL)
		json_object_set_new(req, "to", json_string(to));
	if (given & B(O_YES))
		json_object_set_new(req, "yes", json_true());
	if (given & B(O_HELD))
		json_object_set_new(req, "held", json_true());
	if (older >= 0)
		json_object_set_new(req, "older_than", json_integer(older));
	if (younger >= 0)
		json_object_set_new(req, "younger_than", json_integer(younger));
	if (sender != NULL)
		json_object_set_new(req, "sender", json_string(sender));
	if (rcpt != NULL)
		json_object_set_new(req, "rcpt", json_string(rcpt));
	if (limit > 0)
		json_object_set_new(req, "limit", json_integer(limit));
	cli_summary_ages = given & B(O_AGES);
	/* The age histogram reads the whole index: only when asked. */
	if (cli_summary_ages)
		json_object_set_new(req, "ages", json_true());
	if (cli_opt.json && h == &cli_xfer_handler) {
		h = &cli_xfer_json_handler;
	} else if (cli_opt.json && h != &cli_list_handler &&
		   h != &cli_show_handler && h != &cli_mailq_handler) {
		static struct cli_handler raw;

		h = &raw;
	}
	return cli_call(req, h);
}

/* Whether the program runs as mxspool-mailq (a link to mxspoolctl). */
static bool
mailq_name(const char *argv0)
{
	const char *base = strrchr(argv0, '/');

	return strcmp(base != NULL ? base + 1 : argv0, "mxspool-mailq") == 0;
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
	    (ch = getopt_long(argc, argv, "+:c:s:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cli_opt.config = optarg;
			break;
		case 's':
			cli_opt.socket = optarg;
			break;
		case 'j':
			cli_opt.json = true;
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		default:
			return option_error(argv, longopts, ch);
		}
	}
	if (mailq_name(argv[0])) {
		/* Installed as mxspool-mailq: mailq's options only. */
		char *av[] = {"mailq", NULL};

		if (optind < argc)
			return usage_error("%s takes no command or argument "
					   "(-c FILE, -s SOCKET, --json only)",
			    argv[0]);
		rc = run(1, av);
	} else if (optind >= argc)
		return usage_error("no command given");
	else
		rc = run(argc - optind, argv + optind);
	if (fflush(stdout) != 0 && rc == EX_OK)
		rc = EX_FAIL;
	return rc;
}
