/* Python's textwrap.fill() with its defaults, which upstream tools print help through:
 * whitespace characters become spaces, lines break between words or after a hyphen
 * inside a word, the spaces at a break are dropped, words longer than a line are cut. */
#pragma once
#include <stdio.h>

void text_fill(FILE *f, const char *text, size_t width, const char *initial_indent,
               const char *subsequent_indent);
