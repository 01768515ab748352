/* A line filler with Python textwrap's rules (see textwrap.h), for ASCII text. */
#include "textwrap.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strbuf.h"

static bool is_ws(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static bool is_letter(char c) { return isalpha((unsigned char)c) || c == '_'; }

/* A hyphen inside a word ends a chunk when letters stand around it: two letters (or a
 * letter, a hyphen and a letter) before, a letter (and another, maybe after a hyphen)
 * after; so "well-known" breaks, "x-1" and "--" do not. */
static bool breaks_after_hyphen(const char *s, size_t i, size_t len) {
    if (s[i] != '-' || i + 2 >= len + 1 || i < 2)
        return false;
    bool before = (is_letter(s[i - 1]) && is_letter(s[i - 2])) ||
                  (i >= 3 && is_letter(s[i - 1]) && s[i - 2] == '-' && is_letter(s[i - 3]));
    if (!before || i + 1 >= len || !is_letter(s[i + 1]))
        return false;
    return (i + 2 < len && is_letter(s[i + 2])) ||
           (i + 3 < len && s[i + 2] == '-' && is_letter(s[i + 3]));
}

/* Splits into chunks: runs of spaces, and words (cut after breaking hyphens). */
static void split_chunks(const char *s, struct strv *out) {
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        if (s[i] == ' ')
            while (j < len && s[j] == ' ')
                j++;
        else if (!breaks_after_hyphen(s, i, len))
            while (j < len && s[j] != ' ' && !breaks_after_hyphen(s, j - 1, len))
                j++;
        _cleanup_free_ char *chunk = xstrndup(s + i, j - i);
        strv_push(out, chunk);
        i = j;
    }
}

static bool is_space_chunk(const char *c) { return c[0] == ' '; }

/* The longest start of a word of more than a line that goes on this one: what is left
 * (at least one character), up to its last hyphen if it has one there. */
static size_t long_word_cut(const char *word, size_t left) {
    if (!word) /* never: the chunks are strings; said for the compiler's sake (-Wnonnull) */
        return 0;
    size_t take = left ? left : 1;
    const char *hyphen = memrchr(word, '-', take);
    if (hyphen && hyphen > word && strspn(word, "-") < (size_t)(hyphen - word))
        take = (size_t)(hyphen - word) + 1;
    return take;
}

void text_fill(FILE *f, const char *text, size_t width, const char *initial_indent,
               const char *subsequent_indent) {
    _cleanup_free_ char *plain = xstrdup(text);
    for (char *p = plain; *p; p++)
        if (is_ws(*p))
            *p = ' ';
    _cleanup_(strv_free) struct strv chunks = {0};
    split_chunks(plain, &chunks);
    size_t next = 0;
    bool printed = false;
    while (next < chunks.n) {
        const char *indent = printed ? subsequent_indent : initial_indent;
        size_t room = width > strlen(indent) ? width - strlen(indent) : 1;
        if (printed && is_space_chunk(chunks.v[next]))
            next++; /* a line does not start with the spaces of the break */
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT;
        bool ends_in_space = false;
        while (next < chunks.n && line.len + strlen(chunks.v[next]) <= room) {
            ends_in_space = is_space_chunk(chunks.v[next]);
            strbuf_puts(&line, chunks.v[next++]);
        }
        if (next < chunks.n && strlen(chunks.v[next]) > room) {
            char *word = chunks.v[next];
            size_t take = long_word_cut(word, room > line.len ? room - line.len : 0);
            ends_in_space = is_space_chunk(word);
            strbuf_append(&line, word, take);
            memmove(word, word + take, strlen(word + take) + 1);
        }
        size_t end = line.len;
        while (ends_in_space && end && line.data[end - 1] == ' ')
            end--; /* nor does it end with them */
        if (end) {
            fprintf(f, "%s%.*s\n", indent, (int)end, strbuf_str(&line));
            printed = true;
        }
    }
}
