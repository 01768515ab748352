/* Start-up: the template's scripts in /etc/dispenser/startup.d (lexical order, one at a
 * time), then /rw/config/rc.local as Qubes runs it; or, when a template brings its own
 * init, its ready command retried until it succeeds. Requests are served meanwhile. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "monoclock.h"
#include "service.h"

#define READY_RETRY_MS 100

static bool is_executable_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int by_name(const struct dirent **x, const struct dirent **y) {
    return strcmp((*x)->d_name, (*y)->d_name); /* bytes, not the locale's collation */
}

static int not_hidden(const struct dirent *d) { return d->d_name[0] != '.'; }

/* The scripts to run, in order; rc.local last. */
static void collect_scripts(struct agent *a) {
    struct dirent **list = NULL;
    int n = scandir(a->cfg.startup_dir, &list, not_hidden, by_name);
    a->scripts = xcalloc((size_t)(n > 0 ? n : 0) + 2, sizeof(char *));
    for (int i = 0; i < n; i++) {
        char *path;
        if (asprintf(&path, "%s/%s", a->cfg.startup_dir, list[i]->d_name) < 0)
            abort();
        if (is_executable_file(path))
            a->scripts[a->nscripts++] = path;
        else
            free(path);
        free(list[i]);
    }
    free(list);
    if (is_executable_file(a->cfg.rc_local))
        a->scripts[a->nscripts++] = xstrdup(a->cfg.rc_local);
}

static pid_t spawn_argv(const char *prog, const char *arg1, const char *arg2) {
    char **argv = xcalloc(4, sizeof(char *));
    argv[0] = xstrdup(prog);
    argv[1] = arg1 ? xstrdup(arg1) : NULL;
    argv[2] = arg2 ? xstrdup(arg2) : NULL;
    _cleanup_(spawn_spec_free) struct spawn_spec spec = {0};
    service_spec_plain(argv, &spec);
    return spawn_run(&spec);
}

/* Starts the next script, or declares readiness when none is left. */
static void run_next_script(struct agent *a) {
    while (a->next_script < a->nscripts) {
        const char *path = a->scripts[a->next_script++];
        pid_t pid = spawn_argv(path, NULL, NULL);
        if (pid > 0) {
            a->startup_pid = pid;
            return;
        }
        agent_log("start-up script %s: %s", path, strerror((int)-pid));
    }
    agent_set_ready(a);
}

/* --init: the ready command is a file; executable = run it, else its text for /bin/sh. */
static void run_ready_command(struct agent *a) {
    char *path;
    if (asprintf(&path, "%s/ready-command", a->cfg.conf_dir) < 0)
        abort();
    pid_t pid = 0;
    if (is_executable_file(path)) {
        pid = spawn_argv(path, NULL, NULL);
    } else {
        FILE *f = fopen(path, "re");
        char cmd[1024] = "";
        if (!f) { /* no ready command: ready at once */
            free(path);
            agent_set_ready(a);
            return;
        }
        size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
        fclose(f);
        cmd[n] = '\0';
        pid = spawn_argv("/bin/sh", "-c", cmd);
    }
    free(path);
    a->startup_pid = pid > 0 ? pid : 0;
    if (pid <= 0)
        a->ready_retry_at = (int64_t)mono_ms() + READY_RETRY_MS;
}

/* A qube with a netvm resolves names through Qubes' virtual DNS servers, which its netvm
 * forwards (the engine says which in DISPENSER_DNS); written before any start-up script
 * or service runs. */
static void write_resolv_conf(void) {
    const char *dns = getenv("DISPENSER_DNS");
    if (!dns || !*dns)
        return;
    FILE *f = fopen("/etc/resolv.conf.dispenser", "w");
    if (!f) {
        agent_log("cannot write /etc/resolv.conf: %s", strerror(errno));
        return;
    }
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", dns);
    for (char *save, *s = strtok_r(copy, " ", &save); s; s = strtok_r(NULL, " ", &save))
        fprintf(f, "nameserver %s\n", s);
    /* a symlink left by the template (systemd-resolved's) is replaced, not followed */
    if (fclose(f) != 0 || rename("/etc/resolv.conf.dispenser", "/etc/resolv.conf") < 0)
        agent_log("cannot write /etc/resolv.conf: %s", strerror(errno));
}

void startup_begin(struct agent *a) {
    a->ready_retry_at = -1;
    if (gui_agent_begin(a))
        return; /* startup_continue once the GUI agent is up */
    startup_continue(a);
}

void startup_continue(struct agent *a) {
    write_resolv_conf();
    if (a->init_mode)
        return run_ready_command(a);
    collect_scripts(a);
    run_next_script(a);
}

bool startup_child_exited(struct agent *a, pid_t pid, int wstatus) {
    if (pid != a->startup_pid || pid <= 0)
        return false;
    a->startup_pid = 0;
    bool ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    if (a->init_mode) {
        if (ok)
            agent_set_ready(a);
        else if (!a->stopping)
            a->ready_retry_at = (int64_t)mono_ms() + READY_RETRY_MS;
        return true;
    }
    if (!ok)
        agent_log("start-up script %s failed (%s %d)", a->scripts[a->next_script - 1],
                  WIFSIGNALED(wstatus) ? "signal" : "exit status",
                  WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
    run_next_script(a);
    return true;
}

/* The loop's timer: time to retry the ready command. */
void startup_tick(struct agent *a) {
    if (a->ready_retry_at < 0 || (int64_t)mono_ms() < a->ready_retry_at)
        return;
    a->ready_retry_at = -1;
    if (!a->ready && !a->stopping)
        run_ready_command(a);
}
