/* AGENT_REQ_REFRESH: a VM restored from a saved one (the engine's golden VM) has the
 * saved one's hostname, machine-id, clock and RNG state, the same in every clone. The
 * engine sends each clone its own name, a new machine-id, the host's time and fresh host
 * entropy before anyone can use it; the entropy is credited and the kernel's CRNG reseeded
 * at once, so no output of the clone's RNG derives from the saved state alone. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"

/* <linux/random.h>, which musl's headers do not carry */
#ifndef RNDADDENTROPY
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#endif
#ifndef RNDRESEEDCRNG
#define RNDRESEEDCRNG _IO('R', 0x07)
#endif

#define REFRESH_MAX_SEED 256

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Lower-case hex to bytes: the byte count, or -1 if malformed. */
static int unhex(const char *s, unsigned char *out, size_t max) {
    size_t n = strlen(s);
    if (n % 2 || n / 2 > max)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return (int)(n / 2);
}

static bool is_machine_id(const char *s) {
    if (strlen(s) != 32)
        return false;
    for (; *s; s++)
        if (hexval(*s) < 0)
            return false;
    return true;
}

/* Credited (RNDADDENTROPY: root only, which the agent is) and the CRNG reseeded from it;
 * a kernel without the reseed ioctl at least mixes the bytes in. */
static int add_entropy(const unsigned char *seed, int n) {
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct {
        int entropy_count, buf_size;
        unsigned char buf[REFRESH_MAX_SEED];
    } info = {.entropy_count = n * 8, .buf_size = n};
    memcpy(info.buf, seed, (size_t)n);
    int r = 0;
    if (ioctl(fd, RNDADDENTROPY, &info) < 0)
        r = write(fd, seed, (size_t)n) == n ? 0 : -errno;
    if (r == 0 && ioctl(fd, RNDRESEEDCRNG) < 0)
        agent_log("refresh: RNG not reseeded at once: %s", strerror(errno));
    close(fd);
    return r;
}

static int write_machine_id(const char *id) {
    mkdir("/etc", 0755);
    int fd = open("/etc/machine-id.new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);
    if (fd < 0)
        return -errno;
    char line[40];
    int n = snprintf(line, sizeof(line), "%s\n", id);
    int r = write(fd, line, (size_t)n) == n ? 0 : -EIO;
    close(fd);
    if (r == 0 && rename("/etc/machine-id.new", "/etc/machine-id") < 0)
        r = -errno;
    return r;
}

static int set_clock(const char *when) {
    char *end;
    struct timespec ts = {.tv_sec = (time_t)strtoll(when, &end, 10)};
    if (*end == '.')
        ts.tv_nsec = strtol(end + 1, &end, 10);
    if (*end || ts.tv_sec <= 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000L)
        return -EINVAL;
    return clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
}

static int refresh(const struct agent_request_body *b) {
    unsigned char seed[REFRESH_MAX_SEED];
    int n = unhex(b->command, seed, sizeof(seed));
    if (!*b->service || strlen(b->service) > 64 || !is_machine_id(b->argument) || n < 32)
        return -EINVAL;
    int r = add_entropy(seed, n);
    if (r < 0)
        return r;
    if (sethostname(b->service, strlen(b->service)) < 0)
        return -errno;
    setenv("DISPENSER_QUBE", b->service, 1); /* the services' QREXEC_... environment */
    if ((r = write_machine_id(b->argument)) < 0)
        return r;
    if (*b->user && (r = set_clock(b->user)) < 0)
        agent_log("refresh: clock not set: %s", strerror(-r));
    return 0;
}

void refresh_identity(struct conn *c) {
    struct agent_request_body b;
    int r = agent_body_decode(c->body, c->req.body_len, &b) < 0 ? -EINVAL : refresh(&b);
    if (r < 0) {
        agent_log("refresh refused: %s", strerror(-r));
        conn_send_reply(c, AGENT_REFUSED, -r);
        return;
    }
    agent_log("refreshed as %s", b.service);
    conn_send_reply(c, AGENT_EXITED, 0);
}
