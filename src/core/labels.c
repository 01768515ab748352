#include "labels.h"

#include <string.h>

const struct label LABELS[8] = {
    {"red", "0xcc0000", 1},    {"orange", "0xf57900", 2}, {"yellow", "0xedd400", 3},
    {"green", "0x73d216", 4},  {"gray", "0x555555", 5},   {"blue", "0x3465a4", 6},
    {"purple", "0x75507b", 7}, {"black", "0x000000", 8},
};

const struct label *label_find(const char *name) {
    for (size_t i = 0; i < 8; i++)
        if (strcmp(LABELS[i].name, name) == 0)
            return &LABELS[i];
    return NULL;
}
