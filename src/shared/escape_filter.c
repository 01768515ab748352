#include "escape_filter.h"

#include <stdbool.h>

static bool passes(unsigned char c) {
    if (c >= 0x20 && c <= 0x7e)
        return true;
    return c == '\t' || c == '\n' || c == '\r' || c == '\b' || c == '\a';
}

void escape_filter(char *buf, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!passes((unsigned char)buf[i]))
            buf[i] = '_';
}
