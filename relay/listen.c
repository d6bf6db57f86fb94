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

struct listen_set {
	struct evconnlistener **l;
	size_t n;
};

static evutil_socket_t
listen_socket(const struct conf_addr *a)
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
	    listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

struct listen_set *
listen_open(struct event_base *base, const struct conf_addr *addrs,
    size_t naddrs, evconnlistener_cb cb, void *arg, char *err, size_t errlen)
{
	struct listen_set *ls = xcalloc(1, sizeof(*ls));

	ls->l = xcalloc(naddrs, sizeof(*ls->l));
	for (size_t i = 0; i < naddrs; i++) {
		evutil_socket_t fd = listen_socket(&addrs[i]);

		if (fd < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    addrs[i].text, strerror(errno));
			listen_close(ls);
			return NULL;
		}
		ls->l[i] = evconnlistener_new(base, cb, arg,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (ls->l[i] == NULL) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    addrs[i].text, strerror(errno));
			close(fd);
			listen_close(ls);
			return NULL;
		}
		ls->n = i + 1;
	}
	return ls;
}

void
listen_close(struct listen_set *ls)
{
	if (ls == NULL)
		return;
	for (size_t i = 0; i < ls->n; i++)
		evconnlistener_free(ls->l[i]);
	free(ls->l);
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
	for (size_t i = 0; i < ls->n; i++)
		evconnlistener_set_error_cb(ls->l[i], cb);
}
