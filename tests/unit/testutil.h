/* Helpers shared by the unit tests: private temp dirs and byte-exact comparisons. */
#pragma once
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Byte strings with embedded NULs: BYTES("a\0b") is the pointer and the length without
 * the literal's own terminator. */
#define BYTES(lit) (lit), (sizeof(lit) - 1)

static inline int tu_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* mkdtemp under $TMPDIR (or /tmp); the caller frees the result with tu_rmdir. */
static inline char *tu_mkdtemp(void) {
    const char *base = getenv("TMPDIR");
    char *path = NULL;
    if (asprintf(&path, "%s/dispenser-ut-XXXXXX", base && *base ? base : "/tmp") < 0)
        return NULL;
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static inline void tu_rmdir(char *path) {
    if (!path)
        return;
    nftw(path, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

/* "<dir>/<name>" in a static-free, caller-owned string. */
static inline char *tu_path(const char *dir, const char *name) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

/* Reads <dir>/<name> (small files: /proc, cgroupfs) into buf, NUL-terminated; the
 * length, or -1. */
static inline ssize_t tu_read_file(const char *dir, const char *name, char *buf, size_t size) {
    char *p = tu_path(dir, name);
    FILE *f = p ? fopen(p, "re") : NULL;
    free(p);
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Compare a buffer with expected bytes, printing both (escaped) on mismatch. */
static inline void tu_print_escaped(const char *tag, const void *data, size_t len) {
    const unsigned char *p = data;
    fprintf(stderr, "%s (%zu bytes): b'", tag, len);
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\\' || p[i] == '\'')
            fprintf(stderr, "\\%c", p[i]);
        else if (p[i] >= 0x20 && p[i] < 0x7f)
            fputc(p[i], stderr);
        else if (p[i] == '\n')
            fputs("\\n", stderr);
        else
            fprintf(stderr, "\\x%02x", p[i]);
    }
    fputs("'\n", stderr);
}

static inline int tu_bytes_equal(const void *got, size_t got_len, const void *want,
                                 size_t want_len) {
    if (got_len == want_len && (want_len == 0 || memcmp(got, want, want_len) == 0))
        return 1;
    tu_print_escaped("expected", want, want_len);
    tu_print_escaped("got     ", got, got_len);
    return 0;
}

/* assert_bytes_equal(got, got_len, want, want_len); want may be BYTES("..."). */
#define assert_bytes_equal(got, got_len, ...) \
    assert_true(tu_bytes_equal((got), (got_len), __VA_ARGS__))
