/* Storage pools (admin.pool.*, qvm-pool): where a qube's volumes live.
 *
 * Two drivers. `dir`: the engine's layered directories under the state dir; one pool of
 * it, `dispenser`, made by the database's migration and never removed. `ram`: a tmpfs of
 * `size` bytes the daemon mounts (STATE/pools/<name>); it keeps nothing past a qube's
 * stop, so it holds only what a stop throws away: the volatile volume and the
 * copy-on-write layers of a qube's views (an AppVM's root, a disposable's root and
 * private). A disposable whose volumes are in a ram pool never writes to the disk.
 *
 * Each qube records the pool of its root, private and volatile volume when it is
 * created (NULL: dispenser), as Qubes does; later changes of the default_pool*
 * properties move nothing. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "qerr.h"

struct app;
struct qube;

enum pool_driver { POOL_DIR, POOL_RAM };

struct pool {
    char name[64];
    enum pool_driver driver;
    uint64_t size;         /* ram: the tmpfs's size in bytes */
    int revisions_to_keep; /* Qubes' pool default for new volumes; -1: no limit */
};

/* The volumes a pool can be named for, in admin.vm.volume.List's order. */
enum pool_volume { PV_PRIVATE, PV_ROOT, PV_VOLATILE, PV_COUNT };
extern const char *const POOL_VOLUME_NAMES[PV_COUNT];
int pool_volume_index(const char *volume);

const char *pool_driver_name(enum pool_driver d);
int pool_driver_from_name(const char *name, enum pool_driver *out);
/* "revisions_to_keep=1\nsize=...\n": the stored form of a pool's settings. */
void pool_config_text(const struct pool *p, char *buf, size_t size);
int pool_config_parse(struct pool *p, const char *text);

struct pool *app_pool_find(const struct app *app, const char *name);
/* Unknown pool: QubesException "Unknown storage pool NAME", as qubesd's get_pool. */
struct pool *app_pool_lookup(const struct app *app, const char *name, struct qerr *err);
/* Checks nothing but the database: the caller (api_pool.c) validated the request. */
int app_pool_add(struct app *app, const struct pool *p, struct qerr *err);
/* QubesPoolInUseError while a qube has a volume in it or a default_pool* names it. */
int app_pool_remove(struct app *app, const char *name, struct qerr *err);
int app_pool_check_unused(const struct app *app, const char *name, struct qerr *err);
int app_pool_set_revisions(struct app *app, struct pool *p, int keep, struct qerr *err);

/* The pool of a qube's volume (never NULL). A view (an AppVM's root, a disposable's
 * root and private) shows the pool its writes go to when one was named for it, else the
 * pool of the volume it is a view of. */
const char *app_volume_pool(const struct app *app, const struct qube *q, enum pool_volume v);
/* The ram pool holding q's throwaway writes (its volatile volume and its views' layers),
 * NULL: the disk. */
const struct pool *app_scratch_pool(const struct app *app, const struct qube *q);
/* Picks the pools of a new qube's volumes: `all` (CreateInPool's pool=) or `each`
 * (pool:VOLUME=), else the disposable template's for a disposable's volatile, else the
 * default_pool* properties. A qube's own persistent volume cannot be in a ram pool;
 * its throwaway writes go to one pool only. Sets q->volume_pool. */
int app_pools_choose(const struct app *app, struct qube *q, const char *all,
                     const char *const each[PV_COUNT], struct qerr *err);
