/* The global clipboard (docs/gui.md): Qubes' inter-qube clipboard, held by the daemon on
 * the host. Nothing reaches it by itself: a host-side action (qvm-clipboard copy QUBE)
 * puts one qube's clipboard there, recording which qube it came from and its size, and
 * another (qvm-clipboard paste QUBE) hands it to one chosen qube, if the policy allows
 * qubes.ClipboardPaste from the source to that qube, and empties it, as Qubes' GUI
 * daemon does on Ctrl-Shift-C and Ctrl-Shift-V. Kept in RUNTIME/clipboard (0700, root),
 * as Qubes keeps /var/run/qubes/qubes-clipboard.bin and its .source: a restarted daemon
 * finds it again. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "api_checks.h"
#include "app.h"
#include "qerr.h"
#include "strbuf.h"

/* Qubes' limits (qubes-gui-common): 64000 bytes unless the feature
 * gui-max-clipboard-size of the source qube (or gui-default-max-clipboard-size of dom0)
 * says otherwise, from 256 bytes up. Qubes goes up to 256000; here one Admin API request
 * (WIRE_MAX_REQUEST) carries the copy, so larger values count as CLIPBOARD_MAX_BYTES. */
#define CLIPBOARD_DEFAULT_MAX CLIPBOARD_MAX_BYTES
#define CLIPBOARD_MIN_MAX 256

/* Whether the policy lets what source copied be pasted into target (qubes.ClipboardPaste);
 * why: the rule or reason, for the log. */
typedef bool (*clipboard_policy_fn)(void *ctx, const char *source, const char *target, char *why,
                                    size_t why_size);

struct clipboard;

struct clipboard *clipboard_new(const char *runtime_dir);
/* Until this is called every paste is refused. */
void clipboard_set_policy(struct clipboard *cb, clipboard_policy_fn fn, void *ctx);
void clipboard_free(struct clipboard *cb);

/* The most a copy from q may hold. */
size_t clipboard_max_size(const struct app *app, const struct qube *q);
/* Replaces the global clipboard with data copied from source (QubesValueError over the
 * source's limit: nothing changes). */
int clipboard_copy(struct clipboard *cb, const struct app *app, const struct qube *source,
                   const void *data, size_t len, struct qerr *err);
/* Its content into out, if the policy allows source -> target, and empties it;
 * QubesValueError when empty, PermissionDenied when refused (nothing changes). */
int clipboard_paste(struct clipboard *cb, const struct qube *target, struct strbuf *out,
                    struct qerr *err);
/* "SOURCE SIZE\n", or "" when empty: what it holds, never the content. */
void clipboard_describe(struct clipboard *cb, struct strbuf *out);
