#include "wire.h"

#include <errno.h>
#include <string.h>

/* Method names are printable ASCII without spaces: anything else is not a request. */
static bool method_is_clean(const char *m) {
    if (*m == '\0')
        return false;
    for (; *m; m++)
        if (*m <= 0x20 || *m > 0x7e)
            return false;
    return true;
}

/* Cuts the last space-separated field off the header; NULL when there is no space. */
static char *cut_last_field(char *header) {
    char *sp = strrchr(header, ' ');
    if (!sp)
        return NULL;
    *sp = '\0';
    return sp + 1;
}

/* Framing is the NUL, the three fields at the end and the method. The argument (which
 * may hold spaces) and the qube names are content: the API refuses bad ones with a
 * Qubes error rather than a dropped connection. */
int wire_parse_request(uint8_t *buf, size_t len, struct wire_request *out) {
    uint8_t *nul = memchr(buf, '\0', len);
    if (!nul)
        return -EINVAL;
    size_t hlen = (size_t)(nul - buf);
    char *head = (char *)buf;
    char *dest = cut_last_field(head);
    char *dest_type = dest ? cut_last_field(head) : NULL;
    char *source = dest_type ? cut_last_field(head) : NULL;
    if (!source || *source == '\0' || *dest == '\0')
        return -EINVAL;

    char *plus = strchr(head, '+');
    if (plus)
        *plus = '\0';
    if (!method_is_clean(head))
        return -EINVAL;

    if (strcmp(dest_type, "name") == 0)
        out->dest = dest;
    else if (strcmp(dest_type, "keyword") == 0 && strcmp(dest, "adminvm") == 0)
        out->dest = "dom0";
    else
        return -EINVAL;

    out->method = head;
    out->arg = plus ? plus + 1 : "";
    out->source = source;
    out->payload = nul + 1;
    out->payload_len = len - hlen - 1;
    return 0;
}

size_t wire_request_len(const char *method, const char *arg, const char *dest, size_t payload_len) {
    return strlen(method) + 1 + (arg ? strlen(arg) : 0) + strlen(" dom0 name ") + strlen(dest) + 1 +
           payload_len;
}

void wire_format_request(struct strbuf *sb, const char *method, const char *arg, const char *dest,
                         const void *payload, size_t payload_len) {
    strbuf_printf(sb, "%s+%s dom0 name %s", method, arg ? arg : "", dest);
    strbuf_putc(sb, '\0');
    strbuf_append(sb, payload, payload_len);
}

void wire_reply_ok(struct strbuf *sb, const void *content, size_t len) {
    strbuf_append(sb, "0", 2); /* "0\0" */
    strbuf_append(sb, content, len);
}

void wire_reply_error(struct strbuf *sb, const char *exc, const char *msg) {
    strbuf_append(sb, "2", 2);
    strbuf_puts(sb, exc);
    strbuf_putc(sb, '\0');
    strbuf_putc(sb, '\0'); /* empty traceback */
    for (const char *p = msg; *p; p++) {
        if (*p == '%')
            strbuf_putc(sb, '%');
        strbuf_putc(sb, *p);
    }
    strbuf_putc(sb, '\0');
}

void wire_event(struct strbuf *sb, const char *subject, const char *event, const struct wire_kv *kv,
                size_t n_kv) {
    strbuf_append(sb, "1", 2);
    strbuf_append(sb, subject, strlen(subject) + 1);
    strbuf_append(sb, event, strlen(event) + 1);
    for (size_t i = 0; i < n_kv; i++) {
        strbuf_append(sb, kv[i].key, strlen(kv[i].key) + 1);
        strbuf_append(sb, kv[i].value, strlen(kv[i].value) + 1);
    }
    strbuf_putc(sb, '\0');
}

/* Undo the '%%' escaping in place. */
static void unescape_percent(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        *w++ = *r;
        if (r[0] == '%' && r[1] == '%')
            r++;
    }
    *w = '\0';
}

int wire_parse_reply(char *buf, size_t len, struct wire_reply *out) {
    buf[len] = '\0';
    if (len >= 2 && buf[0] == '0' && buf[1] == '\0') {
        *out = (struct wire_reply){.ok = true, .content = buf + 2, .content_len = len - 2};
        return 0;
    }
    if (len < 2 || buf[0] != '2' || buf[1] != '\0')
        return -EINVAL;
    /* exc \0 traceback \0 message \0 */
    char *exc = buf + 2;
    char *end = buf + len;
    char *tb = memchr(exc, '\0', (size_t)(end - exc));
    if (!tb || tb + 1 >= end)
        return -EINVAL;
    tb++;
    char *msg = memchr(tb, '\0', (size_t)(end - tb));
    if (!msg || msg + 1 > end)
        return -EINVAL;
    msg++;
    if (msg == end || !memchr(msg, '\0', (size_t)(end - msg)))
        return -EINVAL;
    unescape_percent(msg);
    *out = (struct wire_reply){.ok = false, .exc = exc, .msg = msg};
    return 0;
}

/* Next NUL-terminated field starting at *pos, or NULL if incomplete. */
static char *next_field(char *buf, size_t len, size_t *pos) {
    if (*pos >= len)
        return NULL;
    char *nul = memchr(buf + *pos, '\0', len - *pos);
    if (!nul)
        return NULL;
    char *field = buf + *pos;
    *pos = (size_t)(nul - buf) + 1;
    return field;
}

long wire_parse_event(char *buf, size_t len, struct wire_event_msg *out) {
    size_t pos = 0;
    char *tag = next_field(buf, len, &pos);
    if (!tag)
        return 0;
    if (strcmp(tag, "1") != 0)
        return -EINVAL;
    out->subject = next_field(buf, len, &pos);
    out->event = out->subject ? next_field(buf, len, &pos) : NULL;
    if (!out->event)
        return 0;
    out->n_kv = 0;
    for (;;) {
        char *key = next_field(buf, len, &pos);
        if (!key)
            return 0;
        if (key[0] == '\0')
            return (long)pos;
        char *value = next_field(buf, len, &pos);
        if (!value)
            return 0;
        if (out->n_kv == ELEMENTSOF(out->kv))
            return -E2BIG;
        out->kv[out->n_kv++] = (struct wire_kv){key, value};
    }
}
