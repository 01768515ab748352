/* The host's block devices that dom0 offers to qubes (Qubes' block device class, with
 * dom0 as the backend): which ones, and what is known of them. The policy (docs/devices.md):
 * only loop devices with a backing file and removable disks (a USB stick, an SD card),
 * with their partitions, and none the host itself uses: mounted, swap, or held by
 * another block device (device mapper, md, a loop), whole disk or any partition of it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_host_dev {
    char port_id[32];   /* the kernel's name: "loop5", "sdb1" */
    char device_id[64]; /* upstream's identity: "<parent's id>:<partition number>" */
    char parent[32];    /* a partition's disk (its port id), else "" */
    unsigned major, minor;
    uint64_t size;    /* bytes */
    bool read_only;   /* the host's own setting (/sys/block/X/ro): attached read-only only */
    char name[128];   /* a loop device's backing file, else "" (unknown) */
    char serial[128]; /* a disk's vendor and model, else "" (unknown) */
};

/* The devices offered now, sorted by port id; *out is freed by the caller. Returns how
 * many (0 with *out NULL when none). */
size_t block_host_list(struct block_host_dev **out);
/* One offered device by port id: 0, or -ENOENT when it is not offered. */
int block_host_find(const char *port_id, struct block_host_dev *out);
