/* A qube's firewall rules in the model: kept as the canonical text Get shows, stored in
 * one row; the daemon turns them into nftables rules in the netvm. */
#include <stdlib.h>
#include <time.h>

#include "app.h"
#include "firewall.h"
#include "store.h"

void app_firewall_get(const struct app *app, const struct qube *q, struct strbuf *out) {
    struct qerr err = {0};
    /* stored rules were checked when set: parsing again only leaves out expired ones */
    if (fw_rules_parse(q->firewall ? q->firewall : FW_DEFAULT_RULES, out, NULL, time(NULL), &err) <
        0)
        strbuf_reset(out); /* cannot happen: no rule rather than a wrong one */
}

int app_firewall_set(struct app *app, struct qube *q, const char *rules, struct qerr *err) {
    _cleanup_strbuf_ struct strbuf canonical = STRBUF_INIT;
    if (fw_rules_parse(rules, &canonical, NULL, time(NULL), err) < 0)
        return -1;
    const char *text = strbuf_str(&canonical);
    if (store_begin(app->store) < 0 || store_put_firewall(app->store, q->qid, text) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    free(q->firewall);
    q->firewall = xstrdup(text);
    app_emit(app, q, "firewall-changed", NULL, 0);
    return 0;
}
