#include "qrexec_proto.h"

#include <stdbool.h>
#include <string.h>

long qrexec_body_encode(const struct qrexec_call_body *b, char *buf, size_t size) {
    const char *fields[4] = {b->target, b->service, b->user, b->command};
    size_t pos = 0;
    for (size_t i = 0; i < 4; i++) {
        const char *f = fields[i] ? fields[i] : "";
        size_t n = strlen(f) + 1;
        if (pos + n > size || pos + n > QREXEC_MAX_BODY)
            return -1;
        memcpy(buf + pos, f, n);
        pos += n;
    }
    return (long)pos;
}

int qrexec_body_decode(char *buf, size_t len, struct qrexec_call_body *out) {
    const char **fields[4] = {&out->target, &out->service, &out->user, &out->command};
    size_t pos = 0;
    for (size_t i = 0; i < 4; i++) {
        char *nul = pos < len ? memchr(buf + pos, '\0', len - pos) : NULL;
        if (!nul)
            return -1;
        *fields[i] = buf + pos;
        pos = (size_t)(nul - buf) + 1;
    }
    return pos == len ? 0 : -1;
}

static bool name_char(char c, bool plus_ok) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || (plus_ok && c == '+');
}

int qrexec_split_service(const char *full, char *service, size_t ssize, char *arg,
                         size_t asize) {
    const char *plus = strchr(full, '+');
    size_t slen = plus ? (size_t)(plus - full) : strlen(full);
    const char *a = plus ? plus + 1 : "";
    if (slen == 0 || slen >= ssize || strlen(a) >= asize)
        return -1;
    for (size_t i = 0; i < slen; i++)
        if (!name_char(full[i], false))
            return -1;
    for (const char *p = a; *p; p++)
        if (!name_char(*p, true))
            return -1;
    memcpy(service, full, slen);
    service[slen] = '\0';
    strcpy(arg, a);
    return 0;
}
