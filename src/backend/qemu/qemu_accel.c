/* KVM or TCG. /dev/kvm is not enough: under nested virtualisation a guest can hang in
 * KVM, so KVM is used only once a probe guest has booted under it within a timeout. The
 * verdict is cached in STATE/qemu/kvm-verdict (delete it to probe again) and logged. */
#include "qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "monoclock.h"

#define PROBE_TIMEOUT_MS 20000

/* Boots the guest kernel under KVM with the probe flag: its init prints the marker on
 * the serial console and resets at once. True if the marker came in time. */
static bool probe_kvm(const struct qemu_backend *qb) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return false;
    /* the flags every guest gets (qemu_argv.c): without the TSC's rate a microvm guest
     * can hang calibrating it, which the probe would take for KVM's fault */
    char append[256];
    snprintf(append, sizeof(append),
             "console=ttyS0 quiet panic=-1 reboot=t pci=off "
             "tsc=reliable no_timer_check tsc_early_khz=%u dispenser.probe=1",
             qb->tsc_khz);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        execl(qb->binary, qb->binary, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128",
              "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
              "-kernel", qb->kernel, "-initrd", qb->initrd, "-append", append, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char buf[4096];
    size_t len = 0;
    bool ok = false;
    double deadline = mono_ms() + PROBE_TIMEOUT_MS;
    while (pid > 0 && !ok && mono_ms() < deadline) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - mono_ms())) <= 0)
            break;
        ssize_t n = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        ok = strstr(buf, "dispenser-probe-ok") != NULL;
        if (len == sizeof(buf) - 1)
            len = 0;
    }
    close(out[0]);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return ok;
}

static int read_verdict(const struct qemu_backend *qb, char *buf, size_t size) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/qemu/kvm-verdict", qb->state_dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    bool got = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return got ? 0 : -1;
}

static void write_verdict(const struct qemu_backend *qb, const char *verdict) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/qemu", qb->state_dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/qemu/kvm-verdict", qb->state_dir);
    FILE *f = fopen(path, "we");
    if (f) {
        fprintf(f, "%s\n", verdict);
        fclose(f);
    }
}

void qemu_accel_detect(struct qemu_backend *qb, const char *forced) {
    char verdict[64];
    qb->accel = QEMU_ACCEL_TCG;
    if (streq(forced, "tcg")) {
        snprintf(qb->accel_why, sizeof(qb->accel_why), "qemu.accel=tcg");
        return;
    }
    if (access("/dev/kvm", R_OK | W_OK) < 0) {
        snprintf(qb->accel_why, sizeof(qb->accel_why), "no usable /dev/kvm: %s", strerror(errno));
        return;
    }
    if (streq(forced, "kvm")) {
        qb->accel = QEMU_ACCEL_KVM;
        snprintf(qb->accel_why, sizeof(qb->accel_why), "qemu.accel=kvm");
        return;
    }
    if (read_verdict(qb, verdict, sizeof(verdict)) < 0) {
        log_info("qemu engine: probing KVM with a test guest (up to %d s)",
                 PROBE_TIMEOUT_MS / 1000);
        snprintf(verdict, sizeof(verdict), "%s", probe_kvm(qb) ? "kvm" : "tcg");
        write_verdict(qb, verdict);
    }
    qb->accel = streq(verdict, "kvm") ? QEMU_ACCEL_KVM : QEMU_ACCEL_TCG;
    snprintf(qb->accel_why, sizeof(qb->accel_why),
             qb->accel == QEMU_ACCEL_KVM ? "a probe guest booted under KVM"
                                         : "/dev/kvm exists, but a probe guest did not "
                                           "boot under KVM in time (nested virtualisation?)");
}
