/*
 * The control protocol, as the daemon (ctl/ctl.c) and mxspoolctl share it.
 * The control socket is a Unix stream socket carrying one JSON object per
 * line each way. A request names a command and carries an id the replies
 * repeat:
 *
 *   {"id": 7, "cmd": "list", "domain": "example.com", "limit": 10}
 *
 * A reply is {"id": 7, "result": {...}} or
 * {"id": 7, "error": {"code": "not_found", "message": "..."}}. Listings and
 * message bodies are streamed: any number of {"id": 7, "item": {...}} or
 * {"id": 7, "chunk": "...", "encoding": "text"|"base64"} lines, then the
 * result. Requests on one connection are answered in order, all of them
 * also when the client shuts its sending side once they are out.
 *
 * This header and ctl/ctl_proto.c are all of ctl/ that mxspoolctl links:
 * they use nothing but the C library (no queue/, no libevent, no RocksDB).
 */
#ifndef MXSPOOL_CTL_PROTO_H
#define MXSPOOL_CTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Error codes in replies. */
#define CTL_E_PARSE "parse_error" /* not a JSON object, or too long */
#define CTL_E_BAD "bad_request"   /* missing or wrong arguments */
#define CTL_E_UNKNOWN "unknown_command"
#define CTL_E_NOT_FOUND "not_found"      /* no such message or mail */
#define CTL_E_CONFIRM "confirm_required" /* delete/bounce without yes */
#define CTL_E_CONFIG "invalid_config"    /* reload refused */
#define CTL_E_FAILED "failed"            /* the operation could not run */

/* qshape's age buckets: 5m 10m 20m 40m 80m 160m 320m 640m 1280m, over. */
#define CTL_AGE_BUCKETS 10
/* The bucket of an age in seconds: 0 (under 5m) .. 9 (1280m and over). */
int ctl_age_bucket(int64_t age);
/* "5m", ..., "1280m", "1280m+". */
const char *ctl_age_bucket_label(int i);
/* A short human duration: "42s", "12m", "3h05m", "2d04h". */
void ctl_fmt_age(int64_t secs, char *buf, size_t len);
/* A short human size: "512", "10.2K", "3.4M", "1.1G". */
void ctl_fmt_size(uint64_t bytes, char *buf, size_t len);

/*
 * The locator: besides its control socket, mxspoold listens on an
 * abstract Unix socket (Linux: a name, no file) named after the absolute
 * path of its config file. Whoever connects gets one line and the end of
 * the connection:
 *
 *   {"control_socket": "/run/mxspool/control.sock", "config": "/etc/...",
 *    "pid": 812}
 *
 * and nothing else: no command is read there. mxspoolctl asks it when the
 * config's control_socket does not answer, as when the file names a new
 * socket that only a reload opens.
 */
#define CTL_LOCATOR_SIZE 108 /* sun_path, with the leading NUL */
/* The locator's name for config (an absolute path, as realpath gives it),
 * without the leading NUL: "mxspoold:" and the path, or "mxspoold#" and 16
 * hex digits of its hash when that is too long. Returns its length. */
size_t ctl_locator_name(const char *config, char buf[CTL_LOCATOR_SIZE]);

#endif
