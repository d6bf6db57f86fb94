/*
 * A hash map from strings to pointers. Keys are borrowed: each must stay
 * valid and unchanged while its entry is in the map (typically the key
 * lives inside the value, like a queue id inside its envelope).
 */
#ifndef MXSPOOL_HMAP_H
#define MXSPOOL_HMAP_H

#include <stdbool.h>
#include <stddef.h>

struct hmap;

struct hmap *hmap_new(void);
/* Frees the map, not the values. NULL is a no-op. */
void hmap_free(struct hmap *m);
void *hmap_get(const struct hmap *m, const char *key);
/* Adds or replaces; returns the value replaced, or NULL. */
void *hmap_put(struct hmap *m, const char *key, void *val);
/* Removes; returns the value removed, or NULL. */
void *hmap_del(struct hmap *m, const char *key);
size_t hmap_count(const struct hmap *m);
/*
 * Iteration: start with *pos = 0; returns false at the end. The map must
 * not change during an iteration.
 */
bool hmap_next(const struct hmap *m, size_t *pos, const char **key,
    void **val);

#endif
