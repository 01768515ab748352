/* Unix stream sockets by path: connecting to the daemon, the router, an agent; listening
 * as the agent and dispenser-vmux do. */
#pragma once
#include <stddef.h>

/* A connected CLOEXEC socket, or -errno (-ENAMETOOLONG for a path that does not fit). */
int unix_connect(const char *path);
/* A listening CLOEXEC, non-blocking socket at path (a leftover file there is replaced),
 * or -errno. */
int unix_listen(const char *path);
/* 0 after reading exactly len bytes (EINTR retried); -ECONNRESET on EOF before them,
 * else -errno. For the fixed-size replies of the router and the agent. */
int fd_read_exact(int fd, void *buf, size_t len);
