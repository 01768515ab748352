#include "api_checks.h"

#include <stdio.h>
#include <string.h>

#include "wire.h"

typedef bool (*char_rule)(unsigned char c);

static bool is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static bool is_feature_char(unsigned char c) {
    return is_alnum(c) || c == '_' || c == '.' || c == '-';
}
static bool is_tag_char(unsigned char c) { return is_alnum(c) || c == '_' || c == '-'; }
static bool is_printable(unsigned char c) { return c >= 0x20 && c <= 0x7e; }
static bool is_token_char(unsigned char c) { return c > 0x20 && c <= 0x7e; }

/* Offset of the first byte the rule refuses, or -1. */
static long first_bad(const void *data, size_t len, char_rule ok) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        if (!ok(p[i]))
            return (long)i;
    return -1;
}

/* "' ' at offset 1" or "byte 0xc3 at offset 1": never the raw byte, so that the message
 * stays printable ASCII whatever the input was. */
static const char *describe_bad(const void *data, long at, char *buf, size_t size) {
    unsigned char c = ((const unsigned char *)data)[at];
    if (is_printable(c))
        snprintf(buf, size, "'%c' at offset %ld", c, at);
    else
        snprintf(buf, size, "byte 0x%02x at offset %ld", c, at);
    return buf;
}

int check_feature_name(const char *name, struct qerr *err) {
    size_t len = strlen(name);
    if (len == 0)
        return qerr_set(err, EXC_VALUE, "feature name is empty");
    long at = first_bad(name, len, is_feature_char);
    char what[48];
    if (at >= 0)
        return qerr_set(err, EXC_VALUE,
                        "feature name contains a disallowed character (%s): "
                        "feature names are made of A-Z a-z 0-9 _ . -",
                        describe_bad(name, at, what, sizeof(what)));
    if (len > FEATURE_NAME_MAX)
        return qerr_set(err, EXC_VALUE, "feature name is %zu characters long: the limit is %d", len,
                        FEATURE_NAME_MAX);
    return 0;
}

int check_service_feature(const char *feature, struct qerr *err) {
    size_t plen = strlen(SERVICE_FEATURE_PREFIX);
    if (strncmp(feature, SERVICE_FEATURE_PREFIX, plen) != 0)
        return 0;
    const char *service = feature + plen;
    if (!*service)
        return qerr_set(err, EXC_VALUE, "Service name cannot be empty");
    if (strchr(service, '/'))
        return qerr_set(err, EXC_VALUE, "Service name cannot contain a slash");
    if (strcmp(service, ".") == 0 || strcmp(service, "..") == 0)
        return qerr_set(err, EXC_VALUE, "Service name cannot be \".\" or \"..\"");
    if (strlen(service) > SERVICE_NAME_MAX && strncmp(service, "app-dispvm.", 11) != 0)
        return qerr_set(err, EXC_VALUE, "Service name must not exceed %d bytes", SERVICE_NAME_MAX);
    return 0;
}

int check_feature_value(const void *value, size_t len, struct qerr *err) {
    long at = first_bad(value, len, is_printable);
    char what[48];
    if (at >= 0)
        return qerr_set(err, EXC_VALUE,
                        "feature value contains a disallowed character (%s): "
                        "values are printable ASCII (0x20-0x7e)",
                        describe_bad(value, at, what, sizeof(what)));
    return 0;
}

int check_tag(const char *tag, struct qerr *err) {
    size_t len = strlen(tag);
    if (len == 0)
        return qerr_set(err, EXC_INVALID_TAG, "tag is empty");
    long at = first_bad(tag, len, is_tag_char);
    char what[48];
    if (at >= 0)
        return qerr_set(err, EXC_INVALID_TAG,
                        "tag contains a disallowed character (%s): "
                        "tags are made of A-Z a-z 0-9 _ -",
                        describe_bad(tag, at, what, sizeof(what)));
    return 0;
}

int check_argument(const char *method, const char *arg, struct qerr *err) {
    long at = first_bad(arg, strlen(arg), is_token_char);
    char what[48];
    if (at >= 0)
        return qerr_set(err, EXC_VALUE,
                        "the argument of %s contains a disallowed character "
                        "(%s): arguments are printable ASCII without spaces",
                        method, describe_bad(arg, at, what, sizeof(what)));
    return 0;
}

int check_request_size(size_t len, const char *what, struct qerr *err) {
    if (len > WIRE_MAX_REQUEST)
        return qerr_set(err, EXC_VALUE,
                        "%s makes a request of %zu bytes: the Admin API takes "
                        "at most %d bytes per request (header and payload)",
                        what, len, WIRE_MAX_REQUEST);
    return 0;
}
