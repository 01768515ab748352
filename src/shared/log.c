#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "monoclock.h"

static enum log_level current_level = LOG_LVL_INFO;
static const char *const level_names[] = {"error", "warning", "info", "debug"};

static bool with_time;

static bool silenced;

void log_set_level(enum log_level level) { current_level = level; }

void log_silence(bool on) { silenced = on; }

void log_set_timestamps(bool on) { with_time = on; }

int log_parse_level(const char *s, enum log_level *out) {
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -EINVAL;
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if (level > current_level || silenced)
        return;
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    /* "<N>" prefixes are understood by journald when stderr is the journal. */
    static const int syslog_prio[] = {3, 4, 6, 7};
    fprintf(stderr, "<%d>", syslog_prio[level]);
    if (with_time) { /* monotonic ms: to line up what overlapped when profiling */
        int64_t ns = mono_ns();
        fprintf(stderr, "%lld.%03lld ", (long long)(ns / 1000000), (long long)(ns / 1000 % 1000));
    }
    fprintf(stderr, "%s: ", level_names[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    errno = saved;
}
