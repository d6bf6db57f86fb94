/* mxspoold: the daemon's entry point. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/priv.h"
#include "common/xmem.h"
#include "ctl/ctl.h"
#include "ctl/httpd.h"
#include "ctl/reload.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "queue/sched.h"
#include "relay/client.h"
#include "relay/downgrade.h"
#include "relay/server.h"
#include "relay/tls.h"

#define MXSPOOL_VERSION "0.1.0"
/* What a stop may take past shutdown_timeout: the spool's writer drains
 * and RocksDB closes (systemd is told, see daemon_on_signal). */
#define STOP_SPOOL_CLOSE_S 20

struct daemon {
	struct event_base *base;
	struct conf *cf;
	struct server *srv;
	struct queue *q;
	struct dns *dns;
	struct sched *sched;
	struct ctl *ctl;
	struct httpd *httpd;
	struct event *sig_term, *sig_int, *sig_hup;
	int stopping;
	const char *path;
	/* Configs replaced by a reload: kept until exit, because a session
	 * or delivery in progress may still hold pointers into them. */
	struct conf **retired;
	size_t nretired, capretired;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mxspoold [-t] [-c FILE] [--drain-only]\n"
	    "  -c FILE  configuration file (default " CONF_DEFAULT_PATH ")\n"
	    "  --drain-only  open the spool and the control socket only: no\n"
	    "           SMTP listeners, no deliveries; for mxspoolctl xfer\n"
	    "  -t       check the configuration, print its errors as\n"
	    "           FILE:LINE: message, and exit (0 if it is valid)\n"
	    "  -v       print the version and exit\n"
	    "  -h       print this help and exit\n"
	    "built-in defaults (see mxspool.conf(5)):\n"
	    "  spool_dir       " CONF_DEFAULT_SPOOL_DIR "\n"
	    "  control_socket  " CONF_DEFAULT_CONTROL_SOCKET "\n");
}

/* Whether directory path has no entries. */
static bool
dir_is_empty(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *de;
	bool empty = true;

	if (dir == NULL)
		return false;
	while (empty && (de = readdir(dir)) != NULL)
		empty = strcmp(de->d_name, ".") == 0 ||
			strcmp(de->d_name, "..") == 0;
	closedir(dir);
	return empty;
}

/*
 * Before the switch to user (as root, when user is set): makes the spool
 * directory and the control socket's directory, giving what it creates to
 * the user. An empty spool directory someone else owns (as `make install`
 * leaves it) is given to the user too: it holds no mail yet. One with
 * mail in it is left as it is, for daemon_check_dirs to refuse.
 */
static void
daemon_prepare_dirs(const struct conf *cf, const struct priv_id *owner)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(cf->control_socket, '/');
	struct stat st;

	if (priv_mkdirs(cf->spool_dir, 0700, owner) < 0)
		fatal("spool directory %s: cannot create: %s", cf->spool_dir,
		    strerror(errno));
	if (stat(cf->spool_dir, &st) < 0 || !S_ISDIR(st.st_mode))
		fatal("spool directory %s: not a directory", cf->spool_dir);
	if (owner != NULL && st.st_uid != owner->uid &&
	    dir_is_empty(cf->spool_dir)) {
		if (chown(cf->spool_dir, owner->uid, owner->gid) < 0)
			fatal("spool directory %s: cannot give it to user %s: "
			      "%s",
			    cf->spool_dir, owner->name, strerror(errno));
		log_info("spool directory %s: empty, given to user %s",
		    cf->spool_dir, owner->name);
	}
	/* The socket's directory: the socket is made after the switch. */
	if (slash != NULL && slash != cf->control_socket &&
	    (size_t)(slash - cf->control_socket) < sizeof(dir)) {
		memcpy(dir, cf->control_socket,
		    (size_t)(slash - cf->control_socket));
		dir[slash - cf->control_socket] = '\0';
		if (priv_mkdirs(dir, 0755, owner) < 0)
			fatal("control socket %s: cannot create its directory: "
			      "%s",
			    cf->control_socket, strerror(errno));
	}
}

/*
 * After the switch (or without one): the spool directory must be usable by
 * whoever the daemon now is, for RocksDB opens files in it for as long as
 * it runs. access(2) asks with the real ids, which now are the user's.
 */
static void
daemon_check_dirs(const struct conf *cf)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(cf->control_socket, '/');
	struct stat st;

	if (stat(cf->spool_dir, &st) < 0)
		fatal("spool directory %s: %s%s%s", cf->spool_dir,
		    strerror(errno), cf->user != NULL ? " for user " : "",
		    cf->user != NULL ? cf->user : "");
	if (cf->spool_dir_check && (st.st_mode & 077) != 0)
		fatal(
		    "spool directory %s: mode %04o lets other users read "
		    "queued mail: chmod 0700 it, or set spool_dir_check = off",
		    cf->spool_dir, (unsigned)(st.st_mode & 07777));
	if (access(cf->spool_dir, R_OK | W_OK | X_OK) < 0) {
		if (cf->user != NULL)
			fatal("spool directory %s: not writable by user %s "
			      "(it belongs to uid %u, gid %u, mode %04o): %s; "
			      "give it to the user (chown -R) or set user",
			    cf->spool_dir, cf->user, (unsigned)st.st_uid,
			    (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777),
			    strerror(errno));
		fatal("spool directory %s: not writable: %s", cf->spool_dir,
		    strerror(errno));
	}
	if (cf->user != NULL && slash != NULL && slash != cf->control_socket &&
	    (size_t)(slash - cf->control_socket) < sizeof(dir)) {
		memcpy(dir, cf->control_socket,
		    (size_t)(slash - cf->control_socket));
		dir[slash - cf->control_socket] = '\0';
		if (access(dir, W_OK | X_OK) < 0)
			fatal(
			    "control socket %s: its directory is not writable "
			    "by user %s: %s",
			    cf->control_socket, cf->user, strerror(errno));
	}
}

/*
 * -t: a certificate that does not load, or a key that does not match it,
 * is a config error like any other.
 */
static int
check_tls(const struct conf *cf)
{
	char err[1280];
	struct tls_ctx *ctx = server_tls_new(cf, err, sizeof(err));

	if (ctx == NULL && err[0] != '\0') {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	tls_free(ctx);
	return 0;
}

/*
 * The configured domains that have U-labels, as both forms, one line each
 * on out (-t) or in the log (NULL): the A-labels are what DNS, the spool
 * and mxspoolctl show.
 */
static void
report_idn_names(const struct conf *cf, const char *path, FILE *out)
{
	char *text = conf_idn_names(cf);

	for (char *p = text, *nl; p != NULL && *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = '\0';
		if (out != NULL)
			fprintf(out, "%s: %s\n", path, p);
		else
			log_info("config: %s", p);
	}
	free(text);
}

/*
 * The config's warnings (lines of "FILE:LINE: warning: message"), each
 * with prefix in the log, which adds its own "warning: ", and in r.
 */
static void
report_warnings(
    const struct conf *cf, const char *prefix, struct reload_report *r)
{
	const char *tag = "warning: ";

	for (const char *p = cf->warnings, *nl; p != NULL && *p; p = nl + 1) {
		const char *w = strstr(p, tag);

		nl = strchr(p, '\n');
		if (w != NULL && w < nl)
			log_warn("%s%.*s%.*s", prefix, (int)(w - p), p,
			    (int)(nl - w - strlen(tag)), w + strlen(tag));
		else
			log_warn("%s%.*s", prefix, (int)(nl - p), p);
		if (r != NULL)
			reload_warn(r, "%.*s", (int)(nl - p), p);
	}
}

/* The listen addresses of a that b does not have, each logged with what. */
static void
log_listen_diff(const struct conf *a, const struct conf *b, const char *what)
{
	for (size_t i = 0; i < a->nlisten; i++) {
		bool kept = false;

		for (size_t j = 0; j < b->nlisten && !kept; j++)
			kept =
			    strcmp(a->listen[i].text, b->listen[j].text) == 0;
		if (!kept)
			log_info(
			    "reload: listen: %s %s", what, a->listen[i].text);
	}
}

/*
 * Reads the config again. An invalid one is refused (its errors logged and
 * returned) and the old one stays; a valid one is handed to every part,
 * which use it for new sessions and later decisions. Each option that
 * changed is logged and put in *rep as applied or as taking effect at the
 * next start (ctl/reload.c), with the config's warnings and whatever did
 * not apply.
 */
static int
daemon_reload_conf(struct daemon *d, char **errors, struct reload_report *rep)
{
	struct conf *cf;
	char err[1280];

	log_info("reload: reading %s", d->path);
	if (conf_load(&cf, d->path, errors) < 0) {
		for (char *p = *errors, *nl; p != NULL && *p; p = nl + 1) {
			nl = strchr(p, '\n');
			if (nl == NULL)
				nl = p + strlen(p) - 1;
			log_err("reload refused: %.*s", (int)(nl - p), p);
		}
		metrics_count(MF_RELOADS, "failed");
		return -1;
	}
	if (server_set_listen(d->srv, cf, err, sizeof(err)) < 0) {
		log_err("reload refused: %s", err);
		*errors = xasprintf("%s\n", err);
		conf_free(cf);
		metrics_count(MF_RELOADS, "failed");
		return -1;
	}
	/* The first config retired is the one the daemon started with. */
	reload_diff(d->nretired > 0 ? d->retired[0] : d->cf, d->cf, cf, rep);
	report_warnings(cf, "reload: ", rep);
	log_listen_diff(cf, d->cf, "now listening on");
	log_listen_diff(d->cf, cf, "no longer listening on");
	/* log and log_level; hostname too, which every stderr line shows. */
	log_open("mxspool", cf->hostname, cf->log_dest, cf->log_level);
	if (server_set_conf(d->srv, cf, err, sizeof(err)) < 0) {
		log_err(
		    "reload: %s; keeping the previous TLS certificate", err);
		reload_warn(
		    rep, "%s; keeping the previous TLS certificate", err);
	}
	if (dns_set_conf(d->dns, cf) < 0) {
		log_err("reload: the resolver keeps its previous servers");
		reload_warn(rep,
		    "dns_servers: refused by the resolver (see the log); it "
		    "keeps its previous servers");
	}
	queue_set_conf(d->q, cf);
	sched_set_conf(d->sched, cf);
	if (ctl_set_conf(d->ctl, cf, err, sizeof(err)) < 0) {
		log_err("reload: %s", err);
		reload_warn(rep, "%s", err);
	}
	if (httpd_set_conf(d->httpd, cf, err, sizeof(err)) < 0) {
		log_err("reload: %s: metrics are off", err);
		reload_warn(rep, "%s: metrics are off", err);
	}
	for (size_t i = 0; i < rep->napplied; i++)
		log_info("reload: %s changed: applied", rep->applied[i]);
	for (size_t i = 0; i < rep->nat_next_start; i++)
		log_warn("reload: %s changed: takes effect at the next start",
		    rep->at_next_start[i]);
	d->retired = xgrow(
	    d->retired, &d->capretired, d->nretired + 1, sizeof(*d->retired));
	d->retired[d->nretired++] = d->cf;
	d->cf = cf;
	metrics_count(MF_RELOADS, "ok");
	log_info("reload: %s in force", d->path);
	return 0;
}

/*
 * systemd's notification protocol (Type=notify, sd_notify(3)): the
 * messages go to $NOTIFY_SOCKET, and without it sd_notify does nothing,
 * so mxspoold needs no option to run under systemd or without.
 *
 * A reload, from SIGHUP (systemctl reload) or from mxspoolctl reload, is
 * bracketed by RELOADING=1 and READY=1, whatever its outcome: a refused
 * config leaves the daemon running the old one. MONOTONIC_USEC is what
 * systemd 253 and later want with RELOADING=1 (Type=notify-reload);
 * older ones ignore it.
 */
static int
daemon_reload(void *arg, char **errors, struct reload_report *rep)
{
	struct daemon *d = arg;
	struct timespec now;
	const char *why;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &now);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	    (unsigned long long)now.tv_sec * 1000000ULL +
		(unsigned long long)now.tv_nsec / 1000ULL,
	    d->path);
	rc = daemon_reload_conf(d, errors, rep);
	why = rc == 0 || *errors == NULL ? "" : *errors;
	if (rc == 0)
		sd_notifyf(0, "READY=1\nSTATUS=running; %s reloaded", d->path);
	else
		sd_notifyf(0,
		    "READY=1\nSTATUS=running; reload refused, the previous "
		    "configuration stays: %.*s",
		    (int)strcspn(why, "\n"), why);
	return rc;
}

static void
daemon_on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct reload_report rep = {0};
	char *errors = NULL;

	(void)sig;
	(void)what;
	daemon_reload(arg, &errors, &rep);
	free(errors);
	reload_report_fini(&rep);
}

static void
daemon_on_stopped(void *arg)
{
	struct daemon *d = arg;

	event_base_loopexit(d->base, NULL);
}

static void
daemon_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (d->stopping++) {
		log_info("%s again: stopping now", strsignal((int)sig));
		event_base_loopbreak(d->base);
		return;
	}
	log_info("%s: no longer accepting connections", strsignal((int)sig));
	/*
	 * The unit's TimeoutStopSec (30s) covers the default shutdown_timeout
	 * and the spool's close after it. EXTEND_TIMEOUT_USEC asks systemd
	 * for shutdown_timeout plus that close from now, so that a longer
	 * shutdown_timeout needs no change to the unit (systemd only ever
	 * lengthens its timeout for it, never shortens it).
	 */
	sd_notifyf(0,
	    "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\nSTATUS=stopping: open "
	    "sessions have %llds to finish",
	    ((unsigned long long)d->cf->shutdown_timeout + STOP_SPOOL_CLOSE_S) *
		1000000ULL,
	    (long long)d->cf->shutdown_timeout);
	ctl_free(d->ctl); /* mxspoolctl now says the daemon is not running */
	d->ctl = NULL;
	server_shutdown(d->srv, daemon_on_stopped, d);
}

int
main(int argc, char **argv)
{
	const char *path = CONF_DEFAULT_PATH;
	struct daemon d = {0};
	char err[512], *errors;
	struct priv_id id;
	int ch, check = 0;
	bool drain_only = false;
	static const struct option longopts[] = {
	    {"drain-only", no_argument, NULL, 'D'}, {NULL, 0, NULL, 0}};

	while ((ch = getopt_long(argc, argv, "c:thv", longopts, NULL)) != -1) {
		switch (ch) {
		case 'D':
			drain_only = true;
			break;
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'v':
			printf("mxspoold %s\n", MXSPOOL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	d.path = path;
	if (conf_load(&d.cf, path, &errors) < 0) {
		fputs(errors, stderr);
		free(errors);
		return 1;
	}
	if (check) {
		if (check_tls(d.cf) < 0) {
			conf_free(d.cf);
			return 1;
		}
		/* Warnings do not fail the check: the daemon would run. */
		if (d.cf->warnings != NULL)
			fputs(d.cf->warnings, stderr);
		report_idn_names(d.cf, path, stdout);
		/* What the file leaves to a default worked out from others. */
		printf("%s: ok (postmaster <%s>)\n", path, d.cf->postmaster);
		conf_free(d.cf);
		return 0;
	}

	/* Queued mail, its logs and RocksDB's files are for the daemon
	 * alone; the control socket is given its mode explicitly. */
	umask(077);
	log_open("mxspool", d.cf->hostname, d.cf->log_dest, d.cf->log_level);
	metrics_set_build(MXSPOOL_VERSION);
	signal(SIGPIPE, SIG_IGN);
	/* GMime, for the 8BITMIME downgrade: set up once, before the loop. */
	downgrade_init();
	if (d.cf->user != NULL &&
	    priv_resolve(d.cf->user, d.cf->group, &id, err, sizeof(err)) < 0)
		fatal("%s", err);
	/* Without root only the user it already is will do: say so first. */
	if (d.cf->user != NULL && geteuid() != 0 &&
	    priv_drop(&id, err, sizeof(err)) < 0)
		fatal("%s", err);
	daemon_prepare_dirs(
	    d.cf, d.cf->user != NULL && geteuid() == 0 ? &id : NULL);

	d.base = event_base_new();
	if (d.base == NULL)
		fatal("cannot create the event loop");
	/*
	 * Signals are caught before anyone can connect: a client that sees
	 * the port open may stop the daemon at once, and must get a clean
	 * exit, not the default action. They are handled once the loop runs.
	 */
	d.sig_hup = evsignal_new(d.base, SIGHUP, daemon_on_hup, &d);
	evsignal_add(d.sig_hup, NULL);
	d.sig_term = evsignal_new(d.base, SIGTERM, daemon_on_signal, &d);
	d.sig_int = evsignal_new(d.base, SIGINT, daemon_on_signal, &d);
	evsignal_add(d.sig_term, NULL);
	evsignal_add(d.sig_int, NULL);
	/*
	 * What needs root, while the daemon may still have it: binding the
	 * listen ports (25 is below 1024) and the TLS key (often readable by
	 * root alone). They listen once everything else is ready.
	 */
	d.srv = server_new(d.base, d.cf, NULL);
	/* --drain-only (a spool rescued from a failed machine, or a node
	 * emptied before maintenance): no listener at all; a reload opens
	 * none either (server_set_listen on a server that never listened). */
	if (!drain_only && server_bind(d.srv, err, sizeof(err)) < 0)
		fatal("%s", err);
	/*
	 * Then the switch, for good, before any thread starts (RocksDB's and
	 * the writer's): everything below runs as the user.
	 */
	if (d.cf->user != NULL) {
		if (priv_drop(&id, err, sizeof(err)) < 0)
			fatal("%s", err);
		log_info("running as user %s (uid %u), group id %u", id.name,
		    (unsigned)id.uid, (unsigned)id.gid);
	} else if (geteuid() == 0)
		log_warn("running as root: set user (mxspool.conf(5)) so that "
			 "mxspoold gives root up once its ports are open");
	daemon_check_dirs(d.cf);

	if (queue_open(&d.q, d.cf, d.base, err, sizeof(err)) < 0)
		fatal("%s", err);
	if (dns_new(&d.dns, d.cf, d.base) < 0)
		fatal("cannot start the DNS resolver");
	d.sched = sched_new(d.base, d.cf, d.q, d.dns, &client_deliver_ops);
	if (drain_only)
		sched_set_drain_only(d.sched);
	server_set_queue(d.srv, d.q);
	server_set_dns(d.srv, d.dns);
	{
		struct ctl_deps deps = {
		    .q = d.q, .sched = d.sched, .dns = d.dns, .srv = d.srv};

		d.ctl = ctl_new(d.base, d.cf, &deps, daemon_reload, &d);
		if (ctl_listen(d.ctl, err, sizeof(err)) < 0)
			fatal("%s", err);
		d.httpd = httpd_new(d.base, d.cf, &deps);
		/* Mail matters more than metrics: a port in use is logged,
		 * and a reload with a free one turns them on. A drain-only
		 * daemon, often a rescued spool on a machine whose own node
		 * has the port, opens none. */
		if (!drain_only && httpd_listen(d.httpd, err, sizeof(err)) < 0)
			log_err("%s: metrics are off", err);
	}
	/* Last: a client that can connect finds everything running. */
	if (!drain_only && server_start(d.srv, err, sizeof(err)) < 0)
		fatal("%s", err);

	for (size_t i = 0; i < d.cf->nlisten && !drain_only; i++)
		log_info("listening on %s", d.cf->listen[i].text);
	if (drain_only)
		log_info("drain only: no listeners, no deliveries; the queue "
			 "leaves by mxspoolctl xfer");
	log_info("mxspoold %s started: hostname %s, spool %s", MXSPOOL_VERSION,
	    d.cf->hostname, d.cf->spool_dir);
	report_idn_names(d.cf, path, NULL);
	report_warnings(d.cf, "config: ", NULL);
	/* The spool is open (its log replayed) and every listener accepts. */
	sd_notifyf(0, "READY=1\nSTATUS=running: %zu listener%s, spool %s",
	    d.cf->nlisten, d.cf->nlisten == 1 ? "" : "s", d.cf->spool_dir);

	event_base_dispatch(d.base);

	log_info("mxspoold stopped");
	ctl_free(d.ctl);
	httpd_free(d.httpd);
	server_free(d.srv);
	sched_free(d.sched);
	dns_free(d.dns);
	queue_close(d.q);
	event_free(d.sig_term);
	event_free(d.sig_int);
	event_free(d.sig_hup);
	event_base_free(d.base);
	conf_free(d.cf);
	for (size_t i = 0; i < d.nretired; i++)
		conf_free(d.retired[i]);
	free(d.retired);
	return 0;
}
