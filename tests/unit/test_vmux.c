/* vmux (src/shared/vmux.c): the frame codec, the per-channel credit window, and both ends
 * of the multiplexer stepped in one process over a socketpair standing in for the
 * serial port, with real Unix sockets for the host's clients and the guest's agent. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "strbuf.h"
#include "vmux.h"

/* ---- codec ---- */

static void test_header_layout(void **state) {
    unsigned char b[VMUX_HDR_SIZE];
    vmux_hdr_encode(b, &(struct vmux_hdr){.channel = 0x01020304,
                                          .type = VMUX_DATA,
                                          .len = 0x00010000});
    assert_bytes_equal(b, sizeof(b), BYTES("\x04\x03\x02\x01\x02\x00\x00\x00\x00\x00\x01\x00"));
    struct vmux_hdr h;
    vmux_hdr_decode(b, &h);
    assert_int_equal(h.channel, 0x01020304);
    assert_int_equal(h.type, VMUX_DATA);
    assert_int_equal(h.reserved, 0);
    assert_int_equal(h.len, 0x10000);
}

static void test_parse_whole_frames_only(void **state) {
    struct strbuf sb = STRBUF_INIT;
    vmux_frame_put(&sb, 7, VMUX_DATA, "hello", 5);
    vmux_frame_put(&sb, 7, VMUX_EOF, NULL, 0);
    struct vmux_hdr h;
    for (size_t len = 0; len < VMUX_HDR_SIZE + 5; len++)
        assert_int_equal(vmux_frame_parse(sb.data, len, &h), 0);
    assert_int_equal(vmux_frame_parse(sb.data, sb.len, &h), VMUX_HDR_SIZE + 5);
    assert_int_equal(h.channel, 7);
    assert_int_equal(h.type, VMUX_DATA);
    assert_memory_equal(sb.data + VMUX_HDR_SIZE, "hello", 5);
    assert_int_equal(vmux_frame_parse(sb.data + 17, sb.len - 17, &h), VMUX_HDR_SIZE);
    assert_int_equal(h.type, VMUX_EOF);
    strbuf_free(&sb);
}

static long parse_hdr(uint32_t channel, uint16_t type, uint16_t reserved, uint32_t len) {
    unsigned char b[VMUX_HDR_SIZE];
    struct vmux_hdr h = {channel, type, reserved, len};
    vmux_hdr_encode(b, &h);
    return vmux_frame_parse(b, sizeof(b), &h);
}

static void test_parse_rejects_from_the_header(void **state) {
    /* Refused on the header alone: a bad length never makes the reader wait for it. */
    assert_int_equal(parse_hdr(1, VMUX_DATA, 0, 0xffffffffu), -EPROTO);
    assert_int_equal(parse_hdr(1, VMUX_DATA, 0, VMUX_MAX_PAYLOAD + 1), -EPROTO);
    assert_int_equal(parse_hdr(1, VMUX_DATA, 0, 0), -EPROTO);
    assert_int_equal(parse_hdr(1, 0, 0, 0), -EPROTO);
    assert_int_equal(parse_hdr(1, 6, 0, 0), -EPROTO);
    assert_int_equal(parse_hdr(1, VMUX_OPEN, 1, 0), -EPROTO);
    assert_int_equal(parse_hdr(0, VMUX_OPEN, 0, 0), -EPROTO);
    assert_int_equal(parse_hdr(1, VMUX_OPEN, 0, 1), -EPROTO);
    assert_int_equal(parse_hdr(1, VMUX_CLOSE, 0, 4), -EPROTO);
    assert_int_equal(parse_hdr(1, VMUX_CREDIT, 0, 3), -EPROTO);
    /* well-formed headers wait for their payload */
    assert_int_equal(parse_hdr(1, VMUX_DATA, 0, VMUX_MAX_PAYLOAD), 0);
    assert_int_equal(parse_hdr(1, VMUX_CREDIT, 0, 4), 0);
    assert_int_equal(parse_hdr(1, VMUX_CLOSE, 0, 0), VMUX_HDR_SIZE);
}

/* ---- flow control ---- */

static void test_send_credit(void **state) {
    struct vmux_flow f;
    vmux_flow_init(&f);
    assert_int_equal(vmux_flow_sendable(&f, 10), 10);
    assert_int_equal(vmux_flow_sendable(&f, 1 << 20), VMUX_MAX_PAYLOAD);
    for (int i = 0; i < VMUX_WINDOW / VMUX_MAX_PAYLOAD; i++)
        vmux_flow_sent(&f, VMUX_MAX_PAYLOAD);
    assert_int_equal(vmux_flow_sendable(&f, 1), 0);
    assert_int_equal(vmux_flow_granted(&f, 100), 0);
    assert_int_equal(vmux_flow_sendable(&f, 1 << 20), 100);
    /* more back than was ever sent: a broken peer */
    assert_int_equal(vmux_flow_granted(&f, VMUX_WINDOW), -EPROTO);
}

static void test_receive_window(void **state) {
    struct vmux_flow f;
    vmux_flow_init(&f);
    assert_int_equal(vmux_flow_received(&f, VMUX_WINDOW - 1), 0);
    assert_int_equal(vmux_flow_received(&f, 2), -EPROTO);
    assert_int_equal(vmux_flow_received(&f, 1), 0);
    /* given back in batches only */
    assert_int_equal(vmux_flow_consumed(&f, VMUX_CREDIT_BATCH - 1), 0);
    assert_int_equal(vmux_flow_received(&f, 1), -EPROTO);
    assert_int_equal(vmux_flow_consumed(&f, 1), VMUX_CREDIT_BATCH);
    assert_int_equal(vmux_flow_received(&f, VMUX_CREDIT_BATCH), 0);
    assert_int_equal(vmux_flow_received(&f, 1), -EPROTO);
}

/* ---- both ends, stepped in this process ---- */

struct pair {
    char *dir, host_path[256], agent_path[256];
    int stream[2]; /* [0] host end, [1] guest end */
    int listener, agent_listener;
    struct vmux *host, *guest;
};

static int listen_at(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static int connect_to(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int pair_setup(void **state) {
    signal(SIGPIPE, SIG_IGN);
    struct pair *p = calloc(1, sizeof(*p));
    p->dir = tu_mkdtemp();
    snprintf(p->host_path, sizeof(p->host_path), "%s/agent.sock", p->dir);
    snprintf(p->agent_path, sizeof(p->agent_path), "%s/inside.sock", p->dir);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->stream), 0);
    p->listener = listen_at(p->host_path);
    p->agent_listener = listen_at(p->agent_path);
    p->host = vmux_new(
        &(struct vmux_config){.role = VMUX_HOST, .stream = p->stream[0], .listener = p->listener});
    p->guest = vmux_new(
        &(struct vmux_config){.role = VMUX_GUEST, .stream = p->stream[1], .target = p->agent_path});
    *state = p;
    return 0;
}

static int pair_teardown(void **state) {
    struct pair *p = *state;
    vmux_free(p->host);
    vmux_free(p->guest);
    close(p->stream[0]);
    if (p->stream[1] >= 0)
        close(p->stream[1]);
    close(p->listener);
    if (p->agent_listener >= 0)
        close(p->agent_listener);
    tu_rmdir(p->dir);
    free(p);
    return 0;
}

/* A few rounds of both ends: everything that can move, moves. */
static void pump(struct pair *p) {
    for (int i = 0; i < 8; i++) {
        assert_int_equal(vmux_step(p->host, 0), 1);
        if (p->guest)
            assert_int_equal(vmux_step(p->guest, 0), 1);
    }
}

static int agent_accept(struct pair *p) {
    int fd = accept4(p->agent_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void expect_read(int fd, const char *want) {
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(buf, want, n);
}

static void expect_eof(int fd) {
    char c;
    assert_int_equal(recv(fd, &c, 1, MSG_DONTWAIT), 0);
}

static void test_bridge_half_close_close(void **state) {
    struct pair *p = *state;
    int client = connect_to(p->host_path);
    pump(p);
    int agent = agent_accept(p);
    assert_int_equal(vmux_channel_count(p->host), 1);
    assert_int_equal(vmux_channel_count(p->guest), 1);
    assert_int_equal(send(client, "hello", 5, 0), 5);
    assert_int_equal(shutdown(client, SHUT_WR), 0);
    pump(p);
    expect_read(agent, "hello");
    expect_eof(agent); /* EOF travelled as a half-close: the other way still works */
    assert_int_equal(send(agent, "world", 5, 0), 5);
    close(agent);
    pump(p);
    expect_read(client, "world");
    expect_eof(client);
    assert_int_equal(vmux_channel_count(p->host), 0);
    assert_int_equal(vmux_channel_count(p->guest), 0);
    close(client);
}

static void test_open_refused(void **state) {
    struct pair *p = *state;
    close(p->agent_listener); /* the agent is not there */
    p->agent_listener = -1;
    unlink(p->agent_path);
    int client = connect_to(p->host_path);
    assert_int_equal(send(client, "lost", 4, 0), 4);
    pump(p);
    char c;
    ssize_t n = recv(client, &c, 1, MSG_DONTWAIT);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    assert_int_equal(vmux_channel_count(p->host), 0);
    close(client);
}

/* One caller never reads: its service is held back after about a window, while another
 * channel carries on; nothing holds more than the window for the stalled one. */
static void test_slow_channel_does_not_stall_others(void **state) {
    struct pair *p = *state;
    int slow_client = connect_to(p->host_path);
    pump(p);
    int slow_agent = agent_accept(p);
    int quick_client = connect_to(p->host_path);
    pump(p);
    int quick_agent = agent_accept(p);
    static char chunk[65536];
    size_t written = 0;
    for (int round = 0; round < 200; round++) {
        ssize_t n = send(slow_agent, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n > 0)
            written += (size_t)n;
        pump(p);
    }
    /* stalled: what left the slow service sits in kernel buffers and one window */
    assert_true(written < 200 * sizeof(chunk));
    assert_true(vmux_buffered(p->host) <= VMUX_WINDOW + VMUX_HDR_SIZE);
    assert_true(vmux_buffered(p->guest) <= VMUX_OUT_HIGH + VMUX_HDR_SIZE + VMUX_MAX_PAYLOAD);
    assert_int_equal(send(quick_client, "ping", 4, 0), 4);
    pump(p);
    expect_read(quick_agent, "ping");
    assert_int_equal(send(quick_agent, "pong", 4, 0), 4);
    pump(p);
    expect_read(quick_client, "pong");
    /* the slow one gets everything once it reads */
    size_t got = 0;
    char buf[65536];
    for (int round = 0; round < 1000 && got < written; round++) {
        ssize_t n = recv(slow_client, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        pump(p);
    }
    assert_int_equal(got, written);
    close(slow_client), close(slow_agent), close(quick_client), close(quick_agent);
}

/* SCM_RIGHTS from a client: the bytes go on, the descriptor is closed by the mux. */
static void test_descriptors_do_not_cross(void **state) {
    struct pair *p = *state;
    int client = connect_to(p->host_path);
    pump(p);
    int agent = agent_accept(p);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = "req", .iov_len = 3};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control,
                         .msg_controllen = sizeof(control)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET, cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pipefd[0], sizeof(int));
    assert_int_equal(sendmsg(client, &msg, 0), 3);
    close(pipefd[0]);
    pump(p);
    char buf[8];
    char rcontrol[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec riov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr rmsg = {.msg_iov = &riov,
                          .msg_iovlen = 1,
                          .msg_control = rcontrol,
                          .msg_controllen = sizeof(rcontrol)};
    assert_int_equal(recvmsg(agent, &rmsg, MSG_DONTWAIT), 3);
    assert_null(CMSG_FIRSTHDR(&rmsg));
    /* no reader of the pipe is left anywhere */
    assert_int_equal(write(pipefd[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(pipefd[1]), close(client), close(agent);
}

/* The test speaks for the host, raw frames to the guest end. */
static void raw(struct pair *p, uint32_t ch, uint16_t type, const void *data, uint32_t len) {
    struct strbuf sb = STRBUF_INIT;
    vmux_frame_put(&sb, ch, type, data, len);
    assert_int_equal(write(p->stream[0], sb.data, sb.len), (ssize_t)sb.len);
    strbuf_free(&sb);
}

static int guest_steps_until_error(struct pair *p) {
    for (int i = 0; i < 100; i++) {
        int r = vmux_step(p->guest, 0);
        if (r != 1)
            return r;
    }
    return 1;
}

static void test_guest_refuses_window_overrun(void **state) {
    struct pair *p = *state;
    raw(p, 1, VMUX_OPEN, NULL, 0);
    assert_int_equal(vmux_step(p->guest, 0), 1);
    int agent = agent_accept(p); /* never reads */
    static char chunk[VMUX_MAX_PAYLOAD];
    int r = 1;
    /* without reading a single CREDIT: the guest buffers one window, then refuses */
    for (int i = 0; i < 64 && r == 1; i++) {
        raw(p, 1, VMUX_DATA, chunk, sizeof(chunk));
        r = guest_steps_until_error(p);
        char drain[4096]; /* the credits it sends back, unread by this "host" */
        while (read(p->stream[0], drain, sizeof(drain)) > 0)
            ;
    }
    assert_int_equal(r, -EPROTO);
    close(agent);
}

static void test_guest_refuses_bad_opens_and_garbage(void **state) {
    struct pair *p = *state;
    raw(p, 5, VMUX_OPEN, NULL, 0);
    assert_int_equal(guest_steps_until_error(p), 1);
    raw(p, 5, VMUX_OPEN, NULL, 0); /* channel numbers are never reused */
    assert_int_equal(guest_steps_until_error(p), -EPROTO);
    close(agent_accept(p));
}

static void test_host_refuses_open_from_guest(void **state) {
    struct pair *p = *state;
    struct strbuf sb = STRBUF_INIT;
    vmux_frame_put(&sb, 1, VMUX_OPEN, NULL, 0);
    assert_int_equal(write(p->stream[1], sb.data, sb.len), (ssize_t)sb.len);
    strbuf_free(&sb);
    assert_int_equal(vmux_step(p->host, 0), -EPROTO);
}

static void test_garbage_ends_the_stream(void **state) {
    struct pair *p = *state;
    assert_int_equal(write(p->stream[0], "GET / HTTP/1.0\r\n", 16), 16);
    assert_int_equal(guest_steps_until_error(p), -EPROTO);
}

static void test_stream_end(void **state) {
    struct pair *p = *state;
    int client = connect_to(p->host_path);
    pump(p);
    int agent = agent_accept(p);
    close(p->stream[1]);
    p->stream[1] = -1;
    vmux_free(p->guest);
    p->guest = NULL;
    int r;
    for (int i = 0; i < 10 && (r = vmux_step(p->host, 0)) == 1; i++)
        ;
    assert_int_equal(r, 0);
    vmux_free(p->host);
    p->host = NULL;
    expect_eof(client); /* closed with the host end */
    close(client), close(agent);
}

#define PAIR_TEST(f) cmocka_unit_test_setup_teardown(f, pair_setup, pair_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_parse_whole_frames_only),
        cmocka_unit_test(test_parse_rejects_from_the_header),
        cmocka_unit_test(test_send_credit),
        cmocka_unit_test(test_receive_window),
        PAIR_TEST(test_bridge_half_close_close),
        PAIR_TEST(test_open_refused),
        PAIR_TEST(test_slow_channel_does_not_stall_others),
        PAIR_TEST(test_descriptors_do_not_cross),
        PAIR_TEST(test_guest_refuses_window_overrun),
        PAIR_TEST(test_guest_refuses_bad_opens_and_garbage),
        PAIR_TEST(test_host_refuses_open_from_guest),
        PAIR_TEST(test_garbage_ends_the_stream),
        PAIR_TEST(test_stream_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
