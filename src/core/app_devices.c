/* A qube's persistent device assignments (admin.vm.device.<class>.Assign, qvm-block
 * assign): which devices it is given at every start (docs/devices.md). Saved first, then
 * changed in memory, as everything in the model; the rows go with the qube (ON DELETE
 * CASCADE). What an assignment means at a start is the daemon's (device_assign.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "store.h"

static struct store_assignment row_of(const struct device_assignment *a, const char *mode) {
    return (struct store_assignment){a->devclass,  a->backend, a->port_id,
                                     a->device_id, mode,       a->options};
}

struct device_assignment *app_assignment_find(const struct qube *q, const char *devclass,
                                              const char *backend, const char *port_id,
                                              const char *device_id) {
    for (size_t i = 0; i < q->n_assignments; i++) {
        struct device_assignment *a = &q->assignments[i];
        if (!strcmp(a->devclass, devclass) && !strcmp(a->backend, backend) &&
            !strcmp(a->port_id, port_id) && !strcmp(a->device_id, device_id))
            return a;
    }
    return NULL;
}

void app_assignment_load(struct qube *q, const struct device_assignment *a) {
    q->assignments = xrealloc(q->assignments, (q->n_assignments + 1) * sizeof(*q->assignments));
    struct device_assignment *n = &q->assignments[q->n_assignments++];
    *n = *a;
    n->options = xstrdup(a->options ? a->options : "");
}

int app_assignment_add(struct app *app, struct qube *q, const struct device_assignment *a,
                       struct qerr *err) {
    if (app_assignment_find(q, a->devclass, a->backend, a->port_id, a->device_id))
        return qerr_set(err, EXC_DEVICE_ALREADY_ASSIGNED,
                        "%s device %s:%s:%s already assigned to %s", a->devclass, a->backend,
                        a->port_id, a->device_id, q->name);
    struct store_assignment row = row_of(a, a->mode);
    if (store_begin(app->store) < 0 || store_put_assignment(app->store, q->qid, &row) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_assignment_load(q, a);
    return 0;
}

int app_assignment_remove(struct app *app, struct qube *q, struct device_assignment *a,
                          struct qerr *err) {
    struct store_assignment row = row_of(a, NULL);
    if (store_begin(app->store) < 0 || store_put_assignment(app->store, q->qid, &row) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    size_t i = (size_t)(a - q->assignments);
    free(a->options);
    memmove(a, a + 1, (q->n_assignments - i - 1) * sizeof(*a));
    q->n_assignments--;
    return 0;
}

int app_assignment_set_mode(struct app *app, struct qube *q, struct device_assignment *a,
                            const char *mode, struct qerr *err) {
    struct store_assignment row = row_of(a, mode);
    if (store_begin(app->store) < 0 || store_put_assignment(app->store, q->qid, &row) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    snprintf(a->mode, sizeof(a->mode), "%s", mode);
    return 0;
}

void app_assignments_free(struct qube *q) {
    for (size_t i = 0; i < q->n_assignments; i++)
        free(q->assignments[i].options);
    free(q->assignments);
    q->assignments = NULL;
    q->n_assignments = 0;
}
