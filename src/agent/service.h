/* Turning a request into a process: which program (qubes.VMShell, qubes.VMExec,
 * /etc/qubes-rpc/...), as which user, with which environment; and starting it. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "agent.h"

#define SERVICE_WAIT_READY "qubes.WaitForRunningSystem"

struct spawn_spec {
    char **argv; /* owned (vmexec argv is one block: argv_block) */
    char **envp; /* owned, each string too */
    void *argv_block;
    bool search_path; /* execvp semantics (VMExec), else argv[0] is a path */
    bool switch_user;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    size_t ngroups;
    char *home; /* owned */
    int stdio[3];
    /* > 2: handed on as fd 3 (the GUI channel, for the GUI agent) */
    int extra_fd;
    bool pty; /* AGENT_F_PTY: stdio[0] and [1] are relayed to a terminal allocated here,
               * stdio[2] carries window-size records (pty.c) */
};

/* Fills spec for a request. 0 = run it; 1 = the built-in qubes.WaitForRunningSystem;
 * -errno = refuse (-ENOENT unknown service or user, -EINVAL bad name or argument). */
int service_resolve(const struct agent_config *cfg, const struct agent_request_body *b,
                    struct spawn_spec *spec);
/* A root process with the agent's stdout/stderr, for start-up scripts. */
void service_spec_plain(char **argv, struct spawn_spec *spec);
/* A process of the qube's default user ("user"), with the agent's stdout/stderr. */
int service_spec_user(const struct agent_config *cfg, char **argv, struct spawn_spec *spec);
void spawn_spec_free(struct spawn_spec *spec);
/* fork + exec in a new session. pid > 0, or -errno if the program could not be started
 * (the child reports exec and credential failures through a close-on-exec pipe). */
pid_t spawn_run(const struct spawn_spec *spec);
/* In the forked child, stdio in place: switch user, chdir, exec; on failure errno goes
 * to errpipe and the child exits 127. */
_Noreturn void spawn_become(const struct spawn_spec *s, int errpipe);

/* pty.c. In the forked child (a new session, stdio in place): allocates a terminal, runs
 * the service on it as its controlling terminal and relays between it and stdin/stdout,
 * applying the window-size records read from fd 2; exits as the service did. */
_Noreturn void pty_session(const struct spawn_spec *s, int errpipe);
/* Adds TERM for a service on a terminal. */
void service_env_add_term(struct spawn_spec *spec);
