/*
 * Small helpers the benchmark programs in bench/ share: clocks, and the
 * nearest-rank percentile of measured latencies.
 */
#ifndef MXSPOOL_BENCH_UTIL_H
#define MXSPOOL_BENCH_UTIL_H

#include <stddef.h>
#include <time.h>

/* Seconds on the monotonic clock: for durations. */
static inline double
bench_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds since the epoch: to compare with a time another process took. */
static inline double
bench_real_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* For qsort of doubles, ascending. */
static inline int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p (0 to 1) of n sorted values; -1 if none. */
static inline double
bench_pct(const double *v, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);

	if (n == 0)
		return -1;
	return v[k == 0 ? 0 : (k > n ? n : k) - 1];
}

#endif
