#include "backend_net.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "macro.h"
#include "strbuf.h"

/* libnftables in the daemon: its netlink socket is opened with the context, inside the
 * namespace; one script is one transaction (all of it or nothing). */
int backend_nft_apply(int netns_fd, const char *script, struct backend_why *why) {
    _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) < 0)
        return backend_fail(why, -errno, "cannot enter the namespace: %s", strerror(errno));
    struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
    if (setns(home, CLONE_NEWNET) < 0)
        abort(); /* the daemon would go on in a qube's namespace: never */
    if (!nft)
        return backend_fail(why, -ENOMEM, "cannot open nftables");
    nft_ctx_buffer_output(nft);
    nft_ctx_buffer_error(nft);
    int r = nft_run_cmd_from_buffer(nft, script);
    if (r != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", nft_ctx_get_error_buffer(nft));
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = ' ';
        backend_fail(why, -EIO, "nft: %s", *msg ? msg : "failed");
    }
    nft_ctx_free(nft);
    return r != 0 ? -EIO : 0;
}

/* /proc/sys/net shows the namespace of whoever opens it: the daemon steps in to open
 * the file and back out at once (it has no threads that could notice). */
int backend_netns_sysctl(int netns_fd, const char *key, const char *value,
                         struct backend_why *why) {
    char path[256];
    snprintf(path, sizeof(path), "/proc/sys/%s", key);
    _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) < 0)
        return backend_fail(why, -errno, "cannot enter the namespace: %s", strerror(errno));
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) < 0)
        abort(); /* the daemon would go on in a qube's namespace: never */
    if (fd < 0)
        return backend_fail(why, -saved, "cannot open %s: %s", path, strerror(saved));
    size_t len = strlen(value);
    if (write(fd, value, len) != (ssize_t)len)
        return backend_fail(why, -errno, "cannot write %s: %s", path, strerror(errno));
    return 0;
}
