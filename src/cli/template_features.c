#include "template_features.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"

#define DATE_FMT "%Y-%m-%d %H:%M:%S" /* upstream qvm-template's template-buildtime */

static void push(struct strv *pairs, const char *feature, const char *value) {
    /* feature values are printable ASCII (api_checks.c): anything else becomes '?' */
    _cleanup_free_ char *clean = xstrdup(value);
    for (char *p = clean; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    strv_push(pairs, feature);
    strv_push(pairs, clean);
}

/* One KEY=value of an os-release file, unquoted; "" when absent. */
static void os_release_get(const char *text, const char *key, char *out, size_t size) {
    out[0] = '\0';
    size_t klen = strlen(key);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) != 0 || line[klen] != '=')
            continue;
        const char *v = line + klen + 1;
        size_t n = strcspn(v, "\n");
        if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
            v++;
            n -= 2;
        }
        snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), v);
        return;
    }
}

static char *read_os_release(const char *root) {
    static const char *const paths[] = {"etc/os-release", "usr/lib/os-release"};
    for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", root, paths[i]) < 0)
            abort();
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        struct strbuf sb = STRBUF_INIT;
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && sb.len < 65536)
            strbuf_append(&sb, buf, n);
        fclose(f);
        return (char *)strbuf_str(&sb);
    }
    return xstrdup("");
}

/* Qubes' agent reports the distribution of the template (os-release). */
static void os_features(const char *os_release, struct strv *pairs, char *version, size_t vsize) {
    static const char *const map[][2] = {
        {"ID", "os-distribution"},
        {"VERSION_ID", "os-version"},
        {"ID_LIKE", "os-distribution-like"},
    };
    char value[256];
    for (size_t i = 0; i < ELEMENTSOF(map); i++) {
        os_release_get(os_release, map[i][0], value, sizeof(value));
        if (*value)
            push(pairs, map[i][1], value);
    }
    os_release_get(os_release, "VERSION_ID", version, vsize);
}

static bool service_name_ok(const char *n) {
    return n[0] != '.' && n[strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789_.-")] == '\0';
}

/* qrexec services: the agent's own (qubes.VMShell, qubes.VMExec, the waits) and the
 * template's /etc/qubes-rpc files, as Qubes' agent reports them. */
static void rpc_features(const char *root, struct strv *pairs) {
    static const char *const builtin[] = {"qubes.VMExec", "qubes.VMShell",
                                          "qubes.WaitForRunningSystem", "qubes.WaitForSession"};
    struct strv names = {0};
    for (size_t i = 0; i < ELEMENTSOF(builtin); i++)
        strv_push(&names, builtin[i]);
    _cleanup_free_ char *dir = NULL;
    if (asprintf(&dir, "%s/etc/qubes-rpc", root) < 0)
        abort();
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (service_name_ok(e->d_name) && !strv_contains(&names, e->d_name))
            strv_push(&names, e->d_name);
    if (d)
        closedir(d);
    strv_sort(&names);
    for (size_t i = 0; i < names.n; i++) {
        char feature[300];
        snprintf(feature, sizeof(feature), "supported-rpc.%s", names.v[i]);
        push(pairs, feature, "1");
    }
    strv_free(&names);
}

/* What upstream qvm-template records of a template's package, for ours: the version is
 * the distribution's, the release the build's time, the "repository" how it was made. */
static void origin_features(const char *name, const struct template_origin *o, const char *pretty,
                            const char *version, struct strv *pairs) {
    char now[32], release[32], reponame[64], summary[512], desc[1024];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), DATE_FMT, &tm);
    strftime(release, sizeof(release), "%Y%m%d%H%M", &tm);
    bool imported = strcmp(o->builder, "import") == 0;
    snprintf(reponame, sizeof(reponame), imported ? "@commandline" : "@build-%s", o->builder);
    snprintf(summary, sizeof(summary), "%s, %s by dispenser's qvm-template",
             *pretty ? pretty : o->builder, imported ? "imported" : "built");
    snprintf(desc, sizeof(desc), "Template %s: %s.|Made by: qvm-template %s %s.", name,
             *pretty ? pretty : o->builder, imported ? "import" : "build",
             imported ? (o->source ? o->source : "") : o->builder);
    const char *url = o->url;
    if (!url)
        url = strcmp(o->builder, "busybox") == 0  ? "https://busybox.net"
              : strcmp(o->builder, "debian") == 0 ? "https://www.debian.org"
                                                  : "";
    const char *license = strcmp(o->builder, "busybox") == 0  ? "GPL-2.0-only"
                          : strcmp(o->builder, "debian") == 0 ? "DFSG (see /usr/share/doc)"
                                                              : "unknown";
    const char *ver = *version ? version : (o->source && !imported ? o->source : "0");
    const char *const kv[][2] = {
        {"template-name", name},       {"template-epoch", "0"},         {"template-version", ver},
        {"template-release", release}, {"template-reponame", reponame}, {"template-buildtime", now},
        {"template-installtime", now}, {"template-license", license},   {"template-url", url},
        {"template-summary", summary}, {"template-description", desc},
    };
    for (size_t i = 0; i < ELEMENTSOF(kv); i++)
        push(pairs, kv[i][0], kv[i][1]);
}

void template_features_collect(const char *root, const char *name, const struct template_origin *o,
                               struct strv *pairs) {
    _cleanup_free_ char *os_release = read_os_release(root);
    char pretty[256], version[64];
    /* Qubes' post-install step records what the template's agent supports; ours is the
     * same agent everywhere, so the features are known up front (preloading needs them). */
    push(pairs, "qrexec", "1");
    push(pairs, "os", "Linux");
    push(pairs, "vmexec", "1");
    push(pairs, "template-builder", o->builder);
    rpc_features(root, pairs);
    os_features(os_release, pairs, version, sizeof(version));
    os_release_get(os_release, "PRETTY_NAME", pretty, sizeof(pretty));
    origin_features(name, o, pretty, version, pairs);
}

int template_features_apply(const char *name, const struct strv *pairs, struct cli_err *err) {
    for (size_t i = 0; i + 1 < pairs->n; i += 2)
        if (cli_call_simple("admin.vm.feature.Set", pairs->v[i], name, pairs->v[i + 1], err) < 0)
            return -1;
    return 0;
}
