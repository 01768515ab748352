/* The engine's own tiny agent client: readiness and shutdown requests. Service calls with
 * descriptors are the qrexec router's business. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent_proto.h"
#include "container.h"

/* Connects (the socket was bound and listened on by us, so this never blocks even before
 * the agent runs: the connection waits in the backlog) and sends a bodyless request. */
int agent_request_async(const char *socket_path, int type) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    char msg[sizeof(struct agent_request) + 6];
    struct agent_request req = {AGENT_MAGIC, (uint16_t)type, 0, 6};
    memcpy(msg, &req, sizeof(req));
    memset(msg + sizeof(req), 0, 6); /* six empty strings */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg) ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

/* 0 with the reply's status, -EAGAIN if not there yet, other -errno if the agent hung up
 * or answered nonsense. The reply is 12 bytes: it arrives whole or not at all. */
int agent_read_reply_status(int fd, int *status) {
    struct agent_reply reply;
    ssize_t n = recv(fd, &reply, sizeof(reply), MSG_DONTWAIT);
    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(reply) || reply.magic != AGENT_MAGIC)
        return -EPROTO;
    *status = reply.kind == AGENT_EXITED ? reply.status : -1;
    return 0;
}
