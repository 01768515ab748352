/* The container engine's agent links (src/backend/agentlink/): the agent's socket is
 * RUNTIME/qubes/<name>/agent.sock, bound by the engine, and descriptors pass through it. */
#include "container.h"

void container_link_init(struct run *run) {
    struct container_backend *cb = run->cb;
    char sock[4096];
    container_path(cb, sock, sizeof(sock), "%s/qubes/%s/agent.sock", cb->runtime_dir, run->name);
    agent_link_init(&run->link, &cb->agents, AGENT_LINK_FDPASS, run->name, sock);
}

int container_exec(struct backend *b, const char *name, const struct backend_service_call *call,
                   backend_call_done_fn done, void *userdata, struct backend_why *why) {
    struct run *run = container_find((struct container_backend *)b, name);
    if (!run || run->power != BACKEND_RUNNING)
        return backend_fail(why, -EAGAIN,
                            "Domain not running (either powered off or "
                            "paused): '%s'",
                            name);
    return agent_link_exec(&run->link, call, done, userdata, why);
}

void container_upcall_reply(struct backend *b, struct backend_upcall *call,
                            enum backend_call_end how, int status, const char *reason) {
    struct run *run = container_find((struct container_backend *)b, call->source);
    agent_link_upcall_reply(run ? &run->link : NULL, call, how, status, reason);
}
