/* qvm-tags VMNAME [list [TAG] | add TAG... | del TAG]: manage a qube's tags, with
 * upstream's sub-command names and aliases. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct opt_parser tags_parser = {
    .usage = "[-h] [--verbose] [--quiet] VMNAME {list,ls,l,add,a,set,del,d,unset,u} ...",
    .description = "manage domain's tags\n\n"
                   "commands:\n"
                   "  list (ls,l) [TAG]     list tags, or print TAG if set (exit 1 if not)\n"
                   "  add (a,set) TAG...    add tags\n"
                   "  del (d,unset,u) TAG   remove a tag (no error if it is not set)\n"
                   "Without a command, tags are listed.",
    .positionals = "  VMNAME                a domain name\n",
};

enum tags_mode { TAGS_LIST, TAGS_ADD, TAGS_DEL };

static enum tags_mode parse_mode(const char *word) {
    static const struct {
        const char *name;
        enum tags_mode mode;
    } modes[] = {
        {"list", TAGS_LIST}, {"ls", TAGS_LIST}, {"l", TAGS_LIST},  {"add", TAGS_ADD},
        {"a", TAGS_ADD},     {"set", TAGS_ADD}, {"del", TAGS_DEL}, {"d", TAGS_DEL},
        {"unset", TAGS_DEL}, {"u", TAGS_DEL},
    };
    for (size_t i = 0; i < ELEMENTSOF(modes); i++)
        if (streq(word, modes[i].name))
            return modes[i].mode;
    opts_error(&tags_parser,
               "argument command: invalid choice: '%s' (choose from 'list', 'ls', 'l', "
               "'add', 'a', 'set', 'del', 'd', 'unset', 'u')",
               word);
}

static int tags_list(const char *vm, char **tags, size_t n) {
    struct cli_err err;
    if (n > 1)
        opts_error(&tags_parser, "unrecognized arguments: %s", tags[1]);
    if (n == 1) {
        _cleanup_reply_ struct client_reply reply = {};
        if (cli_call("admin.vm.tag.Get", tags[0], vm, NULL, &reply, &err) < 0)
            cli_die_err(&err);
        if (!streq(reply.r.content, "1"))
            return 1;
        printf("%s\n", tags[0]);
        return 0;
    }
    _cleanup_reply_ struct client_reply reply = {};
    _cleanup_(strv_free) struct strv all = {0};
    if (cli_call("admin.vm.tag.List", "", vm, NULL, &reply, &err) < 0)
        cli_die_err(&err);
    strv_split_lines(&all, reply.r.content);
    strv_sort(&all);
    for (size_t i = 0; i < all.n; i++)
        printf("%s\n", all.v[i]);
    return 0;
}

static int tags_change(const char *vm, enum tags_mode mode, char **tags, size_t n) {
    struct cli_err err;
    if (n == 0)
        opts_error(&tags_parser, "the following arguments are required: tag");
    if (mode == TAGS_DEL && n > 1)
        opts_error(&tags_parser, "unrecognized arguments: %s", tags[1]);
    struct qerr qe = {0};
    for (size_t i = 0; i < n; i++) /* all of them first: a bad one changes nothing */
        cli_check(check_tag(tags[i], &qe), &qe);
    for (size_t i = 0; i < n; i++) {
        const char *method = mode == TAGS_ADD ? "admin.vm.tag.Set" : "admin.vm.tag.Remove";
        if (cli_call_simple(method, tags[i], vm, NULL, &err) < 0 &&
            !(mode == TAGS_DEL && cli_err_is(&err, "QubesTagNotFoundError")))
            cli_die_err(&err);
    }
    return 0;
}

static void no_options(void *userdata, int id, const char *value) {}

int qvm_tags_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    opts_parse(&tags_parser, argc, argv, no_options, NULL, &r);
    if (r.n_pos == 0)
        opts_error(&tags_parser, "the following arguments are required: VMNAME");
    enum tags_mode mode = r.n_pos > 1 ? parse_mode(r.pos[1]) : TAGS_LIST;
    qube_resolve(&tags_parser, r.pos[0], &vm);
    char **rest = r.pos + (r.n_pos > 1 ? 2 : 1);
    size_t n_rest = r.n_pos > 1 ? r.n_pos - 2 : 0;
    if (mode == TAGS_LIST)
        return tags_list(vm.v[0].name, rest, n_rest);
    return tags_change(vm.v[0].name, mode, rest, n_rest);
}
