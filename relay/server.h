/* The inbound SMTP server: listeners and client sessions. */
#ifndef MXSPOOL_SERVER_H
#define MXSPOOL_SERVER_H

#include <event2/event.h>
#include <stddef.h>

#include "common/conf.h"
#include "queue/queue.h"

struct dns;
struct server;
struct tls_ctx;
typedef void server_done_cb(void *arg);

/*
 * Borrowed cf must outlive the server or be replaced by server_set_conf;
 * borrowed q (the spool) must outlive it too.
 */
struct server *server_new(
    struct event_base *base, const struct conf *cf, struct queue *q);
/*
 * Loads the TLS certificate (if configured) and opens every listen
 * address; on failure says what in err.
 */
int server_listen(struct server *srv, char *err, size_t errlen);
/*
 * server_listen in two steps: server_bind loads the TLS certificate and
 * binds every listen address (what may need root), server_start listens
 * on them (what lets clients in). Each says what failed in err.
 */
int server_bind(struct server *srv, char *err, size_t errlen);
int server_start(struct server *srv, char *err, size_t errlen);
/*
 * The inbound TLS context of cf's tls_cert_file and tls_key_file, for
 * server_bind, a reload and -t: NULL with err "" when cf sets neither;
 * NULL when one does not load, with err "FILE:LINE: why" at the line that
 * sets the file at fault. tls_free frees it.
 */
struct tls_ctx *server_tls_new(const struct conf *cf, char *err, size_t errlen);
/* Look up each client's name (PTR, confirmed forward) with dns, for the
 * log and the Received header; it never delays a session. */
void server_set_dns(struct server *srv, struct dns *dns);
/* Sets the queue sessions spool into: server_new may get NULL, so that
 * the listeners are bound (as root) before the spool is opened (as the
 * configured user); it must be set before the event loop runs. */
void server_set_queue(struct server *srv, struct queue *q);
/*
 * Listens on exactly cf's addresses: those still listed keep their
 * sockets (no connection is refused meanwhile), new ones open, the rest
 * close. On failure nothing changes and err says which address.
 */
int server_set_listen(
    struct server *srv, const struct conf *cf, char *err, size_t errlen);
/*
 * Every decision from now on, in new and open sessions, uses cf. A TLS
 * certificate that no longer loads keeps the old one: then returns -1 and
 * err says why.
 */
int server_set_conf(
    struct server *srv, const struct conf *cf, char *err, size_t errlen);
/*
 * Stops accepting. Open sessions may finish until the configured
 * shutdown_timeout; then they are told 421 and closed. done runs once no
 * session is left.
 */
void server_shutdown(struct server *srv, server_done_cb *done, void *arg);
size_t server_nsessions(const struct server *srv);
/* Closes everything at once. NULL is a no-op. */
void server_free(struct server *srv);

#endif
