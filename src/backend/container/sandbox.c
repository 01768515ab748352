/* Least privilege for a qube's processes: capabilities, no_new_privs, seccomp.
 *
 * Both functions run in the qube's init, inside its user namespace, right before it execs
 * the agent; everything set here is inherited by every process of the qube. */
#include "sandbox.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "strbuf.h"

/* What root inside a qube keeps. Capabilities held in a user namespace act only on what
 * that namespace owns: files whose owner maps into it, its own processes, its own network
 * namespace. So each of these is power over the qube itself, never over the host:
 *   CHOWN, DAC_OVERRIDE, FOWNER, FSETID: ordinary root file handling (package managers,
 *     home directories); the kernel honours them only for inodes whose uid and gid are
 *     mapped into the namespace, so host files (unmapped, seen as nobody) stay protected.
 *   KILL: signals to any process of the qube; the pid namespace hides all others, and the
 *     kernel checks the capability against the target's user namespace anyway.
 *   SETUID, SETGID: switch between ids of the mapped range only (su, daemons dropping root).
 *   SETPCAP: can only shrink bounding sets or move permitted caps to inheritable.
 *   NET_BIND_SERVICE: ports below 1024 in the qube's own network namespace.
 *   SYS_CHROOT: chroot within the qube's own mount namespace (build tools, debootstrap);
 *     with no_new_privs set no setuid binary can be fooled by a crafted chroot.
 *   AUDIT_WRITE: the kernel refuses audit messages from a non-initial user namespace, so
 *     this only keeps PAM-using programs (login, su) from failing on a missing capability.
 *   SETFCAP: file capabilities written inside a user namespace are namespaced (v3 xattrs
 *     carrying the namespace's root uid) and mean nothing outside it; package installs
 *     (ping, for instance) set them.
 * Gone, among others: SYS_ADMIN (mount, namespaces), NET_ADMIN, NET_RAW, MKNOD, SYS_PTRACE,
 * SYS_MODULE, SYS_TIME, SYS_BOOT, SYS_RESOURCE, DAC_READ_SEARCH (open_by_handle_at), BPF. */
static const cap_value_t kept_caps[] = {
    CAP_CHOWN,       CAP_DAC_OVERRIDE, CAP_FOWNER,  CAP_FSETID,           CAP_KILL,
    CAP_SETGID,      CAP_SETUID,       CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static bool cap_is_kept(cap_value_t c) {
    for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++)
        if (kept_caps[i] == c)
            return true;
    return false;
}

static void cap_freep(cap_t *c) {
    if (*c)
        cap_free(*c);
}

/* Needs CAP_SETPCAP in the effective set, so it comes before the process sets shrink. */
static int drop_bounding_set(void) {
    int max = (int)cap_max_bits(); /* what the running kernel knows, not the headers */
    for (cap_value_t c = 0; c < max; c++) {
        if (cap_is_kept(c) || CAP_IS_SUPPORTED(c) == 0)
            continue;
        if (cap_drop_bound(c) < 0 && errno != EINVAL)
            return -errno;
    }
    return 0;
}

/* Permitted and effective become the kept caps we still hold (raising is impossible);
 * inheritable becomes empty, as Docker does since CVE-2022-24769: an inheritable set
 * would hand capabilities to programs with inheritable file capabilities. Root still gets
 * the kept set at every execve from the bounding set. */
static int set_process_caps(void) {
    _cleanup_(cap_freep) cap_t cur = cap_get_proc();
    _cleanup_(cap_freep) cap_t next = cap_init();
    if (!cur || !next)
        return -errno;
    for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++) {
        cap_flag_value_t have = CAP_CLEAR;
        if (cap_get_flag(cur, kept_caps[i], CAP_PERMITTED, &have) < 0 || have != CAP_SET)
            continue;
        if (cap_set_flag(next, CAP_PERMITTED, 1, &kept_caps[i], CAP_SET) < 0 ||
            cap_set_flag(next, CAP_EFFECTIVE, 1, &kept_caps[i], CAP_SET) < 0)
            return -errno;
    }
    return cap_set_proc(next) < 0 ? -errno : 0;
}

int sandbox_drop_capabilities(void) {
    int r = drop_bounding_set();
    if (r < 0) {
        log_error("sandbox: cannot shrink the capability bounding set: %s", strerror(-r));
        return r;
    }
    r = set_process_caps();
    if (r < 0) {
        log_error("sandbox: cannot set capabilities: %s", strerror(-r));
        return r;
    }
    /* Ambient caps would survive execve of unprivileged programs; EINVAL: kernel < 4.3. */
    if (cap_reset_ambient() < 0 && errno != EINVAL)
        return -errno;
    /* No setuid or file-capability gain at execve from now on; also lets an unprivileged
     * process load seccomp filters. Note: it also disables sudo for non-root users. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

/* ---- seccomp ---- */

/* EPERM, as if the kernel had refused for lack of privilege, which is what programs
 * expect in a container. Names this libseccomp or architecture does not know are
 * skipped (create_module, vm86, ... exist only on some architectures or kernels). */
static const char *const blocked_syscalls[] = {
    /* kernel keyrings are not namespaced */
    "keyctl",
    "add_key",
    "request_key",
    /* large kernel attack surface with a history of exploits */
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    /* the kernel itself */
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    "_sysctl",
    "sysfs",
    "ustat",
    "uselib",
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
    /* mounts, old and new API: the qube's file system is fixed at start */
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    /* new namespaces (clone is filtered on its flags below) */
    "unshare",
    "setns",
    /* the host's clock; adjtimex stays: see sandbox_load_seccomp */
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    /* file handles bypass path permissions; other processes' memory; fanotify watches */
    "open_by_handle_at",
    "name_to_handle_at",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "fanotify_init",
};

/* The flags that make clone() create namespaces. CLONE_NEWTIME is absent on purpose: it
 * is only valid for unshare/clone3, and in clone()'s first argument its bit lies in the
 * exit-signal byte. */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
};

static void seccomp_releasep(scmp_filter_ctx *ctx) {
    if (*ctx)
        seccomp_release(*ctx);
}

static int add_blocked(scmp_filter_ctx ctx) {
    for (size_t i = 0; i < ELEMENTSOF(blocked_syscalls); i++) {
        int nr = seccomp_syscall_resolve_name(blocked_syscalls[i]);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue;
        int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (r < 0)
            return r;
    }
    return 0;
}

/* clone's flags are its first argument on x86_64 and arm64 (not on s390). One rule per
 * flag: rules for the same syscall and action are or-ed. clone3 passes its flags in
 * memory, which seccomp cannot read, so it answers ENOSYS: glibc then falls back to
 * clone, which we can filter (Docker does the same). */
static int add_clone_rules(scmp_filter_ctx ctx) {
    for (size_t i = 0; i < ELEMENTSOF(clone_ns_flags); i++) {
        int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                 SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
        if (r < 0)
            return r;
    }
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* personality() is allowed for Docker's values only: 0 (PER_LINUX), 8 (PER_LINUX32),
 * 0x20000 (UNAME26), 0x20008 and 0xffffffff (query). Others switch off ASLR or make
 * data executable (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC). "Not one of these" cannot be
 * written in libseccomp 2.5 with a default of ALLOW: it refuses two comparisons on one
 * argument (EINVAL) and an ALLOW rule beside an unconditional ERRNO (EACCES). So it is a
 * second, tiny classic-BPF filter; the kernel applies the stricter verdict of the two. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG0_LO offsetof(struct seccomp_data, args[0])
#define ARG0_HI (offsetof(struct seccomp_data, args[0]) + 4)
#else
#define ARG0_LO (offsetof(struct seccomp_data, args[0]) + 4)
#define ARG0_HI offsetof(struct seccomp_data, args[0])
#endif

static int load_personality_filter(void) {
    struct sock_filter insns[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 0, 11),
        /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_personality, 0, 9),
        /* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_HI),
        /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 6),
        /* 6 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LO),
        /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0, 5, 0),
        /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0008, 4, 0),
        /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20000, 3, 0),
        /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20008, 2, 0),
        /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffff, 1, 0),
        /* 12 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        /* 13 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = ELEMENTSOF(insns), .filter = insns};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -errno;
    return 0;
}

/* Only the native architecture is in the filter, and a system call made through any
 * other ABI gets the bad-architecture action: the whole process is killed. On x86_64 that
 * is the i386 ABI (int 0x80, sysenter: AUDIT_ARCH_I386) and x32 (libseccomp sends numbers
 * with the x32 bit to the same action). Adding SCMP_ARCH_X86 with the same rules, as
 * Docker does, would keep 32-bit programs working, but the compat entry points are a
 * second, historically buggy, kernel surface that qubes (amd64 templates) never need,
 * and our rules are written with 64-bit argument layouts in mind (clone's flags). A kill
 * is also loud where EPERM would be silently worked around. */
static int build_filter(scmp_filter_ctx *out) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return -ENOMEM;
    *out = ctx;
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r >= 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
    if (r >= 0)
        r = add_blocked(ctx);
    if (r >= 0)
        r = add_clone_rules(ctx);
    return r;
}

/* Default ALLOW: qubes run whole distributions, and an allow-list would break programs on
 * every kernel or libc update. Kept on purpose:
 *   adjtimex: seccomp cannot look into the struct timex to tell a read from a write, reads
 *     (ntptime, chronyc tracking) are harmless, and writes already fail without
 *     CAP_SYS_TIME in the initial user namespace. Docker allows it too.
 *   vmsplice: used by ordinary pipe-heavy programs; its known bugs (2008) are long fixed,
 *     and the same page-cache paths are reachable through splice/pipes anyway. Docker and
 *     Podman allow it. */
/* The compiled filter, made once by the daemon: compiling it with libseccomp in every
 * qube's init cost ~0.15 ms of each start. The child inherits it (fork copies memory). */
static struct sock_fprog prepared;

int sandbox_prepare_seccomp(void) {
    _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
    int r = build_filter(&ctx);
    _cleanup_close_ int fd = r < 0 ? -1 : memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (r < 0 || fd < 0 || (r = seccomp_export_bpf(ctx, fd)) < 0)
        return r < 0 ? r : -errno;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0)
        return -EINVAL;
    struct sock_filter *insns = xmalloc((size_t)size);
    if (pread(fd, insns, (size_t)size, 0) != size) {
        free(insns);
        return -EIO;
    }
    free(prepared.filter);
    prepared = (struct sock_fprog){(unsigned short)(size / (off_t)sizeof(*insns)), insns};
    return 0;
}

static int load_prepared(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prepared, 0, 0) < 0)
        return -errno;
    return 0;
}

int sandbox_load_seccomp(void) {
    _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
    int r = prepared.filter ? load_prepared() : build_filter(&ctx);
    if (r >= 0 && ctx)
        r = seccomp_load(ctx); /* sets no_new_privs first (SCMP_FLTATR_CTL_NNP) */
    if (r >= 0)
        r = load_personality_filter();
    if (r < 0)
        log_error("sandbox: cannot load the seccomp filter: %s", strerror(-r));
    return r;
}
