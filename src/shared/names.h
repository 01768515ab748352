/* Qubes naming rules for qubes, features and tags. Pure functions. */
#pragma once
#include <stdbool.h>
#include "qerr.h"

#define QUBE_NAME_MAX 31

/* Qube names: letter first, then [A-Za-z0-9_.-], at most 31 characters, not a reserved
 * word. On failure sets a QubesValueError with the reason. */
int name_validate_qube(const char *name, struct qerr *err);
/* Feature and tag names: [A-Za-z0-9_.-]+ (what qrexec lets through as an argument),
 * at most 255 characters. */
bool name_is_valid_token(const char *name);
/* Printable ASCII (0x20..0x7e) only. */
bool text_is_printable_ascii(const void *data, size_t len);
