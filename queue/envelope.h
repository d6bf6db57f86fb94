/*
 * The envelope of a queued message and its versioned record encoding (the
 * value stored under the queue id in the spool's `meta` column family).
 * Pure code: no RocksDB, no libevent, so tests and fuzzers link it alone.
 */
#ifndef MXSPOOL_ENVELOPE_H
#define MXSPOOL_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/qid.h"

enum rcpt_state { RCPT_PENDING, RCPT_DELIVERED, RCPT_FAILED };

/* RFC 3461 NOTIFY: 0 means not given (the default: FAILURE,DELAY). */
#define NOTIFY_NEVER 0x1
#define NOTIFY_SUCCESS 0x2
#define NOTIFY_FAILURE 0x4
#define NOTIFY_DELAY 0x8

enum body_type { BODY_7BIT, BODY_8BITMIME, BODY_BINARYMIME };
enum dsn_ret { RET_DEFAULT, RET_FULL, RET_HDRS };

/* Envelope flags. */
#define ENV_HELD 0x1	   /* held by the operator: not scheduled */
#define ENV_SMTPUTF8 0x2   /* SMTPUTF8 given at MAIL */
#define ENV_DELAY_SENT 0x4 /* the delay DSN has been sent */
#define ENV_DSN 0x8	   /* a notification mxspool made: bounce_route */

struct env_rcpt {
	char *addr;  /* the recipient address, without < > */
	char *orcpt; /* ORCPT as given ("rfc822;user@example.com"), or NULL */
	unsigned notify;
	enum rcpt_state state;
	char *dsn_status; /* "5.1.1" etc. of the last answer, or NULL */
	char *last_error; /* the last answer or failure text, or NULL */
};

struct envelope {
	char qid[QID_SIZE];
	int64_t arrival;     /* unix time, microseconds */
	char *client_addr;   /* "192.0.2.1" */
	char *client_name;   /* PTR name or NULL */
	char *helo;	     /* as the client gave it, or NULL */
	char *sender;	     /* "" for the null sender <> */
	uint64_t size;	     /* body bytes as stored */
	enum body_type body;
	enum dsn_ret ret;
	char *envid;	     /* RFC 3461 ENVID (xtext as given), or NULL */
	uint32_t flags;	     /* ENV_* */
	uint32_t attempts;   /* delivery attempts made */
	int64_t last_attempt; /* unix time, seconds; 0 = never */
	int64_t next_attempt; /* unix time, seconds; 0 = now */
	char *last_error;     /* why the last attempt failed, or NULL */
	struct env_rcpt *rcpts;
	size_t nrcpts;
};

struct envelope *envelope_new(void);
/* Frees env and everything it points to. NULL is a no-op. */
void envelope_free(struct envelope *env);
/* Adds a recipient (copies addr and orcpt) and returns it. */
struct env_rcpt *envelope_add_rcpt(struct envelope *env, const char *addr,
    const char *orcpt, unsigned notify);
/* A deep copy. */
struct envelope *envelope_dup(const struct envelope *env);

/* Encodes env into a new malloc'd buffer of *len bytes. */
char *envelope_encode(const struct envelope *env, size_t *len);
/*
 * Decodes a record; on malformed input returns NULL and says why in why
 * (never crashes, whatever the bytes).
 */
struct envelope *envelope_decode(const char *buf, size_t len, char *why,
    size_t whylen);

const char *rcpt_state_str(enum rcpt_state st);

/*
 * Whether the header section of a message (data, len octets: up to the
 * first empty line, RFC 5322 2.1, or all of it when there is none) has
 * only ASCII octets, so that it needs no SMTPUTF8 (RFC 6531 3.4, RFC
 * 6532 3). A bare LF ends a line too.
 */
bool header_section_ascii(const char *data, size_t len);

#endif
