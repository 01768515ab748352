/* A qube's notes (admin.vm.notes.*, qvm-notes): free text a user keeps about a qube.
 * As in Qubes, what is stored is safe to show on a terminal: code points that could
 * move the cursor, change colours or reorder text become '_' (tab and newline stay). */
#include <stdint.h>
#include <string.h>

#include "app.h"
#include "store.h"

/* One UTF-8 sequence at s (n bytes left): its length, or 0 if it is not valid UTF-8
 * (overlong forms and surrogates included). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xe0) == 0xc0 ? 2
                 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (!len || len > n)
        return 0;
    uint32_t v = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static bool safe_for_display(uint32_t cp) {
    if (cp == '\t' || cp == '\n')
        return true;
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) /* C0, DEL, C1: terminal controls */
        return false;
    if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff) /* invisible, bidi overrides */
        return false;
    return (cp & 0xfffe) != 0xfffe && !(cp >= 0xfdd0 && cp <= 0xfdef); /* noncharacters */
}

int app_notes_set(struct app *app, struct qube *q, const char *text, struct qerr *err) {
    size_t n = strlen(text);
    if (n > APP_NOTES_MAX)
        return qerr_set(err, EXC_PROTOCOL, "Maximum note size is %d bytes (%zu bytes received)",
                        APP_NOTES_MAX, n);
    _cleanup_strbuf_ struct strbuf safe = STRBUF_INIT;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (!len)
            return qerr_set(err, EXC_PROTOCOL, "Unable to sanitise qube notes: not UTF-8");
        if (safe_for_display(cp))
            strbuf_append(&safe, (const char *)s + i, len);
        else
            strbuf_putc(&safe, '_');
        i += len;
    }
    const char *clean = strbuf_str(&safe);
    if (store_begin(app->store) < 0 || store_put_notes(app->store, q->qid, clean) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    free(q->notes);
    q->notes = *clean ? xstrdup(clean) : NULL;
    return 0;
}
