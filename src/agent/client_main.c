/* dispenser-agent-client: run one service through an agent socket with this process's
 * stdin/stdout/stderr, and exit with the service's status. A test and debugging tool on
 * the blocking client src/shared/agent_client.c; the daemon's engines use the agent link
 * (src/backend/agentlink/), which builds on the same client. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "agent_client.h"
#include "strbuf.h"

#define EXIT_CLIENT_ERROR 125 /* like `docker run`: the tool failed, not the service */

struct client_opts {
    const char *socket, *user, *source, *target, *service;
    bool no_fds, wait_ready, shutdown;
    char **command; /* words after "--", NULL if none */
};

static _Noreturn void usage(int status) {
    fputs("Usage: dispenser-agent-client --socket PATH [--user U] [--source DOMAIN]\n"
          "         [--target NAME] [--service NAME[+ARG]] [--no-fds]\n"
          "         [--wait-ready] [--shutdown] [-- COMMAND...]\n"
          "Without --service, runs qubes.VMShell: stdin is the script, or COMMAND.\n",
          status ? stderr : stdout);
    exit(status);
}

static void parse_args(int argc, char **argv, struct client_opts *o) {
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"user", required_argument, NULL, 'u'},
        {"source", required_argument, NULL, 'S'},  {"target", required_argument, NULL, 't'},
        {"service", required_argument, NULL, 'e'}, {"no-fds", no_argument, NULL, 'n'},
        {"wait-ready", no_argument, NULL, 'w'},    {"shutdown", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},          {0}};
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 's': o->socket = optarg; break;
        case 'u': o->user = optarg; break;
        case 'S': o->source = optarg; break;
        case 't': o->target = optarg; break;
        case 'e': o->service = optarg; break;
        case 'n': o->no_fds = true; break;
        case 'w': o->wait_ready = true; break;
        case 'x': o->shutdown = true; break;
        case 'h': usage(0);
        default: usage(2);
        }
    }
    if (optind < argc)
        o->command = argv + optind;
    if (!o->socket)
        usage(2);
}

static int exit_status(const struct agent_reply *r, const char *service, bool pass_fds) {
    switch (r->kind) {
    case AGENT_EXITED: return r->status;
    case AGENT_SIGNALED: return 128 + r->status;
    case AGENT_START_FAILED:
        fprintf(stderr, "dispenser-agent-client: %s could not start: %s\n", service,
                strerror(r->status));
        return r->status == ENOENT ? 127 : 126;
    default:
        fprintf(stderr, "dispenser-agent-client: %s refused: %s%s\n", service, strerror(r->status),
                /* the agent's answer to "descriptors announced, none came" */
                r->status == EBADMSG && pass_fds
                    ? " (the descriptors did not reach the agent: a VM's stream cannot "
                      "carry them; use --no-fds)"
                    : "");
        return r->status == ENOENT ? 127 : 126;
    }
}

int main(int argc, char **argv) {
    struct client_opts o = {.user = "", .source = "dom0", .target = ""};
    parse_args(argc, argv, &o);
    _cleanup_free_ char *service = xstrdup(o.service ? o.service : "qubes.VMShell");
    char *plus = strchr(service, '+');
    if (plus)
        *plus++ = '\0';
    _cleanup_strbuf_ struct strbuf command = STRBUF_INIT;
    for (char **w = o.command; w && *w; w++) {
        if (w != o.command)
            strbuf_putc(&command, ' ');
        strbuf_puts(&command, *w);
    }
    struct agent_request_body body = {.service = service,
                                      .argument = plus ? plus : "",
                                      .source = o.source,
                                      .target = o.target,
                                      .user = o.user,
                                      .command = strbuf_str(&command)};
    enum agent_request_type type = o.shutdown     ? AGENT_REQ_SHUTDOWN
                                   : o.wait_ready ? AGENT_REQ_WAIT_READY
                                                  : AGENT_REQ_EXEC;
    static const int stdio[3] = {0, 1, 2};
    struct agent_reply reply;
    int r = agent_client_call(o.socket, type, &body, !o.no_fds, stdio, &reply);
    if (r < 0) {
        fprintf(stderr, "dispenser-agent-client: %s: %s\n", o.socket, strerror(-r));
        return EXIT_CLIENT_ERROR;
    }
    return exit_status(&reply, service, !o.no_fds);
}
