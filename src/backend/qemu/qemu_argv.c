/* The QEMU command line of a qube: a microvm (no PCI, no firmware, no legacy devices)
 * booting the uncompressed kernel through its PVH entry, confined by QEMU's seccomp
 * sandbox, reachable only through sockets in its runtime directory; its images and
 * console log are descriptors it inherits where the engine passes them (qemu_confine.c:
 * its jail holds no path to them). */
#include "qemu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

struct argv_builder {
    char **v;
    size_t n, cap;
};

static void add(struct argv_builder *a, const char *fmt, ...) _printf_(2, 3);
static void add(struct argv_builder *a, const char *fmt, ...) {
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, a->cap * sizeof(char *));
    }
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&a->v[a->n], fmt, ap) < 0)
        abort();
    va_end(ap);
    a->v[++a->n] = NULL;
}

/* QEMU's option syntax doubles a comma inside a value. */
static char *escape_commas(const char *s) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    for (; *s; s++)
        strbuf_append(&sb, *s == ',' ? ",," : s, *s == ',' ? 2 : 1);
    return xstrdup(strbuf_str(&sb));
}

/* The guest's command line. Under TCG a microvm guest without HPET or PM timer hangs in
 * a quarter of boots calibrating its TSC: tsc_early_khz gives it the host's rate, and
 * tsc=reliable keeps the clocksource watchdog from dropping the TSC when a loaded host
 * makes it look skewed (the guest then falls back to jiffies and sleeps stall). panic=-1
 * and reboot=t: the agent's exit (its poweroff) resets the guest, and -no-reboot makes
 * that the end of QEMU. */
static char *kernel_cmdline(const struct qemu_backend *qb, const char *name,
                            const struct qemu_launch *l) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb,
                  "console=ttyS0 quiet panic=-1 reboot=t pci=off tsc=reliable "
                  "no_timer_check dispenser.qube=%s",
                  name);
    if (qb->tsc_khz)
        strbuf_printf(&sb, " tsc_early_khz=%u", qb->tsc_khz);
    if (l->init && l->init[0] == '/' && !strpbrk(l->init, " \t\n"))
        strbuf_printf(&sb, " dispenser.init=%s", l->init);
    if (l->tap_fd > 0) /* the guest's init configures eth0 (no DHCP) */
        strbuf_printf(&sb, " dispenser.ip=%s dispenser.gateway=%s dispenser.dns=%s", l->net->ip,
                      l->net->gateway, l->net->dns);
    if (l->gui) /* the guest's init waits for the port and hands it to the agent */
        strbuf_printf(&sb, " dispenser.gui=1");
    if (l->kernelopts && *l->kernelopts)
        strbuf_printf(&sb, " %s", l->kernelopts);
    return xstrdup(strbuf_str(&sb));
}

/* A file QEMU gets as inherited descriptors (fd > 0: -add-fd, then /dev/fdset/N where a
 * path goes; the set's number is fd's; fd2 > 0: a second one of the other access mode, as
 * QEMU opens an image read-only before it opens it for writing) or else by its path. */
static char *file_or_fd(struct argv_builder *a, const char *path, int fd, int fd2) {
    if (fd <= 0)
        return escape_commas(path);
    add(a, "-add-fd");
    add(a, "fd=%d,set=%d", fd, fd);
    if (fd2 > 0) {
        add(a, "-add-fd");
        add(a, "fd=%d,set=%d", fd2, fd);
    }
    char *s;
    if (asprintf(&s, "/dev/fdset/%d", fd) < 0)
        abort();
    return s;
}

static void add_drive(struct argv_builder *a, const char *id, const char *file, int fd, int fd2,
                      bool readonly, bool snapshot) {
    _cleanup_free_ char *f = file_or_fd(a, file, fd, fd2);
    add(a, "-drive");
    add(a, "if=none,id=%s,file=%s,format=raw,readonly=%s%s", id, f, readonly ? "on" : "off",
        snapshot ? ",snapshot=on" : "");
    add(a, "-device");
    add(a, "virtio-blk-device,drive=%s,serial=%s", id, id);
}

/* The port's id makes QEMU tell of the guest opening and closing it (VSERPORT_CHANGE):
 * restore mode waits for that (qemu_golden.c). */
static void add_port(struct argv_builder *a, const char *rundir, const char *id, const char *sock,
                     const char *port_name) {
    _cleanup_free_ char *dir = escape_commas(rundir);
    add(a, "-chardev");
    add(a, "socket,id=%s,path=%s/%s,server=on,wait=off", id, dir, sock);
    add(a, "-device");
    add(a, "virtserialport,chardev=%s,name=%s,id=port-%s", id, port_name, id);
}

/* Restore mode: RAM in the golden's memfd (-machine options merge with -M's; QEMU 7.2
 * opens mem-path read-write: a clone's writes to the sealed memfd fail, its private
 * mapping takes them), a virtio-rng fed from the host's getrandom (clones keep drawing
 * fresh entropy after the agent's reseed), and for a clone the wait for the saved state,
 * which the engine passes over QMP. */
static void add_ram_file(struct argv_builder *a, const struct qemu_launch *l) {
    add(a, "-object");
    add(a, "memory-backend-file,id=ram,size=%lluM,mem-path=/proc/self/fd/%d,share=%s",
        (unsigned long long)(l->memory_mib ? l->memory_mib : 256), l->ram_fd,
        l->ram_shared ? "on" : "off");
    add(a, "-machine");
    add(a, "memory-backend=ram");
    add(a, "-object");
    add(a, "rng-builtin,id=rng");
    add(a, "-device");
    add(a, "virtio-rng-device,rng=rng");
    if (l->incoming) {
        add(a, "-incoming");
        add(a, "defer");
    }
}

/* Free page reporting, and statistics for the shrink before a pause (qemu_balloon.c); the
 * guest takes pages back from the balloon rather than run out of memory. Its RAM is then
 * a memfd: QEMU asks for transparent huge pages on anonymous guest RAM, and the host's
 * khugepaged would fill each hole the balloon left back into a whole 2 MiB page while
 * the VM sits paused (seen: +17 MiB in a minute); shared memory has no huge pages unless
 * the host asks for them (shmem_enabled). */
static void add_balloon(struct argv_builder *a) {
    add(a, "-device");
    add(a, "virtio-balloon-device,id=balloon,free-page-reporting=on,deflate-on-oom=on,"
           "guest-stats-polling-interval=1");
}

char **qemu_argv(const struct qemu_backend *qb, const char *name, const struct qemu_launch *l) {
    struct argv_builder a = {0};
    _cleanup_free_ char *dir = escape_commas(l->rundir);
    _cleanup_free_ char *cmdline = kernel_cmdline(qb, name, l);
    add(&a, "%s", qb->binary);
    add(&a, "-name");
    add(&a, "%s,debug-threads=on", name);
    add(&a, "-M");
    add(&a, "microvm");
    add(&a, "-accel");
    /* a small translation cache: TCG's default reserves up to 1 GiB per VM */
    add(&a, "%s", qb->accel == QEMU_ACCEL_KVM ? "kvm" : "tcg,thread=multi,tb-size=64");
    if (qb->accel == QEMU_ACCEL_KVM) { /* TCG keeps its default model: tested, fast */
        add(&a, "-cpu");
        add(&a, "host");
    }
    unsigned long long memory = l->memory_mib ? l->memory_mib : 256;
    add(&a, "-m");
    add(&a, "%llu", memory);
    if (l->balloon && l->ram_fd <= 0 && l->incoming) {
        /* a woken VM (qemu_hibernate.c): the same RAM block, anonymous. Its image's zero
         * pages (what the balloon held) then cost nothing to load: a memfd's would be
         * allocated as they are read. It runs for a caller from then on (no khugepaged
         * fill of a paused VM's holes to fear) */
        add(&a, "-object");
        add(&a, "memory-backend-ram,id=ram,size=%lluM", memory);
        add(&a, "-machine");
        add(&a, "memory-backend=ram");
    } else if (l->balloon && l->ram_fd <= 0) { /* see add_balloon */
        add(&a, "-object");
        add(&a, "memory-backend-memfd,id=ram,size=%lluM", memory);
        add(&a, "-machine");
        add(&a, "memory-backend=ram");
    }
    add(&a, "-smp");
    add(&a, "%u", l->vcpus ? l->vcpus : 1);
    add(&a, "-nodefaults");
    add(&a, "-no-user-config");
    add(&a, "-nographic");
    add(&a, "-no-reboot");
    add(&a, "-sandbox");
    add(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    add(&a, "-kernel");
    add(&a, "%s", l->kernel);
    add(&a, "-initrd");
    add(&a, "%s", l->initrd);
    add(&a, "-append");
    add(&a, "%s", cmdline);
    add_drive(&a, "root", l->root_image, l->root_fd, 0, true, false);
    if (l->private_image)
        add_drive(&a, "private", l->private_image, l->private_fd, l->private_ro_fd, false,
                  l->private_throwaway);
    add(&a, "-device");
    add(&a, "virtio-serial-device,max_ports=4");
    add_port(&a, l->rundir, "control", "control.sock", "dispenser.control");
    add_port(&a, l->rundir, "agent", "serial.sock", "dispenser.agent");
    if (l->gui) /* the window channel: its host end is QEMU's socket (qemu_gui.c) */
        add_port(&a, l->rundir, "gui", "gui.sock", "dispenser.gui");
    if (l->balloon)
        add_balloon(&a);
    if (l->tap_fd > 0) { /* the tap the engine made in the netvm's namespace (qemu_net.c) */
        add(&a, "-netdev");
        add(&a, "tap,id=net0,fd=%d,vhost=off", l->tap_fd);
        add(&a, "-device");
        add(&a, "virtio-net-device,netdev=net0,mac=%s", l->net->mac);
    }
    _cleanup_free_ char *console = file_or_fd(&a, l->console_log, l->console_fd, 0);
    add(&a, "-chardev");
    add(&a, "file,id=console,path=%s,append=on", console);
    add(&a, "-serial");
    add(&a, "chardev:console");
    add(&a, "-qmp");
    add(&a, "unix:%s/qmp.sock,server=on,wait=off", dir);
    add(&a, "-S"); /* the engine connects to every socket before the guest runs */
    if (l->ram_fd > 0)
        add_ram_file(&a, l);
    else if (l->incoming) { /* a hibernated VM woken: its state comes over QMP */
        add(&a, "-incoming");
        add(&a, "defer");
    }
    return a.v;
}

void qemu_argv_free(char **argv) {
    for (char **p = argv; p && *p; p++)
        free(*p);
    free(argv);
}
