/* Device control on cgroup2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to a qube's
 * cgroup (cgroup2 has no devices.allow; docs/devices.md). The program is generated from
 * a list of rules as the v1 device cgroup has them, and replaced as a whole when the list
 * changes (BPF_F_REPLACE: there is no moment without a program). Raw bpf(2) with a
 * hand-assembled program: a handful of compares per rule, no compiler, no library. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct devbpf_rule {
    char type;       /* 'b' or 'c' */
    unsigned major;  /* */
    int minor;       /* -1: any */
    unsigned access; /* DEVBPF_MKNOD | DEVBPF_READ | DEVBPF_WRITE */
};
#define DEVBPF_MKNOD 1u /* BPF_DEVCG_ACC_* */
#define DEVBPF_READ 2u
#define DEVBPF_WRITE 4u

/* Loads a program allowing what the rules allow and nothing else: its fd, or -errno. */
int devbpf_load(const struct devbpf_rule *rules, size_t n);
/* Attaches prog to the cgroup directory fd, in place of old (-1: none; then every other
 * device program attached there directly, by an earlier daemon, is detached once prog
 * is in place). 0 or -errno. */
int devbpf_attach(int cgroup_fd, int prog_fd, int old_fd);
