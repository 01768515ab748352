/* Growable byte buffer. Allocation failure aborts: the daemon cannot do anything
 * useful without memory, and checking every append would hide the real logic. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "macro.h"

struct strbuf {
    char *data;
    size_t len;
    size_t cap;
};

#define STRBUF_INIT \
    { NULL, 0, 0 }

void strbuf_reserve(struct strbuf *sb, size_t extra);
void strbuf_append(struct strbuf *sb, const void *data, size_t len);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
/* Append s with '\\' -> "\\\\" and newline -> "\\n" (the GetAll value escaping). */
void strbuf_put_escaped(struct strbuf *sb, const char *s);
void strbuf_consume(struct strbuf *sb, size_t n);
void strbuf_reset(struct strbuf *sb);
void strbuf_free(struct strbuf *sb);
/* NUL-terminated view of the content (the terminator is not counted in len). */
const char *strbuf_str(struct strbuf *sb);

static inline void strbuf_freep(struct strbuf *sb) { strbuf_free(sb); }
#define _cleanup_strbuf_ _cleanup_(strbuf_freep)

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
