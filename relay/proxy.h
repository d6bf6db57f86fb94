/*
 * The PROXY protocol header, versions 1 (text) and 2 (binary), as HAProxy's
 * doc/proxy-protocol.txt specifies it: what a proxy in front of a
 * proxy_listen listener says about the client it relays. Pure code: no
 * I/O, no libevent, so that tests and the fuzzer link it alone.
 */
#ifndef MXSPOOL_PROXY_H
#define MXSPOOL_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest v1 line, CRLF included (the specification's worst case). */
#define PROXY_V1_MAX 107
/* The fixed part of a v2 header, before its address block and TLVs. */
#define PROXY_V2_HEAD 16
/*
 * The longest v2 header taken, TLVs included: as much as HAProxy itself
 * reads as a receiver (its default tune.bufsize). The length field allows
 * 16 + 65535; a longer header is refused rather than buffered.
 */
#define PROXY_MAX 16384

enum proxy_status {
	PROXY_OK = 0,
	PROXY_MORE = -1, /* a valid start: the rest has not come yet */
	PROXY_BAD = -2,  /* not a header, or not a valid one */
};

/* What a valid header says. */
struct proxy_hdr {
	int version; /* 1 or 2 */
	/*
	 * No client to substitute: v2 LOCAL (the proxy's own connection, a
	 * health check), v1 UNKNOWN, or v2 PROXY for a family or transport
	 * other than TCP over IPv4 or IPv6. The addresses are then unset, and
	 * the connection's own endpoints are the ones that count.
	 */
	bool local;
	struct sockaddr_storage src, dst; /* AF_INET or AF_INET6, ports set */
	socklen_t srclen, dstlen;
	unsigned ntlvs; /* v2: TLVs seen (all skipped) */
};

/*
 * Parses the header at the start of buf (len bytes, of which the header
 * may be only a part so far); returns an enum proxy_status.
 * PROXY_OK: *out is filled and *consumed is the header's exact length,
 * so that nothing after it is taken. PROXY_MORE: no verdict yet, read
 * more (never said of PROXY_MAX bytes). PROXY_BAD: why says what is
 * wrong, for the log (truncated to whylen).
 */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_hdr *out,
    size_t *consumed, char *why, size_t whylen);

#endif
