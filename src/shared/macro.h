/* Small helpers shared by every part: cleanup attributes and array sizes. */
#pragma once
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) {
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hand ownership of a pointer to the caller: the cleanup sees NULL. */
#define TAKE_PTR(p)              \
    ({                           \
        __typeof__(p) _tp = (p); \
        (p) = NULL;              \
        _tp;                     \
    })
#define TAKE_FD(fd)     \
    ({                  \
        int _tf = (fd); \
        (fd) = -1;      \
        _tf;            \
    })

static inline int streq_ptr(const char *a, const char *b) {
    return a && b ? __builtin_strcmp(a, b) == 0 : a == b;
}
#define streq(a, b) (__builtin_strcmp((a), (b)) == 0)
