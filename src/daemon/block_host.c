/* dom0's block devices, from sysfs and the host's mount and swap tables (block_host.h). */
#include "block_host.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "macro.h"
#include "strbuf.h"

#define SYS_BLOCK "/sys/class/block"

/* A sysfs attribute's first line, or "" when it is absent. */
static void sys_read(const char *dev, const char *attr, char *buf, size_t size) {
    char path[512];
    snprintf(path, sizeof(path), SYS_BLOCK "/%s/%s", dev, attr);
    buf[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (!fgets(buf, (int)size, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

static bool sys_exists(const char *dev, const char *attr) {
    char path[512];
    snprintf(path, sizeof(path), SYS_BLOCK "/%s/%s", dev, attr);
    return access(path, F_OK) == 0;
}

/* Port ids become names in the API and in the qube's tools: plain kernel names only. */
static bool name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)name[i]) && !isdigit((unsigned char)name[i]))
            return false;
    return true;
}

/* What upstream shows of a description: letters, digits and a few signs; the rest '_'. */
static void sanitize(char *s) {
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("()+,-.:=_/ ", *s))
            *s = '_';
}

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
    size_t lead = strspn(s, " ");
    memmove(s, s + lead, n - lead + 1);
}

/* ---- what the host uses itself ---- */

struct used {
    dev_t *v;
    size_t n;
};

static void used_add(struct used *u, dev_t d) {
    u->v = xrealloc(u->v, (u->n + 1) * sizeof(*u->v));
    u->v[u->n++] = d;
}

static bool used_has(const struct used *u, dev_t d) {
    for (size_t i = 0; i < u->n; i++)
        if (u->v[i] == d)
            return true;
    return false;
}

/* Mounted file systems (field 3 of mountinfo: major:minor) and swap devices. */
static void read_used(struct used *u) {
    char line[4096];
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof(line), f)) {
        unsigned maj, min;
        if (sscanf(line, "%*s %*s %u:%u", &maj, &min) == 2)
            used_add(u, makedev(maj, min));
    }
    if (f)
        fclose(f);
    f = fopen("/proc/swaps", "re");
    while (f && fgets(line, sizeof(line), f)) {
        char path[1024];
        struct stat st;
        if (sscanf(line, "%1023s", path) == 1 && stat(path, &st) == 0 && S_ISBLK(st.st_mode))
            used_add(u, st.st_rdev);
    }
    if (f)
        fclose(f);
}

static bool dev_numbers(const char *dev, unsigned *maj, unsigned *min) {
    char buf[32];
    sys_read(dev, "dev", buf, sizeof(buf));
    return sscanf(buf, "%u:%u", maj, min) == 2;
}

static bool has_holders(const char *dev) {
    char path[512];
    snprintf(path, sizeof(path), SYS_BLOCK "/%s/holders", dev);
    DIR *d = opendir(path);
    bool any = false;
    for (struct dirent *de; d && !any && (de = readdir(d));)
        any = de->d_name[0] != '.';
    if (d)
        closedir(d);
    return any;
}

static bool one_in_use(const char *dev, const struct used *u) {
    unsigned maj, min;
    return !dev_numbers(dev, &maj, &min) || used_has(u, makedev(maj, min)) || has_holders(dev);
}

/* A disk is in use when it or any of its partitions is (/sys/block/D/D1...). */
static bool disk_in_use(const char *disk, const struct used *u) {
    if (one_in_use(disk, u))
        return true;
    char path[512];
    snprintf(path, sizeof(path), "/sys/block/%s", disk);
    DIR *d = opendir(path);
    bool busy = false;
    for (struct dirent *de; d && !busy && (de = readdir(d));) {
        char attr[300];
        snprintf(attr, sizeof(attr), "%s/partition", de->d_name);
        if (de->d_name[0] != '.' && name_ok(de->d_name) && sys_exists(disk, attr))
            busy = one_in_use(de->d_name, u);
    }
    if (d)
        closedir(d);
    return busy;
}

/* ---- which devices, and what of them ---- */

/* A partition's disk: the directory above it in sysfs. */
static void parent_of(const char *dev, char *out, size_t size) {
    char path[512], real[4096];
    out[0] = '\0';
    snprintf(path, sizeof(path), SYS_BLOCK "/%s/..", dev);
    if (!realpath(path, real))
        return;
    const char *base = strrchr(real, '/');
    if (base && name_ok(base + 1))
        snprintf(out, size, "%s", base + 1);
}

/* Loop devices with a file behind them, and removable disks. */
static bool disk_offered(const char *disk) {
    char buf[8];
    if (strncmp(disk, "loop", 4) == 0)
        return sys_exists(disk, "loop/backing_file");
    sys_read(disk, "removable", buf, sizeof(buf));
    return strcmp(buf, "1") == 0;
}

/* Upstream's identity: the parent's identity, ':', the trailing number of the name
 * ("None" without one): loop5 ":5", sdb ":None", sdb1 ":None:1". */
static void identity(const char *port, const char *parent_id, char *out, size_t size) {
    size_t n = strlen(port), i = n;
    while (i && isdigit((unsigned char)port[i - 1]))
        i--;
    /* a number too long for upstream's int() is still only digits */
    snprintf(out, size, "%s:%s", parent_id, i < n ? port + i : "None");
}

static void describe(const char *disk, struct block_host_dev *d) {
    char buf[256], vendor[64], model[128];
    if (strncmp(disk, "loop", 4) == 0) {
        sys_read(disk, "loop/backing_file", buf, sizeof(buf));
        snprintf(d->name, sizeof(d->name), "%s", buf);
    } else {
        sys_read(disk, "device/vendor", vendor, sizeof(vendor));
        sys_read(disk, "device/model", model, sizeof(model));
        trim(vendor);
        trim(model);
        snprintf(d->serial, sizeof(d->serial), "%s%s%s", vendor, *vendor && *model ? " " : "",
                 model);
    }
    sanitize(d->name);
    sanitize(d->serial);
}

static bool fill(const char *dev, const struct used *u, struct block_host_dev *d) {
    char buf[32];
    *d = (struct block_host_dev){0};
    if (!name_ok(dev))
        return false;
    bool partition = sys_exists(dev, "partition");
    if (partition)
        parent_of(dev, d->parent, sizeof(d->parent));
    const char *disk = partition ? d->parent : dev;
    if (!*disk || !disk_offered(disk) || disk_in_use(disk, u))
        return false;
    if (!dev_numbers(dev, &d->major, &d->minor))
        return false;
    sys_read(dev, "size", buf, sizeof(buf));
    d->size = strtoull(buf, NULL, 10) * 512;
    if (d->size == 0)
        return false;
    sys_read(dev, "ro", buf, sizeof(buf));
    d->read_only = strcmp(buf, "1") == 0;
    snprintf(d->port_id, sizeof(d->port_id), "%s", dev);
    char parent_id[64] = "";
    if (partition)
        identity(d->parent, "", parent_id, sizeof(parent_id));
    identity(dev, parent_id, d->device_id, sizeof(d->device_id));
    describe(disk, d);
    return true;
}

static int by_port(const void *a, const void *b) {
    return strcmp(((const struct block_host_dev *)a)->port_id,
                  ((const struct block_host_dev *)b)->port_id);
}

size_t block_host_list(struct block_host_dev **out) {
    struct used u = {0};
    read_used(&u);
    *out = NULL;
    size_t n = 0;
    DIR *d = opendir(SYS_BLOCK);
    for (struct dirent *de; d && (de = readdir(d));) {
        struct block_host_dev dev;
        if (de->d_name[0] == '.' || !fill(de->d_name, &u, &dev))
            continue;
        *out = xrealloc(*out, (n + 1) * sizeof(**out));
        (*out)[n++] = dev;
    }
    if (d)
        closedir(d);
    free(u.v);
    if (n)
        qsort(*out, n, sizeof(**out), by_port);
    return n;
}

int block_host_find(const char *port_id, struct block_host_dev *out) {
    struct used u = {0};
    read_used(&u);
    bool found = name_ok(port_id) && fill(port_id, &u, out);
    free(u.v);
    return found ? 0 : -ENOENT;
}
