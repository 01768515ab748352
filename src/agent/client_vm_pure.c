#include "client_vm.h"

#include "qrexec_proto.h"

void qrexec_replace_chars(char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if ((c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' && c != '\r' && c != '\b' && c != '\a')
            buf[i] = '_';
    }
}

int qrexec_exit_status(uint32_t kind, int32_t status) {
    switch (kind) {
    case QREXEC_EXITED: return status & 0xff;
    case QREXEC_SIGNALED: return 128 + (status & 0x7f);
    case QREXEC_REFUSED: return 126;
    default: return 125;
    }
}

const char *qrexec_target_normalize(char *target) {
    for (char *p = target; *p; p++)
        if (*p == '$')
            *p = '@';
    return *target ? target : "@default";
}
