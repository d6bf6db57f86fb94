/*
 * Internals shared by relay/server.c (listeners, sessions, commands),
 * relay/data.c (DATA and BDAT, the hand-off to the spool) and
 * relay/server_proxy.c (the PROXY protocol header before a session).
 * Nothing outside these files includes this.
 */
#ifndef MXSPOOL_SERVER_INT_H
#define MXSPOOL_SERVER_INT_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/conf.h"
#include "queue/envelope.h"
#include "queue/queue.h"
#include "relay/parse.h"
#include "relay/server.h"
#include "relay/tls.h"

#define SMTP_LINE_MAX 512 /* RFC 5321 4.5.3.1.4, including CRLF */

enum smtp_state {
	SMTP_ST_PROXY,    /* on a proxy_listen listener, before the header */
	SMTP_ST_GREET,    /* connected, no HELO/EHLO yet */
	SMTP_ST_READY,    /* HELO/EHLO done, no transaction */
	SMTP_ST_MAIL,     /* MAIL accepted, no recipient yet */
	SMTP_ST_RCPT,     /* at least one recipient accepted */
	SMTP_ST_DATA,     /* reading the DATA body */
	SMTP_ST_BDAT,     /* reading the bytes of a BDAT chunk */
	SMTP_ST_CHUNKING, /* between BDAT chunks */
	SMTP_ST_QUEUING,  /* waiting for the spool's commit */
	SMTP_ST_TLS,      /* TLS handshake in progress */
};

struct smtp_ticket;
struct hmap;

struct smtp_sess {
	TAILQ_ENTRY(smtp_sess) entry;
	struct server *srv;
	struct bufferevent *bev;
	struct event *reap; /* frees the session outside any callback */
	uint64_t sid;
	char id[16];                     /* "C%08x" */
	char peer[INET6_ADDRSTRLEN + 8]; /* "[addr]:port" */
	char addr[INET6_ADDRSTRLEN];
	bool ip_counted; /* counted in the server's per_ip under addr */
	/* Behind a proxy (proxy_listen): peer and addr are the client its
	 * header names, via is the proxy's "[addr]:port". */
	char via[INET6_ADDRSTRLEN + 8];
	struct event *proxy_wait; /* proxy_timeout, in SMTP_ST_PROXY */
	bool proxy_local;         /* LOCAL or UNKNOWN: no client, no mail */
	bool peer_link;  /* on peer_listen: a node handing its queue over */
	char name[256];  /* verified PTR name, "" while unknown */
	uint64_t ptr_id; /* the PTR lookup in flight, or 0 */
	enum smtp_state state;
	char helo[PARSE_HELO_MAX + 1];
	bool esmtp;
	bool tls;
	char tls_info[160];
	unsigned ncmds, nerrors, nmsgs;
	bool closing;         /* last reply queued; free once written */
	bool discard_line;    /* skipping the rest of an over-long line */
	bool eof;             /* the client shut its side: answer, then close */
	int64_t last_read_ms; /* monotonic ms of the client's last input */
	struct event *deadline; /* session_deadline, armed at connect */
	bool expired;           /* past it: 421 once the spool has answered */
	struct event *rate;     /* every min_data_rate_window in a body */
	uint64_t rate_bytes;    /* body bytes read in the current window */
	int64_t rate_window;    /* seconds, as armed */

	/* The transaction. */
	struct envelope *env;
	char qid[QID_SIZE];
	struct parse_data data;
	uint64_t bdat_left; /* bytes of the current chunk still to read */
	bool bdat_last;     /* the current chunk is the last */
	char bdat_err[PARSE_REPLY_SIZE]; /* "" or the sticky failure */
	size_t data_charged; /* bytes of data's buffer counted in the server's
				data_bytes */
	bool data_nomem;     /* past data_memory_limit: bytes read, dropped */
};

struct server {
	struct event_base *base;
	const struct conf *cf;
	struct queue *q;
	struct dns *dns; /* for client names; NULL: none looked up */
	struct tls_ctx *tls;
	struct listen_set *listeners;
	struct listen_set *proxy_listeners; /* proxy_listen; NULL: none */
	struct listen_set *peer_listeners;  /* peer_listen; NULL: none */
	struct event *accept_pause;
	struct event *deadline;
	TAILQ_HEAD(, smtp_sess) sessions;
	TAILQ_HEAD(, smtp_ticket) tickets;
	size_t nsessions;
	size_t nopen;        /* sessions not closing */
	struct hmap *per_ip; /* client address -> open sessions from it */
	/* Bytes of message data held for clients: the sessions' body buffers
	 * and the messages handed to the spool that it has not answered. */
	uint64_t data_bytes;
	uint64_t next_sid;
	server_done_cb *done;
	void *done_arg;
};

/* server.c */
void smtp_reply(struct smtp_sess *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtp_set_state(struct smtp_sess *s, enum smtp_state st);
void smtp_close_after(struct smtp_sess *s);
void smtp_reset_txn(struct smtp_sess *s);
void smtp_set_timeouts(struct smtp_sess *s);
void smtp_process(struct smtp_sess *s);
const char *smtp_logid(const struct smtp_sess *s);
/*
 * Logs a refusal in the shape Postfix log tools count: "ID: reject: CMD
 * from PEER: REPLY; from=<..> to=<..> proto=ESMTP helo=<..>", ID the
 * queue id once a recipient is accepted, else NOQUEUE; to may be NULL.
 */
void smtp_log_reject(const struct smtp_sess *s, const char *cmd,
    const char *reply, const char *to);
struct smtp_sess *smtp_sess_find(struct server *srv, uint64_t sid);
uint64_t smtp_size_limit(const struct conf *cf);
/* sa as "192.0.2.1" into addr and "[192.0.2.1]:25" into peer. */
void smtp_format_addr(const struct sockaddr *sa, char addr[INET6_ADDRSTRLEN],
    char peer[INET6_ADDRSTRLEN + 8]);
/*
 * A session's client is known (at accept, or from a PROXY header; sa is
 * its address): logs the connection, looks its name up, applies the
 * per-address and global connection limits and greets, or refuses.
 */
void smtp_admit(struct smtp_sess *s, const struct sockaddr *sa);
/* Whether the session reads a message body: DATA, or a BDAT transaction
 * (in a chunk or between chunks). */
bool smtp_in_body(enum smtp_state st);

/* server_proxy.c */
/*
 * A connection to a proxy_listen listener from sa: a source outside
 * proxy_trusted is closed at once; a trusted one has proxy_timeout to send
 * its header, and nothing is said to it before.
 */
void smtp_proxy_start(struct smtp_sess *s, const struct sockaddr *sa);
/* Reads the PROXY header from in, and admits the client it names; -1
 * while more is needed. */
int smtp_proxy_read(struct smtp_sess *s, struct evbuffer *in);

/* data.c */
int smtp_cmd_data(struct smtp_sess *s, char *args);
int smtp_cmd_bdat(struct smtp_sess *s, char *args);
/* Consumes body bytes from in; returns how many. */
size_t smtp_data_feed(struct smtp_sess *s, const char *in, size_t len);
/*
 * Brings the server's data_bytes up to date with what s's body buffer
 * holds now (its capacity, in bytes): after the buffer grows, is taken or
 * is freed.
 */
void smtp_data_account(struct smtp_sess *s);
/* Forgets pending spool answers of a server being freed. */
void smtp_tickets_orphan(struct server *srv);

#endif
