/*
 * The configuration: etc/mxspool.conf read with libconfuse into a plain
 * struct that no other module needs libconfuse to read. A reload builds a
 * new struct conf and swaps it in; the old one stays valid until freed.
 */
#ifndef MXSPOOL_CONF_H
#define MXSPOOL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/log.h"

#define CONF_DEFAULT_PATH "/etc/mxspool/mxspool.conf"

/* A listening or connecting address, as given and as a sockaddr. */
struct conf_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char text[64]; /* "127.0.0.1:25" or "[::1]:25" */
};

struct conf {
	char *path;
	char *hostname;
	struct conf_addr *listen;
	size_t nlisten;
	char *spool_dir;
	char *control_socket;
	char **relay_domains; /* lower case; ".example.com" = subdomains */
	size_t nrelay_domains;
	enum log_level log_level;
	enum log_dest log_dest;
	int64_t shutdown_timeout; /* seconds open sessions get at SIGTERM */
};

/*
 * Reads and checks path. On success returns 0 and *cfp; on failure -1 and,
 * in *errors (malloc'd, caller frees), every problem found as lines of
 * "FILE:LINE: message\n".
 */
int conf_load(struct conf **cfp, const char *path, char **errors);
void conf_free(struct conf *cf);

/* "30s", "5m", "4h", "5d", "1w", combinations such as "1h30m", or plain
 * seconds. */
int conf_parse_duration(const char *s, int64_t *secs);
/* "512", "10k", "25M", "1G" (binary multiples). */
int conf_parse_size(const char *s, uint64_t *bytes);
/* "127.0.0.1:25", "[::1]:25", "*:25" (IPv4 any), "[::]:25". Numeric only. */
int conf_parse_addr(const char *s, struct conf_addr *out);
/* A host or domain name: letters, digits, hyphens, dots; at most 253. */
bool conf_valid_domain(const char *s);

/* Whether mail for domain (any case) is ours to relay. */
bool conf_is_relay_domain(const struct conf *cf, const char *domain);

#endif
