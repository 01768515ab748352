/* SQLite persistence of the qube model. One file in the state dir; WAL journal with
 * synchronous=FULL, so a committed transaction survives kill -9 and power loss alike.
 * Callers group writes with store_begin/store_commit; nothing here touches memory state. */
#pragma once
#include <stdbool.h>

#include "qerr.h"

struct store;
struct app;

#define STORE_SCHEMA_VERSION 5

int store_open(const char *path, struct store **out, struct qerr *err);
void store_close(struct store *s);

int store_begin(struct store *s);
/* A transaction of throwaway state (see app_batch_begin_ephemeral): committed in the WAL
 * without an fsync (synchronous=NORMAL), still atomic. Nested in another transaction it
 * takes that one's durability, and transactions nested in it take its own. */
int store_begin_ephemeral(struct store *s);
/* SQLite's safety level now (1 NORMAL, 2 FULL), -1 on error: for tests. */
int store_synchronous(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);
/* Whether the last failed statement failed for want of disk space. */
bool store_disk_full(const struct store *s);

int store_insert_qube(struct store *s, int qid, const char *name, const char *klass,
                      const char *uuid);
int store_delete_qube(struct store *s, int qid);
/* value NULL deletes the row (back to default / feature removed). */
int store_put_prop(struct store *s, int qid, const char *name, const char *value);
int store_put_global(struct store *s, const char *name, const char *value);
int store_put_feature(struct store *s, int qid, const char *name, const char *value);
int store_put_tag(struct store *s, int qid, const char *tag, bool present);
/* A qube's firewall rules (canonical lines); NULL deletes them (back to the default). */
int store_put_firewall(struct store *s, int qid, const char *rules);
/* A qube's notes; NULL or "" deletes them. */
int store_put_notes(struct store *s, int qid, const char *text);

/* A storage pool's row (pools.h); driver NULL deletes it. */
int store_put_pool(struct store *s, const char *name, const char *driver, const char *config);
/* The pool of a qube's volume, kept with the qube (removed with it). */
int store_put_volume_pool(struct store *s, int qid, const char *volume, const char *pool);
/* A persistent device assignment of a qube (admin.vm.device.<class>.Assign); mode NULL
 * deletes the row of that device. */
struct store_assignment {
    const char *devclass, *backend, *port_id, *device_id, *mode, *options;
};
int store_put_assignment(struct store *s, int qid, const struct store_assignment *a);

/* Rows as they come out of the database, for app.c to build its model from. */
struct store_loader {
    void *ctx;
    int (*qube)(void *ctx, int qid, const char *name, const char *klass, const char *uuid);
    int (*prop)(void *ctx, int qid, const char *name, const char *value);
    int (*feature)(void *ctx, int qid, const char *name, const char *value);
    int (*tag)(void *ctx, int qid, const char *tag);
    int (*global)(void *ctx, const char *name, const char *value);
    int (*firewall)(void *ctx, int qid, const char *rules);
    int (*notes)(void *ctx, int qid, const char *text);
    int (*pool)(void *ctx, const char *name, const char *driver, const char *config);
    int (*volume_pool)(void *ctx, int qid, const char *volume, const char *pool);
    int (*assignment)(void *ctx, int qid, const struct store_assignment *a);
};
int store_load(struct store *s, const struct store_loader *loader);
