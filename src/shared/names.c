#include "names.h"

#include <ctype.h>
#include <string.h>

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

int name_validate_qube(const char *name, struct qerr *err) {
    size_t len = strlen(name);
    if (len == 0)
        return qerr_set(err, EXC_VALUE, "VM name cannot be empty");
    /* Bytes are not characters: a short name in another script must not read as a
     * length problem. */
    if (!text_is_printable_ascii(name, len))
        return qerr_set(err, EXC_VALUE, "VM name contains illegal characters");
    if (len > QUBE_NAME_MAX)
        return qerr_set(err, EXC_VALUE, "VM name must be shorter than %d characters",
                        QUBE_NAME_MAX + 1);
    if (isdigit((unsigned char)name[0]) || strchr("_.-", name[0]))
        return qerr_set(err, EXC_VALUE,
                        "VM name cannot start with hyphen, underscore, dot or numbers");
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(name[i]) || !isalpha((unsigned char)name[0]))
            return qerr_set(err, EXC_VALUE, "VM name contains illegal characters");
    /* Xen's name for dom0: Qubes refuses it so tools never confuse the two. */
    if (strcmp(name, "Domain-0") == 0)
        return qerr_set(err, EXC_VALUE, "VM name cannot be 'Domain-0'");
    if (strcmp(name, "none") == 0 || strcmp(name, "default") == 0)
        return qerr_set(err, EXC_VALUE, "VM name cannot be 'none' nor 'default'");
    /* Qubes reserves "-dm" for device-model stubdomains; keep names portable. */
    if (len >= 3 && strcmp(name + len - 3, "-dm") == 0)
        return qerr_set(err, EXC_VALUE, "VM name cannot end with -dm");
    return 0;
}

bool name_is_valid_token(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(name[i]))
            return false;
    return true;
}

bool text_is_printable_ascii(const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return false;
    return true;
}
