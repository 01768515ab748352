/* dispenser-preload: the host's side of preloading, for the boot unit and the suspend
 * hook (Qubes' /usr/lib/qubes/preload-dispvm and its internal.Suspend* calls).
 *   refill        admin.vm.CreateDisposable+preload on every disposable template, all at
 *                 once (the daemon fills those with an effective maximum, never above it)
 *   suspend-pre   discard every preloaded disposable before the host suspends
 *   suspend-post  refill after resume */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s {refill|suspend-pre|suspend-post}\n\n"
            "Preloaded disposables on this host: fill every disposable template's preload\n"
            "list (the boot unit runs this), or discard and refill around a suspend.\n",
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

int dispenser_preload_main(int argc, char **argv) {
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
