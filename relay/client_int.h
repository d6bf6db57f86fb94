/*
 * Internals of relay/client, shared by its files and the unit tests:
 * client_proto.c (pure: reply parsing, EHLO keywords, command building,
 * dot-stuffing; no libevent or OpenSSL), client.c (the connection, the
 * state changes, the libevent callbacks, the public interface),
 * client_txn.c (what each reply means, the transaction, the results) and
 * client_tls.c (OpenSSL). Nothing outside relay/client*.c and its tests
 * includes this.
 */
#ifndef MXSPOOL_CLIENT_INT_H
#define MXSPOOL_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/client.h"

/* EHLO keywords the client acts on. */
#define CLIENT_EXT_PIPELINING 0x001
#define CLIENT_EXT_SIZE 0x002
#define CLIENT_EXT_8BITMIME 0x004
#define CLIENT_EXT_STARTTLS 0x008
#define CLIENT_EXT_DSN 0x010
#define CLIENT_EXT_SMTPUTF8 0x020
#define CLIENT_EXT_ENHANCED 0x040
#define CLIENT_EXT_CHUNKING 0x080
#define CLIENT_EXT_BINARYMIME 0x100
#define CLIENT_EXT_ARRIVAL 0x200 /* XMXSPOOL-ARRIVAL: a peer_listen */

/* Bounds on what a server may send us (RFC 5321 4.5.3.1.5 says 512 per
 * line; real servers send longer, so allow some slack). */
#define CLIENT_LINE_MAX 2048
#define CLIENT_REPLY_LINES 64
#define CLIENT_TEXT_MAX 1024

/* One (possibly multi-line) reply, built a line at a time. */
struct client_reply {
	int code;      /* 200..599 once the first line came */
	bool done;     /* the last line ("250 ...") came */
	size_t nlines; /* lines kept; later ones are counted, not kept */
	size_t nextra;
	char *lines[CLIENT_REPLY_LINES]; /* the text after "250-"/"250 " */
};

void client_reply_init(struct client_reply *r);
/* Frees the lines and makes r empty again. */
void client_reply_fini(struct client_reply *r);
/*
 * Adds one line, without its line end. Returns 0 (r->done once the last
 * line came), or -1 when the line is not a reply line or does not match
 * the code of the lines before it.
 */
int client_reply_add(struct client_reply *r, const char *line, size_t len);
/*
 * The RFC 3463 enhanced status code at the start of text ("5.1.1 ..."),
 * when its class agrees with code: written to dsn, true. Else false.
 */
bool client_parse_esc(int code, const char *text, char *dsn, size_t dsnlen);
/* The reply's enhanced status code, else "2.0.0", "4.0.0" or "5.0.0". */
void client_reply_dsn(const struct client_reply *r, char *dsn, size_t dsnlen);
/* "550 5.1.1 first line second line", bounded; malloc'd. */
char *client_reply_text(const struct client_reply *r);
/* The CLIENT_EXT_* bits of an EHLO/LHLO reply, and the SIZE limit (0 when
 * none or unlimited). */
unsigned client_ehlo_parse(const struct client_reply *r, uint64_t *size);

/*
 * The message as sent after DATA: every line that starts with "." gets
 * another one (RFC 5321 4.5.2), a CRLF is added if the data does not end
 * with one, then ".\r\n". Malloc'd, *outlen bytes.
 */
char *client_dot_stuff(const char *data, size_t len, size_t *outlen);
/* "MAIL FROM:<s> SIZE=n BODY=8BITMIME ..." with the parameters ext allows
 * (a hop without 8BITMIME or SMTPUTF8 gets no BODY= or SMTPUTF8: the
 * caller has made the message fit, RFC 6152 3, RFC 6531 3.4); size is
 * the octets that will be sent, after any conversion (RFC 1870 4);
 * malloc'd, without CRLF. */
char *client_mail_cmd(const struct client_msg *m, size_t size, unsigned ext);
/*
 * addr for a hop without SMTPUTF8 (RFC 6531 3.2): NULL in *out when it is
 * ASCII already; its domain in A-labels (malloc'd, in *out) when only
 * the domain is not. Returns -1 when no ASCII form exists (a non-ASCII
 * local part, an invalid domain), else 0.
 */
int client_addr_ascii(const char *addr, char **out);
/* Frees what a transaction converted (body, addresses). */
void client_txn_clear(struct client_session *cs);
/* "RCPT TO:<a> NOTIFY=... ORCPT=..." (DSN parameters when ext has DSN); to
 * a hop without SMTPUTF8, the ORCPT as client_orcpt_7bit makes it. */
char *client_rcpt_cmd(const struct client_rcpt *r, unsigned ext);
/*
 * An ORCPT (as stored: addr-type;xtext) for a hop without SMTPUTF8: an
 * "rfc822" one whose xtext decodes to more than ASCII is no rfc822
 * address, and goes as "utf-8;" in RFC 6533 3's utf-8-addr-xtext form
 * ("\x{E9}"), which a hop without SMTPUTF8 may be given; others as
 * they are. NULL when the octets are not UTF-8 (the ORCPT is then left
 * out: it is optional, RFC 3461 4.2). Malloc'd.
 */
char *client_orcpt_7bit(const char *orcpt);

/* ---- the session (client.c, client_txn.c) ------------------------------ */

struct bufferevent;
struct event;
struct event_base;

/* Defaults for target fields left at zero (RFC 5321 4.5.3.2). */
#define CLIENT_DEF_CONNECT 30
#define CLIENT_DEF_COMMAND 300
#define CLIENT_DEF_DATA 180
#define CLIENT_DEF_FINAL 600

enum cs_state {
	CS_CONNECT,     /* TCP or unix connect in progress */
	CS_GREETING,    /* waiting for 220 */
	CS_EHLO,        /* EHLO or LHLO sent */
	CS_HELO,        /* HELO sent after EHLO was refused */
	CS_STARTTLS,    /* STARTTLS sent */
	CS_TLS,         /* handshake in progress */
	CS_READY,       /* asking the owner for a message (transient) */
	CS_IDLE,        /* waiting for client_session_wake() */
	CS_MAIL,        /* MAIL sent (and with PIPELINING, the rest) */
	CS_RCPT,        /* waiting for the reply to RCPT number rcpt_i */
	CS_DATA,        /* waiting for 354 */
	CS_DOT,         /* body sent: waiting for the final reply(ies) */
	CS_DOT_DISCARD, /* 354 with no recipient: an empty body sent */
	CS_RSET,        /* RSET sent */
	CS_QUIT,        /* QUIT sent */
	CS_DONE,        /* closed; `closed` is scheduled */
};

struct client_session {
	struct event_base *base;
	const struct client_target *t;
	struct client_cbs cbs;
	void *arg;
	char id[16]; /* "O%08x", for the log before a message is known */
	enum cs_state st;
	struct bufferevent *bev;
	struct event *ev_closed; /* runs `closed` from an event of its own */
	struct event *ev_work;   /* wake: ask the owner again */
	struct event *ev_idle;   /* the idle timeout */

	/* The candidate being tried. */
	size_t host_i, addr_i;
	bool tried_any;
	bool not_refused; /* a candidate connected, or failed otherwise than
			     by a refused connection */
	bool plain_retry; /* TLS `may` failed here: again, without TLS */
	char name[256];   /* "mx.example.com[192.0.2.1]" or the path */
	char relay[300];  /* "mx.example.com[192.0.2.1]:25" or the path */
	char host[256];   /* the name certificates are checked against */

	/* The connection. */
	bool tls_on;
	char tls_desc[128];
	unsigned ext;
	uint64_t size_limit;
	struct client_reply reply;
	unsigned nmsgs;
	bool peer_closed; /* the server closed: a 421 or end of file */
	bool quit_req;
	bool woken;    /* a wake came while the owner was asked */
	bool in_owner; /* inside next() or done() */

	/* The transaction. */
	struct client_msg *msg;
	bool *accepted; /* per rcpt: 2xx to RCPT, final reply still due */
	bool *final;    /* per rcpt: the result is set */
	size_t rcpt_i, lmtp_i, naccepted;
	bool mail_ok, pipelined, bdat, body_queued, body_sent;
	/* What goes on the wire: msg's own octets, or their 7-bit
	 * conversion (RFC 6152 3) in conv, owned, freed with the
	 * transaction; SIZE= and the size check use out_len. */
	const char *out;
	size_t out_len;
	char *conv;
	/* For a hop without SMTPUTF8: the envelope with its domains in
	 * A-labels (RFC 5890), owned, freed with the transaction; NULL where
	 * an address goes as stored. */
	char *sender7;
	char **rcpt7;
	size_t nrcpt7;

	struct client_end end;
};

/* client.c */
void client_set_state(struct client_session *cs, enum cs_state st);
const char *client_logid(const struct client_session *cs);
/* Why the session failed (cs->end.text): at info level, but in a probe
 * only at debug level, as its outcome is logged by the scheduler. */
void client_log_failure(const struct client_session *cs);
int64_t client_secs(int64_t v, int64_t def);
void client_timeouts(struct client_session *cs, int64_t rd, int64_t wr);
void client_send(struct client_session *cs, const char *cmd);
/* This candidate failed before its greeting: returns CS_CONNECT, which
 * tries the next one. */
enum cs_state client_next_candidate(struct client_session *cs);

/* client_txn.c */
const char *client_state_str(enum cs_state st);
/* What the session was doing, for "... timed out while PHASE". */
const char *client_phase(const struct client_session *cs);
void client_set_end(struct client_session *cs, int code, const char *dsn,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * The session cannot go on: the message in progress gets code/dsn/text
 * (or the reply) on every recipient still open. Returns CS_DONE.
 */
enum cs_state client_abort(struct client_session *cs, int code, const char *dsn,
    const char *text, const struct client_reply *rep);
/* Entering CS_READY: asks the owner for the next message. */
void client_ready(struct client_session *cs);
/* Entering CS_MAIL: MAIL, and with PIPELINING every RCPT and DATA too. */
void client_start_msg(struct client_session *cs);
void client_send_rcpt(struct client_session *cs, size_t i);
/* Writes the body: dot-stuffed after DATA, or as one BDAT chunk. */
void client_write_body(struct client_session *cs);
/* A complete reply in the current state: returns the next state. */
enum cs_state client_step(
    struct client_session *cs, const struct client_reply *r);

/* client_tls.c: the STARTTLS side (the only part that sees OpenSSL). */
struct bufferevent;
struct event_base;
/*
 * Starts a client handshake over under, which the returned bufferevent
 * takes over. With verify, the chain is checked against ca_file (NULL:
 * the system store) and the certificate against host (a name or an
 * address literal). NULL with a reason in err on failure (under is then
 * still the caller's).
 */
struct bufferevent *client_tls_wrap(struct event_base *base,
    struct bufferevent *under, const char *host, bool verify,
    const char *ca_file, char *err, size_t errlen);
/* Why the handshake on bev failed: the certificate check, else OpenSSL. */
void client_tls_failure(
    struct bufferevent *bev, bool verify, char *buf, size_t len);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384". */
void client_tls_describe(struct bufferevent *bev, char *buf, size_t len);

#endif
