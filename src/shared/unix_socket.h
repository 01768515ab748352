/* Connecting to a Unix stream socket by path: the daemon, the router, an agent. */
#pragma once

/* A connected CLOEXEC socket, or -errno (-ENAMETOOLONG for a path that does not fit). */
int unix_connect(const char *path);
