/* Bodies made of NUL-terminated strings in a fixed order (the agent's and the qrexec
 * router's requests). */
#pragma once
#include <stddef.h>

/* Writes the n fields (NULL = ""); returns the length, or -1 past min(size, max). */
long nul_fields_encode(const char *const *fields, size_t n, char *buf, size_t size, size_t max);
/* Points the n fields into buf (len bytes, exactly n strings); -1 if malformed. */
int nul_fields_decode(char *buf, size_t len, const char **const *fields, size_t n);
