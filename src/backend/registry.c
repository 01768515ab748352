#include "registry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "container/container_backend.h"
#ifdef DISPENSER_QEMU_ENGINE
#include "qemu/qemu_backend.h"
#endif
#include "log.h"

/* A second engine is one folder and one row here. */
static const struct {
    const char *name;
    backend_open_fn open;
} ENGINES[] = {
    {"container", container_backend_new},
#ifdef DISPENSER_QEMU_ENGINE
    {"qemu", qemu_backend_new},
#endif
};

#define N_ENGINES (sizeof(ENGINES) / sizeof(ENGINES[0]))

/* "ENGINE.KEY" -> KEY if ENGINE is `engine`, else NULL. */
static const char *own_key(const char *key, const char *engine) {
    size_t n = strlen(engine);
    return strncmp(key, engine, n) == 0 && key[n] == '.' ? key + n + 1 : NULL;
}

static size_t options_of(const struct backend_config *cfg, const char *engine,
                         struct backend_option *out, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_options && n < max; i++) {
        const char *key = own_key(cfg->options[i].key, engine);
        if (key)
            out[n++] = (struct backend_option){key, cfg->options[i].value};
    }
    return n;
}

int backends_check_options(const struct backend_config *cfg, struct backend_why *why) {
    for (size_t i = 0; i < cfg->n_options; i++) {
        bool known = false;
        for (size_t e = 0; e < N_ENGINES && !known; e++)
            known = own_key(cfg->options[i].key, ENGINES[e].name) != NULL;
        if (!known)
            return backend_fail(why, -EINVAL,
                                "engine option '%s' names no engine of this "
                                "dispenserd (ENGINE.KEY=VALUE)",
                                cfg->options[i].key);
    }
    return 0;
}

size_t backends_open(sd_event *loop, const struct backend_config *cfg,
                     struct backend *out[BACKENDS_MAX]) {
    size_t n = 0;
    for (size_t e = 0; e < N_ENGINES && n < BACKENDS_MAX; e++) {
        struct backend_option opts[32];
        struct backend_config own = *cfg;
        own.options = opts;
        own.n_options = options_of(cfg, ENGINES[e].name, opts, 32);
        struct backend_why why = {0};
        struct backend *b = ENGINES[e].open(loop, &own, &why);
        if (!b) {
            log_warning("virt_mode=%s is not available: %s; its qubes cannot be started",
                        ENGINES[e].name, why.msg);
            b = backend_unavailable_new(loop, ENGINES[e].name, why.msg);
        }
        out[n++] = b;
    }
    return n;
}
