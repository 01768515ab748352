/* A stand-in for a VM's xpra server in test_qemu.py (a guest root with xpra and Python is
 * too slow to boot under TCG): started as the qube's GUI agent starts xpra (systemd
 * socket activation, the listening socket on fd 3), it says xpra's ready line and answers
 * every line of every connection with "echo:LINE", so the test sees bytes cross the
 * window channel both ways. Built static by the test: the guest is a busybox root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *fds = getenv("LISTEN_FDS");
    if (!fds || atoi(fds) != 1)
        return 2;
    printf("xpra is ready (a stand-in)\n");
    fflush(stdout);
    for (;;) {
        int c = accept(3, NULL, NULL);
        if (c < 0)
            return 1;
        FILE *in = fdopen(c, "r");
        char line[4096], out[4200];
        while (fgets(line, sizeof(line), in)) {
            int n = snprintf(out, sizeof(out), "echo:%s", line);
            if (write(c, out, (size_t)n) != n)
                break;
        }
        fclose(in);
    }
}
