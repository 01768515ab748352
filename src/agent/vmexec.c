#include "vmexec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool is_plain(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes one escape at *in (which points at '-'); returns the byte or -1. */
static int decode_escape(const char **in) {
    const char *p = *in;
    if (p[1] == '-') {
        *in = p + 2;
        return '-';
    }
    int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
    if (hi < 0 || lo < 0)
        return -1;
    *in = p + 3;
    return hi * 16 + lo;
}

/* Decodes into `strings` (each argument NUL-terminated); returns the argument count or
 * -EINVAL. The output is never longer than the input plus one NUL per argument. */
static int decode_strings(const char *in, char *strings) {
    int argc = 1;
    char *out = strings;
    while (*in) {
        unsigned char c = (unsigned char)*in;
        if (c == '+') {
            *out++ = '\0';
            argc++;
            in++;
        } else if (c == '-') {
            int b = decode_escape(&in);
            if (b <= 0) /* malformed, or a NUL byte */
                return -EINVAL;
            *out++ = (char)b;
        } else if (is_plain(c)) {
            *out++ = (char)c;
            in++;
        } else {
            return -EINVAL;
        }
    }
    *out = '\0';
    return argc;
}

int vmexec_decode(const char *arg, char ***argv_out) {
    if (!arg || !*arg)
        return -EINVAL;
    size_t len = strlen(arg);
    size_t nptr = 1; /* the terminating NULL */
    for (const char *p = arg; *p; p++)
        nptr += *p == '+';
    nptr++;
    char **argv = malloc(nptr * sizeof(char *) + len + nptr);
    if (!argv)
        return -ENOMEM;
    char *strings = (char *)(argv + nptr);
    int argc = decode_strings(arg, strings);
    if (argc < 0 || strings[0] == '\0') { /* no program name */
        free(argv);
        return -EINVAL;
    }
    char *s = strings;
    for (int i = 0; i < argc; i++) {
        argv[i] = s;
        s += strlen(s) + 1;
    }
    argv[argc] = NULL;
    *argv_out = argv;
    return 0;
}

void vmexec_encode(char *const *argv, struct strbuf *out) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; argv[i]; i++) {
        if (i > 0)
            strbuf_putc(out, '+');
        for (const unsigned char *p = (const unsigned char *)argv[i]; *p; p++) {
            if (is_plain(*p)) {
                strbuf_putc(out, (char)*p);
            } else if (*p == '-') {
                strbuf_puts(out, "--");
            } else {
                char esc[3] = {'-', hex[*p >> 4], hex[*p & 15]};
                strbuf_append(out, esc, 3);
            }
        }
    }
}
