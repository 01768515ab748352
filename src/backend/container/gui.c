/* The container engine's part of the GUI (docs/gui.md): for a qube started with gui on,
 * a listening Unix socket RUNTIME/qubes/<name>/gui.sock, bound here by the daemon (root
 * only, 0600) and handed to the qube's agent as an inherited descriptor. The agent gives
 * it to the qube's xpra server (systemd socket activation), so the host's GUI daemon
 * reaches the qube's windows by connecting to it; the qube itself reaches no host
 * socket, no host X server, and no other qube's channel. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "container.h"

static void gui_socket_path(const struct container_backend *cb, const char *name, char *buf,
                            size_t size) {
    container_path(cb, buf, size, "%s/qubes/%s/gui.sock", cb->runtime_dir, name);
}

int container_gui_bind(struct run *run) {
    char path[4096];
    gui_socket_path(run->cb, run->name, path, sizeof(path));
    return bind_agent_socket(path);
}

int container_gui_socket(struct backend *b, const char *name, char *path, size_t size) {
    struct container_backend *cb = (struct container_backend *)b;
    struct stat st;
    if (!container_find(cb, name))
        return -ENOENT;
    gui_socket_path(cb, name, path, size);
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return -ENOENT;
    return 0;
}
