/* qvm-events [--all] [VMNAME...]: print the admin.Events stream, one line per event:
 *   <subject> <event> [<key>=<value>]...
 * The subject is "-" for global events (domain-add, domain-delete, ...). Runs until
 * interrupted (exit 0) or until the daemon closes the stream (exit 1). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "strbuf.h"
#include "wire.h"

static const struct opt_spec events_specs[] = {
    TARGET_OPT_SPECS("show events of all qubes and global events (the default)"),
};

static const struct opt_parser events_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--all] [--exclude EXCLUDE] [VMNAME ...]",
    .description = "Print Admin API events as they happen, one per line:\n"
                   "  SUBJECT EVENT [KEY=VALUE]...\n"
                   "SUBJECT is the qube name, or '-' for global events. The first line,\n"
                   "'- connection-established', means the subscription is live.\n"
                   "Runs until interrupted (Ctrl-C).",
    .positionals = "  VMNAME                only show events of these qubes\n",
    .specs = events_specs,
    .n_specs = ELEMENTSOF(events_specs),
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = 1; }

static void events_option(void *userdata, int id, const char *value) {
    target_args_option(userdata, id, value);
}

static bool wanted(const struct wire_event_msg *ev, const struct qube_list *only,
                   const struct strv *exclude) {
    if (strcmp(ev->event, "connection-established") == 0)
        return true; /* always shown: it tells scripts the subscription is live */
    if (strv_contains(exclude, ev->subject))
        return false;
    /* with VMNAMEs, global events and other qubes' events are left out */
    return only->n == 0 || qube_list_find(only, ev->subject) != NULL;
}

static void print_event(const struct wire_event_msg *ev) {
    printf("%s %s", *ev->subject ? ev->subject : "-", ev->event);
    for (size_t i = 0; i < ev->n_kv; i++)
        printf(" %s=%s", ev->kv[i].key, ev->kv[i].value);
    putchar('\n');
    fflush(stdout);
}

/* Print every complete event in buf; returns -1 on a malformed stream. */
static int drain(struct strbuf *buf, const struct qube_list *only, const struct strv *exclude) {
    /* an error reply instead of a stream (e.g. access denied): read it whole at EOF */
    if (buf->len >= 2 && buf->data[0] == '2' && buf->data[1] == '\0')
        return 0;
    for (;;) {
        struct wire_event_msg ev;
        long n = wire_parse_event(buf->data, buf->len, &ev);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (wanted(&ev, only, exclude))
            print_event(&ev);
        strbuf_consume(buf, (size_t)n);
    }
}

static _Noreturn void die_closed(struct strbuf *buf) {
    struct wire_reply reply;
    strbuf_reserve(buf, 1);
    if (buf->len >= 2 && buf->data[0] == '2' &&
        wire_parse_reply(buf->data, buf->len, &reply) == 0 && !reply.ok)
        cli_die("%s", reply.msg);
    cli_die("qubesd closed the event stream");
}

static int stream_events(int fd, const struct qube_list *only, const struct strv *exclude) {
    _cleanup_strbuf_ struct strbuf buf = STRBUF_INIT;
    while (!interrupted) {
        strbuf_reserve(&buf, 4096);
        ssize_t n = read(fd, buf.data + buf.len, buf.cap - buf.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            cli_die("reading events from qubesd: %s", strerror(errno));
        if (n == 0)
            die_closed(&buf);
        buf.len += (size_t)n;
        if (drain(&buf, only, exclude) < 0)
            cli_die("malformed event stream from qubesd");
    }
    return 0;
}

int qvm_events_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list only = {0};
    _cleanup_(target_args_free) struct target_args t = {0};
    opts_parse(&events_parser, argc, argv, events_option, &t, &r);
    target_args_set_names(&t, &r);
    if (t.all && t.names.n > 0)
        opts_error(&events_parser, "argument VMNAME: not allowed with argument --all");
    for (size_t i = 0; i < t.names.n; i++)
        qube_resolve(&events_parser, t.names.v[i], &only);
    /* one qube: let the daemon filter; several: subscribe to all and filter here */
    const char *dest = only.n == 1 ? only.v[0].name : "dom0";
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    _cleanup_close_ int fd = client_events_open(dest);
    if (fd < 0)
        cli_die("Failed to connect to qubesd service at %s: %s", client_socket_path(),
                strerror(-fd));
    return stream_events(fd, &only, &t.exclude);
}
