/* Block devices given to qubes: the attach itself (for admin.vm.device.block.Attach and
 * for a start) and what a qube's persistent assignments mean when it starts
 * (docs/devices.md). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "block_host.h"
#include "qerr.h"

struct dispatcher;

/* The options of an attachment ("_read-only", "_frontend-dev", "_devtype"). */
struct block_options {
    bool read_only, ro_given;
    char frontend_dev[16];
    char devtype[8];
};

/* One property of a serialised device or assignment: key='value'. */
typedef int (*device_prop_fn)(void *ctx, const char *key, const char *value, struct qerr *err);
/* Walks "key='value' key='value' ..." (a ' inside a value escaped as \'); ProtocolError
 * on anything else. */
int device_props_each(const char *text, size_t len, device_prop_fn fn, void *ctx, struct qerr *err);

/* One option (key with its leading '_') into o: QubesValueError for a bad value or an
 * unknown option, nothing else touched. */
int block_option_set(struct block_options *o, const char *key, const char *value, struct qerr *err);
/* All the options of a stored " _name='value'" list. */
int block_options_parse(const char *text, struct block_options *o, struct qerr *err);
/* " _name='value'" of the options given, in upstream's order, for storing or listing. */
void block_options_format(const struct block_options *o, struct strbuf *out);

/* The options as an event carries them: str() of qubesd's Python dict. */
void block_options_repr(const struct block_options *o, struct strbuf *out);

/* " key='value'", a ' in the value escaped. */
void device_put_prop(struct strbuf *out, const char *key, const char *value);

/* Gives the offered device dev to the running qube q with options o (read-only defaults to
 * the device's own setting, the frontend to the first free xvdi..xvdz), and emits
 * device-pre-attach/device-attach. -1 with err as dispatcher_block_attach's, or
 * DeviceAlreadyAttached. */
int block_attach_device(struct dispatcher *disp, struct qube *q, const struct block_host_dev *dev,
                        const struct block_options *o, struct qerr *err);

/* Does the assignment a match the offered device dev? */
bool assignment_matches(const struct device_assignment *a, const struct block_host_dev *dev);

/* Before a start: every required block device of q is offered and free, and q's engine can
 * take block devices; else QubesException "Block device dom0:PORT:ID not available" (as
 * qubesd's) and nothing starts. */
int devices_check_required(struct dispatcher *disp, const struct qube *q, struct qerr *err);
/* Once q runs: its assigned devices that are offered and free are attached, the most
 * specific assignment first; an optional one that cannot be is skipped with a log line.
 * -1 with err when a required one fails (the start then fails). */
int devices_attach_assigned(struct dispatcher *disp, struct qube *q, struct qerr *err);
