#include "host.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int host_meminfo(const char *path, unsigned long long *total_kib, unsigned long long *avail_kib) {
    FILE *f = fopen(path ? path : "/proc/meminfo", "re");
    if (!f)
        return -1;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "MemTotal: %llu kB", total_kib);
        sscanf(line, "MemAvailable: %llu kB", avail_kib);
    }
    fclose(f);
    return 0;
}

static unsigned long long busy_cpu_ns(void) {
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    unsigned long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle, &iowait,
                   &irq, &softirq);
    fclose(f);
    if (n < 3)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return (user + nice + sys + irq + softirq) * (1000000000ULL / (unsigned long long)hz);
}

int host_usage_read(struct host_usage *u) {
    unsigned long long total = 0, avail = 0;
    if (host_meminfo(NULL, &total, &avail) < 0)
        return -1;
    u->mem_max_kib = total;
    u->mem_kib = total > avail ? total - avail : 0;
    u->cputime_ns = busy_cpu_ns();
    return 0;
}

uint64_t host_mem_total_mib(void) {
    unsigned long long total = 0, avail = 0;
    host_meminfo(NULL, &total, &avail);
    return total / 1024;
}
