/* dispenser-preload: the host's side of preloading, for the boot unit and the suspend
 * hook (Qubes' /usr/lib/qubes/preload-dispvm and its internal.Suspend* calls).
 *   refill        admin.vm.CreateDisposable+preload on every disposable template, all at
 *                 once (the daemon fills those with an effective maximum, never above it)
 *   suspend-pre   discard every preloaded disposable before the host suspends
 *   suspend-post  refill after resume
 *   status [TEMPLATE...]  the pools as the daemon sees them (dispenser.preload.Status):
 *                 maxima, target, ready, starting, the observed request rate (per
 *                 minute), hits/requests, and why a gap is not being filled */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s {refill|suspend-pre|suspend-post|status [TEMPLATE ...]}\n\n"
            "Preloaded disposables on this host: fill every disposable template's preload\n"
            "list (the boot unit runs this), discard and refill around a suspend, or show\n"
            "each pool: its maxima, what is ready and starting, and why a gap stays.\n",
            cli_prog);
}

static bool is_dispvm_template(const char *name) {
    struct client_reply reply;
    struct cli_err err;
    if (cli_call("admin.vm.property.Get", "template_for_dispvms", name, NULL, &reply, &err) < 0)
        return false;
    bool yes = strstr(reply.r.content, " True") != NULL;
    client_reply_free(&reply);
    return yes;
}

/* One process per template: a template's start-up must not wait for another's. */
static int refill_all(void) {
    struct qube_list qubes = {0};
    struct cli_err err;
    if (qube_list_fetch("dom0", &qubes, &err) < 0)
        cli_die_err(&err);
    int children = 0, failed = 0;
    for (size_t i = 0; i < qubes.n; i++) {
        const char *name = qubes.v[i].name;
        if (strcmp(qubes.v[i].klass, "AppVM") && strcmp(qubes.v[i].klass, "StandaloneVM"))
            continue;
        if (!is_dispvm_template(name))
            continue;
        pid_t pid = fork();
        if (pid == 0)
            _exit(cli_call_simple("admin.vm.CreateDisposable", "preload", name, NULL, &err) < 0);
        children += pid > 0;
        printf("%s\n", name);
    }
    for (int status; children > 0 && wait(&status) > 0; children--)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status);
    qube_list_free(&qubes);
    return failed;
}

/* One reply line: "NAME key=value ... failure=TEXT" (TEXT runs to the end). */
struct pool_line {
    const char *name, *failure;
};

static const char *field(const struct pool_line *l, const char *key) {
    size_t klen = strlen(key);
    const char *f = l->name + strlen(l->name) + 1;
    for (; f < l->failure; f += strlen(f) + 1)
        if (strncmp(f, key, klen) == 0 && f[klen] == '=')
            return f + klen + 1;
    return "?";
}

static void parse_pool_line(char *line, struct pool_line *l) {
    char *failure = strstr(line, " failure=");
    if (failure) {
        *failure = '\0';
        l->failure = failure + strlen(" failure=");
    } else {
        l->failure = line + strlen(line);
    }
    l->name = line;
    for (char *c = line; *c; c++)
        if (*c == ' ')
            *c = '\0';
}

/* What the state means, in words, with the numbers it was decided on. */
static void describe_state(const struct pool_line *l, char *buf, size_t size) {
    const char *s = field(l, "state");
    if (streq(s, "off"))
        snprintf(buf, size, "off (preload-dispvm-max is 0 or not set)");
    else if (streq(s, "full"))
        snprintf(buf, size, "full");
    else if (streq(s, "filling"))
        snprintf(buf, size, "filling");
    else if (streq(s, "delay"))
        snprintf(buf, size, "refill in %s s (preload-dispvm-delay %s)", field(l, "refill_in"),
                 field(l, "delay"));
    else if (streq(s, "threshold"))
        snprintf(buf, size,
                 "not enough memory: %s MiB free, %s MiB kept free (preload-dispvm-threshold), "
                 "%s MiB each",
                 field(l, "mem_free"), field(l, "threshold"), field(l, "each"));
    else if (streq(s, "pressure"))
        snprintf(buf, size,
                 "memory pressure: refills wait until it stays low "
                 "(preload-dispvm-pressure)");
    else if (streq(s, "failed"))
        snprintf(buf, size, "waiting for the next trigger after a failure: %s", l->failure);
    else if (streq(s, "idle"))
        snprintf(buf, size, "waiting for a trigger (a request, a use, dispenser-preload refill)");
    else
        snprintf(buf, size, "%s", s);
}

static int pool_status(int argc, char **argv) {
    _cleanup_(table_free) struct table t = {.ncols = 11};
    const char *head[] = {"TEMPLATE", "MAX",  "LOCAL", "GLOBAL",     "TARGET", "READY",
                          "STARTING", "RATE", "HITS",  "HIBERNATED", "STATUS"};
    table_add_row(&t, head);
    for (int i = 0; i == 0 || i < argc; i++) {
        _cleanup_reply_ struct client_reply reply = {};
        struct cli_err err;
        if (cli_call("dispenser.preload.Status", "", argc ? argv[i] : "dom0", NULL, &reply, &err) <
            0)
            cli_die_err(&err);
        _cleanup_(strv_free) struct strv lines = {0};
        strv_split_lines(&lines, reply.r.content);
        for (size_t j = 0; j < lines.n; j++) {
            struct pool_line l;
            char status[512], hits[64], tier[64];
            parse_pool_line(lines.v[j], &l);
            describe_state(&l, status, sizeof(status));
            snprintf(hits, sizeof(hits), "%s/%s", field(&l, "hits"), field(&l, "requests"));
            /* the hibernated tier: saved / preload-dispvm-hibernated in force */
            if (streq(field(&l, "hibernated_max"), "0") || streq(field(&l, "hibernated_max"), "?"))
                snprintf(tier, sizeof(tier), "-");
            else
                snprintf(tier, sizeof(tier), "%s/%s", field(&l, "hibernated"),
                         field(&l, "hibernated_max"));
            const char *row[] = {l.name,
                                 field(&l, "max"),
                                 field(&l, "local"),
                                 field(&l, "global"),
                                 field(&l, "target"),
                                 field(&l, "ready"),
                                 field(&l, "starting"),
                                 field(&l, "rate"),
                                 hits,
                                 tier,
                                 status};
            table_add_row(&t, row);
        }
    }
    table_print(&t, stdout);
    return 0;
}

int dispenser_preload_main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "status") == 0)
        return pool_status(argc - 2, argv + 2);
    if (argc != 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 2;
    }
    struct cli_err err;
    if (strcmp(argv[1], "refill") == 0)
        return refill_all();
    const char *method = strcmp(argv[1], "suspend-pre") == 0    ? "internal.SuspendPre"
                         : strcmp(argv[1], "suspend-post") == 0 ? "internal.SuspendPost"
                                                                : NULL;
    if (!method) {
        usage(stderr);
        return 2;
    }
    if (cli_call_simple(method, "", "dom0", NULL, &err) < 0)
        cli_die_err(&err);
    return 0;
}
