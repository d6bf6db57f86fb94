/*
 * Pure helpers of the control protocol (ctl/ctl_proto.h), shared by the
 * daemon and mxspoolctl: age buckets, human sizes and ages, the locator's
 * name. Only the C library.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl_proto.h"

static const char *const age_labels[CTL_AGE_BUCKETS] = {"5m", "10m", "20m",
    "40m", "80m", "160m", "320m", "640m", "1280m", "1280m+"};

int
ctl_age_bucket(int64_t age)
{
	int64_t bound = 5 * 60;

	for (int i = 0; i < CTL_AGE_BUCKETS - 1; i++, bound *= 2)
		if (age < bound)
			return i;
	return CTL_AGE_BUCKETS - 1;
}

const char *
ctl_age_bucket_label(int i)
{
	if (i < 0 || i >= CTL_AGE_BUCKETS)
		return "?";
	return age_labels[i];
}

void
ctl_fmt_age(int64_t secs, char *buf, size_t len)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		snprintf(buf, len, "%" PRId64 "s", secs);
	else if (secs < 3600)
		snprintf(buf, len, "%" PRId64 "m", secs / 60);
	else if (secs < 86400)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", secs / 3600,
		    secs % 3600 / 60);
	else
		snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", secs / 86400,
		    secs % 86400 / 3600);
}

void
ctl_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, len, "%" PRIu64, bytes);
		return;
	}
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f%c", v, units[u]);
}

size_t
ctl_locator_name(const char *config, char buf[CTL_LOCATOR_SIZE])
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */
	int n = snprintf(buf, CTL_LOCATOR_SIZE, "mxspoold:%s", config);

	if (n > 0 && n < CTL_LOCATOR_SIZE)
		return (size_t)n;
	for (const unsigned char *p = (const unsigned char *)config; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)snprintf(
	    buf, CTL_LOCATOR_SIZE, "mxspoold#%016" PRIx64, h);
}
