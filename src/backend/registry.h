/* The engines built into this dispenserd, one row each (registry.c). */
#pragma once
#include "backend.h"

#define BACKENDS_MAX 8

/* Opens every engine built in, in registry order, each with its own options (the
 * `ENGINE.KEY=VALUE` settings in cfg->options whose ENGINE is its name, passed on as
 * KEY=VALUE). An engine that cannot run here is replaced by an unavailable engine that
 * says why, and the reason is logged. Returns how many were stored in out. */
size_t backends_open(sd_event *loop, const struct backend_config *cfg,
                     struct backend *out[BACKENDS_MAX]);

/* 0 if every `ENGINE.KEY=VALUE` option names an engine built in, else -EINVAL and why. */
int backends_check_options(const struct backend_config *cfg, struct backend_why *why);
