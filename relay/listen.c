/* Listeners for the SMTP port(s). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/xmem.h"
#include "relay/listen.h"

#define LISTEN_BACKLOG 1024

struct listen_set {
	struct evconnlistener **l;
	struct conf_addr *addrs; /* what each listener is bound to */
	size_t n;
	evconnlistener_errorcb errcb;
};

/* A socket bound to a; listening too if now (else listen_start does). */
static evutil_socket_t
listen_socket(const struct conf_addr *a, bool now)
{
	int fd, one = 1;

	fd = socket(
	    a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Restart quickly after a crash; never share a port with a twin. */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "[::]:25" and "0.0.0.0:25" may both be listed: keep them apart. */
	if (a->sa.ss_family == AF_INET6)
		(void)setsockopt(
		    fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->sa, a->salen) < 0 ||
	    (now && listen(fd, LISTEN_BACKLOG) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static struct evconnlistener *
listen_one(struct event_base *base, const struct conf_addr *a,
    evconnlistener_cb cb, void *arg, bool now, char *err, size_t errlen)
{
	evutil_socket_t fd = listen_socket(a, now);
	struct evconnlistener *l;

	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", a->text,
		    strerror(errno));
		return NULL;
	}
	/* Backlog 0: libevent leaves listen(2) to us (a negative one would
	 * call it again, with a backlog of 128). */
	l = evconnlistener_new(base, cb, arg,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
		(now ? 0 : LEV_OPT_DISABLED),
	    0, fd);
	if (l == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", a->text,
		    strerror(errno));
		close(fd);
	}
	return l;
}

/* The index of a in ls, or -1. */
static long
listen_find(const struct listen_set *ls, const struct conf_addr *a)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->l[i] != NULL && ls->addrs[i].salen == a->salen &&
		    memcmp(&ls->addrs[i].sa, &a->sa, a->salen) == 0)
			return (long)i;
	return -1;
}

/*
 * Builds a set for addrs, taking over the listeners `old` already has for
 * any of them (so their sockets never close) and opening the others.
 */
static struct listen_set *
listen_build(struct listen_set *old, struct event_base *base,
    const struct conf_addr *addrs, size_t naddrs, evconnlistener_cb cb,
    void *arg, bool now, char *err, size_t errlen)
{
	struct listen_set *ls = xcalloc(1, sizeof(*ls));

	ls->l = xcalloc(naddrs, sizeof(*ls->l));
	ls->addrs = xcalloc(naddrs, sizeof(*ls->addrs));
	ls->errcb = old != NULL ? old->errcb : NULL;
	for (size_t i = 0; i < naddrs; i++) {
		long k = old != NULL ? listen_find(old, &addrs[i]) : -1;

		ls->addrs[i] = addrs[i];
		ls->n = i + 1;
		if (k >= 0) {
			ls->l[i] = old->l[k];
			continue;
		}
		ls->l[i] =
		    listen_one(base, &addrs[i], cb, arg, now, err, errlen);
		if (ls->l[i] == NULL) {
			/* Give back nothing of old's; close what is new. */
			for (size_t j = 0; j < i; j++)
				if (old == NULL ||
				    listen_find(old, &addrs[j]) < 0)
					evconnlistener_free(ls->l[j]);
			free(ls->l);
			free(ls->addrs);
			free(ls);
			return NULL;
		}
		if (ls->errcb != NULL)
			evconnlistener_set_error_cb(ls->l[i], ls->errcb);
	}
	return ls;
}

struct listen_set *
listen_open(struct event_base *base, const struct conf_addr *addrs,
    size_t naddrs, evconnlistener_cb cb, void *arg, char *err, size_t errlen)
{
	return listen_build(
	    NULL, base, addrs, naddrs, cb, arg, true, err, errlen);
}

struct listen_set *
listen_bind(struct event_base *base, const struct conf_addr *addrs,
    size_t naddrs, evconnlistener_cb cb, void *arg, char *err, size_t errlen)
{
	return listen_build(
	    NULL, base, addrs, naddrs, cb, arg, false, err, errlen);
}

int
listen_start(struct listen_set *ls, char *err, size_t errlen)
{
	for (size_t i = 0; i < ls->n; i++) {
		if (listen(evconnlistener_get_fd(ls->l[i]), LISTEN_BACKLOG) <
		    0) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    ls->addrs[i].text, strerror(errno));
			return -1;
		}
		evconnlistener_enable(ls->l[i]);
	}
	return 0;
}

struct listen_set *
listen_update(struct listen_set *ls, struct event_base *base,
    const struct conf_addr *addrs, size_t naddrs, evconnlistener_cb cb,
    void *arg, char *err, size_t errlen)
{
	struct listen_set *nls =
	    listen_build(ls, base, addrs, naddrs, cb, arg, true, err, errlen);

	if (nls == NULL)
		return NULL;
	/* Close what is no longer listed; the rest moved to nls. */
	for (size_t i = 0; i < ls->n; i++)
		if (listen_find(nls, &ls->addrs[i]) < 0)
			evconnlistener_free(ls->l[i]);
	free(ls->l);
	free(ls->addrs);
	free(ls);
	return nls;
}

void
listen_close(struct listen_set *ls)
{
	if (ls == NULL)
		return;
	for (size_t i = 0; i < ls->n; i++)
		if (ls->l[i] != NULL)
			evconnlistener_free(ls->l[i]);
	free(ls->l);
	free(ls->addrs);
	free(ls);
}

void
listen_enable(struct listen_set *ls, bool on)
{
	for (size_t i = 0; i < ls->n; i++)
		if (on)
			evconnlistener_enable(ls->l[i]);
		else
			evconnlistener_disable(ls->l[i]);
}

void
listen_set_error_cb(struct listen_set *ls, evconnlistener_errorcb cb)
{
	ls->errcb = cb;
	for (size_t i = 0; i < ls->n; i++)
		evconnlistener_set_error_cb(ls->l[i], cb);
}
