/* The Qubes Admin API wire format (spec/admin-api.md), both directions.
 *
 * request:  "<method>+<arg> <source> <desttype> <dest>\0<payload>"
 * reply:    "0\0<content>"  or  "2\0<exc>\0<traceback>\0<message>\0"
 * event:    "1\0<subject>\0<event>\0" (<key>\0<value>\0)* "\0"
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "strbuf.h"

#define WIRE_MAX_REQUEST (64 * 1024)

struct wire_request {
    const char *method;
    const char *arg; /* never NULL; may be empty */
    const char *source;
    const char *dest; /* "keyword adminvm" is normalised to "dom0" */
    const uint8_t *payload;
    size_t payload_len;
};

/* Parse in place (buf is modified: separators become NULs). Returns 0, or -EINVAL when
 * the request is not framed: no NUL, fewer than four fields, an unknown destination type,
 * an empty or unprintable method. The argument is everything between '+' and the last
 * three fields (spaces and any byte but NUL); source and destination any bytes but
 * spaces: the API checks them and answers with a Qubes error. */
int wire_parse_request(uint8_t *buf, size_t len, struct wire_request *out);

/* The length wire_format_request makes (arg may be NULL). */
size_t wire_request_len(const char *method, const char *arg, const char *dest, size_t payload_len);
void wire_format_request(struct strbuf *sb, const char *method, const char *arg, const char *dest,
                         const void *payload, size_t payload_len);

void wire_reply_ok(struct strbuf *sb, const void *content, size_t len);
/* The client formats the message with '%' substitution, so '%' is doubled here. */
void wire_reply_error(struct strbuf *sb, const char *exc, const char *msg);

struct wire_kv {
    const char *key;
    const char *value;
};
void wire_event(struct strbuf *sb, const char *subject, const char *event, const struct wire_kv *kv,
                size_t n_kv);

/* Parsed reply, pointing into the caller's buffer. */
struct wire_reply {
    bool ok;
    const char *content; /* ok: content (not NUL-terminated unless buffer is) */
    size_t content_len;
    const char *exc; /* error: exception type */
    const char *msg; /* error: message with %% undone */
};

/* Parses a complete reply; buf must have one spare byte after len (it is NUL-terminated
 * there). Modifies buf. Returns 0 or -EINVAL. */
int wire_parse_reply(char *buf, size_t len, struct wire_reply *out);

/* An event message: returns bytes consumed (>0), 0 if incomplete, -EINVAL if malformed.
 * kv holds up to max_kv pairs; extra pairs make it -E2BIG. Modifies buf. */
struct wire_event_msg {
    const char *subject;
    const char *event;
    struct wire_kv kv[32];
    size_t n_kv;
};
long wire_parse_event(char *buf, size_t len, struct wire_event_msg *out);
