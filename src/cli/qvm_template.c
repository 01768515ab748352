/* qvm-template: build, import, list and remove TemplateVMs.
 *
 * Building goes through the Admin API only: admin.vm.Create.TemplateVM, then
 * internal.vm.volume.ImportBegin+root gives a staging directory that this tool (as host
 * root) fills, and internal.vm.volume.ImportEnd+root ("ok", or "fail\n<why>") lets the
 * daemon shift the files into the template's uid range and make them revision 1 of its
 * root. A failed build removes the template again. The hidden --staging-dir DIR skips
 * the daemon and just fills DIR (tests, root file systems made by hand). */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "monoclock.h"
#include "strbuf.h"
#include "template_features.h"
#include "template_remove.h"
#include "template_rootfs.h"

enum {
    OPT_LABEL = 1,
    OPT_SUITE,
    OPT_PACKAGES,
    OPT_MIRROR,
    OPT_STAGING,
    OPT_YES,
    OPT_DISASSOC,
    OPT_INSTALLED,
    OPT_MACHINE,
    OPT_MACHINE_JSON,
};

#define LABEL_SPEC \
    { "label", 'l', OPT_VALUE, OPT_LABEL, "LABEL", "label of the template (default: black)" }
#define STAGING_SPEC \
    { "staging-dir", 0, OPT_VALUE, OPT_STAGING, "DIR", NULL }

static const struct opt_spec build_specs[] = {
    LABEL_SPEC,
    {"suite", 0, OPT_VALUE, OPT_SUITE, "SUITE", "debian: the release (default: bookworm)"},
    {"packages", 0, OPT_VALUE, OPT_PACKAGES, "P1,P2", "debian: extra packages to install"},
    {"mirror", 0, OPT_VALUE, OPT_MIRROR, "URL",
     "debian: the archive (default: http://deb.debian.org/debian)"},
    STAGING_SPEC,
};
static const struct opt_spec import_specs[] = {LABEL_SPEC, STAGING_SPEC};
#define YES_SPEC \
    { "yes", 'y', OPT_FLAG, OPT_YES, NULL, "assume \"yes\" to questions" }
static const struct opt_spec remove_specs[] = {
    YES_SPEC,
    {"disassoc", 0, OPT_FLAG, OPT_DISASSOC, NULL,
     "also disassociate qubes from the templates to be removed: they move to a dummy "
     "template"},
};
static const struct opt_spec purge_specs[] = {YES_SPEC};
static const struct opt_spec list_specs[] = {
    {"installed", 0, OPT_FLAG, OPT_INSTALLED, NULL,
     "show installed templates (the only ones: there are no repositories)"},
    {"machine-readable", 0, OPT_FLAG, OPT_MACHINE, NULL,
     "installed|NAME|EPOCH:VERSION-RELEASE|REPONAME lines, as upstream"},
    {"machine-readable-json", 0, OPT_FLAG, OPT_MACHINE_JSON, NULL, "the same as JSON, as upstream"},
};

static const struct opt_parser top_parser = {
    .usage = "[-h] [--verbose] [--quiet] {build,import,list,remove,purge,install} ...",
    .description = "Create and manage TemplateVMs: qubes that hold a root file system.",
    .positionals = "  {build,import,list,remove}\n"
                   "    build               build a template: busybox NAME | debian NAME\n"
                   "    import              make a template from a root file system archive\n"
                   "    list                list templates with their root revision and size\n"
                   "    remove              remove templates (refused while qubes use them)\n"
                   "    purge               remove templates and every qube that uses them\n"
                   "    install             explains how to build or import a distribution\n",
    .epilog = "Run \"qvm-template COMMAND --help\" for the options of a command.",
};

static const struct opt_parser build_parser = {
    .usage = "build [-h] [--verbose] [--quiet] [--label LABEL] [--suite SUITE] "
             "[--packages P1,P2] [--mirror URL] {busybox,debian} NAME",
    .description = "Build a template's root file system. busybox: a minimal root from the\n"
                   "host's static busybox (well under a second). debian: debootstrap\n"
                   "--variant=minbase (about half a minute; needs network access).",
    .positionals = "  {busybox,debian}      what to build\n"
                   "  NAME                  name of the new template\n",
    .specs = build_specs,
    .n_specs = ELEMENTSOF(build_specs),
};

static const struct opt_parser import_parser = {
    .usage = "import [-h] [--verbose] [--quiet] [--label LABEL] NAME ROOTFS.tar",
    .description = "Make a template from a root file system archive (tar, optionally\n"
                   "compressed; e.g. the output of `docker export`). Owners are taken\n"
                   "as numeric ids.",
    .positionals = "  NAME                  name of the new template\n"
                   "  ROOTFS.tar            the archive\n",
    .specs = import_specs,
    .n_specs = ELEMENTSOF(import_specs),
};

static const struct opt_parser list_parser = {
    .usage = "list [-h] [--verbose] [--quiet] [--installed] [--machine-readable | "
             "--machine-readable-json] [TEMPLATESPEC ...]",
    .description = "List TemplateVMs: name, current revision of the root volume, its size\n"
                   "on disk and how the template was made ('-' when unknown). The\n"
                   "machine-readable forms list the templates qvm-template made, as upstream.",
    .positionals = "  TEMPLATESPEC          only templates whose name matches (shell wildcards)\n",
    .specs = list_specs,
    .n_specs = ELEMENTSOF(list_specs),
};

static const struct opt_parser remove_parser = {
    .usage = "remove [-h] [--verbose] [--quiet] [--yes] [--disassoc] NAME [NAME ...]",
    .description = "Remove templates. Refused (exit 1) while a qube is based on one, unless\n"
                   "--disassoc (which asks first unless --yes).",
    .positionals = "  NAME                  template to remove\n",
    .specs = remove_specs,
    .n_specs = ELEMENTSOF(remove_specs),
};

static const struct opt_parser purge_parser = {
    .usage = "purge [-h] [--verbose] [--quiet] [--yes] NAME [NAME ...]",
    .description = "Remove templates and every qube that uses them (recursively: the\n"
                   "disposables of a disposable template based on one too). Asks first\n"
                   "unless --yes.",
    .positionals = "  NAME                  template to remove\n",
    .specs = purge_specs,
    .n_specs = ELEMENTSOF(purge_specs),
};

static const struct opt_parser install_parser = {
    .usage = "install [-h] [--verbose] [--quiet] TEMPLATESPEC [TEMPLATESPEC ...]",
    .description = "There are no template repositories here: says how to build or import\n"
                   "the distribution named (exit 1).",
    .positionals = "  TEMPLATESPEC          a Qubes template name, e.g. debian-12-minimal\n",
};

struct template_ctx {
    const char *label, *suite, *packages, *mirror, *staging;
    const char *archive; /* import */
    bool quiet, verbose;
    bool yes, disassoc;         /* remove, purge */
    bool machine, machine_json; /* list */
};

static void template_option(void *userdata, int id, const char *value) {
    struct template_ctx *c = userdata;
    switch (id) {
    case OPT_LABEL: c->label = value; break;
    case OPT_SUITE: c->suite = value; break;
    case OPT_PACKAGES: c->packages = value; break;
    case OPT_MIRROR: c->mirror = value; break;
    case OPT_STAGING: c->staging = value; break;
    case OPT_YES: c->yes = true; break;
    case OPT_DISASSOC: c->disassoc = true; break;
    case OPT_INSTALLED: break; /* the only kind there is */
    case OPT_MACHINE: c->machine = true; break;
    case OPT_MACHINE_JSON: c->machine_json = true; break;
    }
}

/* ---- building ---- */

struct builder {
    const char *name;         /* the template-builder feature */
    const char *source, *url; /* for the template's features (template_features.h) */
    int (*fill)(const char *dir, const struct template_ctx *c, struct cli_err *err);
};

static int fill_busybox(const char *dir, const struct template_ctx *c, struct cli_err *err) {
    return rootfs_build_busybox(dir, err);
}

static int fill_debian(const char *dir, const struct template_ctx *c, struct cli_err *err) {
    struct rootfs_debian o = {c->suite ? c->suite : "bookworm", c->packages, c->mirror};
    /* debootstrap's hundreds of lines only with -v (shown anyway if it fails) */
    return rootfs_build_debian(dir, &o, !c->verbose, err);
}

/* Undo a half-made template; the original error is what the user needs to see. */
_Noreturn static void abandon(const char *name, const char *why) {
    struct cli_err err;
    if (cli_call_simple("admin.vm.Remove", "", name, NULL, &err) < 0)
        fprintf(stderr, "%s: warning: could not remove the unfinished template %s: %s\n", cli_prog,
                name, err.msg);
    cli_die("%s", why);
}

static char *import_begin(const char *name) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("internal.vm.volume.ImportBegin", "root", name, NULL, &reply, &err) < 0)
        abandon(name, err.msg);
    const char *path = reply.r.content;
    if (path[0] != '/')
        abandon(name, "the daemon gave no staging directory for the import");
    return xstrdup(path);
}

static void import_end(const char *name, const struct cli_err *build_err) {
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT;
    struct cli_err err;
    if (build_err)
        strbuf_printf(&payload, "fail\n%s", build_err->msg);
    else
        strbuf_puts(&payload, "ok");
    if (cli_call_simple("internal.vm.volume.ImportEnd", "root", name, strbuf_str(&payload), &err) <
        0)
        abandon(name, build_err ? build_err->msg : err.msg);
    if (build_err)
        abandon(name, build_err->msg);
}

static int build_via_daemon(const struct template_ctx *c, const char *name,
                            const struct builder *b) {
    _cleanup_free_ char *payload = NULL;
    struct cli_err err = {0};
    if (asprintf(&payload, "name=%s label=%s", name, c->label ? c->label : "black") < 0)
        abort();
    if (cli_call_simple("admin.vm.Create.TemplateVM", "", "dom0", payload, &err) < 0)
        cli_die("cannot create template %s: %s", name, err.msg);
    _cleanup_free_ char *staging = import_begin(name);
    int r = b->fill(staging, c, &err);
    _cleanup_(strv_free) struct strv features = {0};
    if (r == 0) /* read from the files before the daemon takes them */
        template_features_collect(staging, name,
                                  &(struct template_origin){b->name, b->source, b->url}, &features);
    import_end(name, r < 0 ? &err : NULL);
    if (template_features_apply(name, &features, &err) < 0)
        cli_die("template %s created, but setting its features failed: %s", name, err.msg);
    return 0;
}

static int build_in_dir(const struct template_ctx *c, const struct builder *b) {
    struct cli_err err = {0};
    if (mkdir(c->staging, 0755) < 0 && errno != EEXIST)
        cli_die("cannot create %s: %s", c->staging, strerror(errno));
    if (b->fill(c->staging, c, &err) < 0)
        cli_die("%s", err.msg);
    return 0;
}

static int build(const struct template_ctx *c, const char *name, const struct builder *b) {
    if (geteuid() != 0)
        cli_die("must be run as root: the root file system is written with host ids");
    double t0 = (mono_ms() / 1e3);
    int r = c->staging ? build_in_dir(c, b) : build_via_daemon(c, name, b);
    if (!c->quiet)
        printf("%s %s built (%s) in %.2f s\n", c->staging ? "Root file system" : "Template",
               c->staging ? c->staging : name, b->name, (mono_ms() / 1e3) - t0);
    return r;
}

static int cmd_build(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    struct template_ctx c = {0};
    opts_parse(&build_parser, argc, argv, template_option, &c, &r);
    if (r.n_pos != 2)
        opts_error(&build_parser,
                   r.n_pos < 2 ? "the following arguments are required: %s"
                               : "unrecognized arguments: %s",
                   r.n_pos == 0   ? "{busybox,debian}, NAME"
                   : r.n_pos == 1 ? "NAME"
                                  : r.pos[2]);
    c.quiet = r.verbose < 0;
    c.verbose = r.verbose > 0;
    struct builder b;
    if (streq(r.pos[0], "busybox"))
        b = (struct builder){"busybox", NULL, NULL, fill_busybox};
    else if (streq(r.pos[0], "debian"))
        b = (struct builder){"debian", c.suite ? c.suite : "bookworm", c.mirror, fill_debian};
    else
        opts_error(&build_parser, "argument {busybox,debian}: invalid choice: '%s'", r.pos[0]);
    if (!streq(b.name, "debian") && (c.suite || c.packages || c.mirror))
        opts_error(&build_parser, "--suite, --packages and --mirror are for debian only");
    return build(&c, r.pos[1], &b);
}

static int fill_import(const char *dir, const struct template_ctx *c, struct cli_err *err) {
    return rootfs_import_tar(dir, c->archive, err);
}

static int cmd_import(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    struct template_ctx c = {0};
    opts_parse(&import_parser, argc, argv, template_option, &c, &r);
    if (r.n_pos != 2)
        opts_error(&import_parser,
                   r.n_pos < 2 ? "the following arguments are required: %s"
                               : "unrecognized arguments: %s",
                   r.n_pos == 0   ? "NAME, ROOTFS.tar"
                   : r.n_pos == 1 ? "ROOTFS.tar"
                                  : r.pos[2]);
    c.quiet = r.verbose < 0;
    c.archive = r.pos[1];
    /* checked before the template is created, so a typo leaves nothing to clean up */
    if (access(c.archive, R_OK) < 0)
        cli_die("cannot read %s: %s", c.archive, strerror(errno));
    struct builder b = {"import", c.archive, NULL, fill_import};
    return build(&c, r.pos[0], &b);
}

/* ---- list and remove ---- */

static void format_size(uint64_t bytes, char *buf, size_t n) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(buf, n, "%lluB", (unsigned long long)bytes);
        return;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, "%.1f%s", v, units[u]);
}

/* admin.vm.volume.Info+root: "key=value" lines; '-' for whatever is not there. */
static void root_volume_info(const char *name, char *rev, char *size, size_t n) {
    _cleanup_reply_ struct client_reply reply = {};
    _cleanup_(strv_free) struct strv lines = {0};
    struct cli_err err;
    snprintf(rev, n, "-");
    snprintf(size, n, "-");
    if (cli_call("admin.vm.volume.Info", "root", name, NULL, &reply, &err) < 0)
        return;
    strv_split_lines(&lines, reply.r.content);
    for (size_t i = 0; i < lines.n; i++) {
        const char *l = lines.v[i];
        if (strncmp(l, "revision=", 9) == 0)
            snprintf(rev, n, "%s", l + 9);
        else if (strncmp(l, "usage=", 6) == 0)
            format_size(strtoull(l + 6, NULL, 10), size, n);
    }
}

static void template_builder(const char *name, char *out, size_t n) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    bool ok = cli_call("admin.vm.feature.Get", "template-builder", name, NULL, &reply, &err) == 0 &&
              reply.r.content[0];
    snprintf(out, n, "%s", ok ? reply.r.content : "-");
}

static bool spec_matches(const struct opts_result *r, const char *name) {
    if (r->n_pos == 0)
        return true;
    for (size_t i = 0; i < r->n_pos; i++)
        if (fnmatch(r->pos[i], name, 0) == 0)
            return true;
    return false;
}

/* A feature of the template, "" when it has none. */
static void feature_get(const char *name, const char *feature, char *out, size_t n) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    bool ok = cli_call("admin.vm.feature.Get", feature, name, NULL, &reply, &err) == 0;
    snprintf(out, n, "%s", ok ? reply.r.content : "");
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

/* Upstream's listing of installed templates: those whose template-name is their own
 * name, with epoch:version-release and the "repository" they came from. */
static int list_machine(const struct template_ctx *c, const struct opts_result *r,
                        const struct qube_list *all) {
    size_t n = 0;
    for (size_t i = 0; i < all->n; i++) {
        const char *name = all->v[i].name;
        char tname[64], epoch[32], version[64], release[64], repo[128], evr[192];
        if (!streq(all->v[i].klass, "TemplateVM") || !spec_matches(r, name))
            continue;
        feature_get(name, "template-name", tname, sizeof(tname));
        if (!streq(tname, name))
            continue; /* not made by qvm-template */
        feature_get(name, "template-epoch", epoch, sizeof(epoch));
        feature_get(name, "template-version", version, sizeof(version));
        feature_get(name, "template-release", release, sizeof(release));
        feature_get(name, "template-reponame", repo, sizeof(repo));
        snprintf(evr, sizeof(evr), "%s:%s-%s", epoch, version, release);
        if (c->machine) {
            printf("installed|%s|%s|%s\n", name, evr, repo);
        } else {
            printf(n ? ", {" : "{\"installed\": [{");
            printf("\"name\": ");
            json_string(name);
            printf(", \"evr\": ");
            json_string(evr);
            printf(", \"reponame\": ");
            json_string(repo);
            printf("}");
        }
        n++;
    }
    if (n == 0)
        opts_error(&list_parser, "No matching templates to list");
    if (c->machine_json)
        printf("]}\n");
    return 0;
}

static int cmd_list(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list all = {0};
    _cleanup_(table_free) struct table t = {.ncols = 4};
    struct template_ctx c = {0};
    struct cli_err err;
    opts_parse(&list_parser, argc, argv, template_option, &c, &r);
    if (c.machine && c.machine_json)
        opts_error(&list_parser, "argument --machine-readable-json: not allowed with argument "
                                 "--machine-readable");
    if (qube_list_fetch("dom0", &all, &err) < 0)
        cli_die_err(&err);
    if (c.machine || c.machine_json)
        return list_machine(&c, &r, &all);
    table_add_row(&t, (const char *const[]){"NAME", "REVISION", "SIZE", "BUILDER"});
    for (size_t i = 0; i < all.n; i++) {
        char rev[32], size[32], builder[64];
        if (!streq(all.v[i].klass, "TemplateVM") || !spec_matches(&r, all.v[i].name))
            continue;
        root_volume_info(all.v[i].name, rev, size, sizeof(rev));
        template_builder(all.v[i].name, builder, sizeof(builder));
        table_add_row(&t, (const char *const[]){all.v[i].name, rev, size, builder});
    }
    table_print(&t, stdout);
    return 0;
}

static int removal(const struct opt_parser *p, int argc, char **argv, bool purge) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    struct template_ctx c = {0};
    opts_parse(p, argc, argv, template_option, &c, &r);
    if (r.n_pos == 0)
        opts_error(p, "the following arguments are required: NAME");
    for (size_t i = 0; i < r.n_pos; i++)
        qube_resolve(p, r.pos[i], &qubes);
    for (size_t i = 0; i < qubes.n; i++)
        if (!streq(qubes.v[i].klass, "TemplateVM"))
            cli_die("%s is not a template (class %s); use qvm-remove", qubes.v[i].name,
                    qubes.v[i].klass);
    enum template_removal how = purge ? REMOVE_PURGE : c.disassoc ? REMOVE_DISASSOC : REMOVE_PLAIN;
    return template_remove(&qubes, how, c.yes);
}

static int cmd_remove(int argc, char **argv) { return removal(&remove_parser, argc, argv, false); }

static int cmd_purge(int argc, char **argv) { return removal(&purge_parser, argc, argv, true); }

/* Qubes' Debian templates are debian-N[-flavour]: the release they are built from. */
static const char *debian_suite(const char *spec) {
    static const char *const suites[][2] = {
        {"10", "buster"}, {"11", "bullseye"}, {"12", "bookworm"}, {"13", "trixie"}, {"14", "forky"},
    };
    if (strncmp(spec, "debian-", 7) != 0)
        return NULL;
    for (size_t i = 0; i < ELEMENTSOF(suites); i++) {
        size_t n = strlen(suites[i][0]);
        if (strncmp(spec + 7, suites[i][0], n) == 0 && (!spec[7 + n] || spec[7 + n] == '-'))
            return suites[i][1];
    }
    return NULL;
}

static int cmd_install(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    opts_parse(&install_parser, argc, argv, template_option, NULL, &r);
    if (r.n_pos == 0)
        opts_error(&install_parser, "the following arguments are required: TEMPLATESPEC");
    for (size_t i = 0; i < r.n_pos; i++) {
        const char *spec = r.pos[i];
        const char *suite = debian_suite(spec);
        fprintf(stderr,
                "%s: there are no template repositories here: templates are built or "
                "imported.\n",
                cli_prog);
        if (suite)
            fprintf(stderr, "  %s: qvm-template build debian %s --suite %s\n", spec, spec, suite);
        else
            fprintf(stderr,
                    "  %s: import a root file system archive of it, e.g.\n"
                    "    docker export $(docker create IMAGE) > %s.tar\n"
                    "    qvm-template import %s %s.tar\n"
                    "  (Debian: qvm-template build debian NAME --suite SUITE; "
                    "a minimal one: qvm-template build busybox NAME)\n",
                    spec, spec, spec, spec);
    }
    return 1;
}

/* ---- dispatch ---- */

static const struct cli_command subcommands[] = {
    {"build", cmd_build},   {"import", cmd_import}, {"list", cmd_list},
    {"remove", cmd_remove}, {"purge", cmd_purge},   {"install", cmd_install},
};

/* Options may come before the command ("qvm-template -q build ..."), as with argparse
 * subparsers: the command word moves to the front and its parser sees the rest. */
static int run_subcommand(const struct cli_command *c, int argc, char **argv, int at) {
    _cleanup_free_ char **sub = xcalloc((size_t)argc, sizeof(char *));
    int n = 0;
    sub[n++] = argv[at];
    for (int i = 1; i < argc; i++)
        if (i != at)
            sub[n++] = argv[i];
    return c->run(n, sub);
}

int qvm_template_main(int argc, char **argv) {
    int at = 1;
    while (at < argc && argv[at][0] == '-' && !streq(argv[at], "--"))
        at++;
    for (size_t i = 0; at < argc && i < ELEMENTSOF(subcommands); i++)
        if (streq(subcommands[i].name, argv[at]))
            return run_subcommand(&subcommands[i], argc, argv, at);
    /* no command: -h/--version are handled by the parser, anything else is an error */
    _cleanup_(opts_result_free) struct opts_result r = {0};
    opts_parse(&top_parser, argc, argv, template_option, NULL, &r);
    if (r.n_pos > 0)
        opts_error(&top_parser,
                   "argument COMMAND: invalid choice: '%s' (choose from "
                   "'build', 'import', 'list', 'remove', 'purge', 'install')",
                   r.pos[0]);
    opts_error(&top_parser, "the following arguments are required: COMMAND");
}
