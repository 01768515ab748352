/* qvm-notes [--force] [--edit | --print | --import FILE | --set NOTES | --append NOTES |
 * --delete] VMNAME: a qube's notes (admin.vm.notes.Get/Set), with upstream's options,
 * messages and exit codes (1: the call failed, 2: not confirmed or bad usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

enum notes_action { EDIT = 1, PRINT, IMPORT, SET, APPEND, DELETE };
enum { OPT_FORCE = 100 };

static const struct opt_spec notes_specs[] = {
    {"force", 'f', OPT_FLAG, OPT_FORCE, NULL, "Do not prompt for confirmation; assume `yes`"},
    {"edit", 'e', OPT_FLAG, EDIT, NULL, "Edit qube notes in $EDITOR (default text editor)"},
    {"print", 'p', OPT_FLAG, PRINT, NULL, "Print qube notes"},
    {"import", 'i', OPT_VALUE, IMPORT, "FILENAME", "Import qube notes from file"},
    {"set", 's', OPT_VALUE, SET, "'NOTES'", "Set qube notes from provided string"},
    {"append", 0, OPT_VALUE, APPEND, "'NOTES'", "Append the provided string to qube notes"},
    {"delete", 'd', OPT_FLAG, DELETE, NULL, "Delete qube notes"},
};

static const struct opt_parser notes_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--force]\n"
             "                 [--edit | --print | --import FILENAME | --set 'NOTES' |"
             " --append 'NOTES' | --delete]\n"
             "                 VMNAME",
    .description = "Manipulate qube notes\n\nnote: `--edit` is the default action for qube notes.",
    .positionals = "  VMNAME                name of the domain\n",
    .epilog = "Each qube notes is limited to 256KB of clear-text. See program manpage for "
              "more information on other limitations.",
    .specs = notes_specs,
    .n_specs = ELEMENTSOF(notes_specs),
};

struct notes_ctx {
    enum notes_action action;
    const char *value;
    bool force;
};

static void notes_option(void *userdata, int id, const char *value) {
    struct notes_ctx *c = userdata;
    if (id == OPT_FORCE) {
        c->force = true;
        return;
    }
    if (c->action && (int)c->action != id)
        opts_error(&notes_parser, "only one of --edit, --print, --import, --set, --append, "
                                  "--delete is allowed");
    c->action = (enum notes_action)id;
    c->value = value;
}

static int get_notes(const char *vm, char **out) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.vm.notes.Get", "", vm, NULL, &reply, &err) < 0) {
        fprintf(stderr, "Unable to get qube notes: %s\n", err.msg);
        return -1;
    }
    *out = xstrdup(reply.r.content);
    return 0;
}

static int set_notes(const char *vm, const char *text, const char *what) {
    struct cli_err err;
    if (cli_call_simple("admin.vm.notes.Set", "", vm, text, &err) < 0) {
        fprintf(stderr, "%s: %s\n", what, err.msg);
        return 1;
    }
    return 0;
}

static int read_file(const char *path, char **out) {
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        strbuf_append(&sb, buf, n);
    fclose(f);
    strbuf_str(&sb);
    *out = TAKE_PTR(sb.data);
    return 0;
}

/* The notes in a temp file, ${VISUAL:-${EDITOR:-vi}} on it, saved if it changed. */
static int edit(const char *vm) {
    _cleanup_free_ char *notes = NULL, *edited = NULL;
    if (get_notes(vm, &notes) < 0)
        return 1;
    char path[] = "/tmp/qube_notes_XXXXXX.txt";
    int fd = mkstemps(path, 4);
    if (fd < 0 || write(fd, notes, strlen(notes)) != (ssize_t)strlen(notes)) {
        fprintf(stderr, "Failed to edit qube notes: cannot write %s\n", path);
        return 1;
    }
    close(fd);
    struct stat before, after;
    stat(path, &before);
    _cleanup_free_ char *cmd = NULL;
    if (asprintf(&cmd, "${VISUAL:-${EDITOR:-vi}} '%s'", path) < 0)
        abort();
    int status = system(cmd);
    int ret = 0;
    if (status != 0) {
        fprintf(stderr, "Failed to edit qube notes: the editor failed\n");
        ret = 1;
    } else if (stat(path, &after) == 0 &&
               (after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
                after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) &&
               read_file(path, &edited) == 0) {
        ret = set_notes(vm, edited, "Failed to edit qube notes");
    }
    unlink(path);
    return ret;
}

static int append(const char *vm, const char *text) {
    _cleanup_free_ char *notes = NULL;
    if (get_notes(vm, &notes) < 0)
        return 1;
    size_t len = strlen(notes);
    _cleanup_free_ char *all = NULL;
    /* a last line that is not empty gets its newline first */
    if (asprintf(&all, "%s%s%s", notes, len && notes[len - 1] != '\n' ? "\n" : "", text) < 0)
        abort();
    return set_notes(vm, all, "Unable to append qube notes");
}

static int delete (const char *vm, bool force) {
    if (!force) {
        printf("You are about to delete existing qube notes\n");
        printf("Are you certain? [y/N]");
        fflush(stdout);
        char answer[16] = "";
        if (!fgets(answer, sizeof(answer), stdin) || (answer[0] != 'y' && answer[0] != 'Y') ||
            (answer[1] != '\n' && answer[1] != '\0'))
            exit(2);
    }
    return set_notes(vm, "", "Unable to delete qube notes");
}

int qvm_notes_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    struct notes_ctx c = {0};
    opts_parse(&notes_parser, argc, argv, notes_option, &c, &r);
    if (r.n_pos == 0)
        opts_error(&notes_parser, "the following arguments are required: VMNAME");
    if (r.n_pos > 1)
        opts_error(&notes_parser, "unrecognized arguments: %s", r.pos[1]);
    qube_resolve(&notes_parser, r.pos[0], &vm);
    const char *name = vm.v[0].name;
    _cleanup_free_ char *text = NULL;
    switch (c.action ? c.action : EDIT) {
    case EDIT: return edit(name);
    case PRINT:
        if (get_notes(name, &text) < 0)
            return 1;
        printf("%s\n", text);
        return 0;
    case SET: return set_notes(name, c.value, "Unable to set qube notes");
    case APPEND: return append(name, c.value);
    case IMPORT:
        if (read_file(c.value, &text) < 0) {
            fprintf(stderr, "Unable to import notes file: cannot read %s\n", c.value);
            return 1;
        }
        return set_notes(name, text, "Unable to import notes file");
    case DELETE: return delete (name, c.force);
    }
    return 0;
}
