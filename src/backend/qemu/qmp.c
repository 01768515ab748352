/* QMP client: newline-delimited JSON (each message on one line), parsed with json-c. */
#include "qmp.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "monoclock.h"
#include "unix_socket.h"

#define QMP_GREETING_TIMEOUT_MS 5000
#define QMP_RECONNECT_MS 2000

/* Reads what is there into the buffer: 1 if something came, 0 if nothing yet, -1 on
 * EOF or error. A full buffer without a newline is a message too long to care about. */
static int fill(struct qmp *q, int timeout_ms) {
    struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return r < 0 && errno != EINTR ? -1 : 0;
    if (q->len == sizeof(q->buf) - 1)
        q->len = 0;
    ssize_t n = recv(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return -1;
    q->len += n > 0 ? (size_t)n : 0;
    q->buf[q->len] = '\0';
    return 1;
}

/* The next whole line, parsed (NULL if none is complete yet); consumed from the buffer. */
static json_object *next_message(struct qmp *q) {
    char *nl = memchr(q->buf, '\n', q->len);
    if (!nl)
        return NULL;
    *nl = '\0';
    json_object *msg = json_tokener_parse(q->buf);
    size_t used = (size_t)(nl + 1 - q->buf);
    memmove(q->buf, nl + 1, q->len - used);
    q->len -= used;
    q->buf[q->len] = '\0';
    return msg ? msg : json_object_new_object(); /* garbage: skipped like an event */
}

/* An answer to a command sent without waiting (qmp_send): an error is logged. */
static void drop_answer(json_object *msg) {
    json_object *err, *desc, *id;
    if (json_object_object_get_ex(msg, "error", &err))
        log_warning("QMP: command %s failed: %s",
                    json_object_object_get_ex(msg, "id", &id) ? json_object_get_string(id) : "?",
                    json_object_object_get_ex(err, "desc", &desc) ? json_object_get_string(desc)
                                                                  : "error");
}

/* Whether msg answers the command with this id (0: the greeting, which has none). */
static bool answers(json_object *msg, unsigned long id) {
    json_object *v;
    if (!json_object_object_get_ex(msg, "id", &v))
        return id == 0;
    return (unsigned long)json_object_get_int64(v) == id;
}

/* Waits for a message with one of the keys answering `id` (events and the answers to
 * other commands in between are dropped). */
static json_object *wait_for(struct qmp *q, const char *key1, const char *key2, unsigned long id,
                             int timeout_ms) {
    double deadline = mono_ms() + timeout_ms;
    for (;;) {
        json_object *msg;
        while ((msg = next_message(q))) {
            bool reply = json_object_object_get_ex(msg, key1, NULL) ||
                         (key2 && json_object_object_get_ex(msg, key2, NULL));
            if (reply && answers(msg, id))
                return msg;
            if (reply)
                drop_answer(msg);
            json_object_put(msg);
        }
        int left = (int)(deadline - mono_ms());
        if (left <= 0 || fill(q, left) < 0)
            return NULL;
    }
}

/* QMP serves one client at a time: after the previous one went away (a daemon that was
 * killed), QEMU listens again only once its main loop has noticed, and a connection made
 * in between is refused. Such a refusal is retried for a moment. */
static int connect_qmp(const char *path) {
    double deadline = mono_ms() + QMP_RECONNECT_MS;
    for (;;) {
        int fd = unix_connect(path);
        if (fd != -ECONNREFUSED || mono_ms() >= deadline)
            return fd;
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

int qmp_open(struct qmp *q, const char *path, struct backend_why *why) {
    q->len = 0;
    q->fd = connect_qmp(path);
    if (q->fd < 0) {
        int r = q->fd;
        q->fd = -1;
        return backend_fail(why, r, "cannot connect to QMP at %s: %s", path, strerror(-r));
    }
    json_object *greeting = wait_for(q, "QMP", NULL, 0, QMP_GREETING_TIMEOUT_MS);
    if (!greeting) {
        qmp_close(q);
        return backend_fail(why, -EIO, "QEMU sent no QMP greeting on %s", path);
    }
    json_object_put(greeting);
    if (qmp_execute(q, "qmp_capabilities", NULL, QMP_GREETING_TIMEOUT_MS, NULL, 0, why) < 0) {
        qmp_close(q);
        return -1;
    }
    return 0;
}

void qmp_close(struct qmp *q) {
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
    q->len = 0;
}

static int send_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The whole command in one sendmsg carrying the descriptor (QEMU takes it with the
 * message's first bytes). */
static int send_with_fd(int fd, const char *s, size_t n, int pass_fd) {
    struct iovec iov = {.iov_base = (void *)s, .iov_len = n};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    ssize_t w;
    do
        w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    return (size_t)w == n ? 0 : send_all(fd, s + w, n - (size_t)w);
}

int qmp_execute(struct qmp *q, const char *command, const char *arguments, int timeout_ms,
                char *out, size_t out_size, struct backend_why *why) {
    return qmp_execute_fd(q, command, arguments, -1, timeout_ms, out, out_size, why);
}

/* Sends the command with the next id: that id, or 0 with err set. */
static unsigned long send_command(struct qmp *q, const char *command, const char *arguments,
                                  int pass_fd, struct backend_why *why) {
    char line[1024];
    unsigned long id = ++q->next_id;
    int n = snprintf(line, sizeof(line), "{\"execute\": \"%s\"%s%s, \"id\": %lu}\n", command,
                     arguments ? ", \"arguments\": " : "", arguments ? arguments : "", id);
    if (q->fd < 0 || n >= (int)sizeof(line) ||
        (pass_fd >= 0 ? send_with_fd(q->fd, line, (size_t)n, pass_fd)
                      : send_all(q->fd, line, (size_t)n)) < 0) {
        backend_fail(why, -EIO, "QMP %s: the connection to QEMU is gone", command);
        return 0;
    }
    return id;
}

int qmp_send(struct qmp *q, const char *command, const char *arguments, struct backend_why *why) {
    return send_command(q, command, arguments, -1, why) ? 0 : -1;
}

int qmp_execute_fd(struct qmp *q, const char *command, const char *arguments, int pass_fd,
                   int timeout_ms, char *out, size_t out_size, struct backend_why *why) {
    unsigned long id = send_command(q, command, arguments, pass_fd, why);
    if (!id)
        return -1;
    json_object *reply = wait_for(q, "return", "error", id, timeout_ms);
    if (!reply)
        return backend_fail(why, -EIO, "QMP %s: no answer from QEMU", command);
    json_object *val;
    int r = 0;
    if (json_object_object_get_ex(reply, "error", &val)) {
        json_object *desc;
        r = backend_fail(why, -EIO, "QMP %s: %s", command,
                         json_object_object_get_ex(val, "desc", &desc)
                             ? json_object_get_string(desc)
                             : "error");
    } else if (out && json_object_object_get_ex(reply, "return", &val)) {
        snprintf(out, out_size, "%s", json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(reply);
    return r;
}

static bool has(json_object *msg, const char *text) {
    return !text || strstr(json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN), text);
}

int qmp_wait_event(struct qmp *q, const char *event, const char *match1, const char *match2,
                   int timeout_ms) {
    double deadline = mono_ms() + timeout_ms;
    for (;;) {
        json_object *msg;
        while ((msg = next_message(q))) {
            json_object *name;
            bool hit = json_object_object_get_ex(msg, "event", &name) &&
                       strcmp(json_object_get_string(name), event) == 0 && has(msg, match1) &&
                       has(msg, match2);
            drop_answer(msg);
            json_object_put(msg);
            if (hit)
                return 0;
        }
        int left = (int)(deadline - mono_ms());
        int r = fill(q, left > 0 ? left : 0); /* timeout 0: what is there, no wait */
        if (r < 0)
            return -EIO;
        if (r == 0 && left <= 0)
            return -ETIMEDOUT;
    }
}

int qmp_drain(struct qmp *q) {
    int r;
    while ((r = fill(q, 0)) > 0) {
        json_object *msg;
        while ((msg = next_message(q))) {
            drop_answer(msg);
            json_object_put(msg);
        }
    }
    return r;
}
