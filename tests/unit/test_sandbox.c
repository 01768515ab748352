/* Capabilities and seccomp for a qube's processes (src/backend/container/sandbox.c).
 * Each check runs in a forked child (the sandbox cannot be undone) that reports every
 * failure as a line on a pipe; the parent asserts there were none. Needs root. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox.h"

static const int kept[] = {
    CAP_CHOWN,       CAP_DAC_OVERRIDE, CAP_FOWNER,  CAP_FSETID,           CAP_KILL,
    CAP_SETGID,      CAP_SETUID,       CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static int report_fd = -1;

/* In the child: one line per failed expectation. */
static void failf(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    if (write(report_fd, buf, (size_t)n) < 0)
        _exit(99);
}

/* The call must fail with `want` (EPERM from the filter, ENOSYS for clone3). */
static void expect_errno(const char *what, long r, int want) {
    if (r == 0 && strstr(what, "clone"))
        _exit(0); /* a clone that went through: the new child leaves quietly */
    if (r != -1 || errno != want)
        failf("%s: got %ld (%s), want %s", what, r, r == -1 ? strerror(errno) : "success",
              strerror(want));
}
#define EXPECT_EPERM(call) expect_errno(#call, (long)(call), EPERM)

/* Runs body in a child with a private mount namespace (so a mount that slipped through
 * would not reach the host). Returns the wait status; fails the test on reported lines. */
static int run_child(void (*body)(void)) {
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        report_fd = p[1];
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            failf("private mount namespace: %s", strerror(errno));
        body();
        _exit(0);
    }
    close(p[1]);
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    buf[len] = '\0';
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (len)
        fail_msg("in the sandboxed child:\n%s", buf);
    return st;
}

/* The dangerous calls, with arguments that do no harm if one slipped through. */
static void try_blocked_calls(void) {
    struct io_uring_params_stub {
        unsigned v[30];
    } uring = {{0}};
    EXPECT_EPERM(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    EXPECT_EPERM(syscall(SYS_add_key, "user", "x", "y", 1, KEY_SPEC_PROCESS_KEYRING));
    EXPECT_EPERM(syscall(SYS_bpf, 9999, NULL, 0));
    EXPECT_EPERM(mount("none", "/tmp", "tmpfs", 0, NULL));
    EXPECT_EPERM(umount2("/nonexistent", 0));
    EXPECT_EPERM(syscall(SYS_fsopen, "tmpfs", 0));
    EXPECT_EPERM(syscall(SYS_pivot_root, ".", "."));
    EXPECT_EPERM(unshare(CLONE_NEWUSER));
    EXPECT_EPERM(setns(-1, 0));
    EXPECT_EPERM(syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    EXPECT_EPERM(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    EXPECT_EPERM(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
    EXPECT_EPERM(syscall(SYS_init_module, NULL, 0, ""));
    EXPECT_EPERM(syscall(SYS_finit_module, -1, "", 0));
    EXPECT_EPERM(syscall(SYS_reboot, 0, 0, 0, NULL)); /* bad magic: EINVAL if let through */
    EXPECT_EPERM(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    EXPECT_EPERM(syscall(SYS_io_uring_setup, 1, &uring));
    EXPECT_EPERM(syscall(SYS_userfaultfd, 0));
    EXPECT_EPERM(syscall(SYS_syslog, 10, NULL, 0)); /* SYSLOG_ACTION_SIZE_BUFFER */
    EXPECT_EPERM(syscall(SYS_settimeofday, NULL, NULL));
    EXPECT_EPERM(syscall(SYS_swapoff, "/nonexistent"));
    EXPECT_EPERM(syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0));
    EXPECT_EPERM(personality(ADDR_NO_RANDOMIZE));
    EXPECT_EPERM(personality(READ_IMPLIES_EXEC));
    expect_errno("clone3", syscall(SYS_clone3, NULL, 0), ENOSYS);
}

static void *thread_main(void *arg) { return arg; }

/* What must keep working: plain fork, threads (glibc falls back from clone3), the
 * allowed personality values, ordinary I/O. */
static void try_allowed_calls(void) {
    if (personality(0xffffffff) < 0 || personality(PER_LINUX) < 0 || personality(PER_LINUX32) < 0 ||
        personality(PER_LINUX) < 0)
        failf("allowed personality refused: %s", strerror(errno));
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        failf("fork after the filter: %s", strerror(errno));
    pthread_t t;
    void *res = NULL;
    if (pthread_create(&t, NULL, thread_main, (void *)&st) != 0 || pthread_join(t, &res) ||
        res != &st)
        failf("pthread_create after the filter");
    if (syscall(SYS_getpid) != getpid())
        failf("getpid");
}

static uint64_t kept_mask(void) {
    uint64_t m = 0;
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        m |= 1ULL << kept[i];
    return m;
}

/* "Key:\tvalue" from /proc/self/status, as an unsigned number in the given base. */
static uint64_t status_field(const char *key, int base) {
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    uint64_t v = ~0ULL;
    size_t klen = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            v = strtoull(line + klen + 1, NULL, base);
    if (f)
        fclose(f);
    return v;
}

static void check_capabilities(void) {
    for (int c = 0; c < 64; c++) {
        int r = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        int want = (kept_mask() >> c) & 1;
        if (r >= 0 && r != want)
            failf("bounding set: capability %d is %s", c, r ? "still there" : "missing");
    }
    uint64_t bnd = status_field("CapBnd", 16), eff = status_field("CapEff", 16);
    if (bnd != kept_mask() || eff != kept_mask())
        failf("CapBnd %llx CapEff %llx, want %llx", (unsigned long long)bnd,
              (unsigned long long)eff, (unsigned long long)kept_mask());
    if (status_field("CapPrm", 16) != kept_mask() || status_field("CapInh", 16) != 0 ||
        status_field("CapAmb", 16) != 0)
        failf("CapPrm/CapInh/CapAmb not as expected");
    if (status_field("NoNewPrivs", 10) != 1)
        failf("NoNewPrivs is not 1");
    if (status_field("Seccomp", 10) != 2)
        failf("Seccomp is not 2 (filter mode)");
}

static void full_sandbox_body(void) {
    if (sandbox_drop_capabilities() != 0 || sandbox_load_seccomp() != 0) {
        failf("sandbox setup failed: %s", strerror(errno));
        return;
    }
    try_blocked_calls();
    try_allowed_calls();
    check_capabilities();
    char *const argv[] = {"sh", "-c", "exit 42", NULL};
    execv("/bin/sh", argv); /* the agent is exec'd the same way */
    failf("execv after the sandbox: %s", strerror(errno));
}

/* Everything together, as the qube's init does it before exec'ing the agent. */
static void test_full_sandbox(void **state) {
    int st = run_child(full_sandbox_body);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 42);
}

static void seccomp_only_body(void) {
    if (sandbox_load_seccomp() != 0) {
        failf("sandbox_load_seccomp failed");
        return;
    }
    try_blocked_calls();
    try_allowed_calls();
}

/* With every capability still held, each refusal must come from the filter itself. */
static void test_seccomp_without_dropping_caps(void **state) {
    int st = run_child(seccomp_only_body);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void caps_only_body(void) {
    if (sandbox_drop_capabilities() != 0)
        failf("sandbox_drop_capabilities failed");
    if (status_field("Seccomp", 10) != 0)
        failf("seccomp mode set by dropping capabilities");
    /* root without CAP_SYS_ADMIN: the kernel refuses the mount by itself */
    EXPECT_EPERM(mount("none", "/tmp", "tmpfs", 0, NULL));
}

static void test_capabilities_alone(void **state) {
    assert_int_equal(WEXITSTATUS(run_child(caps_only_body)), 0);
}

#if defined(__x86_64__)
/* getpid through the i386 entry point (int 0x80, call number 20). */
static long int80_getpid(void) {
    long ret = 20;
    __asm__ volatile("int $0x80" : "+a"(ret) : : "rcx", "r8", "r9", "r10", "r11", "memory");
    return ret;
}

static void int80_body(void) {
    if (sandbox_load_seccomp() != 0)
        failf("sandbox_load_seccomp failed");
    int80_getpid();
    failf("an i386 system call went through the filter");
}

static void x32_body(void) {
    if (sandbox_load_seccomp() != 0)
        failf("sandbox_load_seccomp failed");
    long r = syscall(0x40000000 | SYS_getpid);
    failf("an x32 system call went through the filter: %ld", r);
}

static void test_foreign_abi_killed(void **state) {
    pid_t pid = fork();
    if (pid == 0)
        _exit(int80_getpid() == getpid() ? 0 : 1);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) { /* the kernel has IA32 emulation */
        st = run_child(int80_body);
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGSYS);
    } else {
        print_message("[ INFO     ] no IA32 emulation in this kernel: int 0x80 not tested\n");
    }
    st = run_child(x32_body);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSYS);
}
#else
static void test_foreign_abi_killed(void **state) { skip(); }
#endif

int main(void) {
    if (geteuid() != 0) {
        fprintf(stderr, "test_sandbox: needs root, skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_sandbox),
        cmocka_unit_test(test_seccomp_without_dropping_caps),
        cmocka_unit_test(test_capabilities_alone),
        cmocka_unit_test(test_foreign_abi_killed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
