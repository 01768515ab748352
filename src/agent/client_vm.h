/* qrexec-client-vm: the in-qube client of calls out of the qube (the agent binary run
 * under that name), and the pure pieces of it the unit tests check. */
#pragma once
#include <stddef.h>
#include <stdint.h>

int qrexec_client_vm_main(int argc, char **argv);

/* Upstream's escape filter (-t/-T): every byte that is neither printable ASCII nor
 * \t \n \r \b \a becomes '_', so a service cannot drive the caller's terminal. */
void qrexec_replace_chars(char *buf, size_t len);
/* The exit status for a result, as upstream: the service's code, 128+signal, 126 when
 * refused, 125 when the call failed otherwise. */
int qrexec_exit_status(uint32_t kind, int32_t status);
/* Upstream accepts the old "$dispvm" spelling of keywords, and "" for @default. Edits
 * target in place; returns the target to send. */
const char *qrexec_target_normalize(char *target);
