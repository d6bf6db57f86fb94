/*
 * The control socket (see ctl.h): the Unix listener, its connections and
 * the line framing. One request per connection runs at a time; while it
 * runs, reading stops, so a client that pipelines many requests cannot
 * make the daemon buffer unbounded input. The commands are in ctl_cmd.c.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/log.h"
#include "common/priv.h"
#include "common/xmem.h"
#include "ctl/ctl_int.h"

#define CTL_LINE_MAX (64 * 1024) /* longest request line */
#define CTL_LOW (16 * 1024)      /* a streamed reply refills below this */
#define CTL_HIGH (64 * 1024)     /* ... up to about this */
#define CTL_MAX_CONNS 64
#define CTL_IDLE_TIMEOUT 300 /* seconds a client may sit idle */

struct ctl_conn {
	TAILQ_ENTRY(ctl_conn) link;
	struct ctl *c;
	uint64_t id;
	struct bufferevent *bev;
	json_t *rid;  /* the id of the request in progress */
	bool busy;    /* a request is in progress */
	bool closing; /* close once the output is written */
	bool in_read; /* inside ctl_on_read's loop */
	bool eof;     /* the client will send no more: answer, then close */
	ctl_pump_cb *pump;
	void *pstate;
	void (*pfree)(void *);
};

struct ctl {
	struct ctl_ctx ctx;
	struct ctl_deps deps;
	struct event_base *base;
	struct evconnlistener *lev;
	struct evconnlistener *loc; /* the locator (ctl_proto.h), or NULL */
	char *config;               /* the config's absolute path */
	char *path; /* the socket this ctl made, unlinked at the end */
	unsigned mode;
	char *owner, *group;
	TAILQ_HEAD(, ctl_conn) conns;
	size_t nconns;
	uint64_t next_id;
};

static void ctl_conn_free(struct ctl_conn *k);

const struct ctl_ctx *
ctl_conn_ctx(const struct ctl_conn *k)
{
	return &k->c->ctx;
}

uint64_t
ctl_conn_id(const struct ctl_conn *k)
{
	return k->id;
}

/* The control socket of this process, while it exists. */
static struct ctl *ctl_live;

bool
ctl_is_live(const struct ctl *c)
{
	return c != NULL && c == ctl_live;
}

struct ctl_conn *
ctl_conn_find(struct ctl *c, uint64_t id)
{
	struct ctl_conn *k;

	/* An answer from the spool may come after ctl_free, at shutdown. */
	if (c != ctl_live)
		return NULL;
	TAILQ_FOREACH(k, &c->conns, link)
	if (k->id == id)
		return k;
	return NULL;
}

size_t
ctl_conn_pending(const struct ctl_conn *k)
{
	return evbuffer_get_length(bufferevent_get_output(k->bev));
}

/* Writes one object as a line. Takes o. */
static void
ctl_write(struct ctl_conn *k, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	if (text == NULL)
		PANIC("json_dumps failed");
	bufferevent_write(k->bev, text, strlen(text));
	bufferevent_write(k->bev, "\n", 1);
	free(text);
}

/* The request is answered: read the next one. */
static void
ctl_end(struct ctl_conn *k)
{
	ASSERT(k->busy);
	k->busy = false;
	json_decref(k->rid);
	k->rid = NULL;
	if (k->pfree != NULL)
		k->pfree(k->pstate);
	k->pump = NULL;
	k->pstate = NULL;
	k->pfree = NULL;
	if (k->in_read || k->closing)
		return;
	/* After the client's EOF the socket is not read again, but what
	 * it sent before is, and then the connection closes (ctl_on_read). */
	if (!k->eof)
		bufferevent_enable(k->bev, EV_READ);
	if (k->eof || evbuffer_get_length(bufferevent_get_input(k->bev)) > 0)
		bufferevent_trigger(k->bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
}

/* A string that may hold bytes that are not UTF-8 (8BITMIME senders,
 * remote replies): jansson refuses those, so they become '?'. */
json_t *
ctl_json_str(const char *s)
{
	json_t *j;
	char *copy;

	if (s == NULL)
		return json_null();
	j = json_string(s);
	if (j != NULL)
		return j;
	copy = strdup(s);
	if (copy == NULL)
		return json_null();
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p >= 0x80 || *p < 0x20)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

void
ctl_send(struct ctl_conn *k, const char *key, json_t *v)
{
	json_t *o = json_object();

	/* NULL is what json_pack gives for a string that is not UTF-8: a
	 * reply without its result would leave the client guessing, so
	 * the request fails instead, and a stream's item is left out. */
	if (v == NULL) {
		log_warn(
		    "control: a reply (%s) could not be encoded as JSON", key);
		if (strcmp(key, "result") != 0 && strcmp(key, "error") != 0) {
			json_decref(o);
			return;
		}
		key = "error";
		v = json_pack("{s:s,s:s}", "code", CTL_E_FAILED, "message",
		    "the reply could not be encoded as JSON");
	}
	json_object_set(o, "id", k->rid ? k->rid : json_null());
	json_object_set_new(o, key, v);
	ctl_write(k, o);
}

void
ctl_reply(struct ctl_conn *k, json_t *result)
{
	ctl_send(k, "result", result);
	ctl_end(k);
}

void
ctl_error(struct ctl_conn *k, const char *code, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The message may quote the request (jansson's "near '...'"), which
	 * need not be UTF-8. */
	ctl_send(k, "error",
	    json_pack("{s:s,s:o}", "code", code, "message", ctl_json_str(msg)));
	ctl_end(k);
}

/* Lets a streamed reply write until the output is full or it is done. */
static void
ctl_pump_run(struct ctl_conn *k)
{
	while (k->pump != NULL && !k->closing && ctl_conn_pending(k) < CTL_HIGH)
		if (k->pump(k, k->pstate) != 0)
			break;
}

void
ctl_stream_kick(struct ctl_conn *k)
{
	ctl_pump_run(k);
}

void
ctl_stream(struct ctl_conn *k, ctl_pump_cb *pump, void *state,
    void (*free_state)(void *))
{
	ASSERT(k->busy && k->pump == NULL);
	k->pump = pump;
	k->pstate = state;
	k->pfree = free_state;
	ctl_pump_run(k);
}

static void
ctl_handle_line(struct ctl_conn *k, const char *line, size_t len)
{
	json_error_t je;
	json_t *req, *id;
	const char *cmd;

	k->busy = true;
	k->rid = json_null();
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (req == NULL) {
		ctl_error(k, CTL_E_PARSE, "not JSON: %s", je.text);
		return;
	}
	if (!json_is_object(req)) {
		json_decref(req);
		ctl_error(k, CTL_E_PARSE, "not a JSON object");
		return;
	}
	id = json_object_get(req, "id");
	if (id != NULL && (json_is_integer(id) || json_is_string(id))) {
		json_decref(k->rid);
		k->rid = json_incref(id);
	} else if (id != NULL) {
		json_decref(req);
		ctl_error(k, CTL_E_BAD, "\"id\" must be a number or a string");
		return;
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	if (cmd == NULL)
		ctl_error(k, CTL_E_BAD, "missing \"cmd\" (a string)");
	else
		ctl_dispatch(k, cmd, req);
	json_decref(req);
}

static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *k = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	k->in_read = true;
	while (!k->busy && !k->closing) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);

		if (line == NULL && evbuffer_get_length(in) <= CTL_LINE_MAX)
			break;
		if (line == NULL || n > CTL_LINE_MAX) {
			free(line);
			k->busy = true;
			k->rid = json_null();
			ctl_error(k, CTL_E_PARSE,
			    "request longer than %d bytes", CTL_LINE_MAX);
			k->closing = true;
			break;
		}
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n > 0)
			ctl_handle_line(k, line, n);
		free(line);
	}
	k->in_read = false;
	/* Every whole line the client sent before its EOF is answered. */
	if (k->eof && !k->busy)
		k->closing = true;
	if (k->closing) {
		bufferevent_disable(bev, EV_READ);
		if (ctl_conn_pending(k) == 0)
			ctl_conn_free(k);
		return;
	}
	if (k->busy || k->eof)
		bufferevent_disable(bev, EV_READ);
	else
		bufferevent_enable(bev, EV_READ);
}

static void
ctl_on_write(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *k = arg;

	(void)bev;
	ctl_pump_run(k);
	if (k->closing && ctl_conn_pending(k) == 0)
		ctl_conn_free(k);
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn *k = arg;

	if (what & BEV_EVENT_TIMEOUT)
		log_debug("control: client idle, closing");
	/*
	 * EOF alone: the client has sent all it will, and may be waiting
	 * for the answers (a shell's pipe half-closes): the requests it
	 * sent are answered before the connection closes. A client that
	 * has gone altogether makes the first write fail, which ends it.
	 */
	if (what == (BEV_EVENT_READING | BEV_EVENT_EOF) && !k->closing) {
		k->eof = true;
		if (!k->busy && !k->in_read)
			ctl_on_read(bev, k); /* may free k */
		return;
	}
	/* An error or a timeout: whatever was in progress is dropped;
	 * async answers will not find the connection. */
	ctl_conn_free(k);
}

static void
ctl_conn_free(struct ctl_conn *k)
{
	struct ctl *c = k->c;

	TAILQ_REMOVE(&c->conns, k, link);
	c->nconns--;
	if (k->pfree != NULL)
		k->pfree(k->pstate);
	json_decref(k->rid);
	bufferevent_free(k->bev);
	free(k);
}

static void
ctl_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct ctl *c = arg;
	struct ctl_conn *k;
	struct timeval idle = {CTL_IDLE_TIMEOUT, 0};

	(void)l;
	(void)sa;
	(void)salen;
	if (c->nconns >= CTL_MAX_CONNS) {
		log_warn("control: %d clients connected, refusing one more",
		    CTL_MAX_CONNS);
		evutil_closesocket(fd);
		return;
	}
	k = xcalloc(1, sizeof(*k));
	k->c = c;
	k->id = ++c->next_id;
	k->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (k->bev == NULL) {
		evutil_closesocket(fd);
		free(k);
		return;
	}
	TAILQ_INSERT_TAIL(&c->conns, k, link);
	c->nconns++;
	bufferevent_setcb(k->bev, ctl_on_read, ctl_on_write, ctl_on_event, k);
	bufferevent_setwatermark(k->bev, EV_WRITE, CTL_LOW, 0);
	bufferevent_set_timeouts(k->bev, &idle, &idle);
	bufferevent_enable(k->bev, EV_READ | EV_WRITE);
}

struct ctl *
ctl_new(struct event_base *base, const struct conf *cf,
    const struct ctl_deps *deps, ctl_reload_cb *reload, void *arg)
{
	struct ctl *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->deps = *deps;
	c->ctx.c = c;
	c->ctx.cf = cf;
	c->ctx.deps = &c->deps;
	c->ctx.reload = reload;
	c->ctx.reload_arg = arg;
	TAILQ_INIT(&c->conns);
	ctl_live = c;
	return c;
}

/* Gives the socket file its configured owner, group and mode. */
static int
ctl_set_perms(const char *path, const struct conf *cf, char *err, size_t errlen)
{
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;

	/* XXX: getpwnam/getgrnam may ask NSS over the network; they run only
	 * at start and on reload, and only when an owner or group is set. */
	if (cf->control_socket_owner != NULL) {
		struct passwd *pw = getpwnam(cf->control_socket_owner);

		if (pw == NULL) {
			snprintf(err, errlen,
			    "control_socket_owner: no user %s",
			    cf->control_socket_owner);
			return -1;
		}
		uid = pw->pw_uid;
	}
	if (cf->control_socket_group != NULL) {
		struct group *gr = getgrnam(cf->control_socket_group);

		if (gr == NULL) {
			snprintf(err, errlen,
			    "control_socket_group: no group %s",
			    cf->control_socket_group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    chown(path, uid, gid) < 0) {
		snprintf(err, errlen, "control socket %s: chown: %s", path,
		    strerror(errno));
		return -1;
	}
	if (chmod(path, cf->control_socket_mode) < 0) {
		snprintf(err, errlen, "control socket %s: chmod: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* Opens a listening socket at cf->control_socket. */
static struct evconnlistener *
ctl_open(struct ctl *c, const struct conf *cf, char *err, size_t errlen)
{
	const char *path = cf->control_socket;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char dir[sizeof(sun.sun_path)];
	const char *slash;
	struct evconnlistener *lev;
	mode_t mask;
	int fd, probe;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket %s: path too long", path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	/* Its directory, made 0755 if missing (as the daemon's user). */
	slash = strrchr(path, '/');
	if (slash != NULL && slash != path) {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	if (slash != NULL && slash != path &&
	    priv_mkdirs(dir, 0755, NULL) < 0) {
		snprintf(err, errlen,
		    "control socket %s: cannot create its "
		    "directory: %s",
		    path, strerror(errno));
		return NULL;
	}
	/* A socket someone answers on belongs to a running daemon; one
	 * nobody answers on was left by a daemon that died. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 &&
	    connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(probe);
		snprintf(err, errlen,
		    "control socket %s is in use: is another mxspoold running?",
		    path);
		return NULL;
	}
	if (probe >= 0)
		close(probe);
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "control socket %s: cannot remove: %s",
		    path, strerror(errno));
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return NULL;
	}
	mask = umask(0177); /* nobody may connect before the chmod */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(mask);
		snprintf(err, errlen, "control socket %s: bind: %s", path,
		    strerror(errno));
		close(fd);
		return NULL;
	}
	umask(mask);
	if (ctl_set_perms(path, cf, err, errlen) < 0 || listen(fd, 32) < 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "control socket %s: listen: %s",
			    path, strerror(errno));
		close(fd);
		unlink(path);
		return NULL;
	}
	lev = evconnlistener_new(c->base, ctl_on_accept, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (lev == NULL) {
		snprintf(err, errlen, "control socket %s: cannot listen", path);
		close(fd);
		unlink(path);
	}
	return lev;
}

/* The locator's one line: where the control socket is now. Written at
 * once into the new connection's empty buffer, which it fits. */
static void
ctl_on_locate(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct ctl *c = arg;
	json_t *o;
	char *text;

	(void)l;
	(void)sa;
	(void)salen;
	o = json_pack("{s:s,s:s,s:I}", "control_socket", c->path, "config",
	    c->config, "pid", (json_int_t)getpid());
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text != NULL) {
		size_t n = strlen(text);

		text[n] = '\n'; /* the NUL: it is not sent */
		if (send(fd, text, n + 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("control: locator: %s", strerror(errno));
	}
	free(text);
	evutil_closesocket(fd);
}

/*
 * Listens on the locator of the config's absolute path, so that
 * mxspoolctl finds this daemon when the file names a socket it has not
 * opened yet. Without it mxspoolctl still reaches the socket the file
 * names: a failure is logged, not fatal.
 */
static void
ctl_locator_open(struct ctl *c, const char *config)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char name[CTL_LOCATOR_SIZE], *real;
	size_t n;
	int fd;

	if (config == NULL || (real = realpath(config, NULL)) == NULL)
		return;
	n = ctl_locator_name(real, name);
	memcpy(sun.sun_path + 1, name, n); /* sun_path[0] = 0: abstract */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    bind(fd, (struct sockaddr *)&sun,
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) <
		0 ||
	    listen(fd, 8) < 0 ||
	    (c->loc = evconnlistener_new(c->base, ctl_on_locate, c,
		 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd)) ==
		NULL) {
		log_warn("control: no locator @%s (%s): mxspoolctl finds "
			 "this daemon only on the socket its config names",
		    name, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(real);
		return;
	}
	c->config = real;
	log_debug("control: locator @%s", name);
}

static void
ctl_remember(struct ctl *c, const struct conf *cf)
{
	free(c->path);
	free(c->owner);
	free(c->group);
	c->path = xstrdup(cf->control_socket);
	c->mode = cf->control_socket_mode;
	c->owner =
	    cf->control_socket_owner ? xstrdup(cf->control_socket_owner) : NULL;
	c->group =
	    cf->control_socket_group ? xstrdup(cf->control_socket_group) : NULL;
}

int
ctl_listen(struct ctl *c, char *err, size_t errlen)
{
	err[0] = '\0';
	c->lev = ctl_open(c, c->ctx.cf, err, errlen);
	if (c->lev == NULL)
		return -1;
	ctl_remember(c, c->ctx.cf);
	log_info("control socket %s", c->path);
	ctl_locator_open(c, c->ctx.cf->path);
	return 0;
}

struct event_base *
ctl_base(const struct ctl *c)
{
	return c->base;
}

const char *
ctl_socket_path(const struct ctl *c)
{
	return c->path;
}

static bool
ctl_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
ctl_set_conf(struct ctl *c, const struct conf *cf, char *err, size_t errlen)
{
	struct evconnlistener *lev;

	err[0] = '\0';
	c->ctx.cf = cf;
	if (c->lev == NULL)
		return 0;
	if (strcmp(c->path, cf->control_socket) == 0) {
		if (c->mode == cf->control_socket_mode &&
		    ctl_same(c->owner, cf->control_socket_owner) &&
		    ctl_same(c->group, cf->control_socket_group))
			return 0;
		if (ctl_set_perms(c->path, cf, err, errlen) < 0)
			return -1;
		ctl_remember(c, cf);
		return 0;
	}
	/* A new path: open it first, so a failure keeps the old one. */
	lev = ctl_open(c, cf, err, errlen);
	if (lev == NULL)
		return -1;
	evconnlistener_free(c->lev);
	unlink(c->path);
	c->lev = lev;
	ctl_remember(c, cf);
	log_info("control socket now %s", c->path);
	return 0;
}

void
ctl_free(struct ctl *c)
{
	struct ctl_conn *k;

	if (c == NULL)
		return;
	while ((k = TAILQ_FIRST(&c->conns)) != NULL)
		ctl_conn_free(k);
	ctl_live = NULL;
	if (c->lev != NULL) {
		evconnlistener_free(c->lev);
		unlink(c->path);
	}
	if (c->loc != NULL)
		evconnlistener_free(c->loc);
	free(c->config);
	free(c->path);
	free(c->owner);
	free(c->group);
	free(c);
}
