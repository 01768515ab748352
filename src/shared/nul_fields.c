#include "nul_fields.h"

#include <string.h>

long nul_fields_encode(const char *const *fields, size_t n, char *buf, size_t size, size_t max) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = fields[i] ? fields[i] : "";
        size_t len = strlen(f) + 1;
        if (pos + len > size || pos + len > max)
            return -1;
        memcpy(buf + pos, f, len);
        pos += len;
    }
    return (long)pos;
}

int nul_fields_decode(char *buf, size_t len, const char **const *fields, size_t n) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        char *nul = pos < len ? memchr(buf + pos, '\0', len - pos) : NULL;
        if (!nul)
            return -1;
        *fields[i] = buf + pos;
        pos = (size_t)(nul - buf) + 1;
    }
    return pos == len ? 0 : -1;
}
