/* /etc/passwd and /etc/group, parsed by hand: the agent is linked statically, and glibc's
 * getpwnam() would want NSS modules that a static binary cannot load. */
#pragma once
#include <stddef.h>
#include <sys/types.h>

struct passwd_entry {
    char *name, *home, *shell; /* owned; freed by passwd_entry_free */
    uid_t uid;
    gid_t gid;
};

/* 0 and *out filled; -ENOENT if the user is not listed; -errno if the file is unreadable.
 * Malformed lines are skipped. */
int passwd_lookup(const char *path, const char *name, struct passwd_entry *out);
void passwd_entry_free(struct passwd_entry *e);

/* The user's groups: `primary` first, then every group in the group file listing `user`
 * as a member, without duplicates, at most `max`. Returns the count (>= 1); an unreadable
 * group file just yields the primary group. */
size_t group_list(const char *path, const char *user, gid_t primary, gid_t *gids, size_t max);
