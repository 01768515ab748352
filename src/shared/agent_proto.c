#include "agent_proto.h"

#include "nul_fields.h"

long agent_body_encode(const struct agent_request_body *b, char *buf, size_t size) {
    const char *fields[6] = {b->service, b->argument, b->source, b->target, b->user, b->command};
    return nul_fields_encode(fields, 6, buf, size, AGENT_MAX_BODY);
}

int agent_body_decode(char *buf, size_t len, struct agent_request_body *out) {
    const char **fields[6] = {&out->service, &out->argument, &out->source,
                              &out->target,  &out->user,     &out->command};
    return nul_fields_decode(buf, len, (const char **const *)fields, 6);
}
