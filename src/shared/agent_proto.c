#include "agent_proto.h"

#include <string.h>

long agent_body_encode(const struct agent_request_body *b, char *buf, size_t size) {
    const char *fields[6] = {b->service, b->argument, b->source, b->target, b->user, b->command};
    size_t pos = 0;
    for (size_t i = 0; i < 6; i++) {
        const char *f = fields[i] ? fields[i] : "";
        size_t n = strlen(f) + 1;
        if (pos + n > size || pos + n > AGENT_MAX_BODY)
            return -1;
        memcpy(buf + pos, f, n);
        pos += n;
    }
    return (long)pos;
}

int agent_body_decode(char *buf, size_t len, struct agent_request_body *out) {
    const char **fields[6] = {&out->service, &out->argument, &out->source,
                              &out->target,  &out->user,     &out->command};
    size_t pos = 0;
    for (size_t i = 0; i < 6; i++) {
        char *nul = pos < len ? memchr(buf + pos, '\0', len - pos) : NULL;
        if (!nul)
            return -1;
        *fields[i] = buf + pos;
        pos = (size_t)(nul - buf) + 1;
    }
    return pos == len ? 0 : -1;
}
