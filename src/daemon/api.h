/* The Admin API method table and dispatcher: request in, reply bytes out. No sockets
 * here, so the whole of it runs in unit tests and under the fuzzer. */
#pragma once
#include "app.h"
#include "strbuf.h"
#include "wire.h"

struct api_call {
    struct app *app;
    const struct wire_request *req;
    struct qube *src;
    struct qube *dest;
    struct strbuf *out; /* success content */
    struct qerr *err;
};

typedef int (*api_handler)(struct api_call *call);

enum api_flags {
    API_NO_ARG = 1 << 0,
    API_WANTS_ARG = 1 << 1,
    API_NO_PAYLOAD = 1 << 2,
    API_WANTS_PAYLOAD = 1 << 3,
    API_DEST_ADMINVM = 1 << 4,
    API_DEST_NOT_ADMINVM = 1 << 5,
};

struct api_method {
    const char *name;
    api_handler handler;
    unsigned flags;
};

enum api_result {
    API_REPLIED = 0,  /* reply holds a complete success or error reply */
    API_NO_REPLY = 1, /* close without a byte: what qubesd does on internal failures */
};

/* Looks up the method; NULL when there is none. */
const struct api_method *api_find_method(const char *name);
enum api_result api_dispatch(struct app *app, const struct wire_request *req,
                             struct strbuf *reply);

/* Method tables of each area, terminated by a {NULL} entry. */
extern const struct api_method API_VM_METHODS[];
extern const struct api_method API_PROPERTY_METHODS[];
extern const struct api_method API_FEATURE_METHODS[];
extern const struct api_method API_MISC_METHODS[];

/* Shared helpers for handlers. */
void api_put_line(struct strbuf *out, const char *line);
