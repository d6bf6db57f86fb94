/*
 * Dropping root for good (see priv.h). Linux: the capability sets are read
 * with the capget system call, so no libcap is needed.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/priv.h"

/* The reason a lookup found nothing, or "" for plain "no such name"
 * (getpwnam(3) lists the errno values that mean just that). */
static const char *
priv_lookup_why(int e)
{
	if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
		return "";
	return strerror(e);
}

int
priv_lookup_group(const char *group, gid_t *gid, char *err, size_t errlen)
{
	struct group *gr;

	errno = 0;
	gr = getgrnam(group);
	if (gr == NULL) {
		const char *why = priv_lookup_why(errno);

		snprintf(err, errlen, "group: no such group '%s'%s%s", group,
		    why[0] ? ": " : "", why);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

int
priv_resolve(const char *user, const char *group, struct priv_id *id, char *err,
    size_t errlen)
{
	struct passwd *pw;

	memset(id, 0, sizeof(*id));
	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		const char *why = priv_lookup_why(errno);

		snprintf(err, errlen, "user: no such user '%s'%s%s", user,
		    why[0] ? ": " : "", why);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen,
		    "user: '%s' has uid 0 and keeps every privilege (leave "
		    "user unset to run as root)",
		    user);
		return -1;
	}
	if (strlen(user) >= sizeof(id->name)) {
		snprintf(err, errlen, "user: name '%s' too long", user);
		return -1;
	}
	memcpy(id->name, user, strlen(user) + 1);
	id->uid = pw->pw_uid;
	id->gid = pw->pw_gid;
	if (group != NULL &&
	    priv_lookup_group(group, &id->gid, err, errlen) < 0)
		return -1;
	if (id->gid == 0) {
		snprintf(err, errlen,
		    "group: gid 0 would keep what root's group may read and "
		    "write (set group to another)");
		return -1;
	}
	return 0;
}

unsigned
priv_threads(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	unsigned n = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "Threads: %u", &n) == 1)
			break;
	fclose(fp);
	return n;
}

/* The capability sets, as capget(2) reports them: 0 if all are empty. */
static int
priv_caps(
    unsigned long long *eff, unsigned long long *prm, unsigned long long *inh)
{
	struct __user_cap_header_struct hdr = {
	    .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	*eff = (unsigned long long)data[1].effective << 32 | data[0].effective;
	*prm = (unsigned long long)data[1].permitted << 32 | data[0].permitted;
	*inh =
	    (unsigned long long)data[1].inheritable << 32 | data[0].inheritable;
	return 0;
}

/* Empties every capability set (only ever lowers them). */
static int
priv_clear_caps(void)
{
	struct __user_cap_header_struct hdr = {
	    .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

/* Checks that the process is id and cannot become anyone else. */
static int
priv_verify(const struct priv_id *id, char *err, size_t errlen)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	unsigned long long eff, prm, inh;

	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0) {
		snprintf(err, errlen, "cannot read the process's ids: %s",
		    strerror(errno));
		return -1;
	}
	if (ru != id->uid || eu != id->uid || su != id->uid || rg != id->gid ||
	    eg != id->gid || sg != id->gid) {
		snprintf(err, errlen,
		    "after the switch the uids are %u/%u/%u and the gids "
		    "%u/%u/%u, not %u and %u",
		    (unsigned)ru, (unsigned)eu, (unsigned)su, (unsigned)rg,
		    (unsigned)eg, (unsigned)sg, (unsigned)id->uid,
		    (unsigned)id->gid);
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 ||
	    setegid(0) == 0) {
		snprintf(
		    err, errlen, "root could be regained after the switch");
		return -1;
	}
	if (priv_caps(&eff, &prm, &inh) < 0) {
		snprintf(err, errlen, "cannot read the capabilities: %s",
		    strerror(errno));
		return -1;
	}
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) {
			snprintf(err, errlen,
			    "capability %d is left in the bounding set", cap);
			return -1;
		}
	if (eff != 0 || prm != 0 || inh != 0) {
		snprintf(err, errlen,
		    "capabilities left after the switch: effective %016llx, "
		    "permitted %016llx, inheritable %016llx",
		    eff, prm, inh);
		return -1;
	}
	return 0;
}

int
priv_drop(const struct priv_id *id, char *err, size_t errlen)
{
	unsigned threads;

	if (geteuid() != 0) {
		if (getuid() == id->uid && geteuid() == id->uid &&
		    getgid() == id->gid && getegid() == id->gid)
			return 0; /* already who we should be */
		snprintf(err, errlen,
		    "cannot switch to user %s (uid %u, gid %u): only root "
		    "can, and this process runs as uid %u, gid %u",
		    id->name, (unsigned)id->uid, (unsigned)id->gid,
		    (unsigned)geteuid(), (unsigned)getegid());
		return -1;
	}
	threads = priv_threads();
	if (threads > 1) {
		snprintf(err, errlen,
		    "cannot switch to user %s: %u threads already run, "
		    "and each would keep root",
		    id->name, threads);
		return -1;
	}
	if (initgroups(id->name, id->gid) < 0) {
		snprintf(err, errlen, "initgroups(%s, %u): %s", id->name,
		    (unsigned)id->gid, strerror(errno));
		return -1;
	}
	if (setresgid(id->gid, id->gid, id->gid) < 0) {
		snprintf(err, errlen, "setresgid(%u): %s", (unsigned)id->gid,
		    strerror(errno));
		return -1;
	}
	/* The bounding set: no capability can come back by any route. */
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL) /* past the kernel's last one */
				break;
			snprintf(err, errlen, "PR_CAPBSET_DROP(%d): %s", cap,
			    strerror(errno));
			return -1;
		}
	/* Without keepcaps the kernel empties the permitted and effective
	 * sets when every uid leaves 0. */
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0 ||
	    setresuid(id->uid, id->uid, id->uid) < 0) {
		snprintf(err, errlen, "setresuid(%u): %s", (unsigned)id->uid,
		    strerror(errno));
		return -1;
	}
	/* The inheritable set survives setuid: empty it too. */
	if (priv_clear_caps() < 0) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -1;
	}
	/* No exec can give privileges back (set-user-id files, file
	 * capabilities). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(
		    err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
	return priv_verify(id, err, errlen);
}

int
priv_mkdirs(const char *path, mode_t mode, const struct priv_id *owner)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		if (p[-1] != '/') {
			char c = *p;

			*p = '\0';
			if (mkdir(buf, mode) == 0) {
				if (chmod(buf, mode) < 0 ||
				    (owner != NULL &&
					chown(buf, owner->uid, owner->gid) < 0))
					return -1;
			} else if (errno != EEXIST)
				return -1;
			*p = c;
		}
		if (*p == '\0')
			break;
	}
	return 0;
}
