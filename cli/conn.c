/*
 * mxspoolctl's way to the daemon: the control socket named by -s or by
 * the config (or, when the config's does not answer, where the daemon
 * running that config says it listens), and one request on it, its answer
 * read line by line (the protocol is in ctl/ctl_proto.h).
 */
#include <errno.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/conf.h"
#include "ctl/ctl_proto.h"

#define ANSWER_TIMEOUT 120 /* seconds to wait for each reply line */

/* The control_socket line of a config that does not load, or NULL when
 * it has none. */
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
	return found;
}

/*
 * conf_load's first error for path in one line, without the file's name
 * ("line 3: no such option 'x'", "cannot read: No such file or
 * directory"), and whether there are more.
 */
static bool
config_first_error(const char *path, const char *errors, char *buf, size_t len)
{
	size_t plen = strlen(path), n = strcspn(errors, "\n");
	const char *msg = errors;
	bool more = false;

	for (const char *p = errors + n; *p != '\0'; p++)
		if (*p == '\n' && p[1] != '\0')
			more = true;
	if (strncmp(msg, path, plen) == 0 && msg[plen] == ':')
		msg += plen + 1;
	msg += strspn(msg, " ");
	snprintf(buf, len, "%s%.*s",
	    msg[0] >= '0' && msg[0] <= '9' ? "line " : "",
	    (int)strcspn(msg, "\n"), msg);
	return more;
}

/* Says in one line why path gave no config. */
static void
config_error(const char *path, const char *errors)
{
	char first[1024];
	bool more = config_first_error(path, errors, first, sizeof(first));

	if (strncmp(first, "cannot read:", 12) == 0)
		cli_fail("%s: %s%s", path, first,
		    cli_opt.config == NULL ? " (-c names the config, -s the "
					     "socket)"
					   : "");
	else
		cli_fail("%s is not a valid mxspool config: %s%s", path, first,
		    more ? " (and more: mxspoold -t -c FILE lists them)" : "");
}

/* Where to reach the daemon. */
struct target {
	char *path;       /* the socket named (-s, or the config's); NULL: a
			     broken config names none, only the locator */
	char *config;     /* the config's absolute path; NULL with -s */
	char *errors;     /* a broken config's errors */
	char *where;      /* where the locator sent us, or NULL */
	uid_t daemon_uid; /* the config's user; (uid_t)-1 if none */
};

const char *cli_socket_named;
const char *cli_socket_used;

static void
target_fini(struct target *t)
{
	free(t->path);
	free(t->config);
	free(t->errors);
	free(t->where);
}

/*
 * The socket -s names, else the config's control_socket. A file that
 * cannot be read is an error. One with errors is a config being edited,
 * whose daemon runs on what it read before: the file may still name the
 * socket, and the daemon running it answers on its locator (ctl_connect);
 * reload has it report everything wrong. Returns -1 after saying why.
 */
static int
target_find(struct target *t)
{
	const char *path = cli_opt.config ? cli_opt.config : CONF_DEFAULT_PATH;
	struct passwd *pw;
	struct conf *cf;
	char *errors = NULL;

	memset(t, 0, sizeof(*t));
	t->daemon_uid = (uid_t)-1;
	if (cli_opt.socket != NULL) {
		t->path = strdup(cli_opt.socket);
		return 0;
	}
	if (conf_load(&cf, path, &errors) < 0) {
		size_t plen = strlen(path);
		bool unreadable =
		    strncmp(errors, path, plen) == 0 &&
		    strncmp(errors + plen, ": cannot read:", 14) == 0;

		if (unreadable) {
			config_error(path, errors);
			free(errors);
			return -1;
		}
		t->path = socket_from_text(path);
		t->config = realpath(path, NULL);
		t->errors = errors;
		return 0;
	}
	t->path = strdup(cf->control_socket);
	t->config = realpath(path, NULL);
	if (cf->user != NULL && (pw = getpwnam(cf->user)) != NULL)
		t->daemon_uid = pw->pw_uid;
	conf_free(cf);
	return 0;
}

/* Connects to a Unix socket: a descriptor, or -1 and errno. */
static int
sock_connect(struct sockaddr_un *sun, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)sun, len) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int
path_connect(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	return sock_connect(&sun, sizeof(sun));
}

/* The peer's process and user (SO_PEERCRED). */
static bool
peer_of(int fd, struct ucred *cr)
{
	socklen_t len = sizeof(*cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) == 0;
}

/*
 * Asks the locator of t->config where the daemon running that config
 * listens, and connects there. Its word is taken only from a process of
 * root, of this user or of the config's user, and only when the socket
 * it names is that same process's. Returns the descriptor (and *where,
 * malloc'd), or -1.
 */
static int
locate(const struct target *t, char **where)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char name[CTL_LOCATOR_SIZE], buf[4096];
	struct ucred loc, srv;
	struct timeval tv = {5, 0};
	size_t n, got = 0;
	ssize_t r;
	json_t *o;
	const char *path;
	int fd, sfd = -1;

	*where = NULL;
	if (t->config == NULL)
		return -1;
	n = ctl_locator_name(t->config, name);
	memcpy(sun.sun_path + 1, name, n);
	fd = sock_connect(
	    &sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));
	if (fd < 0)
		return -1;
	if (!peer_of(fd, &loc) || (loc.uid != 0 && loc.uid != geteuid() &&
				      loc.uid != t->daemon_uid)) {
		close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(buf) - 1 &&
	       (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	buf[got] = '\0';
	o = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	path = json_string_value(json_object_get(o, "control_socket"));
	if (path != NULL && (sfd = path_connect(path)) >= 0 &&
	    (!peer_of(sfd, &srv) || srv.pid != loc.pid ||
		json_integer_value(json_object_get(o, "pid")) != loc.pid)) {
		close(sfd);
		sfd = -1;
	}
	if (sfd >= 0)
		*where = strdup(path);
	json_decref(o);
	return sfd;
}

/*
 * Connects to the daemon: at the socket named, else (nothing there, and
 * no -s) where the locator of the config says the daemon running it
 * listens: its old socket, when the file names a new one that a reload
 * is to open. Returns the stream, or NULL after saying why.
 */
static FILE *
ctl_connect(struct target *t)
{
	struct timeval tv = {ANSWER_TIMEOUT, 0};
	int fd = -1, e = ENOENT;
	FILE *fp;

	if (t->path != NULL && (fd = path_connect(t->path)) < 0)
		e = errno;
	if (fd < 0 && (e == ENOENT || e == ECONNREFUSED) &&
	    (fd = locate(t, &t->where)) >= 0 &&
	    strcmp(cli_cmd_name, "reload") != 0 && t->path != NULL)
		fprintf(stderr,
		    "mxspoolctl: note: mxspoold answers on %s, not on %s as "
		    "%s says (mxspoolctl reload moves it)\n",
		    t->where, t->path,
		    cli_opt.config ? cli_opt.config : CONF_DEFAULT_PATH);
	if (fd >= 0 && t->errors != NULL &&
	    strcmp(cli_cmd_name, "reload") != 0) {
		char first[1024];
		const char *cfg =
		    cli_opt.config ? cli_opt.config : CONF_DEFAULT_PATH;

		config_first_error(cfg, t->errors, first, sizeof(first));
		fprintf(stderr,
		    "mxspoolctl: note: %s has errors (%s): a reload would be "
		    "refused\n",
		    cfg, first);
	}
	if (fd < 0) {
		if (t->path == NULL || t->errors != NULL)
			config_error(
			    cli_opt.config ? cli_opt.config : CONF_DEFAULT_PATH,
			    t->errors);
		else if (e == ENOENT || e == ECONNREFUSED)
			cli_fail(
			    "mxspoold is not running (nothing answers on %s)",
			    t->path);
		else
			cli_fail("cannot reach mxspoold on %s: %s", t->path,
			    strerror(e));
		return NULL;
	}
	cli_socket_named = cli_opt.socket == NULL ? t->path : NULL;
	cli_socket_used = t->where != NULL ? t->where : t->path;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	fp = fdopen(fd, "r+");
	if (fp == NULL)
		close(fd);
	return fp;
}

int
cli_call(json_t *req, const struct cli_handler *h)
{
	struct target t;
	char *text, *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;
	int rc = EX_FAIL;

	if (target_find(&t) < 0) {
		json_decref(req);
		return EX_FAIL;
	}
	fp = ctl_connect(&t);
	if (fp == NULL) {
		target_fini(&t);
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
				cli_fail("no answer from mxspoold within %ds",
				    ANSWER_TIMEOUT);
			else
				cli_fail("mxspoold closed the connection "
					 "without an answer");
			break;
		}
		o = json_loadb(line, (size_t)n, 0, &je);
		if (o == NULL) {
			cli_fail("bad answer from mxspoold: %s", je.text);
			break;
		}
		if ((v = json_object_get(o, "item")) != NULL && h->item)
			h->item(v);
		else if ((v = json_object_get(o, "chunk")) != NULL && h->chunk)
			h->chunk(v);
		else if ((v = json_object_get(o, "error")) != NULL) {
			const char *msg =
			    json_string_value(json_object_get(v, "message"));

			if (cli_opt.json) {
				json_dumpf(o, stdout, JSON_COMPACT);
				putchar('\n');
			}
			if (strcmp(cli_cmd_name, "reload") == 0) {
				cli_fail("reload refused; the running "
					 "configuration stays:");
				fprintf(stderr, "%s\n", msg ? msg : "");
			} else
				cli_fail("%s", msg ? msg : "failed");
			json_decref(o);
			break;
		} else if ((v = json_object_get(o, "result")) != NULL) {
			if (cli_opt.json && h->result == NULL) {
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
	fclose(fp);
	cli_socket_named = cli_socket_used = NULL;
	target_fini(&t);
	return rc;
}
