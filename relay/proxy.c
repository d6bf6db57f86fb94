/*
 * The PROXY protocol header (see proxy.h), after HAProxy's
 * doc/proxy-protocol.txt. Strict where the specification is: a v1 line is
 * US-ASCII ending in CRLF within 107 bytes, tokens separated by exactly
 * one space, IPv4 without leading zeros, ports in decimal without them;
 * a v2 header has version 2, a known command, family and transport, an
 * address block as long as its family needs and TLVs that fill the rest
 * exactly. Anything else is refused as soon as it cannot become valid, so
 * that a client that speaks SMTP first is dropped at its first bytes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "relay/proxy.h"

static const uint8_t proxy_v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char proxy_v1_sig[] = "PROXY ";

/* The v2 family (high nibble) and transport (low nibble) of byte 14. */
enum { PP2_AF_UNSPEC, PP2_AF_INET, PP2_AF_INET6, PP2_AF_UNIX };
enum { PP2_UNSPEC, PP2_STREAM, PP2_DGRAM };
/* Each family's address block, without TLVs. */
#define PP2_LEN_INET (2 * 4 + 2 * 2)
#define PP2_LEN_INET6 (2 * 16 + 2 * 2)
#define PP2_LEN_UNIX (2 * 108)

static int __attribute__((format(printf, 3, 4)))
proxy_bad(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return PROXY_BAD;
}

static uint16_t
proxy_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* An IPv4 address as v1 writes it: four decimals 0-255, no leading 0. */
static bool
proxy_v1_ipv4(const char *s, struct in_addr *a)
{
	const char *p = s;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, n = 0;

		for (; *p >= '0' && *p <= '9' && n < 4; p++, n++)
			v = v * 10 + (unsigned)(*p - '0');
		if (n == 0 || n > 3 || v > 255 || (n > 1 && p[-(int)n] == '0'))
			return false;
		if (part < 3 && *p++ != '.')
			return false;
	}
	return *p == '\0' && inet_pton(AF_INET, s, a) == 1;
}

/* An IPv6 address as v1 writes it: hex groups and colons (one "::"). */
static bool
proxy_v1_ipv6(const char *s, struct in6_addr *a)
{
	if (strlen(s) > 39 || strspn(s, "0123456789abcdefABCDEF:") != strlen(s))
		return false;
	return inet_pton(AF_INET6, s, a) == 1;
}

/* A port: 0-65535 in decimal, no leading 0. */
static bool
proxy_v1_port(const char *s, uint16_t *port)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5 || strspn(s, "0123456789") != n ||
	    (n > 1 && s[0] == '0'))
		return false;
	for (; *s; s++)
		v = v * 10 + (unsigned)(*s - '0');
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

static void
proxy_set_in(struct sockaddr_storage *ss, socklen_t *len,
    const struct in_addr *a, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_addr = *a;
	sin->sin_port = htons(port);
	*len = sizeof(*sin);
}

static void
proxy_set_in6(struct sockaddr_storage *ss, socklen_t *len,
    const struct in6_addr *a, uint16_t port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr = *a;
	sin6->sin6_port = htons(port);
	*len = sizeof(*sin6);
}

/*
 * "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", or
 * "PROXY UNKNOWN" and anything up to CRLF.
 */
static int
proxy_v1(const uint8_t *buf, size_t len, struct proxy_hdr *out,
    size_t *consumed, char *why, size_t whylen)
{
	char line[PROXY_V1_MAX + 1], *tok[7], *p;
	size_t n = 0, end = 0, ntok = 0;
	struct in_addr a4[2];
	struct in6_addr a6[2];
	uint16_t port[2];
	bool v6;

	/* The line, CRLF and only CRLF ending it, within 107 bytes. */
	for (; n < len && n < PROXY_V1_MAX; n++) {
		uint8_t c = buf[n];

		if (c == '\n')
			return proxy_bad(why, whylen, "v1: LF without CR");
		if (c == '\r') {
			if (n + 2 > PROXY_V1_MAX)
				break; /* no room left for the LF */
			if (n + 1 == len)
				return PROXY_MORE;
			if (buf[n + 1] != '\n')
				return proxy_bad(
				    why, whylen, "v1: CR without LF");
			end = n;
			break;
		}
		if (c < 0x20 || c > 0x7e)
			return proxy_bad(
			    why, whylen, "v1: byte 0x%02x in the line", c);
	}
	if (end == 0) {
		if (n >= PROXY_V1_MAX - 1)
			return proxy_bad(why, whylen,
			    "v1: no CRLF in the first %d bytes", PROXY_V1_MAX);
		return PROXY_MORE;
	}
	memcpy(line, buf, end);
	line[end] = '\0';
	*consumed = end + 2; /* kept by proxy_parse only if valid */

	/* Tokens separated by exactly one space. */
	for (p = line; ntok < sizeof(tok) / sizeof(tok[0]);) {
		tok[ntok++] = p;
		p = strchr(p, ' ');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	if (strcmp(tok[0], "PROXY") != 0 || ntok < 2)
		return proxy_bad(why, whylen, "v1: no protocol");
	out->version = 1;
	if (strcmp(tok[1], "UNKNOWN") == 0) {
		/* The rest of the line is ignored, as the specification says.
		 */
		out->local = true;
		return PROXY_OK;
	}
	if (strcmp(tok[1], "TCP4") == 0)
		v6 = false;
	else if (strcmp(tok[1], "TCP6") == 0)
		v6 = true;
	else
		return proxy_bad(
		    why, whylen, "v1: unknown protocol '%.8s'", tok[1]);
	if (ntok != 6 || p != NULL)
		return proxy_bad(why, whylen,
		    "v1: not 4 fields after %s, one space apart", tok[1]);
	for (int i = 0; i < 2; i++) {
		if (v6 ? !proxy_v1_ipv6(tok[2 + i], &a6[i])
		       : !proxy_v1_ipv4(tok[2 + i], &a4[i]))
			return proxy_bad(why, whylen, "v1: bad %s address",
			    i == 0 ? "source" : "destination");
		if (!proxy_v1_port(tok[4 + i], &port[i]))
			return proxy_bad(why, whylen, "v1: bad %s port",
			    i == 0 ? "source" : "destination");
	}
	if (v6) {
		proxy_set_in6(&out->src, &out->srclen, &a6[0], port[0]);
		proxy_set_in6(&out->dst, &out->dstlen, &a6[1], port[1]);
	} else {
		proxy_set_in(&out->src, &out->srclen, &a4[0], port[0]);
		proxy_set_in(&out->dst, &out->dstlen, &a4[1], port[1]);
	}
	return PROXY_OK;
}

/* The TLVs filling buf exactly: each type, 16-bit length, value. */
static int
proxy_v2_tlvs(const uint8_t *buf, size_t len, struct proxy_hdr *out, char *why,
    size_t whylen)
{
	size_t off = 0;

	while (off < len) {
		size_t vlen;

		if (len - off < 3)
			return proxy_bad(why, whylen, "v2: truncated TLV");
		vlen = proxy_be16(buf + off + 1);
		if (vlen > len - off - 3)
			return proxy_bad(why, whylen,
			    "v2: TLV 0x%02x of %zu bytes past the header",
			    buf[off], vlen);
		off += 3 + vlen;
		out->ntlvs++;
	}
	return PROXY_OK;
}

static int
proxy_v2(const uint8_t *buf, size_t len, struct proxy_hdr *out,
    size_t *consumed, char *why, size_t whylen)
{
	const uint8_t *a = buf + PROXY_V2_HEAD;
	unsigned ver, cmd, fam, proto;
	size_t alen, need;
	struct in_addr a4[2];
	struct in6_addr a6[2];

	/* Refuse a bad version or command before the rest has come. */
	if (len <= 12)
		return PROXY_MORE;
	ver = buf[12] >> 4;
	cmd = buf[12] & 0xf;
	if (ver != 2)
		return proxy_bad(why, whylen, "v2: version %u", ver);
	if (cmd > 1)
		return proxy_bad(why, whylen, "v2: command %u", cmd);
	if (len < PROXY_V2_HEAD)
		return PROXY_MORE;
	alen = proxy_be16(buf + 14);
	if (PROXY_V2_HEAD + alen > PROXY_MAX)
		return proxy_bad(why, whylen,
		    "v2: header of %zu bytes, over the limit of %d",
		    PROXY_V2_HEAD + alen, PROXY_MAX);
	if (len < PROXY_V2_HEAD + alen)
		return PROXY_MORE;
	*consumed = PROXY_V2_HEAD + alen;
	out->version = 2;
	if (cmd == 0) {
		/* LOCAL: the block, family included, is skipped unread. */
		out->local = true;
		return PROXY_OK;
	}
	fam = buf[13] >> 4;
	proto = buf[13] & 0xf;
	if (fam > PP2_AF_UNIX || proto > PP2_DGRAM)
		return proxy_bad(
		    why, whylen, "v2: family and transport 0x%02x", buf[13]);
	/*
	 * TCP over IPv4 or IPv6 names the client. Anything else (UNSPEC,
	 * UDP, a Unix socket) names none we could use: the connection's own
	 * endpoints count, as the specification allows, and the block is
	 * skipped once its addresses are known to fit.
	 */
	need = fam == PP2_AF_INET    ? PP2_LEN_INET
	       : fam == PP2_AF_INET6 ? PP2_LEN_INET6
	       : fam == PP2_AF_UNIX  ? PP2_LEN_UNIX
				     : 0;
	if (proto == PP2_UNSPEC)
		need = 0;
	if (alen < need)
		return proxy_bad(why, whylen,
		    "v2: %zu address bytes for family and transport 0x%02x, "
		    "which needs %zu",
		    alen, buf[13], need);
	if (proto != PP2_STREAM ||
	    (fam != PP2_AF_INET && fam != PP2_AF_INET6)) {
		out->local = true;
		return PROXY_OK;
	}
	if (fam == PP2_AF_INET) {
		memcpy(&a4[0], a, 4);
		memcpy(&a4[1], a + 4, 4);
		proxy_set_in(
		    &out->src, &out->srclen, &a4[0], proxy_be16(a + 8));
		proxy_set_in(
		    &out->dst, &out->dstlen, &a4[1], proxy_be16(a + 10));
	} else {
		memcpy(&a6[0], a, 16);
		memcpy(&a6[1], a + 16, 16);
		proxy_set_in6(
		    &out->src, &out->srclen, &a6[0], proxy_be16(a + 32));
		proxy_set_in6(
		    &out->dst, &out->dstlen, &a6[1], proxy_be16(a + 34));
	}
	return proxy_v2_tlvs(a + need, alen - need, out, why, whylen);
}

int
proxy_parse(const uint8_t *buf, size_t len, struct proxy_hdr *out,
    size_t *consumed, char *why, size_t whylen)
{
	size_t n, n1;
	int rc;

	memset(out, 0, sizeof(*out));
	*consumed = 0;
	if (whylen > 0)
		why[0] = '\0';
	if (len == 0)
		return PROXY_MORE;
	/* Each signature as far as the bytes go: one must match. */
	n = len < sizeof(proxy_v2_sig) ? len : sizeof(proxy_v2_sig);
	n1 = len < sizeof(proxy_v1_sig) - 1 ? len : sizeof(proxy_v1_sig) - 1;
	if (memcmp(buf, proxy_v2_sig, n) == 0)
		rc = n < sizeof(proxy_v2_sig)
			 ? PROXY_MORE
			 : proxy_v2(buf, len, out, consumed, why, whylen);
	else if (memcmp(buf, proxy_v1_sig, n1) == 0)
		rc = n1 < sizeof(proxy_v1_sig) - 1
			 ? PROXY_MORE
			 : proxy_v1(buf, len, out, consumed, why, whylen);
	else
		rc = proxy_bad(why, whylen, "not a PROXY protocol header");
	if (rc != PROXY_OK) {
		memset(out, 0, sizeof(*out));
		*consumed = 0;
	}
	return rc;
}
