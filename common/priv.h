/*
 * Least privilege: mxspoold starts as root only to do what needs root
 * (bind port 25, read a root-only TLS key, make its directories), then
 * becomes the configured `user` and `group` for the rest of its life.
 */
#ifndef MXSPOOL_PRIV_H
#define MXSPOOL_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Who the daemon becomes. */
struct priv_id {
	char name[64]; /* the user's name, for initgroups(3) and logs */
	uid_t uid;
	gid_t gid; /* `group`, or the user's primary group */
};

/*
 * Looks up user (a name) and group (a name, or NULL for the user's primary
 * group) in the passwd and group databases (NSS). Returns 0, or -1 with
 * "user: no such user 'x'" (or the group's) in err. A user with uid 0, or
 * a group with gid 0, is refused: it would keep root's privileges.
 */
int priv_resolve(const char *user, const char *group, struct priv_id *id,
    char *err, size_t errlen);

/* Looks up a group by name into *gid; -1 with "group: no such group 'x'"
 * in err if there is none. */
int priv_lookup_group(const char *group, gid_t *gid, char *err, size_t errlen);

/*
 * Becomes id for good: the supplementary groups of id->name (initgroups,
 * which includes id->gid), then the real, effective and saved group ids,
 * then the capability bounding set, then the user ids (in that order:
 * once the uid is gone, neither the gid nor the bounding set can be
 * changed), and PR_SET_NO_NEW_PRIVS on Linux. Then checks that it
 * worked: every uid and gid is the target, setuid(0) and setgid(0) fail,
 * and the permitted, effective, inheritable and ambient capability sets
 * are empty. Must run before any thread is started (checked): each
 * thread has credentials of its own in the kernel.
 *
 * Not root: a no-op if id is already who the process is, else an error
 * (switching user needs root). Returns 0, or -1 with the step that failed
 * in err; the caller must then exit, never go on with privileges.
 */
int priv_drop(const struct priv_id *id, char *err, size_t errlen);

/*
 * mkdir -p path. Each directory it creates gets exactly mode (whatever the
 * umask) and is given to owner when owner is not NULL, so that the daemon
 * can still use it after it drops root; existing ones are left as they
 * are. Returns 0, or -1 with errno set (ENAMETOOLONG beyond PATH_MAX).
 */
int priv_mkdirs(const char *path, mode_t mode, const struct priv_id *owner);

/* How many threads the process has (from /proc/self/status), or 0 if it
 * cannot tell. */
unsigned priv_threads(void);

#endif
