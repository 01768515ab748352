/* Terminal escape filtering for a qube's output on its way to a host terminal, with the
 * rule of Qubes' qrexec-client -t/-T: printable ASCII, tab, newline, carriage return,
 * backspace and bell pass; every other byte (ESC and the other controls, DEL, anything
 * >= 0x80) becomes '_'. Byte by byte, so a sequence split across reads is caught too. */
#pragma once
#include <stddef.h>

void escape_filter(char *buf, size_t len);
