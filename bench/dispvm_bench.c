/* Disposable calls timed one by one, from the client's side, for the benchmark suite
 * (bench/run.sh). One CSV row per call on stdout, so the raw data can be kept:
 *   LABEL,iteration,caller,t_start_ms,create_ms,start_ms,exec_ms,cleanup_ms,total_ms
 * t_start_ms is when the call began, from the moment all callers were released (the
 * same clock for every caller: throughput = calls / span of the rows). The stage
 * columns are filled by `api` only.
 *
 * Modes (the service is qubes.VMShell running CMD unless -s names another; its stdin is
 * -i FILE or /dev/null, its output goes to /dev/null):
 *   router TARGET      one call through the router to TARGET ("@dispvm:T" = a disposable,
 *                      preloaded when one is ready; a qube name = a running qube): what
 *                      qvm-run --dispvm does, without the tool's process start
 *   api TEMPLATE       the Admin API stages, as the upstream Python qvm-run --dispvm makes
 *                      them: admin.vm.CreateDisposable (a preload is handed out here),
 *                      admin.vm.Start (already running when preloaded: the daemon answers
 *                      QubesVMNotHaltedError, counted as started), the service through the
 *                      router, admin.vm.Kill (its auto_cleanup removes it afterwards)
 *   agent SOCKET       the service through a running qube's agent (no daemon involved)
 *   thaw QUBE SOCKET   the floor of a hand-out: admin.vm.Unpause + the service through
 *                      the agent; the qube is paused again (untimed) before each call
 *   spawn CMD...       a command per call (qvm-run, bwrap), stdin from -i FILE
 *   wait TEMPLATE:MAX  no call: wait (bounded) until the pool is full, for the scripts
 * Options: -n calls per caller (12), -c concurrent callers (1; processes released
 * together), -l LABEL (the rows' first columns), -x CMD (echo hi), -s SERVICE,
 * -i FILE (the service's stdin), -w TEMPLATE:MAX (before every call, untimed: wait until
 * TEMPLATE's preload list holds MAX completed preloads, i.e. the pool is full),
 * -t SECONDS (how long such a wait may take: 30; a VM preload boots for seconds),
 * -C (agent and thaw: the copy path, no descriptors passed, as a VM's agent needs),
 * -r FILE (with -w: after each call, wait until the pool is full again and append
 * "LABEL,iteration,refill_ms" to FILE: the time from the call's start, i.e. the
 * hand-out, until the pool is full). */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"
#include "client.h"
#include "qerr.h"
#include "qrexec_client.h"

extern char **environ;

struct opts {
    int n, callers;
    const char *label, *cmd, *service, *stdin_file, *wait_spec;
    const char *mode;
    const char *refill_file;
    bool copy_path;
    char **args; /* after MODE */
    int nargs;
};

enum { ST_CREATE, ST_START, ST_EXEC, ST_CLEANUP, ST_N };

struct call_times {
    double t_start, total, stage[ST_N];
    bool staged;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* spin rather than sleep before a timed call: an idle vCPU wakes slowly under nested
 * virtualisation, and that wake-up would be billed to the call */
static void spin_ms(double ms) {
    for (double end = now_ms() + ms; now_ms() < end;)
        ;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The service's stdio: stdin from the file (or /dev/null), output discarded. */
static int open_stdio(const struct opts *o, int stdio[3]) {
    stdio[0] = open(o->stdin_file ? o->stdin_file : "/dev/null", O_RDONLY | O_CLOEXEC);
    stdio[1] = stdio[2] = open("/dev/null", O_WRONLY | O_CLOEXEC);
    return stdio[0] < 0 || stdio[1] < 0 ? -1 : 0;
}

static void close_stdio(int stdio[3]) {
    close(stdio[0]);
    close(stdio[1]);
}

static const char *shell_cmd(const struct opts *o) {
    return strcmp(o->service, "qubes.VMShell") == 0 ? o->cmd : "";
}

static int via_router(const struct opts *o, const char *target) {
    int stdio[3];
    struct qrexec_result res;
    char msg[256] = "";
    if (open_stdio(o, stdio) < 0)
        return -1;
    int r = qrexec_call(target, o->service, "", shell_cmd(o), stdio, &res, msg, sizeof(msg));
    close_stdio(stdio);
    if (r < 0 || res.kind != QREXEC_EXITED || res.status != 0) {
        fprintf(stderr, "dispvm_bench: %s to %s: %s (kind %u status %d)\n", o->service, target,
                r < 0 ? strerror(-r) : msg, r < 0 ? 0 : res.kind, r < 0 ? 0 : res.status);
        return -1;
    }
    return 0;
}

static int via_agent(const struct opts *o, const char *sock) {
    int stdio[3];
    struct agent_request_body body = {o->service, "", "dom0", "", "user", shell_cmd(o)};
    struct agent_reply reply;
    if (open_stdio(o, stdio) < 0)
        return -1;
    int r = agent_client_call(sock, AGENT_REQ_EXEC, &body, !o->copy_path, stdio, &reply);
    close_stdio(stdio);
    if (r < 0 || reply.kind != AGENT_EXITED || reply.status != 0) {
        fprintf(stderr, "dispvm_bench: %s through %s failed\n", o->service, sock);
        return -1;
    }
    return 0;
}

/* One Admin API call; content (if wanted) receives the reply's content. A reply with
 * exception `tolerated` counts as success. */
static int api(const char *method, const char *dest, const char *tolerated, char *content,
               size_t size) {
    _cleanup_reply_ struct client_reply reply;
    int r = client_call(method, "", dest, NULL, 0, &reply);
    if (r == 0 && !reply.empty && reply.r.ok) {
        if (content)
            snprintf(content, size, "%.*s", (int)reply.r.content_len, reply.r.content);
        return 0;
    }
    if (r == 0 && !reply.empty && tolerated && strcmp(reply.r.exc, tolerated) == 0)
        return 0;
    fprintf(stderr, "dispvm_bench: %s %s: %s\n", method, dest,
            r < 0 ? strerror(-r) : reply.empty ? "empty reply" : reply.r.msg);
    return -1;
}

static int staged(const struct opts *o, const char *tpl, struct call_times *t) {
    char name[64];
    double t0 = now_ms();
    if (api("admin.vm.CreateDisposable", tpl, NULL, name, sizeof(name)) < 0)
        return -1;
    double t1 = now_ms();
    if (api("admin.vm.Start", name, EXC_VM_NOT_HALTED, NULL, 0) < 0)
        return -1;
    double t2 = now_ms();
    if (via_router(o, name) < 0)
        return -1;
    double t3 = now_ms();
    if (api("admin.vm.Kill", name, NULL, NULL, 0) < 0)
        return -1;
    double t4 = now_ms();
    t->staged = true;
    t->stage[ST_CREATE] = t1 - t0;
    t->stage[ST_START] = t2 - t1;
    t->stage[ST_EXEC] = t3 - t2;
    t->stage[ST_CLEANUP] = t4 - t3;
    return 0;
}

static int spawn_wait(const struct opts *o, char **argv) {
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (o->stdin_file)
        posix_spawn_file_actions_addopen(&fa, 0, o->stdin_file, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status;
    if (r != 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int one_call(const struct opts *o, struct call_times *t) {
    const char *m = o->mode;
    if (strcmp(m, "router") == 0)
        return via_router(o, o->args[0]);
    if (strcmp(m, "api") == 0)
        return staged(o, o->args[0], t);
    if (strcmp(m, "agent") == 0)
        return via_agent(o, o->args[0]);
    if (strcmp(m, "thaw") == 0)
        return api("admin.vm.Unpause", o->args[0], NULL, NULL, 0) < 0 ? -1
                                                                       : via_agent(o, o->args[1]);
    if (strcmp(m, "spawn") == 0)
        return spawn_wait(o, o->args);
    fprintf(stderr, "dispvm_bench: unknown mode %s\n", m);
    return -1;
}

/* How many entries of TEMPLATE's preload list are completed (ready and paused). */
static int completed_preloads(const char *tpl) {
    char list[4096];
    _cleanup_reply_ struct client_reply reply;
    if (client_call("admin.vm.feature.Get", "preload-dispvm", tpl, NULL, 0, &reply) < 0 ||
        reply.empty || !reply.r.ok)
        return 0;
    snprintf(list, sizeof(list), "%.*s", (int)reply.r.content_len, reply.r.content);
    int n = 0;
    for (char *save, *q = strtok_r(list, " ", &save); q; q = strtok_r(NULL, " ", &save)) {
        _cleanup_reply_ struct client_reply r2;
        if (client_call("admin.vm.feature.Get", "preload-dispvm-completed", q, NULL, 0, &r2) == 0 &&
            !r2.empty && r2.r.ok)
            n++;
    }
    return n;
}

static double wait_limit_ms = 30000; /* -t */

/* -w TEMPLATE:MAX: untimed, bounded (-t) wait for a full pool. */
static int wait_pool(const char *spec) {
    char tpl[64];
    const char *colon = strchr(spec, ':');
    if (!colon || colon - spec >= (long)sizeof(tpl))
        return -1;
    snprintf(tpl, sizeof(tpl), "%.*s", (int)(colon - spec), spec);
    int want = atoi(colon + 1);
    for (double end = now_ms() + wait_limit_ms; now_ms() < end; sleep_ms(5))
        if (completed_preloads(tpl) >= want) {
            spin_ms(5);
            return 0;
        }
    fprintf(stderr, "dispvm_bench: the pool of %s did not fill to %d within %.0f s\n", tpl, want,
            wait_limit_ms / 1e3);
    return -1;
}

static void print_row(const struct opts *o, int iter, int caller, const struct call_times *t) {
    char stages[128] = ",,,";
    if (t->staged)
        snprintf(stages, sizeof(stages), "%.3f,%.3f,%.3f,%.3f", t->stage[ST_CREATE],
                 t->stage[ST_START], t->stage[ST_EXEC], t->stage[ST_CLEANUP]);
    /* one write per row: rows of concurrent callers never interleave */
    char row[512];
    int len = snprintf(row, sizeof(row), "%s,%d,%d,%.3f,%s,%.3f\n", o->label, iter, caller,
                       t->t_start, stages, t->total);
    if (write(STDOUT_FILENO, row, (size_t)len) != len)
        _exit(1);
}

/* -r: the pool full again after the hand-out that began at t0 (the wait's own polling,
 * every 5 ms, and its 5 ms spin are taken off). */
static int record_refill(const struct opts *o, int iter, double t0) {
    if (wait_pool(o->wait_spec) < 0)
        return -1;
    double refill = now_ms() - 5 - t0;
    FILE *f = fopen(o->refill_file, "ae");
    if (!f)
        return -1;
    fprintf(f, "%s,%d,%.3f\n", o->label, iter, refill);
    return fclose(f) == 0 ? 0 : -1;
}

/* One caller: its n calls in sequence. With -c, released by the parent: each caller
 * reads the common origin of time (a double) from `go` and starts at once. */
static int run_caller(const struct opts *o, int caller, int go) {
    double t_origin = now_ms();
    if (go >= 0 && read(go, &t_origin, sizeof(t_origin)) != sizeof(t_origin))
        return 1;
    for (int i = 0; i < o->n; i++) {
        struct call_times t = {0};
        if (o->wait_spec && wait_pool(o->wait_spec) < 0)
            return 1;
        if (strcmp(o->mode, "thaw") == 0 && api("admin.vm.Pause", o->args[0], NULL, NULL, 0) < 0)
            return 1;
        double t0 = now_ms();
        if (one_call(o, &t) < 0)
            return 1;
        t.total = now_ms() - t0;
        t.t_start = t0 - t_origin;
        print_row(o, i, caller, &t);
        if (o->refill_file && record_refill(o, i, t0) < 0)
            return 1;
    }
    return 0;
}

static int wait_callers(pid_t *pids, int n) {
    int failed = 0;
    for (int c = 0; c < n; c++) {
        int status;
        if (waitpid(pids[c], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    if (failed)
        fprintf(stderr, "dispvm_bench: %d of %d callers failed\n", failed, n);
    return failed ? 1 : 0;
}

/* Forks every caller first, then releases them together (one write of n origins). */
static int run_callers(const struct opts *o) {
    if (o->callers == 1)
        return run_caller(o, 0, -1);
    int go[2];
    if (pipe(go) < 0)
        return 1;
    _cleanup_free_ pid_t *pids = xcalloc((size_t)o->callers, sizeof(pid_t));
    for (int c = 0; c < o->callers; c++) {
        pids[c] = fork();
        if (pids[c] < 0)
            return 1;
        if (pids[c] == 0) {
            close(go[1]);
            _exit(run_caller(o, c, go[0]));
        }
    }
    close(go[0]);
    _cleanup_free_ double *origin = xcalloc((size_t)o->callers, sizeof(double));
    origin[0] = now_ms();
    for (int c = 1; c < o->callers; c++)
        origin[c] = origin[0];
    size_t len = (size_t)o->callers * sizeof(double); /* <= PIPE_BUF up to 512 callers */
    if (write(go[1], origin, len) != (ssize_t)len)
        return 1;
    close(go[1]);
    return wait_callers(pids, o->callers);
}

static int usage(void) {
    fprintf(stderr, "usage: dispvm_bench [-n N] [-c CALLERS] [-l LABEL] [-x CMD] [-s SERVICE] "
                    "[-i FILE] [-w TEMPLATE:MAX [-r FILE]] [-t SECONDS] [-C]\n"
                    "                    router TARGET | api TEMPLATE | agent SOCKET | "
                    "thaw QUBE SOCKET | spawn CMD... | wait TEMPLATE:MAX\n");
    return 2;
}

int main(int argc, char **argv) {
    struct opts o = {.n = 12, .callers = 1, .label = "-", .cmd = "echo hi",
                     .service = "qubes.VMShell"};
    int opt;
    while ((opt = getopt(argc, argv, "+n:c:l:x:s:i:w:t:r:C")) != -1) {
        switch (opt) {
        case 'n': o.n = atoi(optarg); break;
        case 'c': o.callers = atoi(optarg); break;
        case 'l': o.label = optarg; break;
        case 'x': o.cmd = optarg; break;
        case 's': o.service = optarg; break;
        case 'i': o.stdin_file = optarg; break;
        case 'w': o.wait_spec = optarg; break;
        case 't': wait_limit_ms = atof(optarg) * 1e3; break;
        case 'r': o.refill_file = optarg; break;
        case 'C': o.copy_path = true; break;
        default: return usage();
        }
    }
    if (optind >= argc || o.n < 1 || o.callers < 1 || o.callers > 512 || wait_limit_ms <= 0 ||
        (o.refill_file && !o.wait_spec))
        return usage();
    o.mode = argv[optind];
    if (strcmp(o.mode, "wait") == 0)
        return optind + 1 < argc && wait_pool(argv[optind + 1]) == 0 ? 0 : 1;
    o.args = argv + optind + 1;
    o.nargs = argc - optind - 1;
    int need = strcmp(o.mode, "thaw") == 0 ? 2 : 1;
    if (o.nargs < need)
        return usage();
    return run_callers(&o);
}
