/* cgroups for qubes, on pure cgroup v2 hosts and on hybrid hosts (v1 controllers plus a
 * controller-less cgroup2, as on this development machine).
 *
 * Each qube gets one cgroup per hierarchy, below the daemon's own cgroup as read from
 * /proc/self/cgroup (never the root: the daemon may itself be confined):
 *   v2:     <mount>/<own>/qubes/<name>   memory.max, pids.max, cpu.weight, cgroup.freeze,
 *           cgroup.kill (on pure v2 the daemon moves itself to <own>/supervisor first, so
 *           that <own> may delegate controllers: the no-internal-processes rule)
 *   hybrid: memory, pids, cpu (and freezer as a fallback) v1 hierarchies for limits;
 *           the cgroup2 mount for freeze/kill/cpu.stat where it exists.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cgroup_system; /* what the host offers, detected once */
struct cgroup_qube;   /* one qube's set of cgroups */

struct cgroup_limits {
    uint64_t memory_max_bytes; /* hard limit: OOM kill inside the qube beyond it */
    uint64_t pids_max;
    unsigned cpu_weight; /* cgroup v2 scale 1..10000, 100 = default */
    bool cpu_idle;       /* scheduled only when nothing else wants the CPU */
    /* deny every device but a container qube's /dev nodes (v1 device cgroup, or a BPF
     * program on cgroup2; QEMU and its helpers open what their jail gives them) */
    bool devices_own_only;
};

/* Detects hierarchies from /proc/self/mountinfo and /proc/self/cgroup. `group` is the
 * name of the directory under the daemon's cgroup ("qubes"). Returns NULL with errno. */
struct cgroup_system *cgroup_system_open(const char *group);
/* The same from other files than /proc/self/{mountinfo,cgroup}: lets tests pretend to be a
 * v1-only or cgroup2-only host on a hybrid machine. */
struct cgroup_system *cgroup_system_open_from(const char *group, const char *mountinfo,
                                              const char *self_cgroup);
/* Removes the (empty) group directories; -EBUSY while qube cgroups remain. */
int cgroup_system_remove_group(struct cgroup_system *cs);
void cgroup_system_free(struct cgroup_system *cs);
/* Memory left under the limits on the daemon's own cgroup and its ancestors (the qubes'
 * cgroups are below it), in bytes: 0 with *bytes, -ENOENT if none is limited, -ENOTSUP
 * without a memory controller. */
int cgroup_system_memory_headroom(const struct cgroup_system *cs, uint64_t *bytes);
/* Human-readable description for the log: "cgroup2 (memory pids cpu) at ..." */
const char *cgroup_system_describe(const struct cgroup_system *cs);

/* Creates (or reopens, for adoption) the qube's cgroups and applies limits; a zero field
 * means no limit, a controller the host lacks is logged at open and skipped. */
struct cgroup_qube *cgroup_qube_create(struct cgroup_system *cs, const char *name,
                                       const struct cgroup_limits *limits);
struct cgroup_qube *cgroup_qube_open(struct cgroup_system *cs, const char *name);
int cgroup_qube_attach(struct cgroup_qube *cg, pid_t pid);
/* Idle class (cpu.idle, kernel 5.15+; where it is missing, the smallest weight) or back
 * to `weight`: a preload sets itself up on CPU time nobody else wants, and gets its full
 * share once handed out. */
int cgroup_qube_set_idle(struct cgroup_qube *cg, bool idle, unsigned weight);
int cgroup_qube_freeze(struct cgroup_qube *cg); /* returns once every task is frozen */
int cgroup_qube_thaw(struct cgroup_qube *cg);
bool cgroup_qube_is_frozen(struct cgroup_qube *cg);
int cgroup_qube_kill(struct cgroup_qube *cg); /* SIGKILL to every task, thawing first */
bool cgroup_qube_is_empty(struct cgroup_qube *cg);
uint64_t cgroup_qube_memory_bytes(struct cgroup_qube *cg);
uint64_t cgroup_qube_cpu_ns(struct cgroup_qube *cg);
/* Asks the kernel to reclaim what it can (v2 memory.reclaim; v1: the limit squeezed
 * below the usage for a moment); -ENOTSUP if unavailable, -EAGAIN if the kernel
 * reclaimed less than asked. */
int cgroup_qube_reclaim(struct cgroup_qube *cg, uint64_t bytes);
/* Device control (a qube may open only the nodes of its /dev, and the block devices
 * given to it): a rule allowing one device (read-only: reads only), and one denying it
 * again. The v1 device cgroup where the host has one, else a BPF device program on the
 * qube's cgroup2 directory (devbpf.h), replaced at each change. -ENOTSUP with neither
 * (no cgroup2, or the kernel refused the program). */
bool cgroup_qube_has_device_control(const struct cgroup_qube *cg);
int cgroup_qube_device_allow(struct cgroup_qube *cg, char type, unsigned major, unsigned minor,
                             bool read_only);
int cgroup_qube_device_deny(struct cgroup_qube *cg, char type, unsigned major, unsigned minor);
/* Takes back every block device of a qube adopted from an earlier daemon (its own /dev
 * nodes stay allowed): the v1 rules of block devices denied one by one, or on cgroup2 a
 * fresh program in place of the earlier daemon's. -ENOTSUP with no device control. */
int cgroup_qube_devices_reset(struct cgroup_qube *cg);
/* Removes the (empty) cgroups; frees cg. */
int cgroup_qube_destroy(struct cgroup_qube *cg);
void cgroup_qube_free(struct cgroup_qube *cg);
/* The qube's directory in the i-th hierarchy used, NULL past the last (logs, tests). */
const char *cgroup_qube_dir(const struct cgroup_qube *cg, size_t i);
/* Names of qube cgroups that exist now (for cleanup after a crash); NULL-terminated,
 * free with cgroup_names_free. */
char **cgroup_list_qubes(struct cgroup_system *cs);
void cgroup_names_free(char **names);
/* Kills and removes every qube cgroup of the group whose name `in_use` does not claim
 * (after a restart: what no adopted qube owns). */
void cgroup_remove_leftovers(struct cgroup_system *cs, bool (*in_use)(void *ctx, const char *name),
                             void *ctx);
