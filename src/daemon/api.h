/* The Admin API method table and dispatcher: request in, reply bytes out. No sockets
 * here, so the whole of it runs in unit tests and under the fuzzer. */
#pragma once
#include <sys/types.h>

#include "app.h"
#include "strbuf.h"
#include "wire.h"

struct dispatcher;
struct preload;
struct api_deferred;
struct clipboard;

/* Where a deferred reply goes (the server's connection); NULL in tests and the fuzzer. */
struct api_sink {
    void (*reply)(void *ctx, const struct strbuf *reply); /* reply NULL: close, no reply */
    void *ctx;
};

/* What a call runs against. */
struct api_env {
    struct app *app;
    struct dispatcher *dispatcher; /* never NULL (it may have no engines) */
    uid_t peer_uid;                /* of the client process (SO_PEERCRED) */
    struct preload *preload;       /* NULL: no preloading (tests, the fuzzer) */
    struct clipboard *clipboard;   /* NULL: no global clipboard (tests, the fuzzer) */
};

struct api_call {
    struct app *app;
    struct dispatcher *dispatcher;
    uid_t peer_uid;
    struct preload *preload;
    struct clipboard *clipboard;
    const struct api_sink *sink;
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
    API_DEFERRED = 2, /* the sink will get the reply later */
};

/* A handler returning API_HANDLER_DEFERRED has taken a deferred reply with api_defer and
 * will finish it exactly once. */
#define API_HANDLER_DEFERRED 1

/* A method of Qubes' Admin API (that dispenser may lack: api_unimplemented.c). */
bool api_is_upstream_method(const char *name);

/* Looks up the method; NULL when there is none. */
const struct api_method *api_find_method(const char *name);
enum api_result api_dispatch_env(const struct api_env *env, const struct wire_request *req,
                                 struct strbuf *reply, const struct api_sink *sink);
/* Without engines or sink: what unit tests and the fuzzer drive. */
enum api_result api_dispatch(struct app *app, const struct wire_request *req, struct strbuf *reply);

/* For handlers that answer later. NULL when the call has no sink (then answer now). */
struct api_deferred *api_defer(struct api_call *call);
void api_deferred_finish(struct api_deferred *d, int r, const struct qerr *err);
/* The same with content for a success reply. */
void api_deferred_finish_content(struct api_deferred *d, int r, const struct qerr *err,
                                 const char *content);

/* Method tables of each area, terminated by a {NULL} entry. */
extern const struct api_method API_VM_METHODS[];
extern const struct api_method API_PROPERTY_METHODS[];
extern const struct api_method API_FEATURE_METHODS[];
extern const struct api_method API_MISC_METHODS[];
extern const struct api_method API_VOLUME_METHODS[];
extern const struct api_method API_INTERNAL_METHODS[];
extern const struct api_method API_FIREWALL_METHODS[];
extern const struct api_method API_DEVICE_METHODS[];
extern const struct api_method API_POOL_METHODS[];
extern const struct api_method API_CLIPBOARD_METHODS[];

/* Shared helpers for handlers. */
void api_put_line(struct strbuf *out, const char *line);
