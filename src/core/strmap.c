#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

size_t sorted_index(const void *base, size_t n, size_t elem_size, const char *key,
                    const char *(*key_of)(const void *elem), bool *found) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key_of((const char *)base + mid * elem_size), key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static const char *entry_key(const void *elem) { return ((const struct strmap_entry *)elem)->key; }

static size_t strmap_find(const struct strmap *m, const char *key, bool *found) {
    return sorted_index(m->e, m->n, sizeof(m->e[0]), key, entry_key, found);
}

const char *strmap_get(const struct strmap *m, const char *key) {
    bool found;
    size_t i = strmap_find(m, key, &found);
    return found ? m->e[i].value : NULL;
}

void strmap_set(struct strmap *m, const char *key, const char *value) {
    bool found;
    size_t i = strmap_find(m, key, &found);
    if (found) {
        free(m->e[i].value);
        m->e[i].value = xstrdup(value);
        return;
    }
    m->e = xrealloc(m->e, (m->n + 1) * sizeof(*m->e));
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof(*m->e));
    m->e[i] = (struct strmap_entry){xstrdup(key), xstrdup(value)};
    m->n++;
}

bool strmap_remove(struct strmap *m, const char *key) {
    bool found;
    size_t i = strmap_find(m, key, &found);
    if (!found)
        return false;
    free(m->e[i].key);
    free(m->e[i].value);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(*m->e));
    m->n--;
    return true;
}

void strmap_free(struct strmap *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].value);
    }
    free(m->e);
    *m = (struct strmap){0};
}
