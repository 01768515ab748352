/* Multi-call entry point: the tool is chosen by the name we were invoked as
 * (qvm-ls -> qvm-ls), or by the first argument when invoked as "qvm" ("qvm ls"). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "strbuf.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qvm TOOL [ARGS...]   (or run the tool by its own name)\n"
               "\nQubes OS style command line tools for dispenser.\n\ntools:\n");
    cli_commands_list(f);
    fprintf(f, "\nTOOL may be given with or without its \"qvm-\" prefix, e.g. \"qvm ls\".\n"
               "Run \"qvm TOOL --help\" for the options of a tool.\n");
}

/* "ls" -> "qvm-ls"; "qubes-prefs" and "qvm-ls" are taken as they are. */
static const struct cli_command *lookup_subcommand(const char *word) {
    const struct cli_command *c = cli_command_find(word);
    if (c)
        return c;
    char name[64];
    snprintf(name, sizeof(name), "qvm-%s", word);
    return cli_command_find(name);
}

static int run_as_qvm(int argc, char **argv) {
    if (argc < 2 || streq(argv[1], "-h") || streq(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (streq(argv[1], "--version")) {
        printf("qvm (dispenser) %s\n", DISPENSER_VERSION);
        return 0;
    }
    const struct cli_command *c = lookup_subcommand(argv[1]);
    if (!c) {
        fprintf(stderr, "qvm: error: unknown tool '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    cli_prog = c->name;
    return c->run(argc - 1, argv + 1);
}

int main(int argc, char **argv) {
    _cleanup_free_ char *copy = xstrdup(argc > 0 && argv[0] ? argv[0] : "qvm");
    const char *base = basename(copy);
    const struct cli_command *c = cli_command_find(base);
    if (!c)
        return run_as_qvm(argc, argv);
    cli_prog = c->name;
    return c->run(argc, argv);
}
