#include "service.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "passwd.h"
#include "vmexec.h"

/* AGENT_BIN_DIR last: qrexec-client-vm for templates that lack /usr/bin's link to it */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" AGENT_BIN_DIR

static bool valid_chars(const char *s, const char *extra) {
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || (c && strchr(extra, c))))
            return false;
    }
    return true;
}

/* Names end up in a path: no '/', no "..", not empty, bounded. */
static int validate_names(const char *service, const char *arg) {
    if (!*service || !valid_chars(service, "") || service[0] == '.')
        return -EINVAL;
    if (!valid_chars(arg, "+") || strlen(service) + strlen(arg) > 250)
        return -EINVAL;
    return 0;
}

static char **strv_new(size_t n) { return xcalloc(n + 1, sizeof(char *)); }

static char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
static char *strdup_printf(const char *fmt, ...) {
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    return s;
}

static bool is_executable(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* /etc/qubes-rpc/<service>+<arg> if it exists, else /etc/qubes-rpc/<service>. */
static int resolve_rpc_file(const struct agent_config *cfg, const char *service, const char *arg,
                            struct spawn_spec *spec) {
    char *path = NULL;
    if (*arg) {
        path = strdup_printf("%s/%s+%s", cfg->rpc_dir, service, arg);
        if (!is_executable(path))
            free(TAKE_PTR(path));
    }
    if (!path)
        path = strdup_printf("%s/%s", cfg->rpc_dir, service);
    if (!is_executable(path)) {
        free(path);
        return -ENOENT;
    }
    spec->argv = strv_new(2);
    spec->argv[0] = path;
    if (*arg)
        spec->argv[1] = xstrdup(arg);
    return 0;
}

/* qubes.VMShell without a command reads its script from stdin, and the upstream qvm-run
 * sends "CMD; exit\n" followed by the caller's data on the same stream: the shell must
 * never read past the line it runs, or the data is lost. Qubes' VMShell is `exec
 * /bin/bash`, and bash reads a pipe a byte at a time. dash and busybox ash read ahead, so
 * where there is no bash the script is read with the `read` builtin (a byte at a time)
 * and each line runs once what was read so far is a complete command (`sh -n`). */
static const char VMSHELL_BASH[] = "/bin/bash";
static const char VMSHELL_LINEWISE[] =
    "__qubes_cmd= __qubes_status=0\n"
    "while IFS= read -r __qubes_line || [ -n \"$__qubes_line\" ]; do\n"
    "  __qubes_cmd=\"$__qubes_cmd$__qubes_line\n\"\n"
    "  __qubes_line=\n"
    "  if /bin/sh -n -c \"$__qubes_cmd\" 2>/dev/null; then\n"
    "    eval \"$__qubes_cmd\"; __qubes_status=$?; __qubes_cmd=\n"
    "  fi\n"
    "done\n"
    "[ -z \"$__qubes_cmd\" ] || { eval \"$__qubes_cmd\"; __qubes_status=$?; }\n"
    "exit $__qubes_status\n";

static void resolve_vmshell(const char *command, struct spawn_spec *spec) {
    spec->argv = strv_new(3);
    if (*command || !is_executable(VMSHELL_BASH)) {
        spec->argv[0] = xstrdup("/bin/sh");
        spec->argv[1] = xstrdup("-c");
        spec->argv[2] = xstrdup(*command ? command : VMSHELL_LINEWISE);
    } else {
        spec->argv[0] = xstrdup(VMSHELL_BASH);
    }
}

static int resolve_program(const struct agent_config *cfg, const struct agent_request_body *b,
                           struct spawn_spec *spec) {
    if (streq(b->service, "qubes.VMShell")) {
        resolve_vmshell(b->command, spec);
        return 0;
    }
    if (streq(b->service, "qubes.VMExec")) {
        /* Qubes puts the encoded argv in the argument; accept it in `command` too. */
        const char *enc = *b->argument ? b->argument : b->command;
        char **argv;
        int r = vmexec_decode(enc, &argv);
        if (r < 0)
            return r;
        spec->argv_block = argv;
        spec->argv = argv;
        spec->search_path = true;
        return 0;
    }
    return resolve_rpc_file(cfg, b->service, b->argument, spec);
}

static int resolve_user(const struct agent_config *cfg, const char *name, struct passwd_entry *pw,
                        struct spawn_spec *spec) {
    int r = passwd_lookup(cfg->passwd, *name ? name : "user", pw);
    if (r < 0)
        return r == -ENOENT ? r : -ENOENT;
    spec->uid = pw->uid;
    spec->gid = pw->gid;
    spec->home = xstrdup(*pw->home ? pw->home : "/");
    /* Already that user (the agent run by hand in tests): nothing to switch. */
    spec->switch_user = !(getuid() == pw->uid && getgid() == pw->gid);
    spec->ngroups = group_list(cfg->group, pw->name, pw->gid, spec->groups,
                               ELEMENTSOF(spec->groups));
    return 0;
}

static void build_env(const struct agent_request_body *b, const struct passwd_entry *pw,
                      struct spawn_spec *spec) {
    char **env = strv_new(13);
    size_t n = 0;
    env[n++] = strdup_printf("PATH=%s", DEFAULT_PATH);
    env[n++] = strdup_printf("HOME=%s", spec->home);
    env[n++] = strdup_printf("USER=%s", pw->name);
    env[n++] = strdup_printf("LOGNAME=%s", pw->name);
    env[n++] = strdup_printf("SHELL=%s", *pw->shell ? pw->shell : "/bin/sh");
    env[n++] = strdup_printf("QREXEC_REMOTE_DOMAIN=%s", b->source);
    env[n++] = strdup_printf("QREXEC_SERVICE_ARGUMENT=%s", b->argument);
    env[n++] = strdup_printf("QREXEC_REQUESTED_TARGET=%s", b->target);
    env[n++] = strdup_printf("QREXEC_SERVICE_FULL_NAME=%s%s%s", b->service, *b->argument ? "+" : "",
                             b->argument);
    env[n++] = strdup_printf("QREXEC_AGENT_PID=%d", (int)getpid());
    const char *qube = getenv("DISPENSER_QUBE");
    if (qube)
        env[n++] = strdup_printf("DISPENSER_QUBE=%s", qube);
    const char *display = getenv("DISPLAY"); /* a GUI qube's own display (gui.c) */
    if (display)
        env[n++] = strdup_printf("DISPLAY=%s", display);
    spec->envp = env;
}

int service_resolve(const struct agent_config *cfg, const struct agent_request_body *b,
                    struct spawn_spec *spec) {
    *spec = (struct spawn_spec){.stdio = {-1, -1, -1}};
    int r = validate_names(b->service, b->argument);
    if (r < 0)
        return r;
    if (streq(b->service, SERVICE_WAIT_READY))
        return 1;
    _cleanup_(passwd_entry_free) struct passwd_entry pw = {0};
    r = resolve_user(cfg, b->user, &pw, spec);
    if (r >= 0)
        r = resolve_program(cfg, b, spec);
    if (r < 0) {
        spawn_spec_free(spec);
        return r;
    }
    build_env(b, &pw, spec);
    return 0;
}

int service_spec_user(const struct agent_config *cfg, char **argv, struct spawn_spec *spec) {
    *spec = (struct spawn_spec){.argv = argv, .stdio = {-1, 1, 2}};
    _cleanup_(passwd_entry_free) struct passwd_entry pw = {0};
    int r = resolve_user(cfg, "", &pw, spec);
    if (r < 0)
        return r;
    struct agent_request_body none = {.service = "",
                                      .argument = "",
                                      .source = "dom0",
                                      .target = ""};
    build_env(&none, &pw, spec);
    return 0;
}

void service_env_add_term(struct spawn_spec *spec) {
    size_t n = 0;
    while (spec->envp[n])
        n++;
    spec->envp = xrealloc(spec->envp, (n + 2) * sizeof(char *));
    spec->envp[n] = xstrdup("TERM=xterm-256color");
    spec->envp[n + 1] = NULL;
}

void service_spec_plain(char **argv, struct spawn_spec *spec) {
    *spec = (struct spawn_spec){.argv = argv, .stdio = {-1, 1, 2}};
    spec->envp = strv_new(3);
    spec->envp[0] = xstrdup("PATH=" DEFAULT_PATH);
    spec->envp[1] = xstrdup("HOME=/root");
    const char *qube = getenv("DISPENSER_QUBE");
    if (qube)
        spec->envp[2] = strdup_printf("DISPENSER_QUBE=%s", qube);
}

void spawn_spec_free(struct spawn_spec *spec) {
    if (spec->argv_block)
        free(spec->argv_block);
    else
        for (char **p = spec->argv; p && *p; p++)
            free(*p);
    if (!spec->argv_block)
        free(spec->argv);
    for (char **p = spec->envp; p && *p; p++)
        free(*p);
    free(spec->envp);
    free(spec->home);
    *spec = (struct spawn_spec){.stdio = {-1, -1, -1}};
}
