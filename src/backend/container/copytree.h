/* cp -a for small trees, in-process: a qube's launcher seeds a fresh home directory from
 * the template's skeleton with it. Running /bin/cp instead cost a fork and the exec of a
 * dynamically linked program (several milliseconds under nested virtualisation, most of
 * it the loader's cpuid probing) for a handful of dotfiles.
 *
 * Copies directories, regular files and symlinks with their mode, owner and times;
 * symlinks are copied, never followed; other file types (devices, fifos, sockets) are
 * skipped. The destination directory must exist; existing entries are an error. */
#pragma once

/* 0 or -errno. */
int copy_tree(const char *from, const char *to);
