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

const char *strmap_get(const struct strmap *m, const char *key);
/* Replaces an existing value; takes copies of key and value. */
void strmap_set(struct strmap *m, const char *key, const char *value);
bool strmap_remove(struct strmap *m, const char *key);
void strmap_free(struct strmap *m);
