/*
 * libFuzzer target for dns/reply.c, what becomes of a DNS reply (bytes
 * from the network), and of what it says downstream: the cache
 * (dns/cache.c) and, for MX, the backup-MX rules (dns/mx.c) and the
 * answer's JSON (dns/answer.c).
 *
 * Input: a byte for the query type (bits 0-1: MX, A, AAAA, PTR), the
 * c-ares status (bits 2-4) and whether the reply is withheld, as after a
 * timeout (bit 5); a byte that steers the MX ranking; then the reply.
 *
 * Invariants checked:
 * - the record set agrees with itself: records only when OK, and then at
 *   least one, of the type asked (an address family, an MX name, at most
 *   one PTR name), at most DNS_MAX_ADDRS addresses; a reason only for a
 *   temporary failure; a TTL of -1 (none) or 0 to 2^31 - 1;
 * - the cache keeps it for a time within the configured bounds, and gives
 *   back the same set;
 * - ranking its MX hosts puts each either among the candidates or the
 *   dropped, candidates in order of preference, none of them this host
 *   nor as bad as it, each with an address and the port; the status
 *   agrees with the candidates and the enhanced code with the status;
 *   the JSON has every candidate and dropped host with its name.
 *
 *   make fuzz FUZZ_TARGETS=dns   (seeds: tests/fuzz/corpus/dns/, answers
 *   from dnsmasq with the two bytes in front)
 */
#include <ares.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MIN_TTL 10
#define MAX_TTL 86400
#define NEG_MAX 300

static const int types[] = {DNS_T_MX, DNS_T_A, DNS_T_AAAA, DNS_T_PTR};
static const int statuses[] = {ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND,
    ARES_ESERVFAIL, ARES_ETIMEOUT, ARES_EREFUSED, ARES_ECONNREFUSED,
    ARES_EBADRESP};

static void
check_rrset(const struct dns_rrset *s, int type)
{
	if (s->ttl < -1 || s->ttl > INT32_MAX)
		abort();
	if ((s->rc == DNS_RC_TEMP) != (s->why != NULL))
		abort();
	if (s->rc != DNS_RC_OK) {
		if (s->nrr != 0 || s->rr != NULL)
			abort();
		if (s->rc == DNS_RC_TEMP && s->ttl != -1)
			abort();
		return;
	}
	if (s->nrr == 0)
		abort();
	for (size_t i = 0; i < s->nrr; i++) {
		const struct dns_rr *r = &s->rr[i];

		switch (type) {
		case DNS_T_MX:
			if (r->name == NULL || r->pref < 0 || r->pref > 65535)
				abort();
			break;
		case DNS_T_PTR:
			if (r->name == NULL || s->nrr != 1)
				abort();
			break;
		case DNS_T_A:
		case DNS_T_AAAA:
			if (r->name != NULL || s->nrr > DNS_MAX_ADDRS ||
			    r->family != (type == DNS_T_A ? AF_INET : AF_INET6))
				abort();
			break;
		}
	}
}

static bool
same_rrset(const struct dns_rrset *a, const struct dns_rrset *b)
{
	if (a->rc != b->rc || a->ttl != b->ttl || a->nrr != b->nrr ||
	    (a->why == NULL) != (b->why == NULL) ||
	    (a->why != NULL && strcmp(a->why, b->why) != 0))
		return false;
	for (size_t i = 0; i < a->nrr; i++) {
		const struct dns_rr *x = &a->rr[i], *y = &b->rr[i];

		if (x->pref != y->pref || x->family != y->family ||
		    memcmp(x->addr, y->addr, sizeof(x->addr)) != 0 ||
		    (x->name == NULL) != (y->name == NULL) ||
		    (x->name != NULL && strcmp(x->name, y->name) != 0))
			return false;
	}
	return true;
}

static void
check_cache(const struct dns_rrset *s, int type)
{
	struct dns_cache *c = dns_cache_new(4);
	int64_t ttl = dns_cache_ttl(s, MIN_TTL, MAX_TTL, NEG_MAX);
	const struct dns_rrset *got;

	if (ttl < 0 || (s->rc == DNS_RC_TEMP && ttl != 0) ||
	    (s->rc == DNS_RC_OK && (ttl < MIN_TTL || ttl > MAX_TTL)) ||
	    (s->rc != DNS_RC_OK && ttl > NEG_MAX))
		abort();
	dns_cache_put(c, type, "example.test", s, ttl, 1000);
	got = dns_cache_get(c, type, "EXAMPLE.test", 1000);
	if (ttl > 0 && (got == NULL || !same_rrset(got, s)))
		abort();
	dns_cache_free(c);
}

/* The MX hosts' shuffle, from a seed the input gives. */
static uint32_t
rnd(void *arg, uint32_t bound)
{
	uint32_t *x = arg;

	*x = *x * 1103515245u + 12345u;
	return (*x >> 8) % bound;
}

static void
check_answer(const struct dns_answer *out, const struct mx_self *self, size_t n,
    int self_pref)
{
	json_t *j, *hosts, *drops, *v;
	size_t i;

	if (out->nhosts + out->ndrops != n || out->reason == NULL ||
	    out->dsn == NULL || (out->status == DNS_OK) != (out->nhosts > 0))
		abort();
	if (out->dsn[0] != (out->status == DNS_OK            ? '2'
			       : out->status == DNS_TEMPFAIL ? '4'
							     : '5'))
		abort();
	for (i = 0; i < out->nhosts; i++) {
		const struct dns_host *h = &out->hosts[i];

		if ((i > 0 && h->pref < out->hosts[i - 1].pref) ||
		    h->pref >= self_pref || mx_is_self_name(self, h->name) ||
		    h->naddrs == 0 || h->port != 25)
			abort();
		for (size_t k = 0; k < h->naddrs; k++) {
			const struct sockaddr_in *sin =
			    (const struct sockaddr_in *)&h->addrs[k].sa;

			if (mx_is_self_addr(self,
				(const struct sockaddr *)&h->addrs[k].sa) ||
			    ntohs(sin->sin_port) != 25)
				abort();
		}
	}
	j = dns_answer_json(out);
	hosts = json_object_get(j, "candidates");
	drops = json_object_get(j, "dropped");
	if (json_array_size(hosts) != out->nhosts ||
	    json_array_size(drops) != out->ndrops)
		abort();
	json_array_foreach(hosts, i, v)
	{
		if (!json_is_string(json_object_get(v, "name")))
			abort();
	}
	json_array_foreach(drops, i, v)
	{
		if (!json_is_string(json_object_get(v, "name")) ||
		    !json_is_string(json_object_get(v, "why")))
			abort();
	}
	json_decref(j);
}

/*
 * Ranks the MX hosts of s: host i has the address 192.0.2.(i + 1), none
 * (NODATA) or a failed lookup (TEMP), as the steering byte's bits say
 * (and as dns/route.c would give them: a null MX has none); this host is
 * "self.example" and, by the byte, one of the names or one of the
 * addresses.
 */
static void
fuzz_rank(const struct dns_rrset *s, unsigned steer)
{
	struct mx_in *in = calloc(s->nrr, sizeof(*in));
	struct dns_addr *addrs = calloc(s->nrr, sizeof(*addrs));
	char *names[2] = {"self.example", NULL};
	struct sockaddr_storage self_addr;
	struct mx_self self = {names, 1, &self_addr, 0};
	struct mx_rank_opts o = {.self = &self, .port = 25};
	struct dns_answer out;
	uint32_t seed = steer;
	int self_pref = INT_MAX;
	size_t pick = (steer >> 3) % s->nrr;

	for (size_t i = 0; i < s->nrr; i++) {
		unsigned char ip[4] = {192, 0, 2, (unsigned char)(i + 1)};
		unsigned kind = (steer >> (i % 3)) & 1 ? (unsigned)(i % 3) : 0;

		/* A null MX's target is never looked up (dns/route.c). */
		if (s->rr[i].name[0] == '\0' || strcmp(s->rr[i].name, ".") == 0)
			kind = 1;

		dns_addr_fill(&addrs[i], AF_INET, ip, 0);
		in[i].name = s->rr[i].name;
		in[i].pref = s->rr[i].pref;
		in[i].addrs = kind == 0 ? &addrs[i] : NULL;
		in[i].naddrs = kind == 0 ? 1 : 0;
		in[i].rc = kind == 0   ? DNS_RC_OK
			   : kind == 1 ? DNS_RC_NODATA
				       : DNS_RC_TEMP;
		in[i].why = kind == 2 ? "A: timeout" : NULL;
	}
	if (steer & 0x80) { /* one of the names is this host's */
		names[1] = s->rr[pick].name;
		self.nnames = 2;
	} else if (steer & 0x40) { /* one of the addresses is local */
		memcpy(&self_addr, &addrs[pick].sa, sizeof(self_addr));
		self.naddrs = 1;
	}
	/* What ranking must cut at: the best preference that is this host,
	 * or whose address is not known for now. */
	for (size_t i = 0; i < s->nrr; i++) {
		bool is_self =
		    mx_is_self_name(&self, in[i].name) ||
		    (in[i].naddrs > 0 &&
			mx_is_self_addr(&self,
			    (const struct sockaddr *)&in[i].addrs[0].sa));

		if (in[i].name[0] != '\0' && strcmp(in[i].name, ".") != 0 &&
		    (is_self || in[i].rc == DNS_RC_TEMP) &&
		    in[i].pref < self_pref)
			self_pref = in[i].pref;
	}
	o.rnd = rnd;
	o.rnd_arg = &seed;
	memset(&out, 0, sizeof(out));
	(void)mx_rank(&out, "example.test", in, s->nrr, &o);
	check_answer(&out, &self, s->nrr, self_pref);
	dns_answer_fini(&out);
	free(in);
	free(addrs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_rrset s;
	int type, status;

	if (size < 2)
		return 0;
	type = types[data[0] & 3];
	status = statuses[(data[0] >> 2) & 7];
	if (data[0] & 0x20)
		dns_reply_rrset(&s, type, status, NULL, 0);
	else
		dns_reply_rrset(&s, type, status, data + 2, (int)(size - 2));
	check_rrset(&s, type);
	check_cache(&s, type);
	if (type == DNS_T_MX && mx_classify(&s) == MX_USE_LIST)
		fuzz_rank(&s, data[1]);
	dns_rrset_fini(&s);
	return 0;
}
