/* The qube model: the collection of qubes with their properties, features and tags, and
 * the global (dom0) properties. Every mutation goes through this API: it validates,
 * writes one SQLite transaction, and only after the commit changes memory and emits the
 * events. So a failed write changes nothing, and what a caller was told is on disk. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "pools.h"
#include "props.h"
#include "qerr.h"
#include "strbuf.h"
#include "strmap.h"
#include "wire.h"

enum qube_class {
    QUBE_ADMINVM,
    QUBE_APPVM,
    QUBE_DISPVM,
    QUBE_STANDALONEVM,
    QUBE_TEMPLATEVM,
    QUBE_CLASS_COUNT,
};
#define CLASS_BIT(c) (1u << (c))

const char *qube_class_name(enum qube_class klass);

/* Qubes' power states (qubesd's get_power_state), those an engine can be in here. */
enum power_state {
    POWER_HALTED,
    POWER_TRANSIENT, /* starting */
    POWER_RUNNING,
    POWER_PAUSED,
    POWER_HALTING, /* a shutdown was asked for */
};
/* As the Admin API spells it: "Halted", "Transient", "Running", "Paused", "Halting". */
const char *power_state_name(enum power_state state);
struct qube;
/* The qube's state as qubesd names it: its power state, or "Suspended". */
const char *qube_power_name(const struct qube *q);
int qube_class_from_name(const char *name, enum qube_class *out);

/* A persistent device assignment (admin.vm.device.<class>.Assign): the device is attached
 * whenever the qube starts. port_id or device_id "*" matches any. */
struct device_assignment {
    char devclass[16], backend[32], port_id[32], device_id[64];
    char mode[16]; /* "required", "auto-attach" or "ask-to-attach" */
    char *options; /* the wire's " _name='value'" list, "" for none */
};

struct qube {
    int qid;
    char name[32];
    enum qube_class klass;
    char uuid[37];
    char *props[PROP_COUNT]; /* explicitly set values, canonical text; NULL = default */
    struct strmap features;
    struct strmap tags;     /* values unused */
    enum power_state power; /* runtime only: halted until an engine runs the qube */
    /* runtime only: paused by admin.vm.Suspend (frozen, its spare memory given back);
     * shown as Qubes' "Suspended", otherwise the same as POWER_PAUSED */
    bool suspended;
    char *firewall; /* its firewall rules, canonical lines; NULL: the default */
    /* runtime only, for the read-only xid and start_time (app_qube_run_begins) */
    int xid;              /* number of its current run, as a Xen domain id; 0: halted */
    char start_time[32];  /* seconds since the epoch when that run began; "": halted */
    char *notes;          /* admin.vm.notes (qvm-notes), NULL: none */
    char *volume_pool[3]; /* pool of its private, root, volatile volume (pools.h); NULL:
                           * the on-disk pool */
    struct device_assignment *assignments; /* in the order they were made */
    size_t n_assignments;
};

struct store;

typedef void (*app_emit_fn)(void *ctx, const char *subject, const char *event,
                            const struct wire_kv *kv, size_t n_kv);

struct app {
    struct qube **qubes; /* sorted by name; dom0 always present */
    size_t n_qubes;
    char *globals[GPROP_COUNT];
    struct store *store;
    app_emit_fn emit;
    void *emit_ctx;
    uint64_t host_mem_mib; /* for dom0's memory properties; set by the daemon */
    int batch_depth;       /* open app_batch_begin()s */
    struct app_undo *undo; /* how to take back the open batch's changes (app_undo.c) */
    int last_xid;          /* the last xid handed out: they only grow, as Xen's */
    struct pool *pools;    /* storage pools (pools.h), in the order they were added */
    size_t n_pools;
    /* where the daemon mounts ram pools (STATE/pools); NULL: they are only recorded
     * (unit tests, the fuzzer) */
    const char *pools_dir;
};

/* Opens (creating or migrating) the database at db_path and loads every qube. */
int app_open(struct app *app, const char *db_path, struct qerr *err);
void app_close(struct app *app);

struct qube *app_find(const struct app *app, const char *name);
struct qube *app_dom0(const struct app *app);
/* Validates the name first (QubesValueError), then looks it up (QubesVMNotFoundError). */
struct qube *app_lookup(const struct app *app, const char *name, struct qerr *err);

void app_emit(struct app *app, const struct qube *subject, const char *event,
              const struct wire_kv *kv, size_t n_kv);

#define MAX_QID 10000 /* Qubes' qubes.config.max_qid: qids are 0..9999 */

/* Internal to core: keep the sorted array in step with the database. */
void app_insert(struct app *app, struct qube *q);
void app_unlink(struct app *app, struct qube *q);
void app_qube_free(struct qube *q);
/* Groups the changes made until app_batch_end into one transaction (one commit). If
 * one fails, the database keeps none of them and memory takes them all back (the qubes
 * created in the batch are gone, the removed ones are back, features, tags and
 * properties have their old values): pointers to qubes created in a failed batch are
 * dangling then. Returns 0 or -1 (err set) from the end. */
int app_batch_begin(struct app *app, struct qerr *err);
/* The same for changes that concern throwaway state only: unnamed disposables (created,
 * tagged, removed) and the preload marks and lists. The commit does not wait for the
 * disk: a killed daemon loses nothing (the WAL is written), a power loss may lose the
 * last of these commits, which the restart makes moot: every disposable is dead and
 * removed then, and the preload lists are reconciled with what exists. */
int app_batch_begin_ephemeral(struct app *app, struct qerr *err);
int app_batch_end(struct app *app, struct qerr *err);
/* Inside a batch: record how to take a change back before making it (app_undo.c).
 * app_undo_removed returns true when the qube's free must wait for the commit. */
void app_undo_feature(struct app *app, struct qube *q, const char *name);
void app_undo_tag(struct app *app, struct qube *q, const char *tag);
void app_undo_prop(struct app *app, struct qube *q, int prop);
void app_undo_created(struct app *app, struct qube *q);
bool app_undo_removed(struct app *app, struct qube *q);
/* The outermost batch ended: forget the record (saved) or take every change back. */
void app_undo_end(struct app *app, bool saved);
/* Rolls back the open transaction and reports the failure as a QubesException. */
int app_save_failed(struct app *app, struct qerr *err);

/* --- properties (props.c describes them) --- */
const struct prop_def *app_prop_def(const struct qube *q, const char *name, struct qerr *err);
/* Effective value as text ("" for none) into buf; *is_default says whether it is set. */
const char *app_prop_get(const struct app *app, const struct qube *q, const struct prop_def *def,
                         char *buf, size_t size, bool *is_default);
int app_prop_set(struct app *app, struct qube *q, const struct prop_def *def, const char *raw,
                 struct qerr *err);
int app_prop_reset(struct app *app, struct qube *q, const struct prop_def *def, struct qerr *err);
/* The same without the read-only check: for the daemon's own properties (is_preload). */
int app_prop_set_system(struct app *app, struct qube *q, const struct prop_def *def,
                        const char *raw, struct qerr *err);
int app_prop_reset_system(struct app *app, struct qube *q, const struct prop_def *def,
                          struct qerr *err);

/* A run of q begins (it leaves Halted) or ends: sets or clears xid and start_time. */
void app_qube_run_begins(struct app *app, struct qube *q);
void app_qube_run_ends(struct qube *q);

const struct prop_def *app_global_def(const char *name, struct qerr *err);
const char *app_global_get(const struct app *app, const struct prop_def *def, char *buf,
                           size_t size, bool *is_default);
int app_global_set(struct app *app, const struct prop_def *def, const char *raw, struct qerr *err);
int app_global_reset(struct app *app, const struct prop_def *def, struct qerr *err);

/* --- features and tags --- */
int app_feature_set(struct app *app, struct qube *q, const char *name, const char *value,
                    struct qerr *err);
int app_feature_remove(struct app *app, struct qube *q, const char *name, struct qerr *err);
/* Follows the template chain, then optionally dom0 / netvm, like Qubes'
 * check_with_template and friends. NULL when not found anywhere. */
enum feature_fallback {
    FEATURE_FALLBACK_TEMPLATE = 1,
    FEATURE_FALLBACK_ADMINVM = 2,
    FEATURE_FALLBACK_NETVM = 4,
};
const char *app_feature_check(const struct app *app, const struct qube *q, const char *name,
                              unsigned fallback);
int app_tag_add(struct app *app, struct qube *q, const char *tag, struct qerr *err);
int app_tag_remove(struct app *app, struct qube *q, const char *tag, struct qerr *err);

/* --- firewall (firewall.h has the rule syntax) --- */
/* The rules as admin.vm.firewall.Get shows them (expired ones left out). */
void app_firewall_get(const struct app *app, const struct qube *q, struct strbuf *out);
/* Replaces the rules (QubesValueError, nothing changed, if one is bad); emits
 * firewall-changed. */
int app_firewall_set(struct app *app, struct qube *q, const char *rules, struct qerr *err);

/* --- notes (qvm-notes): free text, at most APP_NOTES_MAX bytes, made safe to display --- */
#define APP_NOTES_MAX 256000
int app_notes_set(struct app *app, struct qube *q, const char *text, struct qerr *err);

/* --- persistent device assignments (docs/devices.md) --- */
/* The assignment of exactly that device (class, backend, port, identity), or NULL. */
struct device_assignment *app_assignment_find(const struct qube *q, const char *devclass,
                                              const char *backend, const char *port_id,
                                              const char *device_id);
/* DeviceAlreadyAssigned if that device is assigned already; saved, then in memory. */
int app_assignment_add(struct app *app, struct qube *q, const struct device_assignment *a,
                       struct qerr *err);
/* a must be one of q's; saved without it, then freed. */
int app_assignment_remove(struct app *app, struct qube *q, struct device_assignment *a,
                          struct qerr *err);
int app_assignment_set_mode(struct app *app, struct qube *q, struct device_assignment *a,
                            const char *mode, struct qerr *err);
/* Frees the assignments of a qube (app_qube_free). */
void app_assignments_free(struct qube *q);
/* Load from the database (app_open). */
void app_assignment_load(struct qube *q, const struct device_assignment *a);

/* --- qubes --- */
struct qube_spec {
    enum qube_class klass;
    const char *name;
    const char *label;
    const char *template;  /* NULL or "": class default */
    const char *creator;   /* tag to add, "created-by-<caller>"; may be NULL */
    const char *extra_tag; /* another tag ("disp-created-by-<caller>"), or NULL */
    int dispid;            /* DispVM: this dispid (its name is disp<dispid>); 0 = random */
    bool auto_cleanup;     /* DispVM: removed when it shuts down (unnamed disposables) */
    const char *pool;      /* CreateInPool's pool= (every volume), or NULL */
    const char *const *volume_pools; /* pool:VOLUME=, by enum pool_volume; or NULL */
};

/* A free dispid and its name disp<N>, as Qubes names unnamed disposables. */
int app_alloc_dispid(const struct app *app, char *name, size_t size);
int app_create(struct app *app, const struct qube_spec *spec, struct qube **out, struct qerr *err);
/* Refuses with QubesVMInUseError naming the dependents. */
int app_remove(struct app *app, struct qube *q, struct qerr *err);
/* Names of qubes and globals that refer to q, "a:template, @GLOBAL:default_dispvm". */
bool app_dependents(const struct app *app, const struct qube *q, char *buf, size_t size);
