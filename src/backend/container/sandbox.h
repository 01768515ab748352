/* Least privilege for the processes of a qube: what remains of root's power inside its
 * user namespace. Called in the qube's init just before it execs the agent. */
#pragma once

/* Bounding, permitted, effective and inheritable sets reduced to a small list (see
 * sandbox.c for the list and why); ambient cleared; PR_SET_NO_NEW_PRIVS set. */
int sandbox_drop_capabilities(void);
/* A seccomp filter (libseccomp) that returns EPERM for what Docker's default profile
 * blocks: keyctl, bpf, mount/umount/pivot_root and the new mount API, kexec, module
 * loading, reboot of the host, namespace creation, perf, userfaultfd, ... */
int sandbox_load_seccomp(void);
/* Compiles the filter once (in the daemon) so each qube's init only installs it. */
int sandbox_prepare_seccomp(void);
