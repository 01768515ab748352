/* The in-qube agent: state shared by its files. One thread, one epoll loop; every
 * descriptor the loop watches is a `struct watch` whose callback knows its owner. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent_proto.h"
#include "frames.h"
#include "macro.h"
#include "strbuf.h"

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
    const char *qube;        /* DISPENSER_QUBE */
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

struct agent {
    int epfd;
    struct watch listener, signals;
    char *listen_path; /* --listen: unlinked at exit */
    struct agent_config cfg;
    bool pid1, init_mode, ready, stopping, killed;
    pid_t init_pid; /* --init: the process that became the template's init */
    struct conn *conns;
    /* start-up */
    char **scripts;
    size_t nscripts, next_script;
    pid_t startup_pid;
    int64_t ready_retry_at; /* --init: next run of the ready command, -1 = none */
    int64_t kill_at;        /* shutdown: when to SIGKILL, -1 = not stopping */
};

/* util.c */
void agent_log(const char *fmt, ...) _printf_(1, 2);
int64_t now_ms(void);
int fd_set_nonblock(int fd);
int watch_set(struct agent *a, struct watch *w, uint32_t events);
void watch_close(struct agent *a, struct watch *w);

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

/* startup.c */
void startup_begin(struct agent *a);
bool startup_child_exited(struct agent *a, pid_t pid, int wstatus);
void startup_tick(struct agent *a);

/* main.c */
void agent_set_ready(struct agent *a);
void agent_poweroff(struct agent *a);
