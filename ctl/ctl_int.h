/*
 * Internals shared by ctl/ctl.c (the socket, framing and connections)
 * and ctl/ctl_cmd.c (the commands).
 */
#ifndef MXSPOOL_CTL_INT_H
#define MXSPOOL_CTL_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctl/ctl.h"
#include "queue/qid.h"

struct ctl_conn;

/*
 * A streamed reply's producer: called whenever the connection's output has
 * drained below a low mark. It writes a bounded batch (ctl_send) and
 * returns; once everything is out it ends the request (ctl_reply) and
 * returns 1. Returns 0 to be called again, or -1 while it waits for data
 * (read from the spool): ctl_stream_kick then calls it again.
 */
typedef int ctl_pump_cb(struct ctl_conn *k, void *state);

struct ctl_ctx {
	struct ctl *c;
	const struct conf *cf;
	const struct ctl_deps *deps;
	ctl_reload_cb *reload;
	void *reload_arg;
};

/* The context of the ctl a connection belongs to. */
const struct ctl_ctx *ctl_conn_ctx(const struct ctl_conn *k);
/* A connection's id, for async callbacks to find it again. */
uint64_t ctl_conn_id(const struct ctl_conn *k);
/* Whether c has not been freed (an answer may come after, at shutdown). */
bool ctl_is_live(const struct ctl *c);
/* The connection with that id, or NULL once it is gone. */
struct ctl_conn *ctl_conn_find(struct ctl *c, uint64_t id);
/* The control socket listened on now. */
const char *ctl_socket_path(const struct ctl *c);
/* Bytes waiting in the connection's output. */
size_t ctl_conn_pending(const struct ctl_conn *k);

/* Ends the request in progress with {"id", "result": result} (stolen). */
void ctl_reply(struct ctl_conn *k, json_t *result);
/* Ends the request in progress with {"id", "error": {code, message}}. */
void ctl_error(struct ctl_conn *k, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line of a streamed reply: {"id", key: v} (v stolen). */
void ctl_send(struct ctl_conn *k, const char *key, json_t *v);
/* Hands the rest of the request to pump; free_state(state) runs when the
 * request ends or the client leaves. */
void ctl_stream(struct ctl_conn *k, ctl_pump_cb *pump, void *state,
    void (*free_state)(void *));

/* Data came for a streamed reply that waits: it goes on writing. */
void ctl_stream_kick(struct ctl_conn *k);

/* The event loop the control socket runs on. */
struct event_base *ctl_base(const struct ctl *c);

/*
 * xfer.c: hands the messages qids (n of them; the array is taken) over
 * to the peer at the route `to` (smtp:[HOST]:PORT, a peer_listen), then
 * answers k's request with what was transferred, failed and skipped;
 * skips (taken) lists what the selection skipped already.
 */
void xfer_run(struct ctl_conn *k, const char *to, char (*qids)[QID_SIZE],
    size_t n, json_t *skips);

/* Runs one request (ctl/ctl_cmd.c); req is borrowed. */
void ctl_dispatch(struct ctl_conn *k, const char *cmd, json_t *req);

#endif
