/* Listening sockets: one evconnlistener per configured address. */
#ifndef MXSPOOL_LISTEN_H
#define MXSPOOL_LISTEN_H

#include <event2/event.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/conf.h"

struct listen_set;

/*
 * Opens every address in addrs, each calling cb on accept. On failure
 * returns NULL and says which address failed and why in err.
 */
struct listen_set *listen_open(struct event_base *base,
    const struct conf_addr *addrs, size_t naddrs, evconnlistener_cb cb,
    void *arg, char *err, size_t errlen);
/*
 * As listen_open, but only binds: nobody can connect until listen_start.
 * For mxspoold, which binds port 25 as root and starts listening once it
 * has given root up and opened the spool (a client then never waits on a
 * daemon that is still starting). Started or not, listen_close frees it.
 */
struct listen_set *listen_bind(struct event_base *base,
    const struct conf_addr *addrs, size_t naddrs, evconnlistener_cb cb,
    void *arg, char *err, size_t errlen);
/* Listens on and accepts from every socket of a listen_bind set; on
 * failure says which address and why in err. */
int listen_start(struct listen_set *ls, char *err, size_t errlen);
/*
 * Makes ls listen on exactly addrs: listeners for addresses still listed
 * keep their sockets, new ones are opened, the rest closed. Returns the
 * new set (ls is gone), or NULL with err and ls unchanged.
 */
struct listen_set *listen_update(struct listen_set *ls, struct event_base *base,
    const struct conf_addr *addrs, size_t naddrs, evconnlistener_cb cb,
    void *arg, char *err, size_t errlen);
/* Pauses or resumes accepting on every address. */
void listen_enable(struct listen_set *ls, bool on);
void listen_set_error_cb(struct listen_set *ls, evconnlistener_errorcb cb);
/* Stops accepting and closes the sockets. NULL is a no-op. */
void listen_close(struct listen_set *ls);

#endif
