/* What the host itself reports, for dom0's state and memory properties. */
#pragma once
#include <stdint.h>

struct host_usage {
    unsigned long long mem_kib;     /* MemTotal - MemAvailable */
    unsigned long long mem_max_kib; /* MemTotal */
    unsigned long long cputime_ns;  /* all CPUs, busy time since boot */
};

int host_usage_read(struct host_usage *u);
/* MemTotal and MemAvailable (kB) from a file in /proc/meminfo's format (NULL: the host's);
 * -1 if it cannot be read. Fields the file lacks are left as they were. */
int host_meminfo(const char *path, unsigned long long *total_kib, unsigned long long *avail_kib);
uint64_t host_mem_total_mib(void);
