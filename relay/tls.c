/*
 * Inbound TLS. The protocol floor is TLS 1.2 and the TLS 1.2 cipher list
 * keeps forward-secret AEAD suites only (TLS 1.3 suites are all fine as
 * OpenSSL ships them). Mail servers rarely verify client certificates, so
 * none is asked for.
 */
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmem.h"
#include "relay/tls.h"

#define TLS12_CIPHERS                                                          \
	"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"

struct tls_ctx {
	SSL_CTX *ssl;
};

static void
tls_err_string(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0) {
		snprintf(buf, len, "unknown error");
		return;
	}
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

struct tls_ctx *
tls_server_new(const char *cert_file, const char *key_file, enum tls_file *bad,
    char *err, size_t errlen)
{
	char why[256];
	SSL_CTX *ssl;
	struct tls_ctx *ctx;

	*bad = TLS_FILE_NONE;
	ERR_clear_error();
	ssl = SSL_CTX_new(TLS_server_method());
	if (ssl == NULL) {
		tls_err_string(why, sizeof(why));
		snprintf(err, errlen, "cannot create a TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION |
				     SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ssl, 0);
	if (SSL_CTX_set_cipher_list(ssl, TLS12_CIPHERS) != 1) {
		tls_err_string(why, sizeof(why));
		snprintf(err, errlen, "TLS cipher list: %s", why);
		SSL_CTX_free(ssl);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ssl, cert_file) != 1) {
		tls_err_string(why, sizeof(why));
		snprintf(err, errlen, "tls_cert_file %s: cannot load: %s",
		    cert_file, why);
		*bad = TLS_FILE_CERT;
		SSL_CTX_free(ssl);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL checks the pair here already. */
		bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) ==
				X509_R_KEY_VALUES_MISMATCH;

		tls_err_string(why, sizeof(why));
		if (mismatch)
			snprintf(err, errlen,
			    "tls_key_file %s does not match tls_cert_file %s: "
			    "%s",
			    key_file, cert_file, why);
		else
			snprintf(err, errlen,
			    "tls_key_file %s: cannot load: %s", key_file, why);
		*bad = TLS_FILE_KEY;
		SSL_CTX_free(ssl);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ssl) != 1) {
		tls_err_string(why, sizeof(why));
		snprintf(err, errlen,
		    "tls_key_file %s does not match tls_cert_file %s: %s",
		    key_file, cert_file, why);
		*bad = TLS_FILE_KEY;
		SSL_CTX_free(ssl);
		return NULL;
	}
	ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl = ssl;
	return ctx;
}

void
tls_free(struct tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->ssl); /* reference counted by open SSLs */
	free(ctx);
}

struct bufferevent *
tls_server_wrap(
    struct tls_ctx *ctx, struct event_base *base, struct bufferevent *under)
{
	SSL *ssl = SSL_new(ctx->ssl);
	struct bufferevent *bev;

	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_filter_new(
	    base, under, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	/* Clients that hang up without close_notify are common and harmless:
	 * SMTP has its own end of data. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void
tls_describe(struct bufferevent *bev, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	const SSL_CIPHER *c;
	int alg = 0, bits;

	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL) {
		snprintf(buf, len, "unknown");
		return;
	}
	bits = SSL_CIPHER_get_bits(c, &alg);
	snprintf(buf, len, "%s with cipher %s (%d/%d bits)",
	    SSL_get_version(ssl), SSL_CIPHER_get_name(c), bits, alg);
}

const char *
tls_version(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	return ssl != NULL ? SSL_get_version(ssl) : "none";
}

void
tls_last_error(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(bev);

	if (e == 0) {
		tls_err_string(buf, len);
		return;
	}
	ERR_error_string_n(e, buf, len);
	while (bufferevent_get_openssl_error(bev) != 0)
		;
}
