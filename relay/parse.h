/*
 * The SMTP protocol parser: commands, addresses, ESMTP parameters, the DATA
 * decoder and the Received header. Pure code: no I/O, no libevent, so that
 * unit tests and fuzzers link it alone.
 *
 * A function that rejects its input writes the whole reply line to send
 * (code, enhanced status code, text; no CRLF) into the caller's buffer.
 */
#ifndef MXSPOOL_PARSE_H
#define MXSPOOL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue/envelope.h"

#define PARSE_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define PARSE_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define PARSE_PATH_MAX 256   /* RFC 5321 4.5.3.1.3, with the < > */
#define PARSE_ADDR_SIZE (PARSE_PATH_MAX + 1)
#define PARSE_ENVID_MAX 100 /* RFC 3461 4.4 */
#define PARSE_ORCPT_MAX 500 /* RFC 3461 4.2 */
#define PARSE_HELO_MAX 255
#define PARSE_TEXT_LINE_MAX 1000 /* RFC 5321 4.5.3.1.6, with the CRLF */

/* The reply buffer size that every rejection fits in. */
#define PARSE_REPLY_SIZE 160

/* MAIL FROM: the reverse path and its parameters. */
struct parse_mail {
	char addr[PARSE_ADDR_SIZE]; /* "local@domain"; "" for <> */
	bool has_size;
	uint64_t size; /* SIZE=; saturates at UINT64_MAX */
	enum body_type body;
	enum dsn_ret ret;
	bool has_envid;
	char envid[PARSE_ENVID_MAX + 1]; /* xtext, as given */
	bool smtputf8;
	bool eight_bit; /* the address has UTF-8 in it */
	/* ARRIVAL= (XMXSPOOL-ARRIVAL, peer_listen only: the caller refuses
	 * it elsewhere): the first arrival, unix seconds, 0 if not given. */
	int64_t arrival;
};

/* RCPT TO: the forward path and its parameters. */
struct parse_rcpt {
	char addr[PARSE_ADDR_SIZE];        /* "local@domain", byte for byte */
	char local[PARSE_LOCAL_MAX + 1];   /* unquoted */
	char domain[PARSE_DOMAIN_MAX + 1]; /* lower case (ASCII); "" */
	bool postmaster; /* <Postmaster> with no domain (RFC 5321 4.5.1) */
	unsigned notify; /* NOTIFY_*; 0: not given */
	bool has_orcpt;
	char orcpt[PARSE_ORCPT_MAX + 1]; /* "rfc822;xtext", as given */
};

/*
 * Splits "VERB args" in place: returns the verb (NUL-terminated) and sets
 * *args to what follows the first space ("" if nothing).
 */
char *parse_split(char *line, char **args);

/*
 * HELO/EHLO: exactly one word of printable ASCII or UTF-8, at most 255
 * octets, copied to out (of PARSE_HELO_MAX + 1 bytes).
 */
int parse_helo(const char *verb, const char *args, char *out, char *reply,
    size_t replylen);

/* args is what follows "MAIL " ("FROM:<a@b> SIZE=10"). */
int parse_mail(
    const char *args, struct parse_mail *out, char *reply, size_t replylen);

/*
 * args is what follows "RCPT ". The address is kept as given, a quoted
 * local part (RFC 5321 4.1.2) with its quotes and backslashes. Source
 * routes, % hacks, bang paths, @ % or ! inside a quoted local part (a next
 * hop could read them as a route) and address literals are refused (553
 * 5.1.3), as is UTF-8 when the transaction is not SMTPUTF8 (553 5.6.7).
 * "<Postmaster>" without a domain, in any case, is taken (RFC 5321 4.5.1)
 * and flagged: the caller names its real address; domain is then "".
 */
int parse_rcpt(const char *args, bool smtputf8, struct parse_rcpt *out,
    char *reply, size_t replylen);

/* What parse_bdat found: whether the chunk can still be read past. */
enum parse_bdat_status {
	PARSE_BDAT_OK = 0,
	PARSE_BDAT_NOSIZE = -1, /* no size, or over 2^64 - 1: unframed */
	PARSE_BDAT_BADARG = -2, /* *size is known; what follows is wrong */
};

/*
 * "BDAT size [LAST]" (RFC 3030 2): size in octets, leading zeros and
 * extra blanks allowed, LAST in any case. Returns an enum parse_bdat_status;
 * on failure reply holds the 501 to give.
 */
int parse_bdat(
    const char *args, uint64_t *size, bool *last, char *reply, size_t replylen);

/*
 * The DATA decoder: removes dot-stuffing and finds the end of data. Only
 * CRLF "." CRLF ends it; a bare CR or LF anywhere is kept, counted and
 * makes the message unacceptable (no SMTP smuggling). Stores at most limit
 * bytes and counts the rest.
 */
struct parse_data {
	int state;
	char *buf; /* decoded bytes, xmalloc'd; the caller takes it */
	size_t len, cap;
	uint64_t total; /* decoded bytes including those not stored */
	uint64_t limit;
	unsigned bare_cr, bare_lf;
	unsigned long_lines; /* over PARSE_TEXT_LINE_MAX, kept as they are */
	size_t line_len;
};

void parse_data_init(struct parse_data *d, uint64_t limit);
/*
 * Consumes up to len bytes of in; returns how many. *done becomes true
 * when the end of data was found (the bytes after it are not consumed).
 */
size_t parse_data_feed(
    struct parse_data *d, const char *in, size_t len, bool *done);
/*
 * Appends a BDAT chunk as it is (no dot-stuffing), counting bare CRs and
 * LFs as DATA does; last says it is the final chunk.
 */
void parse_data_raw(
    struct parse_data *d, const char *in, size_t len, bool last);
/* Hands over the decoded buffer (may be NULL if empty) and resets d. */
char *parse_data_take(struct parse_data *d, size_t *len);
/*
 * The capacity, in bytes, d's buffer would have after storing n more
 * decoded bytes (n bounds what n bytes of input decode to): d->cap if no
 * growth is needed.
 */
size_t parse_data_grown_cap(const struct parse_data *d, size_t n);
/*
 * Frees the buffer and stores nothing more: the decoder still finds the
 * end of data and counts bytes and bare newlines, so the message can be
 * read to its end and refused.
 */
void parse_data_drop(struct parse_data *d);
void parse_data_fini(struct parse_data *d);

/*
 * A bare CR or LF scanner for BDAT chunks, which carry no dot-stuffing but
 * are relayed later with DATA: *cr carries "the last byte was CR" across
 * chunks. Returns how many bare CRs and LFs buf has.
 */
unsigned parse_bare_newlines(const char *buf, size_t len, bool *cr);

/* The number of Received: header fields in the header section of msg. */
unsigned parse_count_received(const char *msg, size_t len);

/*
 * The first Message-ID field's body (RFC 5322 3.6.4) in msg's header
 * section, unfolded, without leading and trailing white space, and with
 * anything but printable ASCII turned into '?', for the log: into out
 * (truncated to outlen - 1 octets). False if there is none or it is
 * empty.
 */
bool parse_message_id(const char *msg, size_t len, char *out, size_t outlen);

/* What the Received header says. */
struct parse_trace {
	const char *helo;     /* as the client gave it, or NULL */
	const char *addr;     /* client address, "192.0.2.1" or "2001:db8::1" */
	const char *name;     /* its verified PTR name, or NULL: "unknown" */
	const char *by;       /* our host name */
	const char *node;     /* our node_id, or NULL */
	const char *protocol; /* "ESMTP", "ESMTPS", "SMTP", "UTF8SMTPS", ... */
	const char *qid;
	const char *tls;  /* "TLSv1.3 with cipher X (256/256 bits)" or NULL */
	const char *rcpt; /* the one recipient, or NULL */
	time_t when;
};

/* Formats a Received header (RFC 5321 4.4), folded, ending in CRLF:
 * "by HOST (mxspool node NODE) with ...", the node in a comment. */
char *parse_received(const struct parse_trace *t, size_t *len);

#endif
