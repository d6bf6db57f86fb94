/*
 * mxspoolctl's way to the daemon: the control socket named by -s or by
 * the config, and one request on it, its answer read line by line (the
 * protocol is in ctl/ctl_proto.h).
 */
#include <errno.h>
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

#include "cli/cli.h"
#include "common/conf.h"

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
 * Says in one line why path gave no config: conf_load's first error
 * ("FILE: cannot read: why", or "FILE:LINE: message"), and how many more
 * there are.
 */
static void
config_error(const char *path, const char *errors)
{
	size_t plen = strlen(path), n = strcspn(errors, "\n"), more = 0;
	const char *msg = errors;

	for (const char *p = errors + n; *p != '\0'; p++)
		if (*p == '\n' && p[1] != '\0')
			more++;
	if (strncmp(msg, path, plen) == 0 && msg[plen] == ':') {
		msg += plen + 1;
		n -= plen + 1;
	}
	if (strncmp(msg, " cannot read:", 13) == 0) {
		cli_fail("%s:%.*s%s", path, (int)n, msg,
		    cli_opt.config == NULL ? " (-c names the config, -s the "
					     "socket)"
					   : "");
		return;
	}
	cli_fail("%s is not a valid mxspool config: %s%.*s%s", path,
	    msg[0] >= '0' && msg[0] <= '9' ? "line " : "", (int)n, msg,
	    more > 0 ? " (and more: mxspoold -t -c FILE lists them)" : "");
}

/*
 * The control socket's path: -s, else the config's control_socket. A
 * file that cannot be read is an error, and so is one that does not load
 * and names no socket (it is no config); a config being edited still
 * names its socket, and reload has the daemon report everything wrong in
 * it.
 */
static char *
socket_path(void)
{
	const char *path = cli_opt.config ? cli_opt.config : CONF_DEFAULT_PATH;
	struct conf *cf;
	char *errors = NULL, *s = NULL;

	if (cli_opt.socket != NULL)
		return strdup(cli_opt.socket);
	if (conf_load(&cf, path, &errors) < 0) {
		size_t plen = strlen(path);
		bool unreadable =
		    strncmp(errors, path, plen) == 0 &&
		    strncmp(errors + plen, ": cannot read:", 14) == 0;

		/* A config being edited still names its socket. */
		if (!unreadable)
			s = socket_from_text(path);
		if (s == NULL && !unreadable &&
		    strcmp(cli_cmd_name, "reload") == 0)
			s = strdup(CONF_DEFAULT_CONTROL_SOCKET);
		if (s == NULL)
			config_error(path, errors);
		free(errors);
		return s;
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
		cli_fail("control socket path too long: %s", path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		cli_fail("socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			cli_fail(
			    "mxspoold is not running (nothing answers on %s)",
			    path);
		else
			cli_fail("cannot reach mxspoold on %s: %s", path,
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

int
cli_call(json_t *req, const struct cli_handler *h)
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
	free(path);
	fclose(fp);
	return rc;
}
