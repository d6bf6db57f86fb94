/*
 * Open addressing with linear probing; deletion shifts the following
 * entries back (no tombstones), so lookups stay short after churn.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/hmap.h"
#include "common/xmem.h"

struct hmap_slot {
	const char *key; /* NULL: empty */
	void *val;
	uint64_t hash;
};

struct hmap {
	struct hmap_slot *slots;
	size_t cap; /* a power of two */
	size_t count;
};

static uint64_t
hmap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

struct hmap *
hmap_new(void)
{
	struct hmap *m = xcalloc(1, sizeof(*m));

	m->cap = 16;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	return m;
}

void
hmap_free(struct hmap *m)
{
	if (m == NULL)
		return;
	free(m->slots);
	free(m);
}

static size_t
hmap_find(const struct hmap *m, const char *key, uint64_t h)
{
	size_t i = h & (m->cap - 1);

	while (m->slots[i].key != NULL &&
	    (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void
hmap_grow(struct hmap *m)
{
	struct hmap_slot *old = m->slots;
	size_t oldcap = m->cap;

	m->cap *= 2;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].key != NULL)
			m->slots[hmap_find(m, old[i].key, old[i].hash)] = old[i];
	free(old);
}

void *
hmap_get(const struct hmap *m, const char *key)
{
	return m->slots[hmap_find(m, key, hmap_hash(key))].val;
}

void *
hmap_put(struct hmap *m, const char *key, void *val)
{
	uint64_t h = hmap_hash(key);
	size_t i;
	void *prev;

	if ((m->count + 1) * 4 > m->cap * 3)
		hmap_grow(m);
	i = hmap_find(m, key, h);
	prev = m->slots[i].val;
	if (m->slots[i].key == NULL)
		m->count++;
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->slots[i].hash = h;
	return prev;
}

void *
hmap_del(struct hmap *m, const char *key)
{
	size_t mask = m->cap - 1, i = hmap_find(m, key, hmap_hash(key)), j;
	void *val = m->slots[i].val;

	if (m->slots[i].key == NULL)
		return NULL;
	/* Shift back every entry that probed past the hole. */
	for (j = (i + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
		size_t home = m->slots[j].hash & mask;

		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = NULL;
	m->slots[i].val = NULL;
	m->count--;
	return val;
}

size_t
hmap_count(const struct hmap *m)
{
	return m->count;
}

bool
hmap_next(const struct hmap *m, size_t *pos, const char **key, void **val)
{
	for (; *pos < m->cap; (*pos)++)
		if (m->slots[*pos].key != NULL) {
			*key = m->slots[*pos].key;
			*val = m->slots[*pos].val;
			(*pos)++;
			return true;
		}
	return false;
}
