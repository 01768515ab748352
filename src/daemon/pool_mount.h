/* Where pools are on the host (pools.h has the model): a ram pool's tmpfs, the dir
 * pool's directory. Without app->pools_dir (unit tests, the fuzzer) nothing is mounted
 * and the functions that need a path return -1. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "app.h"

/* STATE/pools/<name>: where a ram pool's tmpfs is. */
int pool_path(const struct app *app, const char *name, char *buf, size_t size);
/* STATE/volumes: the dir pool's volumes. */
int pool_dir_path(const struct app *app, char *buf, size_t size);
int pool_mount(const struct app *app, const struct pool *p, struct qerr *err);
int pool_unmount(const struct app *app, const struct pool *p, struct qerr *err);
/* At start: every ram pool of the database gets its tmpfs (errors are logged). */
void pool_mount_all(const struct app *app);
/* The filesystem's size and use (statvfs), as qubesd's file pool reports them. */
int pool_usage(const struct app *app, const struct pool *p, uint64_t *size, uint64_t *used);
