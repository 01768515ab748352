/* Small filesystem helpers for the engine. */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

/* rm -rf that never follows symlinks nor crosses into other mounts (a qube's scratch
 * holds whatever root inside it made). ENOENT counts as success. */
int remove_recursive(const char *path);
/* A qube's scratch directory (STATE/volatile/NAME): removed as remove_recursive does;
 * when it is the engine's symlink to a directory on a ram pool's tmpfs, that directory
 * goes too. */
int remove_scratch(const char *path);
/* FMT's message into BUF, then ": strerror(saved_errno)" if saved_errno is set: how a
 * child that is about to _exit reports why to its parent. */
void vformat_errno(char *buf, size_t size, int saved_errno, const char *fmt, va_list ap);
/* mkdir (EEXIST is fine) and chown to owner:owner with mode. */
int make_owned_dir(const char *path, uid_t owner, mode_t mode);
/* A sealed in-memory copy of a file (memfd: no size or content change possible), named
 * NAME, close-on-exec: exec'able with execveat and bindable through /proc/self/fd, and
 * naming no host path wherever it shows (/proc/PID/exe, mountinfo). -errno on failure. */
int sealed_memfd_copy(const char *path, const char *name);
