#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* Index of key, or of where it would be inserted; *found tells which. */
static size_t strmap_find(const struct strmap *m, const char *key, bool *found) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->e[mid].key, key);
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
