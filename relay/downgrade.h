/*
 * relay/downgrade: a message received with BODY=8BITMIME made fit for a
 * next hop that does not offer 8BITMIME (RFC 6152 3): the octets above
 * 127 are put into quoted-printable (text parts) or base64 (the others),
 * with the MIME structure, the boundaries and every part without 8-bit
 * data left as they were. GMime parses and writes; nothing here does I/O,
 * so the unit tests call it directly.
 */
#ifndef MXSPOOL_DOWNGRADE_H
#define MXSPOOL_DOWNGRADE_H

#include <stdbool.h>
#include <stddef.h>

/* Why a message cannot be converted, with the RFC 3463 code it gets. */
enum downgrade_status {
	DOWNGRADE_OK = 0,
	DOWNGRADE_SIGNED = -1, /* 5.6.3: 8-bit data under multipart/signed
				  (RFC 1847 5.1: re-encoding breaks it) */
	DOWNGRADE_HEADER = -2, /* 5.6.3: 8-bit octets in a header field */
	DOWNGRADE_FAILED = -3, /* 5.6.5: not parsed, too many parts, or the
				  result would not be 7 bit */
};

/* Initialises GMime, once per process; later calls do nothing. Call it at
 * start, on the loop thread (downgrade_to_7bit calls it too). */
void downgrade_init(void);
/* Whether every octet of data is below 128 (RFC 6152 2: what a hop
 * without 8BITMIME may be sent). */
bool downgrade_is_7bit(const char *data, size_t len);
/* The RFC 3463 code of a failure ("5.6.3", "5.6.5"). */
const char *downgrade_dsn(enum downgrade_status st);
/*
 * Converts a message (CRLF lines, not dot-stuffed) to 7 bit, RFC 6152 3:
 * each part with 8-bit content is decoded and written again as
 * quoted-printable if it is text/\*, else as base64, its
 * Content-Transfer-Encoding rewritten; a text part without a charset
 * gets charset=utf-8 (when its octets are UTF-8) or unknown-8bit (RFC
 * 1428); multiparts and message/rfc822 parts are converted part by part
 * (RFC 2045 6.4: they may not be encoded themselves) and their 8bit
 * Content-Transfer-Encoding becomes 7bit; a message without MIME-Version
 * is taken as text/plain (RFC 2045 5.2) and gets MIME headers. A
 * multipart/signed without 8-bit data is left alone; with some, the
 * whole message is refused (DOWNGRADE_SIGNED). 8-bit octets in a header
 * field are refused (DOWNGRADE_HEADER): they carry no charset to encode
 * them with (RFC 2047). On DOWNGRADE_OK, *out is the message
 * (malloc'd, *outlen bytes, CRLF lines, every octet below 128), owned by
 * the caller; otherwise why says what went wrong and *out is NULL.
 */
int downgrade_to_7bit(const char *data, size_t len, char **out, size_t *outlen,
    char *why, size_t whylen);

#endif
