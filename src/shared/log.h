/* Logging to stderr with a level; the daemon runs under a supervisor that keeps stderr. */
#pragma once
#include <stdbool.h>

#include "macro.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level level);
/* Nothing at all is printed while on: fuzz harnesses, whose inputs are mostly refused. */
void log_silence(bool on);
void log_set_timestamps(bool on); /* CLOCK_MONOTONIC ms before each line */
int log_parse_level(const char *s, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
