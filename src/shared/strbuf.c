#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void oom(void) {
    static const char msg[] = "out of memory\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void strbuf_reserve(struct strbuf *sb, size_t extra) {
    size_t need = sb->len + extra + 1; /* room for a terminator */
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    sb->data = xrealloc(sb->data, cap);
    sb->cap = cap;
}

void strbuf_append(struct strbuf *sb, const void *data, size_t len) {
    strbuf_reserve(sb, len);
    if (len)
        memcpy(sb->data + sb->len, data, len);
    sb->len += len;
}

void strbuf_puts(struct strbuf *sb, const char *s) { strbuf_append(sb, s, strlen(s)); }

void strbuf_putc(struct strbuf *sb, char c) { strbuf_append(sb, &c, 1); }

void strbuf_printf(struct strbuf *sb, const char *fmt, ...) {
    strbuf_reserve(sb, 128);
    for (;;) {
        size_t room = sb->cap - sb->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->data + sb->len, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < room) {
            sb->len += (size_t)n;
            return;
        }
        strbuf_reserve(sb, (size_t)n);
    }
}

void strbuf_put_escaped(struct strbuf *sb, const char *s) {
    for (; *s; s++) {
        if (*s == '\\')
            strbuf_puts(sb, "\\\\");
        else if (*s == '\n')
            strbuf_puts(sb, "\\n");
        else
            strbuf_putc(sb, *s);
    }
}

void strbuf_consume(struct strbuf *sb, size_t n) {
    if (n >= sb->len) {
        sb->len = 0;
        return;
    }
    memmove(sb->data, sb->data + n, sb->len - n);
    sb->len -= n;
}

void strbuf_reset(struct strbuf *sb) { sb->len = 0; }

void strbuf_free(struct strbuf *sb) {
    free(sb->data);
    *sb = (struct strbuf)STRBUF_INIT;
}

const char *strbuf_str(struct strbuf *sb) {
    strbuf_reserve(sb, 0);
    sb->data[sb->len] = '\0';
    return sb->data;
}
