/* The features a template carries for Qubes' tools: what Qubes' agent reports after a
 * template is installed (qrexec, os, vmexec, supported-rpc.*, os-distribution, ...) and
 * what upstream qvm-template records of its origin (template-name, template-version,
 * ...: `qvm-template list --installed` lists a template by them). Read from the root
 * file system before it is handed to the daemon; set once the template exists. */
#pragma once
#include "cli.h"

struct template_origin {
    const char *builder; /* busybox, debian or import (the template-builder feature) */
    const char *source;  /* debian: the suite; import: the archive; else NULL */
    const char *url;     /* debian: the mirror; NULL: the builder's default */
};

/* Feature names and values, alternately, into pairs. root is the filled directory. */
void template_features_collect(const char *root, const char *name, const struct template_origin *o,
                               struct strv *pairs);
/* Sets them on the template; -1 with err at the first that fails. */
int template_features_apply(const char *name, const struct strv *pairs, struct cli_err *err);
