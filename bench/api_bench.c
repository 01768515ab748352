/* Admin API throughput: how many calls of one method the daemon answers per second,
 * from one client or from N concurrent clients (processes), each call one connection
 * exactly as the qvm-* tools make it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "client.h"

struct bench_opts {
    const char *method, *arg, *dest, *payload;
    double seconds;
    int clients;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Calls until the deadline; returns the number of successful calls, -1 on a failure. */
static long client_loop(const struct bench_opts *o) {
    long calls = 0;
    double end = now() + o->seconds;
    size_t plen = strlen(o->payload);
    while (now() < end) {
        _cleanup_reply_ struct client_reply reply;
        if (client_call(o->method, o->arg, o->dest, o->payload, plen, &reply) < 0 ||
            reply.empty || !reply.r.ok) {
            fprintf(stderr, "api_bench: %s failed: %s\n", o->method,
                    reply.empty ? "empty reply" : reply.r.ok ? "no daemon" : reply.r.msg);
            return -1;
        }
        calls++;
    }
    return calls;
}

static int run_clients(const struct bench_opts *o, long *total) {
    int p[2];
    if (pipe(p) < 0)
        return -1;
    for (int i = 0; i < o->clients; i++) {
        if (fork() == 0) {
            long n = client_loop(o);
            (void)!write(p[1], &n, sizeof(n));
            _exit(n < 0);
        }
    }
    close(p[1]);
    *total = 0;
    int failed = 0;
    for (int i = 0; i < o->clients; i++) {
        long n;
        if (read(p[0], &n, sizeof(n)) != sizeof(n) || n < 0)
            failed = 1;
        else
            *total += n;
    }
    while (wait(NULL) > 0)
        ;
    close(p[0]);
    return failed ? -1 : 0;
}

int main(int argc, char **argv) {
    struct bench_opts o = {"admin.vm.List", "", "dom0", "", 3.0, 1};
    static const struct option longopts[] = {
        {"method", required_argument, NULL, 'm'}, {"arg", required_argument, NULL, 'a'},
        {"dest", required_argument, NULL, 'd'},   {"payload", required_argument, NULL, 'p'},
        {"seconds", required_argument, NULL, 's'}, {"clients", required_argument, NULL, 'c'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "m:a:d:p:s:c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o.method = optarg; break;
        case 'a': o.arg = optarg; break;
        case 'd': o.dest = optarg; break;
        case 'p': o.payload = optarg; break;
        case 's': o.seconds = atof(optarg); break;
        case 'c': o.clients = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: api_bench [-m METHOD] [-a ARG] [-d DEST] [-p PAYLOAD] "
                            "[-s SECONDS] [-c CLIENTS]\n");
            return 2;
        }
    }
    long total;
    double start = now();
    if (run_clients(&o, &total) < 0)
        return 1;
    double elapsed = now() - start;
    printf("%s+%s clients=%d calls=%ld seconds=%.2f calls_per_s=%.0f\n", o.method, o.arg,
           o.clients, total, elapsed, (double)total / elapsed);
    return 0;
}
