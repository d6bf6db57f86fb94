/*
 * relay/client: outbound SMTP and LMTP sessions that hand queued mail to
 * the next hop. A session connects to the candidates dns/ found (each
 * address of each host, in order, until one answers), greets (EHLO, HELO
 * as fallback; LHLO for LMTP), applies the destination's TLS policy, then
 * asks its owner for messages one at a time and reports a result for every
 * recipient. The owner (queue/sched.c, through queue/deliver.h) decides
 * what to send and when.
 *
 * All callbacks run on the loop. A callback may call client_session_free()
 * on its own session only from `closed`; elsewhere it may ask the session
 * to finish with client_session_quit().
 */
#ifndef MXSPOOL_CLIENT_H
#define MXSPOOL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/deliver.h"

/*
 * Starts a session: connects, greets, then calls next(). target and its
 * answer are borrowed until `closed` runs. Never fails synchronously: a
 * session that cannot even start reports it through `closed`, later.
 */
struct client_session *client_session_new(struct event_base *base,
    const struct client_target *target, const struct client_cbs *cbs,
    void *arg);
/* An idle session: there is work now, call next() again. */
void client_session_wake(struct client_session *cs);
/* Finish the message in progress (if any), then QUIT and close. */
void client_session_quit(struct client_session *cs);
/* Closes at once, without callbacks. NULL is a no-op. */
void client_session_free(struct client_session *cs);
/* "mx.example.com[192.0.2.1]:25", or the unix socket path; "none" before
 * a connection. For the delivery log line. */
const char *client_session_relay(const struct client_session *cs);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" when TLS is up, else NULL. */
const char *client_session_tls(const struct client_session *cs);

/* The functions above, for the scheduler (queue/deliver.h). */
extern const struct deliver_ops client_deliver_ops;

#endif
