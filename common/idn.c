/*
 * Domain names in A-label and U-label form (see idn.h). libidn2 does the
 * Unicode work; this file decides when to call it and checks what comes
 * back, since libidn2 passes empty labels, underscores and over-long names
 * through unchanged (it converts labels, it does not check host names).
 */
#include <idn2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/idn.h"

/* Longer input than this is refused before libidn2 sees it: no name in
 * U-labels that fits in 253 octets as A-labels is longer. */
#define IDN_INPUT_MAX (4 * IDN_NAME_MAX)

static void __attribute__((format(printf, 3, 4)))
idn_say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static bool
idn_is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Whether s has a label that starts with the ACE prefix "xn--". */
static bool
idn_has_alabel(const char *s)
{
	for (const char *p = s; p != NULL; p = strchr(p, '.')) {
		if (*p == '.')
			p++;
		if (strncasecmp(p, "xn--", 4) == 0)
			return true;
	}
	return false;
}

/* The host name rules (RFC 1123 2.1, RFC 5890 2.3.1) on an ASCII name. */
static int
idn_check_ldh(const char *s, char *why, size_t whylen)
{
	size_t len = strlen(s), label = 0;

	if (len == 0) {
		idn_say(why, whylen, "empty name");
		return -1;
	}
	if (len > IDN_NAME_MAX) {
		idn_say(
		    why, whylen, "name longer than %d octets", IDN_NAME_MAX);
		return -1;
	}
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0) {
				idn_say(why, whylen, "empty label");
				return -1;
			}
			if (p[-1] == '-') {
				idn_say(
				    why, whylen, "label ends with a hyphen");
				return -1;
			}
			if (*p == '\0')
				return 0;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '-')) {
			idn_say(why, whylen, "character '%c' not allowed", *p);
			return -1;
		}
		if (*p == '-' && label == 0) {
			idn_say(why, whylen, "label starts with a hyphen");
			return -1;
		}
		if (++label > 63) {
			idn_say(why, whylen, "label longer than 63 octets");
			return -1;
		}
	}
}

int
idn_to_ascii(
    const char *domain, char *out, size_t outlen, char *why, size_t whylen)
{
	char buf[IDN_NAME_SIZE];
	size_t len = strlen(domain);

	if (outlen > 0)
		out[0] = '\0';
	if (len > IDN_INPUT_MAX) {
		idn_say(
		    why, whylen, "name longer than %d octets", IDN_NAME_MAX);
		return -1;
	}
	if (idn_is_ascii(domain) && !idn_has_alabel(domain)) {
		/* LDH labels: no IDNA rules, which would refuse a label
		 * with "--" in its third and fourth places (RFC 5891
		 * 4.2.3.1) that DNS has always allowed. */
		if (len >= sizeof(buf)) {
			idn_say(why, whylen, "name longer than %d octets",
			    IDN_NAME_MAX);
			return -1;
		}
		for (size_t i = 0; i <= len; i++)
			buf[i] = (domain[i] >= 'A' && domain[i] <= 'Z')
				     ? (char)(domain[i] - 'A' + 'a')
				     : domain[i];
	} else {
		uint8_t *res = NULL;
		int rc = idn2_lookup_u8((const uint8_t *)domain, &res,
		    IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);

		if (rc == IDN2_PUNYCODE_BIG_OUTPUT ||
		    rc == IDN2_TOO_BIG_LABEL) {
			idn_say(why, whylen,
			    "label longer than 63 octets as an A-label");
			return -1;
		}
		if (rc == IDN2_TOO_BIG_DOMAIN) {
			idn_say(why, whylen, "name longer than %d octets",
			    IDN_NAME_MAX);
			return -1;
		}
		if (rc != IDN2_OK) {
			idn_say(why, whylen, "%s", idn2_strerror(rc));
			return -1;
		}
		len = strlen((const char *)res);
		if (len >= sizeof(buf)) {
			idn2_free(res);
			idn_say(why, whylen, "name longer than %d octets",
			    IDN_NAME_MAX);
			return -1;
		}
		for (size_t i = 0; i <= len; i++)
			buf[i] = (res[i] >= 'A' && res[i] <= 'Z')
				     ? (char)(res[i] - 'A' + 'a')
				     : (char)res[i];
		idn2_free(res);
	}
	if (idn_check_ldh(buf, why, whylen) < 0)
		return -1;
	if (len >= outlen) {
		idn_say(why, whylen, "name too long for its buffer");
		return -1;
	}
	memcpy(out, buf, len + 1);
	return 0;
}

int
idn_to_unicode(const char *domain, char *out, size_t outlen)
{
	char ace[IDN_NAME_SIZE];
	char *u = NULL;
	const char *src = ace;
	size_t len;

	if (outlen > 0)
		out[0] = '\0';
	if (idn_to_ascii(domain, ace, sizeof(ace), NULL, 0) < 0)
		return -1;
	if (idn_has_alabel(ace)) {
		if (idn2_to_unicode_8z8z(ace, &u, 0) != IDN2_OK)
			return -1;
		src = u;
	}
	len = strlen(src);
	if (len >= outlen) {
		idn2_free(u);
		return -1;
	}
	memcpy(out, src, len + 1);
	idn2_free(u);
	return 0;
}

bool
idn_other_form(const char *domain, char *out, size_t outlen)
{
	if (outlen > 0)
		out[0] = '\0';
	if (!idn_is_ascii(domain))
		return idn_to_ascii(domain, out, outlen, NULL, 0) == 0;
	if (!idn_has_alabel(domain))
		return false;
	return idn_to_unicode(domain, out, outlen) == 0;
}

const char *
idn_key(const char *domain, char buf[IDN_NAME_SIZE])
{
	if (idn_is_ascii(domain))
		return domain;
	if (idn_to_ascii(domain, buf, IDN_NAME_SIZE, NULL, 0) < 0)
		return domain;
	return buf;
}

bool
idn_equal(const char *a, const char *b)
{
	char ka[IDN_NAME_SIZE], kb[IDN_NAME_SIZE];

	return strcasecmp(idn_key(a, ka), idn_key(b, kb)) == 0;
}
