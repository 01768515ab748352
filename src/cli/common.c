/* Calling the daemon and reporting errors; small containers used by every tool. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_checks.h"
#include "cli.h"
#include "strbuf.h"

const char *cli_prog = "qvm";

static void err_set(struct cli_err *e, const char *exc, const char *msg) {
    snprintf(e->exc, sizeof(e->exc), "%s", exc);
    snprintf(e->msg, sizeof(e->msg), "%s", msg);
}

/* Transport failures become errors with upstream's wording plus the socket path, so
 * "is the daemon running / is QUBESD_SOCKET right" is obvious from the message. */
static void err_from_transport(struct cli_err *e, int r) {
    char buf[sizeof(e->msg)];
    if (r == -EBADMSG)
        snprintf(buf, sizeof(buf), "Malformed response from qubesd at %s", client_socket_path());
    else
        snprintf(buf, sizeof(buf), "Failed to connect to qubesd service at %s: %s",
                 client_socket_path(), strerror(-r));
    err_set(e, EXC_CLIENT_COMM, buf);
}

int cli_check(int r, const struct qerr *qe) {
    if (r < 0)
        cli_die("%s", qe->msg);
    return 0;
}

int cli_call(const char *method, const char *arg, const char *dest, const char *payload,
             struct client_reply *reply, struct cli_err *err) {
    size_t payload_len = payload ? strlen(payload) : 0;
    *reply = (struct client_reply){.raw = STRBUF_INIT};
    /* the daemon would refuse it too, but only after reading it all */
    struct qerr qe = {0};
    if (check_request_size(wire_request_len(method, arg, dest ? dest : "dom0", payload_len), method,
                           &qe) < 0) {
        err_set(err, qe.exc, qe.msg);
        return -1;
    }
    int r = client_call(method, arg ? arg : "", dest ? dest : "dom0", payload, payload_len, reply);
    if (r < 0) {
        err_from_transport(err, r);
        return -1;
    }
    if (reply->empty) {
        /* dispenserd answers bad requests with an error; an empty reply means a request
         * that is not one, or a failure inside the daemon, which its log explains. */
        err_set(err, EXC_CLIENT_ACCESS,
                "Got empty response from dispenserd (malformed request or daemon-side "
                "failure). See the daemon's log for details: " DAEMON_LOG_HINT);
        return -1;
    }
    if (!reply->r.ok) {
        err_set(err, reply->r.exc, reply->r.msg);
        return -1;
    }
    return 0;
}

int cli_call_simple(const char *method, const char *arg, const char *dest, const char *payload,
                    struct cli_err *err) {
    _cleanup_reply_ struct client_reply reply = {};
    return cli_call(method, arg, dest, payload, &reply, err);
}

bool cli_err_is(const struct cli_err *e, const char *exc) { return streq(e->exc, exc); }

void cli_die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: error: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void cli_die_err(const struct cli_err *e) { cli_die("%s", e->msg); }

void cli_print_error(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("Error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void strv_push(struct strv *s, const char *str) {
    s->v = xrealloc(s->v, (s->n + 2) * sizeof(char *));
    s->v[s->n++] = xstrdup(str);
    s->v[s->n] = NULL;
}

bool strv_contains(const struct strv *s, const char *str) {
    for (size_t i = 0; i < s->n; i++)
        if (streq(s->v[i], str))
            return true;
    return false;
}

void strv_free(struct strv *s) {
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    *s = (struct strv){0};
}

void strv_split_lines(struct strv *s, const char *text) {
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        _cleanup_free_ char *line = xstrndup(text, len);
        strv_push(s, line);
        text += len + (nl ? 1 : 0);
    }
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void strv_sort(struct strv *s) {
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(char *), cmp_str);
}

bool feature_is_true(const char *value) { return value && *value; }

void table_add_row(struct table *t, const char *const *cells) {
    for (size_t i = 0; i < t->ncols; i++)
        strv_push(&t->cells, cells[i] ? cells[i] : "");
}

/* Display width of UTF-8 text: count the bytes that start a character (qvm-ls --tree
 * draws with box characters). */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

void table_print(const struct table *t, FILE *f) {
    if (t->ncols == 0)
        return;
    size_t rows = t->cells.n / t->ncols;
    _cleanup_free_ size_t *width = xcalloc(t->ncols, sizeof(size_t));
    for (size_t i = 0; i < t->cells.n; i++) {
        size_t w = text_width(t->cells.v[i]);
        if (w > width[i % t->ncols])
            width[i % t->ncols] = w;
    }
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells.v[r * t->ncols + c];
            fputs(cell, f);
            /* like column -t, the last column is not padded */
            if (c + 1 < t->ncols)
                fprintf(f, "%*s", (int)(width[c] - text_width(cell) + 2), "");
        }
        fputc('\n', f);
    }
}

void table_free(struct table *t) { strv_free(&t->cells); }
