/* cgroups for qubes (src/backend/container/cgroup.c), against the real kernel: needs root.
 * Every test works below a group named after the test's pid, so runs in parallel do not
 * meet. Besides the host's own layout, v1-only and cgroup2-only hosts are imitated by
 * handing cgroup_system_open_from() filtered copies of mountinfo and /proc/self/cgroup. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>

#include "cgroup.h"

static struct cgroup_system *cs;
static char group[64];

/* ---- helpers ---- */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* utime + stime of a process in clock ticks, from /proc/<pid>/stat. */
static long cpu_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

/* A child that waits for a byte on a pipe (so the test can attach it first), then runs
 * body and exits with its result. Returns the pid; *go is the pipe's write end. */
static pid_t fork_held(int (*body)(void), int *go) {
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;
        close(p[1]);
        if (read(p[0], &c, 1) != 1)
            _exit(120);
        _exit(body());
    }
    close(p[0]);
    *go = p[1];
    return pid;
}

static void release(int go) {
    assert_int_equal(write(go, "x", 1), 1);
    close(go);
}

/* Creates a qube cgroup, attaches a held child running body and lets it go. */
static pid_t spawn_in(struct cgroup_qube *cg, int (*body)(void)) {
    int go;
    pid_t pid = fork_held(body, &go);
    assert_int_equal(cgroup_qube_attach(cg, pid), 0);
    release(go);
    return pid;
}

static int busy_body(void) {
    for (volatile unsigned long i = 0;; i++)
        ;
    return 0;
}

static int pause_body(void) {
    pause();
    return 0;
}

/* Four pausing children and itself: the "small process tree" of the measurements. */
static int tree_body(void) {
    for (int i = 0; i < 4; i++)
        if (fork() == 0) {
            pause();
            _exit(0);
        }
    pause();
    return 0;
}

/* The test process is a subreaper, so orphans of killed trees come back here. */
static void reap_all(void) {
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static int wait_status(pid_t pid) {
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static struct cgroup_qube *make_qube(struct cgroup_system *sys, const char *name, uint64_t mem,
                                     uint64_t pids) {
    struct cgroup_limits lim = {.memory_max_bytes = mem, .pids_max = pids, .cpu_weight = 100};
    struct cgroup_qube *cg = cgroup_qube_create(sys, name, &lim);
    if (!cg)
        fail_msg("cgroup_qube_create(%s): %s", name, strerror(errno));
    return cg;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median freeze and thaw latency of a 5-process tree, printed for the record. */
static void measure_freeze(struct cgroup_system *sys, const char *label) {
    struct cgroup_qube *cg = make_qube(sys, "latency", 0, 0);
    pid_t pid = spawn_in(cg, tree_body);
    sleep_ms(50); /* let the tree fork */
    enum { ROUNDS = 31 };
    int64_t fr[ROUNDS], th[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        int64_t t0 = mono_ns();
        assert_int_equal(cgroup_qube_freeze(cg), 0);
        int64_t t1 = mono_ns();
        assert_int_equal(cgroup_qube_thaw(cg), 0);
        th[i] = mono_ns() - t1;
        fr[i] = t1 - t0;
        sleep_ms(5); /* back in pause(): otherwise the next freeze finds them still frozen */
    }
    qsort(fr, ROUNDS, sizeof(fr[0]), cmp_i64);
    qsort(th, ROUNDS, sizeof(th[0]), cmp_i64);
    int64_t t0 = mono_ns();
    assert_int_equal(cgroup_qube_kill(cg), 0);
    int64_t kill_ns = mono_ns() - t0;
    print_message("[ MEASURE  ] %s, 5 processes: freeze %.3f ms, thaw %.3f ms (median of %d);"
                  " kill until empty %.3f ms\n",
                  label, fr[ROUNDS / 2] / 1e6, th[ROUNDS / 2] / 1e6, ROUNDS, kill_ns / 1e6);
    assert_true(WIFSIGNALED(wait_status(pid)));
    reap_all();
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

/* ---- fake hosts ---- */

/* Copies src to dir/name keeping the lines keep() accepts. */
static char *filtered_copy(const char *src, const char *dir, const char *name,
                           int (*keep)(const char *line)) {
    char *dst = tu_path(dir, name);
    FILE *in = fopen(src, "re"), *out = fopen(dst, "we");
    assert_non_null(in);
    assert_non_null(out);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0)
        if (keep(line))
            fputs(line, out);
    free(line);
    fclose(in);
    fclose(out);
    return dst;
}

static int is_cgroup2_mount(const char *l) { return strstr(l, " - cgroup2 ") != NULL; }
static int not_cgroup2_mount(const char *l) { return !is_cgroup2_mount(l); }
static int not_v2_self(const char *l) { return strncmp(l, "0::", 3) != 0; }

/* The daemon's cgroup2 path, "/" on this hybrid host. */
static void own_v2_path(char *buf, size_t size) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[4096];
    buf[0] = '\0';
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, size, "%s", line + 3);
        }
    if (f)
        fclose(f);
}

static char *cgroup2_mount(void) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096], mnt[4096];
    char *res = NULL;
    while (!res && f && fgets(line, sizeof(line), f))
        if (is_cgroup2_mount(line) && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1)
            res = strdup(mnt);
    if (f)
        fclose(f);
    return res;
}

/* ---- tests on the host's own layout ---- */

static void test_describe(void **state) {
    const char *d = cgroup_system_describe(cs);
    print_message("[ INFO     ] %s\n", d);
    assert_non_null(strstr(d, group));
}

static void test_freeze_thaw(void **state) {
    struct cgroup_qube *cg = make_qube(cs, "freeze", 64 << 20, 64);
    pid_t pid = spawn_in(cg, busy_body);
    sleep_ms(50);
    long t0 = cpu_ticks(pid);
    sleep_ms(200);
    long t1 = cpu_ticks(pid);
    assert_true(t1 - t0 >= 2); /* running: ~20 ticks of 10 ms in 200 ms on an idle CPU */
    assert_false(cgroup_qube_is_frozen(cg));

    assert_int_equal(cgroup_qube_freeze(cg), 0);
    assert_true(cgroup_qube_is_frozen(cg));
    uint64_t cpu_frozen = cgroup_qube_cpu_ns(cg);
    long f0 = cpu_ticks(pid);
    sleep_ms(200);
    assert_int_equal(cpu_ticks(pid) - f0, 0); /* frozen: not one tick */
    assert_true(cgroup_qube_cpu_ns(cg) - cpu_frozen < 2000000);

    assert_int_equal(cgroup_qube_thaw(cg), 0);
    assert_false(cgroup_qube_is_frozen(cg));
    long h0 = cpu_ticks(pid);
    sleep_ms(200);
    assert_true(cpu_ticks(pid) - h0 >= 2);
    assert_true(cgroup_qube_cpu_ns(cg) > cpu_frozen);

    assert_int_equal(cgroup_qube_kill(cg), 0);
    assert_true(cgroup_qube_is_empty(cg));
    int st = wait_status(pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

/* Allocates and touches 128 MiB, well over the 32 MiB limit. */
static int hog_body(void) {
    for (int i = 0; i < 128; i++) {
        char *p = malloc(1 << 20);
        if (!p)
            return 3;
        memset(p, i + 1, 1 << 20);
    }
    return 0;
}

static void test_memory_limit(void **state) {
    struct cgroup_qube *cg = make_qube(cs, "memhog", 32 << 20, 64);
    pid_t pid = spawn_in(cg, hog_body);
    int st = wait_status(pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL); /* the OOM killer, inside the qube only */
    assert_true(cgroup_qube_is_empty(cg));
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

/* Forks pausing children until the pids limit refuses; exits with how many it made. */
static int forker_body(void) {
    int made = 0;
    for (int i = 0; i < 10; i++) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0)
            return errno == EAGAIN ? made : 100 + errno;
        made++;
    }
    return made;
}

static void test_pids_limit(void **state) {
    struct cgroup_qube *cg = make_qube(cs, "forker", 64 << 20, 4);
    pid_t pid = spawn_in(cg, forker_body);
    int st = wait_status(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3);   /* itself + 3 children = pids.max 4 */
    assert_false(cgroup_qube_is_empty(cg)); /* the orphans still pause inside */
    assert_int_equal(cgroup_qube_kill(cg), 0);
    assert_true(cgroup_qube_is_empty(cg));
    reap_all();
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

static void test_kill_frozen_tree(void **state) {
    struct cgroup_qube *cg = make_qube(cs, "frozenkill", 64 << 20, 64);
    pid_t pid = spawn_in(cg, tree_body);
    sleep_ms(50);
    assert_int_equal(cgroup_qube_freeze(cg), 0);
    assert_int_equal(cgroup_qube_kill(cg), 0);
    assert_true(cgroup_qube_is_empty(cg));
    assert_false(cgroup_qube_is_frozen(cg)); /* thawed, ready for reuse */
    assert_true(WIFSIGNALED(wait_status(pid)));
    reap_all();
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

/* What an idle qube costs: one static busybox sleeping, charged from its exec on. */
static int static_sleep_body(void) {
    execl("/bin/busybox", "sleep", "1000", (char *)NULL);
    return 127;
}

static void test_idle_static_memory(void **state) {
    if (access("/bin/busybox", X_OK) < 0)
        skip();
    struct cgroup_qube *cg = make_qube(cs, "idle", 64 << 20, 64);
    pid_t pid = spawn_in(cg, static_sleep_body);
    sleep_ms(100);
    uint64_t mem = cgroup_qube_memory_bytes(cg);
    assert_int_equal(cgroup_qube_freeze(cg), 0);
    uint64_t frozen = cgroup_qube_memory_bytes(cg);
    print_message("[ MEASURE  ] idle static busybox sleep: %.1f KiB charged (%.1f KiB frozen)\n",
                  mem / 1024.0, frozen / 1024.0);
    assert_true(mem > 0 && mem < (4 << 20));
    assert_int_equal(cgroup_qube_kill(cg), 0);
    assert_true(WIFSIGNALED(wait_status(pid)));
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

static void test_reclaim(void **state) {
    struct cgroup_qube *cg = make_qube(cs, "reclaim", 64 << 20, 64);
    int r = cgroup_qube_reclaim(cg, 1 << 20);
    /* v1 memory (this host) has no memory.reclaim; cgroup2 reclaims or says -EAGAIN */
    assert_true(r == -ENOTSUP || r == 0 || r == -EAGAIN);
    print_message("[ INFO     ] reclaim: %s\n", r ? strerror(-r) : "ok");
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

static int cache_ready[2]; /* cache_body says when its cache is written back */

/* Writes 16 MiB to a file on disk (page cache charged to its cgroup), then waits. */
static int cache_body(void) {
    char path[] = "/var/tmp/cgroup-cache-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    unlink(path);
    static char block[1 << 20];
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 16; i++)
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
            return 1;
    fsync(fd); /* dirty pages cannot be dropped before they are written back */
    if (write(cache_ready[1], "x", 1) != 1)
        return 1;
    pause();
    return 0;
}

/* The cache a qube filled goes back to the host (v1: the squeezed limit), its limit
 * stays as it was. */
static void test_reclaim_gives_back_cache(void **state) {
    struct cgroup_qube *cg = make_qube(cs, "reclaim-cache", 256 << 20, 64);
    assert_int_equal(pipe(cache_ready), 0);
    pid_t pid = spawn_in(cg, cache_body);
    char ready;
    assert_int_equal(read(cache_ready[0], &ready, 1), 1);
    close(cache_ready[0]);
    close(cache_ready[1]);
    uint64_t before = cgroup_qube_memory_bytes(cg);
    int r = cgroup_qube_reclaim(cg, 1ULL << 40);
    uint64_t after = cgroup_qube_memory_bytes(cg);
    print_message("[ INFO     ] reclaim: %s, %" PRIu64 " -> %" PRIu64 " KiB\n",
                  r ? strerror(-r) : "ok", before >> 10, after >> 10);
    assert_true(before >= (16 << 20));
    assert_true(after + (8 << 20) < before); /* main (v1 here): -ENOTSUP, nothing given back */
    const char *dir = cgroup_qube_dir(cg, 0);
    char limit_path[4096], buf[64] = "";
    for (size_t i = 0; (dir = cgroup_qube_dir(cg, i)); i++) {
        snprintf(limit_path, sizeof(limit_path), "%s/memory.limit_in_bytes", dir);
        FILE *f = fopen(limit_path, "r");
        if (!f)
            continue;
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_int_equal(strtoull(buf, NULL, 10), 256 << 20);
    }
    kill(pid, SIGKILL);
    wait_status(pid);
    assert_int_equal(cgroup_qube_destroy(cg), 0);
}

static void assert_names(char **names, const char *const *want, size_t n) {
    assert_non_null(names);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(names[i]);
        assert_string_equal(names[i], want[i]);
    }
    assert_null(names[n]);
    cgroup_names_free(names);
}

static void test_destroy_and_list(void **state) {
    assert_names(cgroup_list_qubes(cs), NULL, 0);
    struct cgroup_qube *b = make_qube(cs, "beta", 0, 0);
    struct cgroup_qube *a = make_qube(cs, "alpha", 0, 0);
    assert_names(cgroup_list_qubes(cs), (const char *const[]){"alpha", "beta"}, 2);

    char *sub = tu_path(cgroup_qube_dir(a, 0), "made-by-the-qube");
    assert_int_equal(mkdir(sub, 0755), 0); /* a qube's init may nest cgroups */
    char *dirs[8] = {0};
    for (size_t i = 0; cgroup_qube_dir(a, i); i++) {
        dirs[i] = strdup(cgroup_qube_dir(a, i));
        assert_int_equal(access(dirs[i], F_OK), 0);
    }
    assert_int_equal(cgroup_qube_destroy(a), 0);
    for (size_t i = 0; dirs[i]; i++) {
        assert_int_equal(access(dirs[i], F_OK), -1);
        free(dirs[i]);
    }
    free(sub);
    assert_names(cgroup_list_qubes(cs), (const char *const[]){"beta"}, 1);

    errno = 0;
    assert_null(cgroup_qube_open(cs, "alpha"));
    assert_int_equal(errno, ENOENT);
    struct cgroup_qube *again = cgroup_qube_open(cs, "beta");
    assert_non_null(again);
    cgroup_qube_free(again);
    assert_int_equal(cgroup_qube_destroy(b), 0);
    assert_names(cgroup_list_qubes(cs), NULL, 0);

    assert_null(cgroup_qube_create(cs, "../escape", NULL));
    assert_int_equal(errno, EINVAL);
}

/* The directory of the tree that does the cpu controller's job. */
static const char *cpu_dir_of(struct cgroup_qube *cg) {
    for (size_t i = 0; cgroup_qube_dir(cg, i); i++) {
        char *f = tu_path(cgroup_qube_dir(cg, i), "cpu.idle");
        bool has = access(f, F_OK) == 0;
        free(f);
        if (has)
            return cgroup_qube_dir(cg, i);
    }
    return NULL;
}

static int pinned_busy_body(void) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof(one), &one);
    return busy_body();
}

/* A preload starts in the idle class: on a CPU it shares with an ordinary qube it gets
 * (almost) nothing, and once handed out (idle off) its fair share again. */
/* CPU ticks two processes pinned to one CPU get while they share it: measured until
 * they have had 100 ticks (1 s at HZ=100) between them, however busy the host is and
 * however little of that CPU is left for them, so the ratio is not noise. */
static void share_ticks(pid_t a, pid_t b, long *got_a, long *got_b) {
    long a0 = cpu_ticks(a), b0 = cpu_ticks(b);
    int64_t deadline = mono_ns() + 30 * 1000000000LL;
    do {
        sleep_ms(100);
        *got_a = cpu_ticks(a) - a0;
        *got_b = cpu_ticks(b) - b0;
    } while (*got_a + *got_b < 100 && mono_ns() < deadline);
}

static void test_cpu_idle(void **state) {
    struct cgroup_limits lim = {.cpu_weight = 100, .cpu_idle = true};
    struct cgroup_qube *idle = cgroup_qube_create(cs, "preload", &lim);
    assert_non_null(idle);
    const char *dir = cpu_dir_of(idle);
    if (!dir) {
        cgroup_qube_destroy(idle);
        skip(); /* a kernel before 5.15: the smallest weight instead, not measured here */
    }
    char buf[16] = "";
    assert_true(tu_read_file(dir, "cpu.idle", buf, sizeof(buf)) > 0);
    assert_int_equal(atoi(buf), 1);
    struct cgroup_qube *busy = make_qube(cs, "ordinary", 0, 0);
    pid_t a = spawn_in(idle, pinned_busy_body), b = spawn_in(busy, pinned_busy_body);
    long got_a, got_b;
    share_ticks(a, b, &got_a, &got_b);
    assert_true(got_b > 10 * (got_a + 1));
    assert_int_equal(cgroup_qube_set_idle(idle, false, 100), 0);
    assert_true(tu_read_file(dir, "cpu.idle", buf, sizeof(buf)) > 0);
    assert_int_equal(atoi(buf), 0);
    share_ticks(a, b, &got_a, &got_b);
    assert_true(got_a * 3 > got_b && got_b * 3 > got_a); /* about half each */
    assert_int_equal(cgroup_qube_kill(idle), 0);
    assert_int_equal(cgroup_qube_kill(busy), 0);
    reap_all();
    assert_int_equal(cgroup_qube_destroy(idle), 0);
    assert_int_equal(cgroup_qube_destroy(busy), 0);
}

static void test_measure_host(void **state) { measure_freeze(cs, "host layout"); }

/* ---- imitated hosts ---- */

/* A v1-only host: v1 freezer for pause, SIGKILL per pid (no cgroup.kill), and a task
 * frozen by the v1 freezer cannot die until thawed: kill must handle that. */
static void test_v1_only(void **state) {
    char *tmp = tu_mkdtemp();
    char *mi = filtered_copy("/proc/self/mountinfo", tmp, "mountinfo", not_cgroup2_mount);
    char *self = filtered_copy("/proc/self/cgroup", tmp, "cgroup", not_v2_self);
    char v1group[80];
    snprintf(v1group, sizeof(v1group), "%s-v1", group);
    struct cgroup_system *v1 = cgroup_system_open_from(v1group, mi, self);
    if (!v1 || !strstr(cgroup_system_describe(v1), "freezer")) {
        cgroup_system_free(v1); /* no v1 freezer here: nothing to imitate */
        free(mi), free(self), tu_rmdir(tmp);
        skip();
    }
    print_message("[ INFO     ] %s\n", cgroup_system_describe(v1));

    struct cgroup_qube *cg = make_qube(v1, "v1", 64 << 20, 64);
    pid_t pid = spawn_in(cg, tree_body);
    sleep_ms(50);
    assert_int_equal(cgroup_qube_freeze(cg), 0);
    assert_true(cgroup_qube_is_frozen(cg));
    assert_int_equal(cgroup_qube_kill(cg), 0);
    assert_true(cgroup_qube_is_empty(cg));
    assert_true(WIFSIGNALED(wait_status(pid)));
    reap_all();
    assert_true(cgroup_qube_cpu_ns(cg) > 0);
    assert_int_equal(cgroup_qube_destroy(cg), 0);
    measure_freeze(v1, "v1 freezer");

    assert_int_equal(cgroup_system_remove_group(v1), 0);
    cgroup_system_free(v1);
    free(mi), free(self), tu_rmdir(tmp);
}

/* A cgroup2-only host whose controllers are all elsewhere (they are bound to v1 here):
 * the daemon moves itself to <own>/supervisor, qubes run without limits, and freeze,
 * kill and cpu.stat still work. */
static void test_v2_only(void **state) {
    char *mnt = cgroup2_mount();
    if (!mnt)
        skip();
    char orig[4096], own[4200], line[4400];
    own_v2_path(orig, sizeof(orig));
    snprintf(own, sizeof(own), "%s/%s-own", strcmp(orig, "/") == 0 ? "" : orig, group);
    char *own_dir = tu_path(mnt, own + 1);
    assert_int_equal(mkdir(own_dir, 0755), 0);

    char *tmp = tu_mkdtemp();
    char *mi = filtered_copy("/proc/self/mountinfo", tmp, "mountinfo", is_cgroup2_mount);
    char *self = tu_path(tmp, "cgroup");
    FILE *f = fopen(self, "we");
    fprintf(f, "0::%s\n", own);
    fclose(f);

    struct cgroup_system *v2 = cgroup_system_open_from(group, mi, self);
    assert_non_null(v2);
    print_message("[ INFO     ] %s\n", cgroup_system_describe(v2));
    own_v2_path(line, sizeof(line));
    snprintf(own + strlen(own), sizeof(own) - strlen(own), "/supervisor");
    assert_string_equal(line, own); /* moved out of the way of its qubes */

    struct cgroup_qube *cg = make_qube(v2, "v2", 32 << 20, 4); /* limits: skipped */
    pid_t pid = spawn_in(cg, busy_body);
    sleep_ms(50);
    assert_int_equal(cgroup_qube_freeze(cg), 0);
    assert_true(cgroup_qube_is_frozen(cg));
    assert_true(cgroup_qube_cpu_ns(cg) > 0);
    assert_int_equal(cgroup_qube_reclaim(cg, 4096), -ENOTSUP);
    assert_int_equal(cgroup_qube_kill(cg), 0);
    assert_true(cgroup_qube_is_empty(cg));
    assert_true(WIFSIGNALED(wait_status(pid)));
    assert_int_equal(cgroup_qube_destroy(cg), 0);

    /* back where we came from, then clean up */
    char *orig_dir = strcmp(orig, "/") == 0 ? strdup(mnt) : tu_path(mnt, orig + 1);
    char *procs = tu_path(orig_dir, "cgroup.procs");
    f = fopen(procs, "we");
    fprintf(f, "%d\n", (int)getpid());
    assert_int_equal(fclose(f), 0);
    assert_int_equal(cgroup_system_remove_group(v2), 0);
    cgroup_system_free(v2);
    char *sup = tu_path(own_dir, "supervisor");
    assert_int_equal(rmdir(sup), 0);
    assert_int_equal(rmdir(own_dir), 0);
    free(sup), free(procs), free(orig_dir), free(own_dir), free(mnt), free(mi), free(self);
    tu_rmdir(tmp);
}

/* ---- cgroup2 device control: the BPF program ---- */

static const char *probe_path;
static int probe_flags;

/* In the qube's cgroup: 0 if the device opens, else the errno. */
static int probe_body(void) {
    int fd = open(probe_path, probe_flags | O_CLOEXEC);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static int probe(struct cgroup_qube *cg, const char *path, int flags) {
    probe_path = path, probe_flags = flags;
    int st = wait_status(spawn_in(cg, probe_body));
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* A free loop device (no backing file: dom0 never offers one, so the integration tests
 * running meanwhile do not see it): its node path in buf; false without losetup. */
static bool free_loop(char *buf, size_t size, unsigned *major, unsigned *minor) {
    FILE *p = popen("losetup --find 2>/dev/null", "r");
    bool ok = p && fgets(buf, (int)size, p);
    if (p)
        pclose(p);
    buf[strcspn(buf, "\n")] = '\0';
    struct stat st;
    ok = ok && stat(buf, &st) == 0 && S_ISBLK(st.st_mode);
    if (ok)
        *major = major(st.st_rdev), *minor = minor(st.st_rdev);
    return ok;
}

/* A cgroup2-only host (imitated as in test_v2_only): no v1 device cgroup, so a qube's
 * cgroup gets the BPF device program; the kernel enforces it at every open. */
static void test_v2_device_program(void **state) {
    char *mnt = cgroup2_mount();
    if (!mnt)
        skip();
    char orig[4096], own[4200];
    own_v2_path(orig, sizeof(orig));
    snprintf(own, sizeof(own), "%s/%s-dev", strcmp(orig, "/") == 0 ? "" : orig, group);
    char *own_dir = tu_path(mnt, own + 1);
    assert_int_equal(mkdir(own_dir, 0755), 0);
    char *tmp = tu_mkdtemp();
    char *mi = filtered_copy("/proc/self/mountinfo", tmp, "mountinfo", is_cgroup2_mount);
    char *self = tu_path(tmp, "cgroup");
    FILE *f = fopen(self, "we");
    fprintf(f, "0::%s\n", own);
    fclose(f);
    char loop[256] = "";
    unsigned maj = 0, min = 0;
    bool have_loop = free_loop(loop, sizeof(loop), &maj, &min);

    char devgroup[80];
    snprintf(devgroup, sizeof(devgroup), "%s-dev", group);
    struct cgroup_system *v2 = cgroup_system_open_from(devgroup, mi, self);
    assert_non_null(v2);
    struct cgroup_limits lim = {.devices_own_only = true};
    struct cgroup_qube *cg = cgroup_qube_create(v2, "dev", &lim);
    assert_non_null(cg);
    assert_true(cgroup_qube_has_device_control(cg));
    assert_int_equal(probe(cg, "/dev/null", O_RDWR), 0);             /* its /dev's nodes */
    assert_int_equal(probe(cg, "/dev/loop-control", O_RDWR), EPERM); /* nothing else */
    if (have_loop) {
        print_message("[ INFO     ] BPF device program, probing %s (%u:%u)\n", loop, maj, min);
        assert_int_equal(probe(cg, loop, O_RDONLY), EPERM);
        assert_int_equal(cgroup_qube_device_allow(cg, 'b', maj, min, true), 0);
        assert_int_equal(probe(cg, loop, O_RDONLY), 0);
        assert_int_equal(probe(cg, loop, O_WRONLY), EPERM); /* read-only enforced */
        assert_int_equal(cgroup_qube_device_allow(cg, 'b', maj, min, false), 0);
        assert_int_equal(probe(cg, loop, O_RDWR), 0);
        assert_int_equal(cgroup_qube_device_deny(cg, 'b', maj, min), 0);
        assert_int_equal(probe(cg, loop, O_RDONLY), EPERM);
        assert_int_equal(probe(cg, "/dev/null", O_RDWR), 0);
        /* adopted by a new daemon: its program replaces the old one (which allowed reads
         * only), not stacks on it */
        assert_int_equal(cgroup_qube_device_allow(cg, 'b', maj, min, true), 0);
        struct cgroup_qube *again = cgroup_qube_create(v2, "dev", &lim);
        assert_non_null(again);
        assert_int_equal(probe(again, loop, O_RDONLY), EPERM);
        assert_int_equal(cgroup_qube_device_allow(again, 'b', maj, min, false), 0);
        assert_int_equal(probe(again, loop, O_RDWR), 0);
        cgroup_qube_free(again);
        /* a daemon that adopts the running qube takes its devices back */
        struct cgroup_qube *adopted = cgroup_qube_open(v2, "dev");
        assert_non_null(adopted);
        assert_int_equal(cgroup_qube_devices_reset(adopted), 0);
        assert_int_equal(probe(adopted, loop, O_RDONLY), EPERM);
        assert_int_equal(probe(adopted, "/dev/null", O_RDWR), 0);
        cgroup_qube_free(adopted);
    }
    reap_all();
    assert_int_equal(cgroup_qube_destroy(cg), 0);

    /* back where we came from (the open moved us to <own>/supervisor), then clean up */
    char *orig_dir = strcmp(orig, "/") == 0 ? strdup(mnt) : tu_path(mnt, orig + 1);
    char *procs = tu_path(orig_dir, "cgroup.procs");
    f = fopen(procs, "we");
    fprintf(f, "%d\n", (int)getpid());
    assert_int_equal(fclose(f), 0);
    assert_int_equal(cgroup_system_remove_group(v2), 0);
    cgroup_system_free(v2);
    char *sup = tu_path(own_dir, "supervisor");
    assert_int_equal(rmdir(sup), 0);
    assert_int_equal(rmdir(own_dir), 0);
    free(sup), free(procs), free(orig_dir), free(own_dir), free(mnt), free(mi), free(self);
    tu_rmdir(tmp);
    if (!have_loop)
        skip(); /* the char devices were checked; no loop device to check a block one */
}

/* Writes the memory hierarchy's mount point to buf; false if the host has none in v1. */
static bool v1_memory_mount(char *buf, size_t size) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096], mnt[4096];
    bool found = false;
    while (!found && f && fgets(line, sizeof(line), f))
        found = strstr(line, " - cgroup ") && strstr(line, "memory") &&
                sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1;
    if (f)
        fclose(f);
    if (found)
        snprintf(buf, size, "%s", mnt);
    return found;
}

static void write_value(const char *dir, const char *file, const char *value) {
    char *p = tu_path(dir, file);
    FILE *f = fopen(p, "we");
    assert_non_null(f);
    fputs(value, f);
    assert_int_equal(fclose(f), 0);
    free(p);
}

static int not_memory_self(const char *l) { return strstr(l, ":memory:") == NULL; }

/* What preloading may still use is bounded by the tightest memory limit on the daemon's
 * own cgroup or its ancestors, as the cgroup code resolves them (an imitated daemon
 * cgroup limited/inner below a v1 memory mount). */
static void test_memory_headroom(void **state) {
    char mnt[4096];
    if (!v1_memory_mount(mnt, sizeof(mnt)))
        skip();
    char rel[160], outer_rel[128];
    snprintf(outer_rel, sizeof(outer_rel), "%s-limited", group);
    snprintf(rel, sizeof(rel), "%s/inner", outer_rel);
    char *outer = tu_path(mnt, outer_rel), *inner = tu_path(mnt, rel);
    assert_int_equal(mkdir(outer, 0755), 0);
    assert_int_equal(mkdir(inner, 0755), 0);
    write_value(outer, "memory.limit_in_bytes", "268435456");

    char *tmp = tu_mkdtemp();
    char *self = filtered_copy("/proc/self/cgroup", tmp, "cgroup", not_memory_self);
    FILE *f = fopen(self, "ae");
    fprintf(f, "99:memory:/%s\n", rel);
    fclose(f);
    char mgroup[80];
    snprintf(mgroup, sizeof(mgroup), "%s-mem", group);
    struct cgroup_system *m = cgroup_system_open_from(mgroup, "/proc/self/mountinfo", self);
    assert_non_null(m);

    uint64_t room = 0;
    assert_int_equal(cgroup_system_memory_headroom(m, &room), 0);
    /* the parent's limit less the little the kernel charged for the group directories */
    assert_in_range(room, 250u << 20, 256u << 20);
    write_value(inner, "memory.limit_in_bytes", "134217728");
    assert_int_equal(cgroup_system_memory_headroom(m, &room), 0);
    assert_in_range(room, 122u << 20, 128u << 20); /* the tightest one wins */

    assert_int_equal(cgroup_system_remove_group(m), 0);
    cgroup_system_free(m);
    assert_int_equal(rmdir(inner), 0);
    assert_int_equal(rmdir(outer), 0);
    free(inner), free(outer), free(self);
    tu_rmdir(tmp);
}

static int group_setup(void **state) {
    snprintf(group, sizeof(group), "dispenser-ut-cg-%d", (int)getpid());
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    cs = cgroup_system_open(group);
    if (!cs) {
        fprintf(stderr, "cgroup_system_open: %s (the cgroup tests need root)\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* A failed test may leave a qube behind: clean up as the daemon does after a crash. */
static int group_teardown(void **state) {
    char **left = cgroup_list_qubes(cs);
    for (char **n = left; n && *n; n++) {
        fprintf(stderr, "test_cgroup: removing leftover qube cgroup %s\n", *n);
        struct cgroup_qube *cg = cgroup_qube_open(cs, *n);
        if (cg) {
            cgroup_qube_kill(cg);
            cgroup_qube_destroy(cg);
        }
    }
    cgroup_names_free(left);
    reap_all();
    int r = cgroup_system_remove_group(cs);
    cgroup_system_free(cs);
    return r;
}

int main(void) {
    if (geteuid() != 0) {
        fprintf(stderr, "test_cgroup: needs root, skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe),          cmocka_unit_test(test_freeze_thaw),
        cmocka_unit_test(test_memory_limit),      cmocka_unit_test(test_pids_limit),
        cmocka_unit_test(test_kill_frozen_tree),  cmocka_unit_test(test_idle_static_memory),
        cmocka_unit_test(test_reclaim),           cmocka_unit_test(test_reclaim_gives_back_cache),
        cmocka_unit_test(test_destroy_and_list),  cmocka_unit_test(test_cpu_idle),
        cmocka_unit_test(test_measure_host),      cmocka_unit_test(test_v1_only),
        cmocka_unit_test(test_v2_only),           cmocka_unit_test(test_memory_headroom),
        cmocka_unit_test(test_v2_device_program),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
