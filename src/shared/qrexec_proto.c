#include "qrexec_proto.h"

#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "nul_fields.h"

long qrexec_body_encode(const struct qrexec_call_body *b, char *buf, size_t size) {
    const char *fields[4] = {b->target, b->service, b->user, b->command};
    return nul_fields_encode(fields, 4, buf, size, QREXEC_MAX_BODY);
}

int qrexec_body_decode(char *buf, size_t len, struct qrexec_call_body *out) {
    const char **fields[4] = {&out->target, &out->service, &out->user, &out->command};
    return nul_fields_decode(buf, len, (const char **const *)fields, 4);
}

bool qrexec_fd_may_cross(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    if (S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode))
        return true;
    return S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3); /* /dev/null */
}

static bool name_char(char c, bool plus_ok) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || (plus_ok && c == '+');
}

int qrexec_split_service(const char *full, char *service, size_t ssize, char *arg, size_t asize) {
    const char *plus = strchr(full, '+');
    size_t slen = plus ? (size_t)(plus - full) : strlen(full);
    const char *a = plus ? plus + 1 : "";
    if (slen == 0 || slen >= ssize || strlen(a) >= asize)
        return -1;
    for (size_t i = 0; i < slen; i++)
        if (!name_char(full[i], false))
            return -1;
    for (const char *p = a; *p; p++)
        if (!name_char(*p, true))
            return -1;
    memcpy(service, full, slen);
    service[slen] = '\0';
    strcpy(arg, a);
    return 0;
}
