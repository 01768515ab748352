/* qvm-check [--running] [--paused] [--template] [--networked] VMNAME... | --all:
 * succeed when the qubes exist (and pass every check asked for), as upstream's
 * qvm-check: 0 when all of them pass, 3 when only some do, 1 when none does or a name
 * is of no qube (unknown names are collected, not a usage error). Messages go to
 * stderr the way upstream's logger writes them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strbuf.h"

enum { OPT_RUNNING = 1, OPT_PAUSED, OPT_TEMPLATE, OPT_NETWORKED };

static const struct opt_spec check_specs[] = {
    TARGET_OPT_SPECS("perform the action on all qubes"),
    {"running", 0, OPT_FLAG, OPT_RUNNING, NULL, "Determine if (any of given) VM is running"},
    {"paused", 0, OPT_FLAG, OPT_PAUSED, NULL, "Determine if (any of given) VM is paused"},
    {"template", 0, OPT_FLAG, OPT_TEMPLATE, NULL, "Determine if (any of given) VM is a template"},
    {"networked", 0, OPT_FLAG, OPT_NETWORKED, NULL,
     "Determine if (any of given) VM can reach network"},
};

static const struct opt_parser check_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--all] [--exclude EXCLUDE] [--running] [--paused] "
             "[--template] [--networked] [VMNAME ...]",
    .description = "Exits sucessfull if the provided domain(s) exist, else returns failure",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .specs = check_specs,
    .n_specs = ELEMENTSOF(check_specs),
};

/* A check in upstream's order: the word it is reported as and its test. */
struct check {
    int id;
    const char *status;
    bool (*passes)(const struct qube *q);
};

static bool is_running(const struct qube *q) {
    return !streq(q->state, "Halted") && !streq(q->state, "NA");
}

static bool is_paused(const struct qube *q) { return streq(q->state, "Paused"); }

static bool is_template(const struct qube *q) { return streq(q->klass, "TemplateVM"); }

static bool prop_get(const char *qube, const char *name, struct prop *out) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.vm.property.Get", name, qube, NULL, &reply, &err) < 0) {
        if (cli_err_is(&err, "QubesNoSuchPropertyError")) /* dom0 has neither */
            return false;
        cli_die_err(&err);
    }
    return prop_parse(reply.r.content, out) == 0;
}

/* upstream is_networked(): it provides network, or its netvm is not None */
static bool is_networked(const struct qube *q) {
    struct prop p = {0};
    bool yes = false;
    if (prop_get(q->name, "provides_network", &p))
        yes = streq(p.value, "True");
    prop_free(&p);
    if (!yes && prop_get(q->name, "netvm", &p))
        yes = !prop_is_none(&p);
    prop_free(&p);
    return yes;
}

static const struct check checks[] = {
    {OPT_RUNNING, "running", is_running},
    {OPT_PAUSED, "paused", is_paused},
    {OPT_TEMPLATE, "template", is_template},
    {OPT_NETWORKED, "networked", is_networked},
};

struct check_ctx {
    struct target_args t;
    bool asked[ELEMENTSOF(checks)];
    int log_level; /* upstream: verbose - quiet, 1 by default */
};

static void check_option(void *userdata, int id, const char *value) {
    struct check_ctx *c = userdata;
    if (target_args_option(&c->t, id, value))
        return;
    for (size_t i = 0; i < ELEMENTSOF(checks); i++)
        if (checks[i].id == id)
            c->asked[i] = true;
}

/* Upstream logs through Python's logging: at verbosity >= 1 a handler on stderr writes
 * "qvm-check: MESSAGE" for info and warnings; below that no handler is set and only
 * warnings reach stderr (logging's last resort), as the bare message. */
static void log_msg(const struct check_ctx *c, bool warning, const char *fmt, ...) _printf_(3, 4);
static void log_msg(const struct check_ctx *c, bool warning, const char *fmt, ...) {
    va_list ap;
    if (c->log_level < 1 && !warning)
        return;
    if (c->log_level >= 1)
        fprintf(stderr, "%s: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int cmp_qube(const void *a, const void *b) {
    return strcmp(((const struct qube *)a)->name, ((const struct qube *)b)->name);
}

/* "running, paused": the words of the checks asked for, in upstream's order; empty when
 * none is asked. */
static void status_words(const struct check_ctx *c, char *buf, size_t size) {
    buf[0] = '\0';
    for (size_t i = 0; i < ELEMENTSOF(checks); i++)
        if (c->asked[i])
            snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     checks[i].status);
}

static bool passes_all(const struct check_ctx *c, const struct qube *q) {
    for (size_t i = 0; i < ELEMENTSOF(checks); i++)
        if (c->asked[i] && !checks[i].passes(q))
            return false;
    return true;
}

/* With checks: 0 if every qube passes them all, 3 if some do, 1 if none does (an empty
 * selection, e.g. only unknown names, passes). Passing qubes are reported. */
static int run_checks(const struct check_ctx *c, const struct qube_list *qubes,
                      const char *status) {
    _cleanup_free_ bool *pass = xcalloc(qubes->n + 1, sizeof(bool));
    size_t passed = 0;
    for (size_t i = 0; i < qubes->n; i++)
        passed += pass[i] = passes_all(c, &qubes->v[i]);
    if (passed == 0)
        log_msg(c, false, "None of qubes: %s", status);
    for (size_t i = 0; i < qubes->n; i++)
        if (pass[i])
            log_msg(c, false, "%s: %s", qubes->v[i].name, status);
    return passed == qubes->n ? 0 : passed == 0 ? 1 : 3;
}

int qvm_check_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    _cleanup_(strv_free) struct strv unknown = {0};
    struct check_ctx c = {0};
    opts_parse(&check_parser, argc, argv, check_option, &c, &r);
    c.log_level = 1 + r.verbose;
    target_args_set_names(&c.t, &r);
    targets_resolve_collect(&check_parser, &c.t, &qubes, &unknown);
    target_args_free(&c.t);
    if (qubes.n > 1)
        qsort(qubes.v, qubes.n, sizeof(*qubes.v), cmp_qube);

    char status[64];
    status_words(&c, status, sizeof(status));
    int ret = 0;
    if (status[0])
        ret = run_checks(&c, &qubes, status);
    else if (qubes.n == 0)
        ret = 1;
    else
        for (size_t i = 0; i < qubes.n; i++)
            log_msg(&c, false, "%s: exists", qubes.v[i].name);
    /* upstream takes each unknown name out of "no such domain: 'NAME'" from its 17th
     * character on, so the closing quote stays: "NAME': non-existent!" */
    _cleanup_(strv_free) struct strv quoted = {0};
    for (size_t i = 0; i < unknown.n; i++) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s'", unknown.v[i]);
        strv_push(&quoted, buf);
    }
    strv_sort(&quoted); /* sorted as upstream sorts them, quote included */
    for (size_t i = 0; i < quoted.n; i++)
        log_msg(&c, true, "%s: non-existent!", quoted.v[i]);
    return unknown.n ? 1 : ret;
}
