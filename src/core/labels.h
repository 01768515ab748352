/* The eight Qubes labels (colours), in Qubes' index order. */
#pragma once
#include <stddef.h>

struct label {
    const char *name;
    const char *color; /* "0xcc0000" as admin.label.Get returns it */
    int index;
};

extern const struct label LABELS[8];
const struct label *label_find(const char *name);
