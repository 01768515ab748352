/* The agent link (src/backend/agentlink/) against a real dispenser-agent (--listen on a
 * private socket), in both transports, on an sd-event loop as in the daemon. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>

#include "agent_link.h"
#include "strbuf.h"

struct fixture {
    char *dir, *sock;
    pid_t agent;
    sd_event *loop;
    struct backend engine;
    struct agent_hub hub;
    struct agent_link link;
};

static void setenv_in(const char *var, const char *dir, const char *name) {
    char *p = tu_path(dir, name);
    setenv(var, p, 1);
    if (strcmp(name, "rc.local") != 0 && strcmp(name, "qrexec.sock") != 0)
        mkdir(p, 0755);
    free(p);
}

static bool accepts(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static pid_t start_agent(const char *dir, const char *sock) {
    setenv("DISPENSER_QUBE", "test-qube", 1);
    setenv_in("DISPENSER_AGENT_QREXEC_SOCKET", dir, "qrexec.sock");
    setenv_in("DISPENSER_AGENT_RPC_DIR", dir, "qubes-rpc");
    setenv_in("DISPENSER_AGENT_STARTUP_DIR", dir, "startup.d");
    setenv_in("DISPENSER_AGENT_CONF_DIR", dir, "conf");
    setenv_in("DISPENSER_AGENT_RC_LOCAL", dir, "rc.local");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *log = tu_path(dir, "agent.log");
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1), dup2(fd, 2);
        execl(AGENT_BIN, "dispenser-agent", "--listen", sock, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && !accepts(sock); i++)
        usleep(5000);
    assert_true(accepts(sock));
    return pid;
}

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = tu_mkdtemp();
    f->sock = tu_path(f->dir, "agent.sock");
    f->agent = start_agent(f->dir, f->sock);
    assert_int_equal(sd_event_new(&f->loop), 0);
    f->engine = (struct backend){.loop = f->loop};
    agent_hub_init(&f->hub, &f->engine);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    agent_link_free(&f->link);
    agent_hub_free(&f->hub);
    sd_event_unref(f->loop);
    if (f->agent > 0) {
        kill(f->agent, SIGKILL);
        waitpid(f->agent, NULL, 0);
    }
    free(f->sock);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

static void run_until(struct fixture *f, const bool *flag) {
    for (int i = 0; i < 2000 && !*flag; i++)
        assert_true(sd_event_run(f->loop, 10000) >= 0);
    assert_true(*flag);
}

/* ---- readiness ---- */

struct ready_result {
    bool done;
    int r;
};

static void on_ready(void *userdata, int r, const char *reason) {
    struct ready_result *res = userdata;
    res->done = true;
    res->r = r;
}

static void ready_in_mode(void **state, enum agent_link_mode mode) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, mode, "test-qube", f->sock);
    struct ready_result res = {0};
    assert_int_equal(agent_link_wait_ready(&f->link, 10, SD_EVENT_PRIORITY_IDLE, on_ready, &res),
                     0);
    assert_true(agent_link_waiting_ready(&f->link));
    run_until(f, &res.done);
    assert_int_equal(res.r, 0);
    assert_false(agent_link_waiting_ready(&f->link));
}

static void test_ready_fdpass(void **state) { ready_in_mode(state, AGENT_LINK_FDPASS); }
static void test_ready_copy(void **state) { ready_in_mode(state, AGENT_LINK_COPY); }

/* A socket that queues connections but never answers: the wait times out. */
static void test_ready_timeout(void **state) {
    struct fixture *f = *state;
    char *silent = tu_path(f->dir, "silent.sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", silent);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", silent);
    struct ready_result res = {0};
    assert_int_equal(agent_link_wait_ready(&f->link, 1, 0, on_ready, &res), 0);
    run_until(f, &res.done);
    assert_int_equal(res.r, -ETIMEDOUT);
    close(lfd);
    free(silent);
}

/* ---- service calls ---- */

struct call_result {
    bool done;
    enum backend_call_end how;
    int status;
};

static void on_call(void *userdata, enum backend_call_end how, int status, const char *reason) {
    struct call_result *res = userdata;
    *res = (struct call_result){true, how, status};
}

static const char *user(void) {
    struct passwd *pw = getpwuid(geteuid());
    return pw ? pw->pw_name : "root";
}

static void read_all(int fd, struct strbuf *out) {
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        strbuf_append(out, buf, (size_t)n);
}

/* stdin "hello\n" through a pipe, stdout and stderr pipes, exit status 3. */
static void small_call(void **state, enum agent_link_mode mode) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, mode, "test-qube", f->sock);
    int in[2], out[2], err[2];
    assert_int_equal(pipe2(in, O_CLOEXEC) | pipe2(out, O_CLOEXEC) | pipe2(err, O_CLOEXEC), 0);
    assert_int_equal(write(in[1], "hello\n", 6), 6);
    close(in[1]);
    struct backend_service_call call = {
        "qubes.VMShell",         "",   "dom0", "test-qube", user(), "cat; echo oops >&2; exit 3",
        {in[0], out[1], err[1]}, false};
    struct call_result res = {0};
    struct backend_why why = {{0}};
    assert_int_equal(agent_link_exec(&f->link, &call, on_call, &res, &why), 0);
    close(in[0]), close(out[1]), close(err[1]); /* the link keeps what it needs */
    run_until(f, &res.done);
    assert_int_equal(res.how, BACKEND_CALL_EXITED);
    assert_int_equal(res.status, 3);
    _cleanup_strbuf_ struct strbuf o = STRBUF_INIT, e = STRBUF_INIT;
    read_all(out[0], &o); /* EOF: no copy of the write end is left open */
    read_all(err[0], &e);
    assert_int_equal(o.len, 6);
    assert_memory_equal(o.data, "hello\n", 6);
    assert_int_equal(e.len, 5);
    assert_memory_equal(e.data, "oops\n", 5);
    close(out[0]), close(err[0]);
}

static void test_call_fdpass(void **state) { small_call(state, AGENT_LINK_FDPASS); }
static void test_call_copy(void **state) { small_call(state, AGENT_LINK_COPY); }

/* More than any buffer in between, from a regular file (epoll cannot watch it) into a
 * pipe drained by the loop, stderr /dev/null: the daemon's loop is never blocked. */
struct drain {
    int fd;
    struct strbuf got;
    bool eof;
};

static int on_drain(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct drain *d = userdata;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0)
        strbuf_append(&d->got, buf, (size_t)n);
    else if (n == 0 || errno != EAGAIN)
        d->eof = true, sd_event_source_set_enabled(src, SD_EVENT_OFF);
    return 0;
}

static void test_call_copy_large(void **state) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    enum { SIZE = 3 << 20 };
    char *data = malloc(SIZE);
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (char)(i * 7 + i / 65536);
    char *path = tu_path(f->dir, "input");
    int in = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_int_equal(write(in, data, SIZE), SIZE);
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    int out[2], null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_int_equal(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    struct drain d = {out[0], STRBUF_INIT};
    sd_event_source *src;
    assert_int_equal(sd_event_add_io(f->loop, &src, out[0], EPOLLIN, on_drain, &d), 0);
    struct backend_service_call call = {"qubes.VMShell",    "",     "dom0",
                                        "test-qube",        user(), "cat",
                                        {in, out[1], null}, false};
    struct call_result res = {0};
    struct backend_why why = {{0}};
    assert_int_equal(agent_link_exec(&f->link, &call, on_call, &res, &why), 0);
    close(in), close(out[1]), close(null);
    run_until(f, &res.done);
    for (int i = 0; i < 100 && sd_event_source_get_enabled(src, NULL) > 0; i++)
        sd_event_run(f->loop, 10000); /* what is still in the pipe */
    assert_int_equal(res.how, BACKEND_CALL_EXITED);
    assert_int_equal(res.status, 0);
    assert_int_equal(d.got.len, SIZE);
    assert_memory_equal(d.got.data, data, SIZE);
    sd_event_source_disable_unref(src);
    strbuf_free(&d.got);
    close(out[0]);
    free(path);
    free(data);
}

/* A service that closes its stdout early: its reader sees the end then, not only when
 * the service exits (the link closes its copy of the caller's descriptor). */
static void test_call_copy_early_eof(void **state) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    int in[2], out[2], null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_int_equal(pipe2(in, O_CLOEXEC) | pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    struct drain d = {out[0], STRBUF_INIT, false};
    sd_event_source *src;
    assert_int_equal(sd_event_add_io(f->loop, &src, out[0], EPOLLIN, on_drain, &d), 0);
    struct backend_service_call call = {"qubes.VMShell",       "",     "dom0",
                                        "test-qube",           user(), "echo hi; exec >&-; read x",
                                        {in[0], out[1], null}, false};
    struct call_result res = {0};
    struct backend_why why = {{0}};
    assert_int_equal(agent_link_exec(&f->link, &call, on_call, &res, &why), 0);
    close(in[0]), close(out[1]), close(null);
    run_until(f, &d.eof); /* the service still waits for its stdin */
    assert_false(res.done);
    assert_int_equal(d.got.len, 3);
    assert_int_equal(write(in[1], "x\n", 2), 2);
    close(in[1]);
    run_until(f, &res.done);
    assert_int_equal(res.how, BACKEND_CALL_EXITED);
    assert_int_equal(res.status, 0);
    sd_event_source_disable_unref(src);
    strbuf_free(&d.got);
    close(out[0]);
}

/* The agent's "no such service" is Qubes' exit status 127, in both transports. */
static void test_call_no_service(void **state) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct backend_service_call call = {"no.such.Service",  "",   "dom0", "test-qube", user(), "",
                                        {null, null, null}, false};
    struct call_result res = {0};
    struct backend_why why = {{0}};
    assert_int_equal(agent_link_exec(&f->link, &call, on_call, &res, &why), 0);
    close(null);
    run_until(f, &res.done);
    assert_int_equal(res.how, BACKEND_CALL_EXITED);
    assert_int_equal(res.status, 127);
}

/* No descriptors through a copying link: a terminal is refused; its uplink carries none. */
static void test_copy_refuses_descriptors(void **state) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    /* its uplink is one without descriptors (calls out get data connections) */
    assert_int_equal(agent_link_uplink_open(&f->link), 0);
    agent_link_uplink_close(&f->link);
    struct backend_service_call call = {"qubes.VMShell", "",     "dom0",    "test-qube",
                                        user(),          "true", {0, 1, 2}, true};
    struct call_result res = {0};
    struct backend_why why = {{0}};
    assert_int_equal(agent_link_exec(&f->link, &call, on_call, &res, &why), -EOPNOTSUPP);
    assert_non_null(strstr(why.msg, "cannot pass descriptors"));
    assert_false(res.done);
}

/* ---- calls out of the qube over a copying link (agent_link_upcopy.c) ---- */

struct upcall_seen {
    struct backend_upcall *call;
    bool got;
};

static void on_upcall(void *userdata, struct backend_upcall *call) {
    ((struct upcall_seen *)userdata)->call = call;
    ((struct upcall_seen *)userdata)->got = true;
}

static bool log_has(struct fixture *f, const char *text) {
    char *path = tu_path(f->dir, "agent.log");
    char buf[4096] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    free(path);
    return n > 0 && strstr(buf, text);
}

/* qrexec-client-vm in the qube: its stdin "ping", its stdout into *out. */
static pid_t start_client(int *out) {
    int in[2], o[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(o), 0);
    assert_int_equal(write(in[1], "ping", 4), 4);
    close(in[1]);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0), dup2(o[1], 1);
        execl(AGENT_BIN, "qrexec-client-vm", "work", "test.Svc", (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(o[1]);
    *out = o[0];
    return pid;
}

/* The call comes up without descriptors; the link's pipes carry its stdio both ways, the
 * source is the link's qube, and the caller gets the output before its exit status. */
static void test_copy_uplink_call(void **state) {
    struct fixture *f = *state;
    struct upcall_seen seen = {0};
    f->engine.events = (struct backend_events){.userdata = &seen, .upcall = on_upcall};
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    assert_int_equal(agent_link_uplink_open(&f->link), 0);
    for (int i = 0; i < 500 && !log_has(f, "qrexec uplink connected (copy)"); i++)
        sd_event_run(f->loop, 10000);
    int out;
    pid_t client = start_client(&out);
    run_until(f, &seen.got);
    struct backend_upcall *c = seen.call;
    assert_string_equal(c->source, "test-qube");
    assert_string_equal(c->service, "test.Svc");
    assert_int_equal(write(c->stdio[1], "pong", 4), 4);
    close(c->stdio[1]), close(c->stdio[2]);
    fcntl(c->stdio[0], F_SETFL, O_NONBLOCK);
    char in[16] = "";
    size_t got = 0;
    for (int i = 0; i < 2000; i++) { /* the caller's stdin, then its end */
        sd_event_run(f->loop, 10000);
        ssize_t n = read(c->stdio[0], in + got, sizeof(in) - 1 - got);
        if (n == 0)
            break;
        got += n > 0 ? (size_t)n : 0;
    }
    assert_string_equal(in, "ping");
    close(c->stdio[0]);
    agent_link_upcall_reply(&f->link, c, BACKEND_CALL_EXITED, 5, NULL);
    int ws = 0;
    for (int i = 0; i < 2000 && waitpid(client, &ws, WNOHANG) == 0; i++)
        sd_event_run(f->loop, 10000);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 5);
    char buf[16] = "";
    assert_int_equal(read(out, buf, sizeof(buf) - 1), 4);
    assert_string_equal(buf, "pong");
    close(out);
}

/* A call whose agent dies fails, with the reason the router gives its caller. */
static void test_call_agent_gone(void **state) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct backend_service_call call = {"qubes.VMShell",    "",     "dom0",
                                        "test-qube",        user(), "sleep 30",
                                        {null, null, null}, false};
    struct call_result res = {0};
    struct backend_why why = {{0}};
    assert_int_equal(agent_link_exec(&f->link, &call, on_call, &res, &why), 0);
    close(null);
    for (int i = 0; i < 20; i++)
        sd_event_run(f->loop, 10000);
    kill(f->agent, SIGKILL);
    waitpid(f->agent, NULL, 0);
    f->agent = 0;
    run_until(f, &res.done);
    assert_int_equal(res.how, BACKEND_CALL_FAILED);
}

static void test_shutdown(void **state) {
    struct fixture *f = *state;
    agent_link_init(&f->link, &f->hub, AGENT_LINK_COPY, "test-qube", f->sock);
    assert_int_equal(agent_link_shutdown(&f->link), 0);
    int status;
    for (int i = 0; i < 1000 && waitpid(f->agent, &status, WNOHANG) == 0; i++)
        usleep(10000);
    assert_int_equal(kill(f->agent, 0), -1); /* reaped */
    f->agent = 0;
    unlink(f->sock);
    assert_int_equal(agent_link_shutdown(&f->link), -ENOENT);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ready_fdpass),     T(test_ready_copy),
        T(test_ready_timeout),    T(test_call_fdpass),
        T(test_call_copy),        T(test_call_copy_large),
        T(test_call_no_service),  T(test_copy_refuses_descriptors),
        T(test_call_agent_gone),  T(test_shutdown),
        T(test_copy_uplink_call), T(test_call_copy_early_eof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
