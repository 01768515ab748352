/* Helpers shared by the qvm-* tools: calling the daemon, reporting errors the way the
 * upstream tools do, the qube list, property lines, string vectors and tables. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "api_checks.h"
#include "client.h"
#include "macro.h"
#include "opts.h"

/* The name the tool was invoked as ("qvm-ls"), used in every message. */
extern const char *cli_prog;

/* One entry of the command table (commands.c). */
struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
};
const struct cli_command *cli_command_find(const char *name);
void cli_commands_list(FILE *f);

/* A failed call: the daemon's exception, or one we make up for transport problems so
 * that callers have a single path for "print the message". */
struct cli_err {
    char exc[64];
    char msg[1024];
};
#define EXC_CLIENT_COMM "QubesDaemonCommunicationError"
#define EXC_CLIENT_ACCESS "QubesDaemonAccessError"

/* 0: success (reply holds the content, caller frees it); -1: failure described in err.
 * payload may be NULL. Reply content is always NUL-terminated. */
int cli_call(const char *method, const char *arg, const char *dest, const char *payload,
             struct client_reply *reply, struct cli_err *err);
/* Like cli_call but for callers that only care about success. */
int cli_call_simple(const char *method, const char *arg, const char *dest, const char *payload,
                    struct cli_err *err);
bool cli_err_is(const struct cli_err *e, const char *exc);
/* For the checks tools make before sending (api_checks.h): r < 0 dies with the message. */
int cli_check(int r, const struct qerr *qe);
/* Where the daemon's log is: setup.sh's redirect, or the journal under systemd. */
#define DAEMON_LOG_HINT "/var/log/dispenser/dispenserd.log, or journalctl -u dispenserd"

/* "PROG: error: MSG" and exit 1: argparse's error_runtime(). */
_Noreturn void cli_die(const char *fmt, ...) _printf_(1, 2);
_Noreturn void cli_die_err(const struct cli_err *e);
/* "Error: MSG": QubesArgumentParser.print_error(), for per-qube failures. */
void cli_print_error(const char *fmt, ...) _printf_(1, 2);

/* ---- string vectors ---- */
struct strv {
    char **v;
    size_t n;
};
void strv_push(struct strv *s, const char *str);
bool strv_contains(const struct strv *s, const char *str);
void strv_free(struct strv *s);
/* Split text into lines (a trailing newline does not make an empty last line). */
void strv_split_lines(struct strv *s, const char *text);
void strv_sort(struct strv *s);

/* ---- qubes (admin.vm.List) ---- */
struct qube {
    char *name;
    char *klass;
    char *state;
};
struct qube_list {
    struct qube *v;
    size_t n;
};
int qube_list_fetch(const char *dest, struct qube_list *out, struct cli_err *err);
const struct qube *qube_list_find(const struct qube_list *l, const char *name);
void qube_list_push(struct qube_list *l, const struct qube *q);
void qube_list_free(struct qube_list *l);

/* Resolve one VMNAME like upstream VmNameAction: unknown -> "no such domain" exit 2. */
void qube_resolve(const struct opt_parser *p, const char *name, struct qube_list *out);
/* VMNAME... with --all/--exclude and shell wildcards, as VmNameGroup does. --all leaves
 * out AdminVM unless keep_admin. required: at least one VMNAME or --all. */
struct target_args {
    struct strv names;
    bool all;
    struct strv exclude;
};
/* Option ids and table entries for --all/--exclude, shared by the multi-qube tools. */
enum { TARGET_OPT_ALL = 1000, TARGET_OPT_EXCLUDE };
#define TARGET_OPT_SPECS(all_help)                                                            \
    {"all", 0, OPT_FLAG, TARGET_OPT_ALL, NULL, all_help}, {                                   \
        "exclude", 0, OPT_VALUE, TARGET_OPT_EXCLUDE, "EXCLUDE", "exclude the qube from --all" \
    }
/* Returns true if id was one of the TARGET_OPT_* options. */
/* Like targets_resolve (VMNAME or --all required, no AdminVM with --all) but names of
 * no qube are collected in unknown instead of ending the tool (upstream qvm-check). */
void targets_resolve_collect(const struct opt_parser *p, const struct target_args *t,
                             struct qube_list *out, struct strv *unknown);
bool target_args_option(struct target_args *t, int id, const char *value);
void target_args_set_names(struct target_args *t, const struct opts_result *r);
void target_args_free(struct target_args *t);
void targets_resolve(const struct opt_parser *p, const struct target_args *t, bool required,
                     bool keep_admin, struct qube_list *out);

/* ---- properties: "default=<B> type=<T> <value>" ---- */
struct prop {
    char *name;
    bool is_default;
    char *type;
    char *value;
};
struct prop_list {
    struct prop *v;
    size_t n;
};
/* Parse a Get reply (name is left NULL). Returns 0 or -1 if malformed. */
int prop_parse(const char *text, struct prop *out);
/* prefix: "admin.vm.property" or "admin.property". */
int prop_list_fetch(const char *prefix, const char *dest, struct prop_list *out,
                    struct cli_err *err);
const struct prop *prop_list_find(const struct prop_list *l, const char *name);
void prop_free(struct prop *p);
void prop_list_free(struct prop_list *l);
/* An int/bool property with no value and no default (upstream: AttributeError). */
bool prop_is_unset(const struct prop *p);
/* A vm/label property holding "none" (upstream: None). */
bool prop_is_none(const struct prop *p);

/* ---- tables like `column -t`: columns padded, two spaces apart ---- */
struct table {
    size_t ncols;
    struct strv cells;
};
void table_add_row(struct table *t, const char *const *cells);
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

/* Python's bool("...") for feature values, as the tools use it. */
bool feature_is_true(const char *value);

/* qvm-prefs and qubes-prefs share their logic (upstream: qvm_prefs.process_actions). */
int prefs_main(int argc, char **argv, bool global);

/* Tools, one file each. */
int qvm_ls_main(int argc, char **argv);
int qvm_prefs_main(int argc, char **argv);
int qubes_prefs_main(int argc, char **argv);
int qvm_features_main(int argc, char **argv);
int qvm_tags_main(int argc, char **argv);
int qvm_clone_main(int argc, char **argv);
int qvm_notes_main(int argc, char **argv);
int qvm_volume_main(int argc, char **argv);
int qvm_pool_main(int argc, char **argv);
/* qvm_clone.c, shared with qvm-create: src's volume into dst's (CloneFrom, CloneTo); the
 * removal of a qube a failure left half-made. */
int clone_volume(const char *src, const char *dst, const char *volume, struct cli_err *err);
void remove_half_made(const char *name);
int qvm_firewall_main(int argc, char **argv);
int qvm_create_main(int argc, char **argv);
int qvm_remove_main(int argc, char **argv);
int qvm_events_main(int argc, char **argv);
int qvm_start_main(int argc, char **argv);
int qvm_shutdown_main(int argc, char **argv);
int qvm_kill_main(int argc, char **argv);
int qvm_check_main(int argc, char **argv);
int qvm_service_main(int argc, char **argv);
int dispenser_preload_main(int argc, char **argv);
int qvm_pause_main(int argc, char **argv);
int qvm_block_main(int argc, char **argv);
int qvm_device_main(int argc, char **argv);
int qvm_unpause_main(int argc, char **argv);
int qvm_template_main(int argc, char **argv);
int qvm_run_main(int argc, char **argv);
int qvm_copy_to_vm_main(int argc, char **argv);
int qvm_open_in_dvm_main(int argc, char **argv);
int qvm_console_dispvm_main(int argc, char **argv);
int qrexec_client_main(int argc, char **argv);
int qvm_clipboard_main(int argc, char **argv);
