/* A small sorted string map (features, tags). Qubes have tens of entries, so a sorted
 * array with binary search beats a hash table in code and in speed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct strmap_entry {
    char *key;
    char *value;
};

struct strmap {
    struct strmap_entry *e;
    size_t n;
};

/* Binary search in any array sorted by a string key (the maps here, the model's qubes):
 * the index of key, or of where it would be inserted; *found tells which. */
size_t sorted_index(const void *base, size_t n, size_t elem_size, const char *key,
                    const char *(*key_of)(const void *elem), bool *found);

const char *strmap_get(const struct strmap *m, const char *key);
/* Replaces an existing value; takes copies of key and value. */
void strmap_set(struct strmap *m, const char *key, const char *value);
bool strmap_remove(struct strmap *m, const char *key);
void strmap_free(struct strmap *m);
