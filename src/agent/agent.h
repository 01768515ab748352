/* The in-qube agent: state shared by its files. One thread, one epoll loop; every
 * descriptor the loop watches is a `struct watch` whose callback knows its owner. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent_proto.h"
#include "frames.h"
#include "macro.h"
#include "qrexec_proto.h"
#include "strbuf.h"
#include "unix_socket.h"

struct watch;
typedef void (*watch_fn)(struct watch *w, uint32_t revents);

struct watch {
    int fd;
    uint32_t events; /* mask registered with epoll; 0 = not registered */
    watch_fn fn;
    void *owner;
};

/* Paths, overridable through the environment so tests can run the agent on the host. */
struct agent_config {
    const char *rpc_dir;     /* DISPENSER_AGENT_RPC_DIR, /etc/qubes-rpc */
    const char *startup_dir; /* DISPENSER_AGENT_STARTUP_DIR, /etc/dispenser/startup.d */
    const char *conf_dir;    /* DISPENSER_AGENT_CONF_DIR, /etc/dispenser (ready-command) */
    const char *rc_local;    /* DISPENSER_AGENT_RC_LOCAL, /rw/config/rc.local */
    const char *passwd, *group;
    const char *qube; /* DISPENSER_QUBE */
};

/* Copy path of one call: the service's pipes and the framing buffers. */
struct copy_relay {
    struct watch stdin_w, stdout_w, stderr_w; /* fd -1 once closed */
    struct frame_demux from_client;           /* stream 0 -> service stdin */
    struct strbuf to_client;                  /* stdout/stderr frames, then the reply */
    bool stdin_blocked, stdin_done, client_eof;
};

enum conn_state {
    CONN_REQUEST,    /* reading header and body */
    CONN_WAIT_READY, /* reply once start-up is complete */
    CONN_RUNNING,    /* a service runs for this connection */
    CONN_FLUSHING,   /* copy path: reply queued, sending what is left */
};

struct conn {
    struct conn *next;
    struct agent *agent;
    struct watch sock;
    enum conn_state state;
    bool dead; /* freed at the end of the loop iteration */
    struct agent_request req;
    size_t got; /* bytes of header + body received */
    char *body;
    int fds[3];
    pid_t pid; /* the service, 0 if none */
    bool exited;
    int wstatus;
    struct copy_relay *copy; /* NULL when stdio was passed as descriptors */
};

/* A call made inside the qube (qrexec-client-vm) on its way up to dispenserd's router:
 * read from the local client, queued, sent up the uplink with a fresh id, answered. */
enum qcall_state {
    QCALL_READING, /* header and body from the local client */
    QCALL_QUEUED,  /* waiting for (the rest of) its turn on the uplink */
    QCALL_SENT,    /* waiting for the router's qrexec_result */
};

struct qcall {
    struct qcall *next;
    struct agent *agent;
    struct watch sock; /* the local client */
    enum qcall_state state;
    bool dead;
    bool client_gone;   /* the local client hung up: the router is told (QREXEC_F_CANCEL)
                       * once the call is on the uplink; its result then goes nowhere */
    uint32_t id;        /* ours, on the uplink */
    uint32_t client_id; /* the client's, echoed back in its result */
    struct qrexec_request req;
    size_t got;  /* header + body received */
    char *msg;   /* header + body as forwarded */
    size_t sent; /* bytes of msg on the uplink; the descriptors ride on the first */
    int fds[3];
    /* copy uplink (a VM): the caller's stdio stay here, a child relays them over the
     * daemon's AGENT_REQ_UPCALL_IO connection; the result waits until it has ended */
    bool copy;
    pid_t relay_pid; /* 0: none yet */
    bool relay_done;
    bool has_result;
    struct qrexec_result result;
    char *result_msg;
};

struct agent {
    int epfd;
    struct watch listener, signals;
    char *listen_path; /* --listen: unlinked at exit */
    struct agent_config cfg;
    bool pid1, init_mode, ready, stopping, killed;
    pid_t init_pid;     /* --init: the process that became the template's init */
    pid_t gui_port_pid; /* --gui-port: the child bridging a VM's window channel */
    pid_t vmux_pid;     /* --listen with --vmux: the child bridging the VM's port, 0 if none */
    struct conn *conns;
    /* start-up */
    char **scripts;
    size_t nscripts, next_script;
    pid_t startup_pid;
    int gui_fd;             /* the GUI channel the engine passed (gui.c), -1 = headless */
    pid_t gui_launcher_pid; /* `--gui-agent` until xpra is ready; start-up waits for it */
    int64_t ready_retry_at; /* --init: next run of the ready command, -1 = none */
    int64_t kill_at;        /* shutdown: when to SIGKILL, -1 = not stopping */
    /* qrexec calls out of the qube */
    struct watch qrexec_listener; /* AGENT_QREXEC_SOCKET */
    char *qrexec_path;            /* unlinked at exit when run by hand */
    struct watch uplink;          /* fd -1 = dispenserd not connected */
    bool uplink_copy;             /* it carries no descriptors (AGENT_F_COPY) */
    char up_buf[sizeof(struct qrexec_result) + QREXEC_MAX_MSG];
    size_t up_got;
    struct qcall *qcalls;
    uint32_t next_qid;
};

/* util.c */
void agent_log(const char *fmt, ...) _printf_(1, 2);
int fd_set_nonblock(int fd);
int watch_set(struct agent *a, struct watch *w, uint32_t events);
void watch_close(struct agent *a, struct watch *w);
/* A non-blocking listening Unix socket at path (replacing a stale one); -errno. */
/* recvmsg (non-blocking) of up to len bytes. Exactly three descriptors coming along fill
 * fds (entries -1); any others, or any at all with fds NULL, are closed: -EBADMSG. */
ssize_t recv_fds(int sock, void *buf, size_t len, int fds[3]);
/* One non-blocking sendmsg, fds (if not NULL) as SCM_RIGHTS: bytes sent or -errno. */
ssize_t send_fds(int sock, const void *buf, size_t len, const int fds[3]);
void close_fds(int fds[3]);

/* conn.c */
void conn_accept(struct watch *w, uint32_t revents);
void conn_send_reply(struct conn *c, uint32_t kind, int32_t status);
void conn_destroy(struct conn *c);
bool conn_child_exited(struct agent *a, pid_t pid, int wstatus);
void conns_reap_dead(struct agent *a);
void conns_ready(struct agent *a);
void conns_signal(struct agent *a, int sig);
void reply_from_wstatus(int wstatus, uint32_t *kind, int32_t *status);

/* copy.c */
/* Creates the pipes and the relay (c->copy); child_stdio gets the service's ends. */
int copy_start(struct conn *c, int child_stdio[3]);
/* Moves data, sends the reply when the service has exited and its output has ended,
 * and sets the epoll masks; call after anything changed. */
void copy_update(struct conn *c);
void copy_close(struct agent *a, struct copy_relay *r);

/* uplink.c */
/* Listens for qrexec-client-vm at path (its directory made if needed); logged, not
 * fatal, on failure: the qube works without calls out. */
void qrexec_listen(struct agent *a, const char *path);
/* AGENT_REQ_UPLINK: the connection becomes the uplink, replacing any older one. */
void uplink_adopt(struct conn *c);
void qcalls_reap_dead(struct agent *a);
/* AGENT_REQ_UPCALL_IO: the data connection of a copy call (uplink_io.c). */
void uplink_attach_io(struct conn *c);
/* A relay child ended: true if it was one. */
bool qcall_relay_exited(struct agent *a, pid_t pid, int wstatus);
/* uplink.c, for uplink_io.c: answers the local client and ends the call. */
void qcall_finish(struct qcall *q, uint32_t kind, int32_t status, const char *msg, size_t msg_len);
/* Shutdown: no new calls from inside. */
void qrexec_stop_listening(struct agent *a);

/* refresh.c: AGENT_REQ_REFRESH (a restored clone's own name, machine-id, clock, entropy) */
void refresh_identity(struct conn *c);

/* startup.c */
void startup_begin(struct agent *a);
void startup_continue(struct agent *a); /* the scripts, after the GUI agent (gui.c) */
bool startup_child_exited(struct agent *a, pid_t pid, int wstatus);
void startup_tick(struct agent *a);

/* vmux_guest.c: --vmux DEVICE, bridging the host's channels to agent_socket; exit code. */
int vmux_guest_main(const char *device, const char *agent_socket);

/* main.c */
void agent_set_ready(struct agent *a);
void agent_poweroff(struct agent *a);

/* gui.c (docs/gui.md) */
/* Starts the GUI agent when the engine passed a GUI channel; true = start-up waits for
 * gui_launcher_exited before its scripts. */
bool gui_agent_begin(struct agent *a);
bool gui_launcher_exited(struct agent *a, pid_t pid, int wstatus);
/* `dispenser-agent --gui-agent`: the launcher, run as the qube's user. */
int gui_agent_main(void);
/* --resolve4 NAME: a firewall rule's dsthost= resolved in a netvm (resolve.c). */
int resolve4_main(const char *name);
/* gui_port.c: a VM's window channel. Binds GUI_PORT_SOCKET, hands it to gui_agent_begin
 * (DISPENSER_GUI_FD) and forks the bridge from DEVICE to it, closing keep_fds there (the
 * agent's listening socket and signalfd); its pid, 0 on failure (the qube is headless). */
#define GUI_PORT_SOCKET "/run/dispenser/gui.sock"
pid_t gui_port_begin(const char *device, int keep_fds[2]);
