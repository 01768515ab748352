/* qvm-shutdown [--wait] [--force] VMNAME... | --all: admin.vm.Shutdown (+force/+wait).
 * Like upstream, qubes refused as "in use" are retried (others may have gone down in
 * the meantime), timed-out ones are retried once and then killed. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "strbuf.h"

enum { OPT_WAIT = 1, OPT_TIMEOUT, OPT_FORCE, OPT_DRY_RUN };

static const struct opt_spec shutdown_specs[] = {
    {"wait", 0, OPT_FLAG, OPT_WAIT, NULL, "wait for the VMs to shut down"},
    {"timeout", 0, OPT_VALUE, OPT_TIMEOUT, "TIMEOUT",
     "Deprecated, use --wait instead. Setting this option will enable --wait"},
    {"force", 0, OPT_FLAG, OPT_FORCE, NULL,
     "shut down even if other qubes depend on this one (e.g. as NetVM or AudioVM); does\n"
     "                        not affect how the qube itself is shut down; use with caution"},
    {"dry-run", 0, OPT_FLAG, OPT_DRY_RUN, NULL,
     "don't really shutdown or kill the domains; useful with --wait"},
    TARGET_OPT_SPECS("perform the action on all qubes"),
};

static const struct opt_parser shutdown_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--wait] [--timeout TIMEOUT] [--force] [--dry-run] "
             "[--all] [--exclude EXCLUDE] [VMNAME ...]",
    .description = "Shut down qubes gracefully. Exit status: number of qubes that failed.",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .specs = shutdown_specs,
    .n_specs = ELEMENTSOF(shutdown_specs),
};

struct shutdown_ctx {
    struct target_args t;
    bool wait, force, dry_run;
};

static void shutdown_option(void *userdata, int id, const char *value) {
    struct shutdown_ctx *c = userdata;
    if (target_args_option(&c->t, id, value))
        return;
    if (id == OPT_WAIT || id == OPT_TIMEOUT)
        c->wait = true;
    else if (id == OPT_FORCE)
        c->force = true;
    else if (id == OPT_DRY_RUN)
        c->dry_run = true;
}

/* Qubes that failed, with the reason; kept per category. */
struct failures {
    struct strv names;
    struct strv msgs;
};

static void failures_free(struct failures *f) {
    strv_free(&f->names);
    strv_free(&f->msgs);
}

struct round {
    struct failures other, used, timedout;
};

static void round_free(struct round *r) {
    failures_free(&r->other);
    failures_free(&r->used);
    failures_free(&r->timedout);
}

static void shutdown_round(const char *arg, const struct strv *names, struct round *out) {
    *out = (struct round){0};
    for (size_t i = 0; i < names->n; i++) {
        struct cli_err err;
        if (cli_call_simple("admin.vm.Shutdown", arg, names->v[i], NULL, &err) == 0 ||
            cli_err_is(&err, "QubesVMNotStartedError"))
            continue;
        struct failures *f = cli_err_is(&err, "QubesVMInUseError")             ? &out->used
                             : cli_err_is(&err, "QubesVMShutdownTimeoutError") ? &out->timedout
                                                                               : &out->other;
        strv_push(&f->names, names->v[i]);
        strv_push(&f->msgs, err.msg);
    }
}

static void merge(struct failures *into, struct failures *from) {
    for (size_t i = 0; i < from->names.n; i++) {
        strv_push(&into->names, from->names.v[i]);
        strv_push(&into->msgs, from->msgs.v[i]);
    }
    failures_free(from);
}

static char *join_names(const struct strv *names) {
    struct strbuf sb = STRBUF_INIT;
    for (size_t i = 0; i < names->n; i++)
        strbuf_printf(&sb, "%s%s", i ? ", " : "", names->v[i]);
    strbuf_str(&sb);
    return sb.data;
}

/* Retry the "in use" ones as many times as there were, while that makes progress. */
static void retry_in_use(const char *arg, struct round *r) {
    size_t tries = r->used.names.n;
    if (tries == 0)
        return;
    cli_print_error("Retrying shutdown of qubes that were in use for %zu time(s)", tries);
    for (size_t t = 0; t < tries && r->used.names.n > 0; t++) {
        _cleanup_free_ char *list = join_names(&r->used.names);
        cli_print_error("Retrying shutdown of qubes that were in use: %s", list);
        size_t before = r->used.names.n;
        struct round again;
        shutdown_round(arg, &r->used.names, &again);
        failures_free(&r->used);
        r->used = again.used;
        merge(&r->other, &again.other);
        merge(&r->timedout, &again.timedout);
        if (r->used.names.n == before)
            break;
    }
}

static void retry_timed_out(const char *arg, struct round *r) {
    if (r->timedout.names.n == 0)
        return;
    _cleanup_free_ char *list = join_names(&r->timedout.names);
    cli_print_error("Retrying shutdown of qubes that timed out: %s", list);
    struct round again;
    shutdown_round(arg, &r->timedout.names, &again);
    failures_free(&r->timedout);
    r->timedout = again.timedout;
    merge(&r->other, &again.other);
    merge(&r->used, &again.used);
    if (r->timedout.names.n == 0)
        return;
    _cleanup_free_ char *killing = join_names(&r->timedout.names);
    cli_print_error("Killing timed out qubes: %s", killing);
    struct failures still = {0};
    for (size_t i = 0; i < r->timedout.names.n; i++) {
        struct cli_err err;
        if (cli_call_simple("admin.vm.Kill", "", r->timedout.names.v[i], NULL, &err) == 0 ||
            cli_err_is(&err, "QubesVMNotStartedError"))
            continue;
        strv_push(&still.names, r->timedout.names.v[i]);
        strv_push(&still.msgs, err.msg);
    }
    failures_free(&r->timedout);
    r->timedout = still;
}

static size_t report(const struct failures *f) {
    for (size_t i = 0; i < f->names.n; i++)
        cli_print_error("Failed to shut down: %s: %s", f->names.v[i], f->msgs.v[i]);
    return f->names.n;
}

int qvm_shutdown_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    _cleanup_(strv_free) struct strv names = {0};
    _cleanup_(round_free) struct round result = {0};
    struct shutdown_ctx c = {0};
    opts_parse(&shutdown_parser, argc, argv, shutdown_option, &c, &r);
    target_args_set_names(&c.t, &r);
    targets_resolve(&shutdown_parser, &c.t, true, false, &qubes);
    /* shutting everything down: dependencies go down together */
    c.force = c.force || (c.t.all && c.t.exclude.n == 0);
    target_args_free(&c.t);
    if (c.dry_run)
        return 0;
    const char *arg = c.force && c.wait ? "force+wait" : c.force ? "force" : c.wait ? "wait" : "";
    for (size_t i = 0; i < qubes.n; i++)
        strv_push(&names, qubes.v[i].name);
    shutdown_round(arg, &names, &result);
    retry_in_use(arg, &result);
    retry_timed_out(arg, &result);
    size_t failed = report(&result.other) + report(&result.used) + report(&result.timedout);
    return failed > 255 ? 255 : (int)failed;
}
