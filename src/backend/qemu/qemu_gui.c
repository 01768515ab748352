/* The QEMU engine's part of the GUI (docs/gui.md): a GUI VM gets a third virtio-serial
 * port, dispenser.gui, whose host end is the Unix socket QEMU listens on in the VM's
 * runtime directory (RUNDIR/gui.sock, in the daemon's root-only tree; QEMU runs as the
 * VM's own uid). The host's GUI daemon (`xpra attach`) connects there; its bytes cross
 * the VM boundary on the port, and the guest's agent bridges them to the xpra server
 * inside (dispenser-agent --gui-port, src/agent/gui_port.c). QEMU serves one connection
 * at a time, which is what the one GUI daemon per qube needs; a GUI daemon that goes (a
 * daemon restart) makes the guest's bridge drop its connection to xpra, and the next one
 * starts a new session. The guest reaches no host socket: it only answers on its port. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "qemu.h"

int qemu_gui_socket(struct backend *b, const char *name, char *path, size_t size) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    char dir[4096];
    struct stat st;
    if (!qemu_find(qb, name))
        return -ENOENT;
    qemu_rundir(qb, name, dir, sizeof(dir));
    snprintf(path, size, "%s/gui.sock", dir);
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return -ENOENT;
    return 0;
}
