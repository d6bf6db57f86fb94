/*
 * Inbound TLS (STARTTLS, RFC 3207) over libevent's OpenSSL bufferevents.
 * The outbound side has its own context in relay/client.c.
 */
#ifndef MXSPOOL_TLS_H
#define MXSPOOL_TLS_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stddef.h>

struct tls_ctx; /* opaque: an SSL_CTX with our settings */

/* The file a tls_server_new failure is about. */
enum tls_file { TLS_FILE_NONE, TLS_FILE_CERT, TLS_FILE_KEY };

/*
 * A server context from a PEM certificate chain and key: TLS 1.2 and 1.3,
 * no compression, no renegotiation. On failure (unreadable file, key that
 * does not match the certificate) returns NULL with one line in err, and
 * in *bad the file it is about (the key, for one that does not match).
 */
struct tls_ctx *tls_server_new(const char *cert_file, const char *key_file,
    enum tls_file *bad, char *err, size_t errlen);
/* NULL is a no-op. Sessions that use ctx keep it alive. */
void tls_free(struct tls_ctx *ctx);

/*
 * Starts a server handshake over under, which the returned bufferevent
 * takes over (and frees with itself). BEV_EVENT_CONNECTED reports success.
 */
struct bufferevent *tls_server_wrap(
    struct tls_ctx *ctx, struct event_base *base, struct bufferevent *under);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". */
void tls_describe(struct bufferevent *bev, char *buf, size_t len);
/* The version alone ("TLSv1.3"). */
const char *tls_version(struct bufferevent *bev);
/* Why a handshake or read failed, from OpenSSL's error queue. */
void tls_last_error(struct bufferevent *bev, char *buf, size_t len);

#endif
