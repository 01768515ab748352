/* The reaper process (src/backend/container/reaper.c), against the real kernel: needs
 * root for cgroups. A job removes a qube's cgroups (and what still runs in them) and its
 * two directories; jobs are acknowledged in order; a dead reaper hands its jobs back. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cgroup.h"
#include "reaper.h"

static struct cgroup_system *cs;
static char group[64];
static char *tmp, *state_dir, *runtime_dir;
static sd_event *loop;

struct outcome {
    int calls;
    bool ok;
    int order; /* the value of `finished` when this job was done */
};
static int finished;

static void on_done(void *userdata, bool ok) {
    struct outcome *o = userdata;
    o->calls++;
    o->ok = ok;
    o->order = finished++;
}

/* STATE/volatile/<name>/root-upper/file and RUNTIME/qubes/<name>/agent.sock-ish. */
static void make_remains(const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/volatile/%s/root-upper", state_dir, name);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s && touch %s/file && mkdir -p %s/qubes/%s/root", path,
             path, runtime_dir, name);
    assert_int_equal(system(cmd), 0);
}

static bool exists(const char *fmt_dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", fmt_dir, name);
    return access(path, F_OK) == 0;
}

/* A pausing process inside the qube's cgroups, as a disposable's leftover would be. */
static pid_t leftover_in(struct cgroup_qube *cg) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(cgroup_qube_attach(cg, pid), 0);
    return pid;
}

static void test_retire_removes_everything(void **state) {
    struct cgroup_limits lim = {.cpu_weight = 100};
    struct cgroup_qube *cg = cgroup_qube_create(cs, "disp1", &lim);
    assert_non_null(cg);
    pid_t left = leftover_in(cg);
    cgroup_qube_free(cg);
    make_remains("disp1");
    make_remains("disp2");
    struct reaper *r = reaper_start(loop, cs, state_dir, runtime_dir);
    assert_non_null(r);
    struct outcome one = {0}, two = {0};
    finished = 0;
    assert_int_equal(reaper_retire(r, "disp1", on_done, &one), 0);
    assert_int_equal(reaper_retire(r, "disp2", on_done, &two), 0);
    reaper_wait_idle(r);
    assert_int_equal(one.calls, 1);
    assert_int_equal(two.calls, 1);
    assert_true(one.ok && two.ok);
    assert_int_equal(one.order, 0); /* in the order queued */
    assert_int_equal(two.order, 1);
    int st = 0;
    assert_int_equal(waitpid(left, &st, 0), left);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    errno = 0;
    assert_null(cgroup_qube_open(cs, "disp1"));
    assert_int_equal(errno, ENOENT);
    char vol[4096], run[4096];
    snprintf(vol, sizeof(vol), "%s/volatile", state_dir);
    snprintf(run, sizeof(run), "%s/qubes", runtime_dir);
    assert_false(exists(vol, "disp1"));
    assert_false(exists(vol, "disp2"));
    assert_false(exists(run, "disp1"));
    assert_false(exists(run, "disp2"));
    reaper_stop(r);
}

/* Acknowledgements arrive through the loop too, without anybody waiting. */
static void test_done_through_the_loop(void **state) {
    make_remains("disp3");
    struct reaper *r = reaper_start(loop, cs, state_dir, runtime_dir);
    struct outcome o = {0};
    assert_int_equal(reaper_retire(r, "disp3", on_done, &o), 0);
    for (int i = 0; i < 500 && !o.calls; i++)
        sd_event_run(loop, 10000);
    assert_int_equal(o.calls, 1);
    assert_true(o.ok);
    reaper_stop(r);
}

/* Many qubes ending at once: the daemon must never block on the reaper's socket (the
 * reaper blocks on its acknowledgements while they are unread: a blocking send deadlocked
 * both, found by the soak). Every retire returns at once; the loop does them all. */
static void test_burst_never_blocks(void **state) {
    enum { N = 3000 };
    static struct outcome o[N];
    memset(o, 0, sizeof(o));
    struct reaper *r = reaper_start(loop, cs, state_dir, runtime_dir);
    alarm(60); /* a deadlock fails the test instead of hanging the suite */
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "burst%d", i);
        assert_int_equal(reaper_retire(r, name, on_done, &o[i]), 0);
    }
    int done = 0;
    for (int k = 0; k < 20000 && done < N; k++) {
        sd_event_run(loop, 10000);
        done = 0;
        for (int i = 0; i < N; i++)
            done += o[i].calls;
    }
    alarm(0);
    assert_int_equal(done, N);
    for (int i = 0; i < N; i++)
        assert_true(o[i].ok);
    reaper_stop(r);
}

static int on_busy(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    (*(int *)userdata)++; /* leaves its byte unread: readable again at every iteration */
    return 0;
}

/* A loop that never idles (a stream of calls from 100 callers) must still hear the
 * reaper: its acknowledgements were read at idle priority only, so the ends of used
 * disposables piled up for as long as the calls came (the 10-minute soak: ~740 queued).
 * Beyond REAPER_BACKLOG queued jobs they are read at normal priority: the queue stays
 * bounded while the loop is busy, and the rest is done once it idles. */
static void test_busy_loop_keeps_the_queue_bounded(void **state) {
    enum { N = 40 };
    static struct outcome o[N];
    memset(o, 0, sizeof(o));
    struct reaper *r = reaper_start(loop, cs, state_dir, runtime_dir);
    /* a client that always has a request for the loop, as 100 callers do */
    int busy_runs = 0, busy_pipe[2];
    assert_int_equal(pipe2(busy_pipe, O_CLOEXEC), 0);
    assert_int_equal(write(busy_pipe[1], "x", 1), 1);
    sd_event_source *busy = NULL;
    assert_int_equal(sd_event_add_io(loop, &busy, busy_pipe[0], EPOLLIN, on_busy, &busy_runs), 0);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "busy%d", i);
        assert_int_equal(reaper_retire(r, name, on_done, &o[i]), 0);
    }
    int done = 0;
    time_t give_up = time(NULL) + 10;
    while (done < N - REAPER_BACKLOG && time(NULL) < give_up) {
        sd_event_run(loop, 0);
        done = 0;
        for (int i = 0; i < N; i++)
            done += o[i].calls;
    }
    assert_true(busy_runs > 0);
    assert_true(done >= N - REAPER_BACKLOG);
    busy = sd_event_source_disable_unref(busy);
    close(busy_pipe[0]);
    close(busy_pipe[1]);
    reaper_wait_idle(r);
    for (int i = 0; i < N; i++)
        assert_int_equal(o[i].calls, 1);
    reaper_stop(r);
}

static pid_t child_named(const char *comm) {
    char cmd[256], out[32] = "";
    snprintf(cmd, sizeof(cmd), "pgrep -P %d -x %s", (int)getpid(), comm);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, sizeof(out), p));
    pclose(p);
    return (pid_t)atoi(out);
}

/* Killed reaper: its queued jobs come back with ok=false, new ones are refused (the
 * caller then does the work itself), and stopping it is still clean. */
static void test_dead_reaper_hands_back(void **state) {
    struct reaper *r = reaper_start(loop, cs, state_dir, runtime_dir);
    pid_t pid = child_named("dispenser-reap");
    assert_int_equal(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
        int st;
        waitpid(pid, &st, WNOHANG);
        usleep(10000);
    }
    struct outcome o = {0};
    int q = reaper_retire(r, "disp4", on_done, &o);
    if (q == 0) { /* the send raced with the death: the job must come back */
        reaper_wait_idle(r);
        assert_int_equal(o.calls, 1);
        assert_false(o.ok);
    }
    assert_int_equal(reaper_retire(r, "disp5", on_done, &o), -1);
    reaper_stop(r);
}

static void test_refuses_bad_names(void **state) {
    struct reaper *r = reaper_start(loop, cs, state_dir, runtime_dir);
    struct outcome o = {0};
    char longname[100];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(reaper_retire(r, "", on_done, &o), -1);
    assert_int_equal(reaper_retire(r, longname, on_done, &o), -1);
    assert_int_equal(o.calls, 0);
    reaper_stop(r);
}

static int group_setup(void **state) {
    snprintf(group, sizeof(group), "dispenser-ut-reap-%d", (int)getpid());
    cs = cgroup_system_open(group);
    tmp = tu_mkdtemp();
    state_dir = tu_path(tmp, "state");
    runtime_dir = tu_path(tmp, "run");
    mkdir(state_dir, 0700);
    mkdir(runtime_dir, 0700);
    if (!cs || sd_event_new(&loop) < 0)
        return -1;
    return 0;
}

static int group_teardown(void **state) {
    sd_event_unref(loop);
    int r = cgroup_system_remove_group(cs);
    cgroup_system_free(cs);
    free(state_dir);
    free(runtime_dir);
    tu_rmdir(tmp);
    return r;
}

int main(void) {
    if (geteuid() != 0) {
        fprintf(stderr, "test_reaper: needs root, skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retire_removes_everything),
        cmocka_unit_test(test_done_through_the_loop),
        cmocka_unit_test(test_burst_never_blocks),
        cmocka_unit_test(test_busy_loop_keeps_the_queue_bounded),
        cmocka_unit_test(test_dead_reaper_hands_back),
        cmocka_unit_test(test_refuses_bad_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
