/*
 * The metrics endpoint: /metrics in the Prometheus text format and
 * /healthz, over HTTP (libevent's evhttp) on cf->metrics_listen.
 */
#ifndef MXSPOOL_HTTPD_H
#define MXSPOOL_HTTPD_H

#include <stddef.h>

#include "common/conf.h"
#include "ctl/ctl.h"

struct httpd;
struct event_base;

/* cf and deps are borrowed until httpd_free or the next httpd_set_conf. */
struct httpd *httpd_new(struct event_base *base, const struct conf *cf,
    const struct ctl_deps *deps);
/* Listens on cf->metrics_listen (nothing when it is unset); on failure
 * says why in err. */
int httpd_listen(struct httpd *h, char *err, size_t errlen);
/* After a reload: a new, removed or added address takes effect now; on
 * failure the old one stays. */
int httpd_set_conf(
    struct httpd *h, const struct conf *cf, char *err, size_t errlen);
/* NULL is a no-op. */
void httpd_free(struct httpd *h);

#endif
