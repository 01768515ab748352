#include "passwd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

static inline void fclosep(FILE **f) {
    if (*f)
        fclose(*f);
}

/* Splits a line on ':' in place into at most n fields; returns how many were found. */
static size_t split_fields(char *line, char **fields, size_t n) {
    size_t count = 0;
    line[strcspn(line, "\n")] = '\0';
    while (count < n) {
        fields[count++] = line;
        char *colon = strchr(line, ':');
        if (!colon)
            break;
        *colon = '\0';
        line = colon + 1;
    }
    return count;
}

/* Decimal id without sign or junk; false if it is not one. */
static bool parse_id(const char *s, unsigned long *out) {
    if (*s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v >= (unsigned long)(uid_t)-1)
        return false;
    *out = v;
    return true;
}

int passwd_lookup(const char *path, const char *name, struct passwd_entry *out) {
    _cleanup_(fclosep) FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *fld[7];
        unsigned long uid, gid;
        if (split_fields(line, fld, 7) != 7 || !streq(fld[0], name))
            continue;
        if (!parse_id(fld[2], &uid) || !parse_id(fld[3], &gid))
            continue;
        *out = (struct passwd_entry){.name = xstrdup(fld[0]),
                                     .home = xstrdup(fld[5]),
                                     .shell = xstrdup(fld[6]),
                                     .uid = (uid_t)uid,
                                     .gid = (gid_t)gid};
        return 0;
    }
    return -ENOENT;
}

void passwd_entry_free(struct passwd_entry *e) {
    free(e->name);
    free(e->home);
    free(e->shell);
    *e = (struct passwd_entry){0};
}

static bool member_of(char *members, const char *user) {
    for (char *save = NULL, *m = strtok_r(members, ",", &save); m; m = strtok_r(NULL, ",", &save))
        if (streq(m, user))
            return true;
    return false;
}

static size_t add_gid(gid_t *gids, size_t n, size_t max, gid_t g) {
    for (size_t i = 0; i < n; i++)
        if (gids[i] == g)
            return n;
    if (n < max)
        gids[n++] = g;
    return n;
}

size_t group_list(const char *path, const char *user, gid_t primary, gid_t *gids, size_t max) {
    size_t n = add_gid(gids, 0, max, primary);
    _cleanup_(fclosep) FILE *f = fopen(path, "re");
    if (!f)
        return n;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *fld[4];
        unsigned long gid;
        if (split_fields(line, fld, 4) != 4 || !parse_id(fld[2], &gid))
            continue;
        if (member_of(fld[3], user))
            n = add_gid(gids, n, max, (gid_t)gid);
    }
    return n;
}
