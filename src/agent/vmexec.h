/* Qubes' qubes.VMExec argument encoding: the argv travels as the service argument, so
 * it may only contain [A-Za-z0-9._+-]. Arguments are joined by '+'; every other byte is
 * written "-XX" (hex) and a literal '-' is "--". */
#pragma once
#include "strbuf.h"

/* Decodes `arg` into a NULL-terminated argv allocated as ONE block (free(argv) frees
 * everything). 0 on success; -EINVAL if the text is malformed, empty, or decodes to a
 * NUL byte (which no argv can carry). */
int vmexec_decode(const char *arg, char ***argv_out);

/* The inverse, for clients: appends the encoding of argv (argc >= 1) to out. */
void vmexec_encode(char *const *argv, struct strbuf *out);
