/* The host terminal in raw mode for `qvm-run --tty`, and always given back: a guardian
 * process holds the saved settings and restores them when our end of its pipe closes,
 * which happens also when we are killed (SIGKILL included). */
#pragma once
#include <stdbool.h>
#include <sys/types.h>
#include <termios.h>

struct tty_guard {
    int fd;    /* the terminal, -1 when not raw */
    int pipe;  /* our end: closing it tells the guardian to restore */
    pid_t pid; /* the guardian */
    struct termios saved;
};

/* Saves fd's settings, starts the guardian and makes fd raw; -1 (errno) on failure,
 * nothing changed. */
int tty_guard_raw(int fd, struct tty_guard *g);
/* Restores the settings and lets the guardian go. No-op when not raw. */
void tty_guard_restore(struct tty_guard *g);
