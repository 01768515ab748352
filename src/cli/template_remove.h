/* qvm-template remove --disassoc and purge: what upstream's qvm-template does with the
 * qubes that use a template being removed (qubesadmin.utils.vm_dependencies). */
#pragma once
#include <stdbool.h>

#include "cli.h"

enum template_removal {
    REMOVE_PLAIN,    /* refused while anything uses them */
    REMOVE_DISASSOC, /* users move to a dummy template (feature template-dummy=1) */
    REMOVE_PURGE,    /* users are removed too, and what uses them, recursively */
};

/* names: existing TemplateVMs. Asks first unless yes (plain removal never asks). */
int template_remove(const struct qube_list *templates, enum template_removal how, bool yes);
