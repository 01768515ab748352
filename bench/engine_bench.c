/* Container engine latencies, measured from the client's side exactly as a user pays
 * them: each Admin API call is one connection, each command one agent request.
 *   start            admin.vm.Start alone (returns when the agent answers); an untimed
 *                    Kill, and a pause for the daemon's deferred cleanup, follow
 *   start-kill       admin.vm.Start (returns when the agent answers) + admin.vm.Kill
 *   start-echo-kill  the same with `echo hi` run in between
 *   echo             `echo hi` in an already running qube (the floor of a hand-out)
 *   pause-unpause    admin.vm.Pause + admin.vm.Unpause
 *   thaw-echo        the floor of a preloaded hand-out: Unpause + `echo hi` through the
 *                    agent, the qube paused (untimed) before each iteration
 *   qrexec TARGET    `echo hi` through the router to TARGET (a qube, or "@dispvm" for a
 *                    disposable: preloaded if one is ready), as qvm-run does but without
 *                    the process start
 *   spawn CMD...     any command run N times (bwrap, for comparison)
 * Prints one line: median, p95, min, max in milliseconds. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "agent_client.h"
#include "client.h"
#include "qrexec_client.h"

extern char **environ;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int api(const char *method, const char *qube) {
    _cleanup_reply_ struct client_reply reply;
    int r = client_call(method, "", qube, NULL, 0, &reply);
    if (r < 0 || reply.empty || !reply.r.ok) {
        fprintf(stderr, "engine_bench: %s %s: %s\n", method, qube,
                r < 0 ? strerror(-r) : reply.empty ? "empty reply" : reply.r.msg);
        return -1;
    }
    return 0;
}

/* echo hi through the agent, output to /dev/null (the descriptor path, as qvm-run). */
static int echo_in(const char *sock) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int stdio[3] = {null, null, null};
    struct agent_request_body body = {"qubes.VMShell", "", "dom0", "", "user", "echo hi"};
    struct agent_reply reply;
    int r = agent_client_call(sock, AGENT_REQ_EXEC, &body, true, stdio, &reply);
    close(null);
    return r < 0 || reply.kind != AGENT_EXITED || reply.status != 0 ? -1 : 0;
}

static int qrexec_echo(const char *target) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int stdio[3] = {null, null, null};
    struct qrexec_result res;
    char msg[256];
    int r = qrexec_call(target, "qubes.VMShell", "", "echo hi", stdio, &res, msg, sizeof(msg));
    close(null);
    if (r < 0 || res.kind != QREXEC_EXITED || res.status != 0) {
        fprintf(stderr, "engine_bench: qrexec to %s: %s\n", target, r < 0 ? strerror(-r) : msg);
        return -1;
    }
    return 0;
}

static int spawn_wait(char **argv) {
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status;
    if (r != 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The untimed part of `start`: kill, then give the daemon time for its cleanup, which
 * is deferred until after the reply and would otherwise land on the next Start. */
static int untimed_before(const char *mode, const char *qube) {
    return strcmp(mode, "thaw-echo") == 0 ? api("admin.vm.Pause", qube) : 0;
}

static int untimed_after(const char *mode, const char *qube) {
    if (strcmp(mode, "start") != 0)
        return 0;
    int r = api("admin.vm.Kill", qube);
    /* spin rather than sleep: an idle vCPU wakes slowly under nested virtualisation,
     * and that wake-up would be billed to the next Start */
    for (double end = now_ms() + 5; now_ms() < end;)
        ;
    return r;
}

static int one(const char *mode, const char *qube, const char *sock, char **argv) {
    if (strcmp(mode, "start") == 0)
        return api("admin.vm.Start", qube);
    if (strcmp(mode, "start-kill") == 0)
        return api("admin.vm.Start", qube) < 0 ? -1 : api("admin.vm.Kill", qube);
    if (strcmp(mode, "start-echo-kill") == 0)
        return api("admin.vm.Start", qube) < 0 || echo_in(sock) < 0 ? -1
                                                                     : api("admin.vm.Kill", qube);
    if (strcmp(mode, "echo") == 0)
        return echo_in(sock);
    if (strcmp(mode, "thaw-echo") == 0)
        return api("admin.vm.Unpause", qube) < 0 ? -1 : echo_in(sock);
    if (strcmp(mode, "pause-unpause") == 0)
        return api("admin.vm.Pause", qube) < 0 ? -1 : api("admin.vm.Unpause", qube);
    if (strcmp(mode, "spawn") == 0)
        return spawn_wait(argv);
    if (strcmp(mode, "qrexec") == 0)
        return qrexec_echo(qube);
    return -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: engine_bench MODE ITERATIONS QUBE [AGENT_SOCKET] | "
                        "engine_bench spawn ITERATIONS CMD...\n");
        return 2;
    }
    const char *mode = argv[1];
    int n = atoi(argv[2]);
    const char *qube = argv[3], *sock = argc > 4 ? argv[4] : "";
    double *t = xcalloc((size_t)n, sizeof(double));
    double *t_in_order = xcalloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) {
        if (untimed_before(mode, qube) < 0)
            return 1;
        double t0 = now_ms();
        if (one(mode, qube, sock, argv + 3) < 0)
            return 1;
        t[i] = t_in_order[i] = now_ms() - t0;
        if (untimed_after(mode, qube) < 0)
            return 1;
    }
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    if (getenv("BENCH_ALL")) /* every iteration, in order: does the n-th cost the same? */
        for (int i = 0; i < n; i++)
            fprintf(stderr, "%.3f%c", t_in_order[i], i + 1 < n ? ' ' : '\n');
    printf("%-16s n=%d median=%.3f p95=%.3f min=%.3f max=%.3f ms\n", mode, n, t[n / 2],
           t[(n * 95) / 100 < n ? (n * 95) / 100 : n - 1], t[0], t[n - 1]);
    free(t);
    free(t_in_order);
    return 0;
}
