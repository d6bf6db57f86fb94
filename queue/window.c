/* The scheduler's pure decisions about the active window (window.h). */
#include "queue/window.h"

enum window_read
window_refill(const struct window_dest *d, size_t *n)
{
	size_t want;

	*n = 0;
	switch (d->state) {
	case DEST_BACKOFF:
		return WINDOW_NONE;
	case DEST_PROBING:
		if (d->nready > 0 || d->now < d->probe_read_at)
			return WINDOW_NONE;
		*n = 1;
		return WINDOW_PROBE;
	case DEST_UP:
		break;
	}
	if (d->nready >= WINDOW_READY / 2)
		return WINDOW_NONE;
	want = WINDOW_PAGE;
	if (d->in_memory >= d->limit)
		want = d->nready == 0 ? 1 : 0;
	else if (want > d->limit - d->in_memory)
		want = d->limit - d->in_memory;
	*n = want;
	return want > 0 ? WINDOW_FILL : WINDOW_NONE;
}

void
window_lane_reread(struct window_lane *l)
{
	l->more = true;
	l->all = true;
	l->wrap_at = INT64_MAX;
}

bool
window_lane_due(struct window_lane *l, int64_t now, bool *restart)
{
	*restart = false;
	if (l->more)
		return true;
	if (now < l->wrap_at)
		return false;
	*restart = true;
	l->more = true;
	l->wrap_at = INT64_MAX;
	return true;
}

void
window_lane_page(struct window_lane *l, bool end, int64_t next_due)
{
	/* Every page's: a message passed over on any page is read again. */
	if (next_due < l->wrap_at)
		l->wrap_at = next_due;
	l->more = !end;
	if (end)
		l->all = false;
}

void
window_lane_later(struct window_lane *l, int64_t due)
{
	if (due < l->wrap_at)
		l->wrap_at = due;
}

void
window_lane_arrived(struct window_lane *l)
{
	l->more = true;
}
