#include "qerr.h"

#include <stdarg.h>
#include <stdio.h>

int qerr_set(struct qerr *e, const char *exc, const char *fmt, ...) {
    if (!e)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    e->exc = exc;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}
