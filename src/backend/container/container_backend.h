/* The container engine's entry in the registry: Linux namespaces, overlayfs volumes,
 * cgroups, seccomp. Options: uid-base=N (first host uid of the qubes' id range),
 * uid-count=N. */
#pragma once
#include "backend.h"

struct backend *container_backend_new(sd_event *loop, const struct backend_config *cfg,
                                      struct backend_why *why);
