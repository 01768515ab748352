#include <errno.h>
#include "store.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_INSERT_QUBE,
    S_DELETE_QUBE,
    S_SET_PROP,
    S_DEL_PROP,
    S_SET_GLOBAL,
    S_DEL_GLOBAL,
    S_SET_FEATURE,
    S_DEL_FEATURE,
    S_SET_TAG,
    S_DEL_TAG,
    S_SET_FIREWALL,
    S_DEL_FIREWALL,
    S_SET_NOTES,
    S_DEL_NOTES,
    S_SET_POOL,
    S_DEL_POOL,
    S_SET_VOLUME_POOL,
    S_SET_ASSIGNMENT,
    S_DEL_ASSIGNMENT,
    S_COUNT,
};

static const char *const STMT_SQL[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT_QUBE] = "INSERT INTO qubes(qid, name, class, uuid) VALUES (?1, ?2, ?3, ?4)",
    [S_DELETE_QUBE] = "DELETE FROM qubes WHERE qid = ?1",
    [S_SET_PROP] = "INSERT OR REPLACE INTO properties(qid, name, value) VALUES (?1, ?2, ?3)",
    [S_DEL_PROP] = "DELETE FROM properties WHERE qid = ?1 AND name = ?2",
    [S_SET_GLOBAL] = "INSERT OR REPLACE INTO global_properties(name, value) VALUES (?1, ?2)",
    [S_DEL_GLOBAL] = "DELETE FROM global_properties WHERE name = ?1",
    [S_SET_FEATURE] = "INSERT OR REPLACE INTO features(qid, name, value) VALUES (?1, ?2, ?3)",
    [S_DEL_FEATURE] = "DELETE FROM features WHERE qid = ?1 AND name = ?2",
    [S_SET_TAG] = "INSERT OR IGNORE INTO tags(qid, name) VALUES (?1, ?2)",
    [S_DEL_TAG] = "DELETE FROM tags WHERE qid = ?1 AND name = ?2",
    [S_SET_FIREWALL] = "INSERT OR REPLACE INTO firewall(qid, rules) VALUES (?1, ?2)",
    [S_DEL_FIREWALL] = "DELETE FROM firewall WHERE qid = ?1",
    [S_SET_NOTES] = "INSERT OR REPLACE INTO notes(qid, text) VALUES (?1, ?2)",
    [S_DEL_NOTES] = "DELETE FROM notes WHERE qid = ?1",
    [S_SET_POOL] = "INSERT OR REPLACE INTO pools(name, driver, config) VALUES (?1, ?2, ?3)",
    [S_DEL_POOL] = "DELETE FROM pools WHERE name = ?1",
    [S_SET_VOLUME_POOL] =
        "INSERT OR REPLACE INTO volume_pools(qid, volume, pool) VALUES (?1, ?2, ?3)",
    [S_SET_ASSIGNMENT] =
        "INSERT OR REPLACE INTO device_assignments(qid, devclass, backend, port_id,"
        " device_id, mode, options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_DEL_ASSIGNMENT] = "DELETE FROM device_assignments WHERE qid = ?1 AND devclass = ?2 AND"
                         " backend = ?3 AND port_id = ?4 AND device_id = ?5",
};

/* Migration N takes the schema from user_version N to N+1. Append, never edit. */
static const char *const MIGRATIONS[STORE_SCHEMA_VERSION] = {
    "CREATE TABLE qubes (qid INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  class TEXT NOT NULL, uuid TEXT NOT NULL UNIQUE);"
    "CREATE TABLE properties (qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (qid, name));"
    "CREATE TABLE features (qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (qid, name));"
    "CREATE TABLE tags (qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, PRIMARY KEY (qid, name));"
    "CREATE TABLE global_properties (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO qubes VALUES (0, 'dom0', 'AdminVM', '00000000-0000-0000-0000-000000000000');"
    "INSERT INTO properties VALUES (0, 'label', 'black');",
    /* 2: firewall rules of qubes (networking), as admin.vm.firewall.Get shows them */
    "CREATE TABLE firewall (qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  rules TEXT NOT NULL);",
    /* 3: a qube's notes (admin.vm.notes.*, qvm-notes) */
    "CREATE TABLE notes (qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  text TEXT NOT NULL);",
    /* 4: storage pools (admin.pool.*, qvm-pool) and the pool of a qube's volume where it
     * is not the on-disk pool `dispenser` */
    "CREATE TABLE pools (name TEXT PRIMARY KEY, driver TEXT NOT NULL, config TEXT NOT NULL);"
    "INSERT INTO pools VALUES ('dispenser', 'dir', 'revisions_to_keep=1\n');"
    "CREATE TABLE volume_pools (qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  volume TEXT NOT NULL, pool TEXT NOT NULL REFERENCES pools(name),"
    "  PRIMARY KEY (qid, volume));",
    /* 5: persistent device assignments (admin.vm.device.<class>.Assign), a qube's rows
     * gone with it; options as the wire's "_name='value'" list */
    "CREATE TABLE device_assignments (qid INTEGER NOT NULL REFERENCES qubes(qid)"
    "  ON DELETE CASCADE, devclass TEXT NOT NULL, backend TEXT NOT NULL,"
    "  port_id TEXT NOT NULL, device_id TEXT NOT NULL, mode TEXT NOT NULL,"
    "  options TEXT NOT NULL, PRIMARY KEY (qid, devclass, backend, port_id, device_id));",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    int depth;      /* open store_begin()s: only the outermost talks to SQLite */
    bool aborted;   /* a nested part failed: the whole transaction is gone */
    bool ephemeral; /* the open transaction commits without waiting for the disk */
    bool disk_full; /* the last failure was SQLITE_FULL (or no space to write the journal) */
};

static int db_fail(struct store *s, const char *what) {
    int code = sqlite3_errcode(s->db);
    s->disk_full = code == SQLITE_FULL ||
                   (code == SQLITE_IOERR && sqlite3_system_errno(s->db) == ENOSPC);
    log_error("database: %s: %s", what, sqlite3_errmsg(s->db));
    return -1;
}

bool store_disk_full(const struct store *s) { return s->disk_full; }

static int exec_sql(struct store *s, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("database: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int schema_version(struct store *s) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, "read schema version");
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

/* Each step runs in its own transaction together with its user_version bump, so an
 * interrupted upgrade resumes where it stopped. */
static int migrate(struct store *s, struct qerr *err) {
    int v = schema_version(s);
    if (v < 0)
        return qerr_set(err, EXC_QUBES, "cannot read the database schema version");
    if (v > STORE_SCHEMA_VERSION)
        return qerr_set(err, EXC_QUBES,
                        "database schema %d is newer than this dispenserd "
                        "understands (%d)",
                        v, STORE_SCHEMA_VERSION);
    for (; v < STORE_SCHEMA_VERSION; v++) {
        _cleanup_strbuf_ struct strbuf sql = STRBUF_INIT;
        strbuf_printf(&sql, "BEGIN IMMEDIATE; %s; PRAGMA user_version = %d; COMMIT;", MIGRATIONS[v],
                      v + 1);
        if (exec_sql(s, strbuf_str(&sql)) < 0) {
            exec_sql(s, "ROLLBACK");
            return qerr_set(err, EXC_QUBES, "database migration to schema %d failed", v + 1);
        }
        log_info("database migrated to schema %d", v + 1);
    }
    return 0;
}

static int prepare_all(struct store *s) {
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, STMT_SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK)
            return db_fail(s, STMT_SQL[i]);
    return 0;
}

int store_open(const char *path, struct store **out, struct qerr *err) {
    struct store *s = xcalloc(1, sizeof(*s));
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        qerr_set(err, EXC_QUBES, "cannot open database %s: %s", path, sqlite3_errmsg(s->db));
        store_close(s);
        return -1;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (exec_sql(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                    "PRAGMA foreign_keys=ON;") < 0 ||
        migrate(s, err) < 0 || prepare_all(s) < 0) {
        if (!err || !err->exc)
            qerr_set(err, EXC_QUBES, "cannot prepare database %s", path);
        store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s) {
    if (!s)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    free(s);
}

/* Binds the arguments (ints as int, the rest as text) and runs the statement once. */
static int run(struct store *s, enum stmt_id id, const char *fmt, ...) {
    sqlite3_stmt *st = s->stmt[id];
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 'i')
            sqlite3_bind_int(st, i + 1, va_arg(ap, int));
        else
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_STATIC);
    }
    va_end(ap);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, STMT_SQL[id]);
}

/* Back to FULL (fsync at every commit) once an ephemeral transaction is over. */
static void end_ephemeral(struct store *s) {
    if (s->ephemeral && sqlite3_get_autocommit(s->db))
        exec_sql(s, "PRAGMA synchronous=FULL");
    s->ephemeral = false;
}

/* Transactions nest: a group of changes (a preload hand-out touches several features,
 * tags and a property) is one SQLite transaction, one commit. */
static int begin(struct store *s, bool ephemeral) {
    if (s->aborted)
        return -1;
    if (s->depth++ > 0)
        return 0; /* nested: the outermost decides, durability included */
    /* the safety level can only change outside a transaction: before BEGIN */
    if (ephemeral && exec_sql(s, "PRAGMA synchronous=NORMAL") < 0) {
        s->depth = 0;
        return -1;
    }
    s->ephemeral = ephemeral;
    int r = run(s, S_BEGIN, "");
    if (r < 0) {
        s->depth = 0;
        end_ephemeral(s);
    }
    return r;
}

int store_begin(struct store *s) { return begin(s, false); }

int store_synchronous(struct store *s) {
    sqlite3_stmt *st = NULL;
    int level = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        level = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return level;
}

int store_begin_ephemeral(struct store *s) { return begin(s, true); }

int store_commit(struct store *s) {
    if (s->aborted) {
        if (--s->depth <= 0)
            s->depth = 0, s->aborted = false;
        return -1;
    }
    if (s->depth == 0 || --s->depth > 0)
        return 0;
    int r = run(s, S_COMMIT, "");
    end_ephemeral(s);
    return r;
}

void store_rollback(struct store *s) {
    if (s->aborted)
        return; /* already rolled back; the outermost commit reports it */
    if (!sqlite3_get_autocommit(s->db))
        run(s, S_ROLLBACK, "");
    end_ephemeral(s);
    if (s->depth > 1)
        s->aborted = true; /* outer levels learn it at their commit */
    s->depth = s->depth > 1 ? s->depth - 1 : 0;
}

int store_insert_qube(struct store *s, int qid, const char *name, const char *klass,
                      const char *uuid) {
    return run(s, S_INSERT_QUBE, "isss", qid, name, klass, uuid);
}

int store_delete_qube(struct store *s, int qid) { return run(s, S_DELETE_QUBE, "i", qid); }

int store_put_prop(struct store *s, int qid, const char *name, const char *value) {
    return value ? run(s, S_SET_PROP, "iss", qid, name, value)
                 : run(s, S_DEL_PROP, "is", qid, name);
}

int store_put_global(struct store *s, const char *name, const char *value) {
    return value ? run(s, S_SET_GLOBAL, "ss", name, value) : run(s, S_DEL_GLOBAL, "s", name);
}

int store_put_feature(struct store *s, int qid, const char *name, const char *value) {
    return value ? run(s, S_SET_FEATURE, "iss", qid, name, value)
                 : run(s, S_DEL_FEATURE, "is", qid, name);
}

int store_put_tag(struct store *s, int qid, const char *tag, bool present) {
    return present ? run(s, S_SET_TAG, "is", qid, tag) : run(s, S_DEL_TAG, "is", qid, tag);
}

int store_put_firewall(struct store *s, int qid, const char *rules) {
    return rules ? run(s, S_SET_FIREWALL, "is", qid, rules) : run(s, S_DEL_FIREWALL, "i", qid);
}

int store_put_notes(struct store *s, int qid, const char *text) {
    return text && *text ? run(s, S_SET_NOTES, "is", qid, text) : run(s, S_DEL_NOTES, "i", qid);
}

int store_put_pool(struct store *s, const char *name, const char *driver, const char *config) {
    return driver ? run(s, S_SET_POOL, "sss", name, driver, config) : run(s, S_DEL_POOL, "s", name);
}

int store_put_volume_pool(struct store *s, int qid, const char *volume, const char *pool) {
    return run(s, S_SET_VOLUME_POOL, "iss", qid, volume, pool);
}

int store_put_assignment(struct store *s, int qid, const struct store_assignment *a) {
    if (a->mode)
        return run(s, S_SET_ASSIGNMENT, "issssss", qid, a->devclass, a->backend, a->port_id,
                   a->device_id, a->mode, a->options ? a->options : "");
    return run(s, S_DEL_ASSIGNMENT, "issss", qid, a->devclass, a->backend, a->port_id,
               a->device_id);
}

static const char *col(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

/* Runs a SELECT and hands every row to the callback with its columns as text/int. */
static int load_rows(struct store *s, const char *sql, void *ctx,
                     int (*row)(void *ctx, sqlite3_stmt *st)) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, sql);
    int rc, r = 0;
    while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        r = row(ctx, st);
    sqlite3_finalize(st);
    return r;
}

static int row_qube(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->qube(l->ctx, sqlite3_column_int(st, 0), col(st, 1), col(st, 2), col(st, 3));
}
static int row_prop(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->prop(l->ctx, sqlite3_column_int(st, 0), col(st, 1), col(st, 2));
}
static int row_feature(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->feature(l->ctx, sqlite3_column_int(st, 0), col(st, 1), col(st, 2));
}
static int row_tag(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->tag(l->ctx, sqlite3_column_int(st, 0), col(st, 1));
}
static int row_firewall(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->firewall ? l->firewall(l->ctx, sqlite3_column_int(st, 0), col(st, 1)) : 0;
}
static int row_notes(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->notes ? l->notes(l->ctx, sqlite3_column_int(st, 0), col(st, 1)) : 0;
}
static int row_pool(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->pool ? l->pool(l->ctx, col(st, 0), col(st, 1), col(st, 2)) : 0;
}
static int row_volume_pool(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->volume_pool
               ? l->volume_pool(l->ctx, sqlite3_column_int(st, 0), col(st, 1), col(st, 2))
               : 0;
}
static int row_assignment(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    struct store_assignment a = {col(st, 1), col(st, 2), col(st, 3),
                                 col(st, 4), col(st, 5), col(st, 6)};
    return l->assignment ? l->assignment(l->ctx, sqlite3_column_int(st, 0), &a) : 0;
}
static int row_global(void *ctx, sqlite3_stmt *st) {
    const struct store_loader *l = ctx;
    return l->global(l->ctx, col(st, 0), col(st, 1));
}

int store_load(struct store *s, const struct store_loader *loader) {
    void *ctx = (void *)loader;
    if (load_rows(s, "SELECT qid, name, class, uuid FROM qubes", ctx, row_qube) < 0 ||
        load_rows(s, "SELECT qid, name, value FROM properties", ctx, row_prop) < 0 ||
        load_rows(s, "SELECT qid, name, value FROM features", ctx, row_feature) < 0 ||
        load_rows(s, "SELECT qid, name FROM tags", ctx, row_tag) < 0 ||
        load_rows(s, "SELECT name, value FROM global_properties", ctx, row_global) < 0 ||
        load_rows(s, "SELECT qid, rules FROM firewall", ctx, row_firewall) < 0 ||
        load_rows(s, "SELECT qid, text FROM notes", ctx, row_notes) < 0 ||
        load_rows(s, "SELECT name, driver, config FROM pools ORDER BY rowid", ctx, row_pool) < 0 ||
        load_rows(s, "SELECT qid, volume, pool FROM volume_pools", ctx, row_volume_pool) < 0 ||
        load_rows(s,
                  "SELECT qid, devclass, backend, port_id, device_id, mode, options"
                  " FROM device_assignments ORDER BY rowid",
                  ctx, row_assignment) < 0)
        return -1;
    return 0;
}
