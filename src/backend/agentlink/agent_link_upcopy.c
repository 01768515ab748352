/* Calls out of a qube whose link carries no descriptors (AGENT_LINK_COPY, a VM): the call
 * comes up the uplink with QREXEC_F_COPY and no stdio, so the link opens a data connection
 * for it (AGENT_REQ_UPCALL_IO with the call's id) and stands in for the caller's stdio:
 * three pipes whose far ends go to the router as the call's stdin, stdout and stderr.
 * What the agent sends as stream 0 (the caller's stdin) is written into the first; what
 * the service writes into the others goes down as streams 1 and 2. The router sees an
 * upcall like any other, so policy, targets and the caller's name (the link's qube) are as
 * for a container.
 *
 * The upcall goes to the router only once the agent has said it relays (its first reply
 * on the data connection): a call whose data connection fails is answered on the uplink
 * and never runs. At the reply the service has ended and its output is in the pipes: it
 * is read out, ended, followed by an agent_reply, flushed, and the relay freed. The
 * result itself goes up the uplink as for any call; the agent holds it until the output
 * is out. The guest is untrusted: it may send stream 0 only, one frame at a time is
 * buffered, and the service's output is read only while little waits to go down. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "agent_client.h"
#include "agent_link_internal.h"
#include "log.h"
#include "qrexec_proto.h"

#define DRAIN_MAX (4u << 20) /* output read at the reply at most: pipes hold 1 MiB at most */
#define PENDING_MAX 32       /* per qube, calls whose agent has not yet said it relays */

enum { SRC_SOCK, SRC_IN, SRC_OUT, SRC_ERR, SRC_N };

struct upcopy {
    struct agent_hub *hub;
    struct upcopy *next;        /* in hub->copies */
    struct agent_link *link;    /* until attached: where a failure is answered */
    struct agent_upcall_id who; /* the call on its uplink */
    char *body;
    uint32_t body_len;
    int fd[SRC_N]; /* the data connection; our ends of stdin, stdout, stderr */
    int far[3];    /* the router's ends, until the call is delivered */
    sd_event_source *src[SRC_N];
    struct frame_demux from_agent;
    struct strbuf to_agent;
    bool attached, delivered, in_blocked, broken, finishing, busy, free_after;
};

static void close_slot(struct upcopy *u, int i) {
    u->src[i] = sd_event_source_disable_unref(u->src[i]);
    if (u->fd[i] >= 0)
        close(u->fd[i]);
    u->fd[i] = -1;
}

static void upcopy_free(struct upcopy *u) {
    for (struct upcopy **p = &u->hub->copies; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    for (int i = 0; i < SRC_N; i++)
        close_slot(u, i);
    for (int i = 0; i < 3; i++)
        if (u->far[i] >= 0)
            close(u->far[i]);
    agent_uplink_forget_copy(u->hub, u);
    frame_demux_free(&u->from_agent);
    strbuf_free(&u->to_agent);
    free(u->body);
    free(u);
}

/* Nothing more can flow: the router's ends see the end of their pipes. */
static void upcopy_break(struct upcopy *u, const char *why) {
    log_debug("%s: call %u: its data connection ends: %s", u->who.qube, u->who.id, why);
    u->broken = true;
    for (int i = 0; i < SRC_N; i++)
        close_slot(u, i);
    if (!u->attached && u->link) { /* never routed: answered here */
        agent_uplink_answer(u->link, &u->who, QREXEC_FAILED,
                            "the call's data connection into the qube failed");
        u->free_after = true;
    }
}

static void stdin_ended(struct upcopy *u) {
    close_slot(u, SRC_IN);
    u->from_agent.dest[0] = -2; /* more of it is discarded */
}

/* 0, or -1 when the agent broke the rules (or was not there for the call). */
static int pump_from_agent(struct upcopy *u) {
    for (;;) {
        switch (frame_demux_run(&u->from_agent)) {
        case FRAME_NEED_MORE: return 0;
        case FRAME_BLOCKED: u->in_blocked = true; return 0;
        case FRAME_EOF: stdin_ended(u); continue; /* only stream 0 is accepted */
        case FRAME_REPLY:
            if (u->attached || u->from_agent.reply.kind != AGENT_EXITED ||
                u->from_agent.reply.status != 0)
                return -1;
            u->attached = true;
            continue;
        default: return -1;
        }
    }
}

/* One read of the service's stdout or stderr into a frame, or (all) everything there is
 * now, bounded: the service has ended, what it left in the pipe is its last output. */
static void read_output(struct upcopy *u, int i, bool all) {
    size_t drained = 0;
    while (u->fd[i] >= 0 && (all || u->to_agent.len < AGENT_FRAME_MAX)) {
        int n = frame_mux_read(&u->to_agent, (uint32_t)(i - SRC_IN), u->fd[i]);
        if (n == -EAGAIN && !all)
            return;
        if (n < 0) /* nothing more now (at the end), or broken: ended either way */
            frame_mux_eof(&u->to_agent, (uint32_t)(i - SRC_IN)), n = 0;
        if (n == 0 || (drained += (size_t)n) > DRAIN_MAX)
            close_slot(u, i);
        if (!all)
            return;
    }
}

static void arm(struct upcopy *u) {
    uint32_t want[SRC_N] = {0};
    want[SRC_SOCK] = (u->in_blocked ? 0 : EPOLLIN) | (u->to_agent.len ? EPOLLOUT : 0);
    want[SRC_IN] = u->in_blocked ? EPOLLOUT : 0;
    for (int i = SRC_OUT; i <= SRC_ERR; i++)
        want[i] = u->attached && u->to_agent.len < AGENT_FRAME_MAX ? EPOLLIN : 0;
    for (int i = 0; i < SRC_N; i++) {
        if (!u->src[i])
            continue;
        if (want[i])
            sd_event_source_set_io_events(u->src[i], want[i]);
        sd_event_source_set_enabled(u->src[i], want[i] ? SD_EVENT_ON : SD_EVENT_OFF);
    }
}

/* The agent relays: the call goes to the router, the pipes' far ends as its stdio. */
static void deliver(struct upcopy *u) {
    u->delivered = true;
    struct agent_link *link = u->link;
    u->link = NULL; /* from now on the upcall is answered as any */
    if (!link) {    /* the uplink went meanwhile: the agent failed the call itself */
        upcopy_break(u, "the uplink went");
        u->free_after = true;
        return;
    }
    int stdio[3];
    memcpy(stdio, u->far, sizeof(stdio));
    u->far[0] = u->far[1] = u->far[2] = -1;
    if (!agent_uplink_deliver(link, &u->who, u->body, u->body_len, stdio, u)) {
        agent_uplink_answer(link, &u->who, QREXEC_REFUSED, "malformed call");
        upcopy_break(u, "malformed call");
        u->free_after = true;
    }
}

static void step(struct upcopy *u, int i, uint32_t revents) {
    if (i == SRC_SOCK && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        int n = frame_demux_fill(&u->from_agent, u->fd[SRC_SOCK]);
        if (n == 0 || (n < 0 && n != -EAGAIN))
            return upcopy_break(u, n == 0 ? "closed by the agent" : strerror(-n));
    }
    if (i == SRC_IN)
        u->in_blocked = false;
    if (pump_from_agent(u) < 0)
        return upcopy_break(u, "the agent broke the protocol");
    if (i == SRC_OUT || i == SRC_ERR)
        read_output(u, i, false);
    int r = frame_flush(&u->to_agent, u->fd[SRC_SOCK]);
    if (r < 0 && r != -EAGAIN)
        return upcopy_break(u, strerror(-r));
    if (u->finishing && !u->to_agent.len)
        u->free_after = true;
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct upcopy *u = userdata;
    int i = 0;
    while (i < SRC_N && u->src[i] != src)
        i++;
    u->busy = true;
    step(u, i, revents);
    if (u->attached && !u->delivered && !u->broken)
        deliver(u);
    u->busy = false;
    if (u->free_after || (u->broken && u->finishing))
        upcopy_free(u);
    else if (!u->broken)
        arm(u);
    return 0;
}

/* A guest that sends calls and never relays them must not pile up descriptors here. */
static size_t pending(const struct agent_link *link) {
    size_t n = 0;
    for (const struct upcopy *u = link->hub->copies; u; u = u->next)
        n += u->link == link && !u->delivered;
    return n;
}

int upcopy_begin(struct agent_link *link, const struct agent_upcall_id *who, const char *body,
                 uint32_t body_len) {
    if (pending(link) >= PENDING_MAX)
        return -EMFILE;
    struct upcopy *u = xcalloc(1, sizeof(*u));
    *u = (struct upcopy){.hub = link->hub,
                         .next = link->hub->copies,
                         .link = link,
                         .who = *who,
                         .body = xmalloc(body_len ? body_len : 1),
                         .body_len = body_len,
                         .fd = {-1, -1, -1, -1},
                         .far = {-1, -1, -1},
                         .to_agent = STRBUF_INIT};
    link->hub->copies = u;
    memcpy(u->body, body, body_len);
    int p[3][2], r = 0;
    for (int s = 0; s < 3 && r == 0; s++) {
        if (pipe2(p[s], O_CLOEXEC) < 0) {
            r = -errno;
            break;
        }
        u->fd[SRC_IN + s] = p[s][s == 0 ? 1 : 0]; /* we write stdin, read the others */
        u->far[s] = p[s][s == 0 ? 0 : 1];
        if (fcntl(u->fd[SRC_IN + s], F_SETFL, O_NONBLOCK) < 0)
            r = -errno;
    }
    frame_demux_init(&u->from_agent, u->fd[SRC_IN], -1, -1);
    char id[16];
    snprintf(id, sizeof(id), "%u", who->id);
    struct agent_request_body req = {"", id, "", "", "", ""};
    if (r == 0 && (r = agent_client_connect(link->socket_path)) >= 0) {
        u->fd[SRC_SOCK] = r;
        r = agent_client_send(r, AGENT_REQ_UPCALL_IO, &req, NULL);
    }
    if (r >= 0 && fcntl(u->fd[SRC_SOCK], F_SETFL, O_NONBLOCK) < 0)
        r = -errno;
    for (int i = 0; i < SRC_N && r >= 0; i++)
        r = sd_event_add_io(link->hub->engine->loop, &u->src[i], u->fd[i], 0, on_io, u);
    if (r < 0) {
        upcopy_free(u);
        return r;
    }
    arm(u);
    return 0;
}

void upcopy_finish(struct upcopy *u) {
    u->finishing = true;
    if (u->broken) {
        if (u->busy)
            u->free_after = true;
        else
            upcopy_free(u);
        return;
    }
    read_output(u, SRC_OUT, true);
    read_output(u, SRC_ERR, true);
    stdin_ended(u);
    struct agent_reply end = {.magic = AGENT_MAGIC, .kind = AGENT_EXITED};
    strbuf_append(&u->to_agent, &end, sizeof(end));
    if (!u->busy)
        arm(u);
}

void upcopy_link_closed(struct agent_link *link) {
    for (struct upcopy *u = link->hub->copies, *next; u; u = next) {
        next = u->next;
        if (u->link != link)
            continue;
        u->link = NULL;
        if (!u->delivered && !u->busy)
            upcopy_free(u);
    }
}

void upcopy_free_all(struct agent_hub *hub) {
    while (hub->copies)
        upcopy_free(hub->copies);
}
