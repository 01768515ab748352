/* libFuzzer harness for the Admin API request path: arbitrary bytes go through
 * wire_parse_request and, when they parse, through api_dispatch against one app on a
 * private temp database (mutating calls are real). The same bytes also feed the reply
 * and event parsers, on copies. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "log.h"
#include "strbuf.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct app app;
static char db_dir[] = "/tmp/dispenser-fuzz-XXXXXX";
static char db_path[sizeof(db_dir) + 16];

static void cleanup(void) {
    app_close(&app);
    static const char *const files[] = {"qubes.db", "qubes.db-wal", "qubes.db-shm"};
    char p[sizeof(db_path) + 8];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", db_dir, files[i]);
        unlink(p);
    }
    rmdir(db_dir);
}

static void open_app_once(void) {
    if (app.store)
        return;
    log_set_level(LOG_LVL_ERROR);
    if (!mkdtemp(db_dir))
        abort();
    snprintf(db_path, sizeof(db_path), "%s/qubes.db", db_dir);
    struct qerr err = {0};
    app.host_mem_mib = 4096;
    if (app_open(&app, db_path, &err) < 0) {
        fprintf(stderr, "fuzz: app_open: %s\n", err.msg);
        abort();
    }
    atexit(cleanup);
}

static void fuzz_dispatch(const uint8_t *data, size_t size) {
    if (size > WIRE_MAX_REQUEST)
        return;
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct wire_request req;
    if (wire_parse_request(buf, size, &req) == 0) {
        _cleanup_strbuf_ struct strbuf reply = STRBUF_INIT;
        enum api_result r = api_dispatch(&app, &req, &reply);
        if (r == API_REPLIED && (reply.len < 2 || reply.data[1] != '\0'))
            abort(); /* a reply always starts "0\0" or "2\0" */
    }
    free(buf);
}

static void fuzz_reply(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1); /* the parser's spare byte */
    memcpy(buf, data, size);
    struct wire_reply r;
    if (wire_parse_reply(buf, size, &r) == 0 && r.ok && r.content_len > size)
        abort();
    free(buf);
}

static void fuzz_events(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    size_t pos = 0;
    struct wire_event_msg ev;
    long n;
    while (pos < size && (n = wire_parse_event(buf + pos, size - pos, &ev)) > 0)
        pos += (size_t)n;
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    open_app_once();
    fuzz_dispatch(data, size);
    fuzz_reply(data, size);
    fuzz_events(data, size);
    return 0;
}
