/*
 * Internals of relay/client: the pure protocol pieces (client_proto.c:
 * reply parsing, EHLO keywords, command building, dot-stuffing) that the
 * session code (client.c) uses and the unit tests call directly. No
 * libevent or OpenSSL in client_proto.c.
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
/* "MAIL FROM:<s> SIZE=n BODY=8BITMIME ..." with the parameters ext allows;
 * malloc'd, without CRLF. */
char *client_mail_cmd(const struct client_msg *m, unsigned ext);
/* "RCPT TO:<a> NOTIFY=... ORCPT=..." (DSN parameters when ext has DSN). */
char *client_rcpt_cmd(const struct client_rcpt *r, unsigned ext);

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
