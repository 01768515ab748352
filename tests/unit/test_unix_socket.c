/* Unix sockets (src/shared/unix_socket.c). */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unix_socket.h"

#define ROUNDS 400

static int try_connect(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Whoever sees the path can connect: clients (qrexec-client-vm in a booting qube, tests)
 * wait for the file to appear, and a socket bound but not yet listening refuses them. A
 * child makes ROUNDS listeners on fresh paths; the parent connects the moment each path
 * exists. */
static void test_path_appears_only_when_listening(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    assert_non_null(dir);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        for (int i = 0; i < ROUNDS; i++) {
            char path[256];
            snprintf(path, sizeof(path), "%s/s%d", dir, i);
            if (unix_listen(path) < 0)
                _exit(1);
        }
        pause(); /* keeps every listener open until the parent is done */
        _exit(0);
    }
    int refused = 0;
    for (int i = 0; i < ROUNDS; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/s%d", dir, i);
        struct stat st;
        while (stat(path, &st) < 0)
            ;
        if (try_connect(path) == -ECONNREFUSED)
            refused++;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    tu_rmdir(dir);
    assert_int_equal(refused, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_appears_only_when_listening),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
