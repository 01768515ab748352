#include "client.h"
#include "unix_socket.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"

const char *client_socket_path(void) {
    const char *env = getenv("QUBESD_SOCKET");
    return env && *env ? env : DEFAULT_SOCKET;
}

void client_reply_free(struct client_reply *reply) { strbuf_free(&reply->raw); }

static int connect_daemon(void) { return unix_connect(client_socket_path()); }

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_request(int fd, const char *method, const char *arg, const char *dest,
                        const void *payload, size_t payload_len) {
    _cleanup_strbuf_ struct strbuf req = STRBUF_INIT;
    wire_format_request(&req, method, arg, dest, payload, payload_len);
    int r = send_all(fd, req.data, req.len);
    if (r < 0)
        return r;
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

static int read_all(int fd, struct strbuf *sb) {
    for (;;) {
        strbuf_reserve(sb, 65536);
        ssize_t n = read(fd, sb->data + sb->len, sb->cap - sb->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* A reset after the daemon refused an over-long request reads as no reply. */
            if (errno == ECONNRESET)
                return 0;
            return -errno;
        }
        if (n == 0)
            return 0;
        sb->len += (size_t)n;
    }
}

int client_call(const char *method, const char *arg, const char *dest, const void *payload,
                size_t payload_len, struct client_reply *reply) {
    *reply = (struct client_reply){.raw = STRBUF_INIT};
    _cleanup_close_ int fd = connect_daemon();
    if (fd < 0)
        return fd;
    int r = send_request(fd, method, arg, dest, payload, payload_len);
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        return r;
    r = read_all(fd, &reply->raw);
    if (r < 0)
        return r;
    if (reply->raw.len == 0) {
        reply->empty = true;
        return 0;
    }
    strbuf_reserve(&reply->raw, 1);
    return wire_parse_reply(reply->raw.data, reply->raw.len, &reply->r) < 0 ? -EBADMSG : 0;
}

int client_events_open(const char *dest) {
    int fd = connect_daemon();
    if (fd < 0)
        return fd;
    int r = send_request(fd, "admin.Events", "", dest, NULL, 0);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}
