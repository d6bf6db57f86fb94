#define LOG_ROLE "smtp"
/*
 * Outbound TLS for relay/client: the client contexts and the STARTTLS
 * wrap. Contexts are built once and kept: loading a CA store for every
 * connection would cost more than the handshake. One context serves the
 * `may` and `encrypt` policies (no verification: RFC 7435 opportunistic
 * TLS), one per CA file serves `verify`.
 */
#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmem.h"
#include "relay/client_int.h"

struct client_ctx {
	struct client_ctx *next;
	char *ca_file; /* NULL: the system store; "" for the unverified one */
	SSL_CTX *ssl;
};

/* Built on the loop thread only, kept until exit: few entries (one per CA
 * file ever configured). */
static struct client_ctx *client_ctxs;

static void
client_ssl_err(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

static SSL_CTX *
client_ctx_get(bool verify, const char *ca_file, char *err, size_t errlen)
{
	const char *key = verify ? ca_file : "";
	struct client_ctx *c;
	SSL_CTX *ssl;
	char why[200];

	for (c = client_ctxs; c != NULL; c = c->next) {
		if ((c->ca_file == NULL && key == NULL) ||
		    (c->ca_file != NULL && key != NULL &&
			strcmp(c->ca_file, key) == 0))
			return c->ssl;
	}
	ERR_clear_error();
	if ((ssl = SSL_CTX_new(TLS_client_method())) == NULL) {
		client_ssl_err(why, sizeof(why));
		snprintf(err, errlen, "cannot create a TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_options(
	    ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (verify) {
		int ok = ca_file != NULL
			     ? SSL_CTX_load_verify_locations(ssl, ca_file, NULL)
			     : SSL_CTX_set_default_verify_paths(ssl);

		if (ok != 1) {
			client_ssl_err(why, sizeof(why));
			snprintf(err, errlen, "cannot load CA file %s: %s",
			    ca_file != NULL ? ca_file : "(system)", why);
			SSL_CTX_free(ssl);
			return NULL;
		}
		SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	}
	c = xcalloc(1, sizeof(*c));
	c->ca_file = key != NULL ? xstrdup(key) : NULL;
	c->ssl = ssl;
	c->next = client_ctxs;
	client_ctxs = c;
	return ssl;
}

struct bufferevent *
client_tls_wrap(struct event_base *base, struct bufferevent *under,
    const char *host, bool verify, const char *ca_file, char *err,
    size_t errlen)
{
	SSL_CTX *ctx = client_ctx_get(verify, ca_file, err, errlen);
	struct in6_addr a6;
	struct in_addr a4;
	bool literal;
	struct bufferevent *bev;
	SSL *ssl;

	if (ctx == NULL)
		return NULL;
	if ((ssl = SSL_new(ctx)) == NULL) {
		client_ssl_err(err, errlen);
		return NULL;
	}
	literal = host == NULL || inet_pton(AF_INET, host, &a4) == 1 ||
		  inet_pton(AF_INET6, host, &a6) == 1 || host[0] == '/';
	if (!literal)
		SSL_set_tlsext_host_name(ssl, host);
	if (verify && host != NULL && host[0] != '/') {
		X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
		int ok;

		/* A static route to [192.0.2.1] names an address: the
		 * certificate must then carry it as an IP SAN. */
		if (literal) {
			ok = X509_VERIFY_PARAM_set1_ip_asc(p, host);
		} else {
			X509_VERIFY_PARAM_set_hostflags(
			    p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			ok = X509_VERIFY_PARAM_set1_host(p, host, 0);
		}
		if (ok != 1) {
			snprintf(err, errlen, "cannot verify name %s", host);
			SSL_free(ssl);
			return NULL;
		}
	}
	bev = bufferevent_openssl_filter_new(base, under, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		snprintf(err, errlen, "cannot start TLS");
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void
client_tls_failure(struct bufferevent *bev, bool verify, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e;
	long vr;
	char why[200] = "";

	if (verify && ssl != NULL &&
	    (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(buf, len, "Server certificate not verified: %s",
		    X509_verify_cert_error_string(vr));
		while (bufferevent_get_openssl_error(bev) != 0)
			;
		ERR_clear_error();
		return;
	}
	if ((e = bufferevent_get_openssl_error(bev)) != 0) {
		ERR_error_string_n(e, why, sizeof(why));
		while (bufferevent_get_openssl_error(bev) != 0)
			;
	} else {
		client_ssl_err(why, sizeof(why));
	}
	snprintf(buf, len, "TLS handshake failed: %s", why);
}

void
client_tls_describe(struct bufferevent *bev, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	const SSL_CIPHER *c;

	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL) {
		snprintf(buf, len, "unknown");
		return;
	}
	snprintf(
	    buf, len, "%s %s", SSL_get_version(ssl), SSL_CIPHER_get_name(c));
}
