/* libFuzzer harness for the qrexec policy: arbitrary text goes through policy_parse and,
 * when it parses, through policy_evaluate for a fixed set of requests against a fixed
 * fake system. The same bytes, cut at newlines, also serve as one request
 * (service, argument, source, target) against a fixed policy. Allowed decisions are
 * checked to name a real destination. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "policy.h"
#include "../common/fake_policy_system.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct fake_qube qubes[] = {
    {"dom0", "AdminVM", "host", "default-dvm", false},
    {"work", "AppVM", "trusted", "default-dvm", false},
    {"personal", "AppVM", "", "", false},
    {"vault", "AppVM", "trusted", "work", false},
    {"default-dvm", "AppVM", "dvm", "", true},
    {"disp7", "DispVM", "", "default-dvm", false},
};

static const struct policy_system fake = FAKE_POLICY_SYSTEM(qubes);

static const char *const requests[][4] = {
    {"qubes.VMShell", "", "work", "vault"},
    {"qubes.VMShell", "", "work", "@dispvm"},
    {"qubes.OpenInVM", "x", "personal", "@dispvm"},
    {"s", "ARG", "vault", "@dispvm"},
    {"s", "", "work", "@dispvm:default-dvm"},
    {"s", "", "work", "@dispvm:work"},
    {"s", "", "work", ""},
    {"s", "", "dom0", "work"},
    {"s", "a+b", "disp7", "dom0"},
    {"s", "", "work", "@adminvm"},
    {"s", "", "work", "nosuch"},
    {"s", "", "disp7", "@default"},
};

static void check_decision(const struct policy_decision *d) {
    if (!memchr(d->target, '\0', sizeof(d->target)) ||
        !memchr(d->reason, '\0', sizeof(d->reason)) || !memchr(d->user, '\0', sizeof(d->user)) ||
        !memchr(d->file, '\0', sizeof(d->file)))
        abort();
    if (d->action != POLICY_ALLOW)
        return;
    const char *t = d->target;
    if (strncmp(t, "@dispvm:", 8) == 0 ? !fake_is_dvm_template(fake.ctx, t + 8)
                                       : !fake_exists(fake.ctx, t))
        abort(); /* an allowed call must go somewhere real */
}

static void fuzz_rules(const char *text) {
    struct policy_error err;
    struct policy *p = policy_parse(text, "fuzz.policy", &err);
    if (!p) {
        if (!memchr(err.msg, '\0', sizeof(err.msg)) || err.msg[0] == '\0')
            abort(); /* every refusal says why */
        return;
    }
    for (size_t i = 0; i < ELEMENTSOF(requests); i++) {
        struct policy_decision d;
        const char *const *r = requests[i];
        if (policy_evaluate(p, &fake, r[0], r[1], r[2], r[3], &d) < 0)
            abort(); /* the requests are well formed */
        check_decision(&d);
    }
    policy_free(p);
}

/* The input's first four lines as service, argument, source, target. */
static void fuzz_request(char *text) {
    static struct policy *fixed;
    if (!fixed) {
        fixed = policy_parse("s +a @anyvm @dispvm allow\n"
                             "* * @tag:trusted @anyvm allow target=@dispvm\n"
                             "* * @anyvm @default allow target=personal\n"
                             "* * * * allow\n",
                             "fixed.policy", NULL);
        if (!fixed)
            abort();
    }
    char *field[4] = {text, "", "", ""};
    for (size_t i = 1; i < 4; i++) {
        char *nl = strchr(field[i - 1], '\n');
        if (!nl)
            break;
        *nl = '\0';
        field[i] = nl + 1;
    }
    struct policy_decision d;
    if (policy_evaluate(fixed, &fake, field[0], field[1], field[2], field[3], &d) < 0 &&
        d.action != POLICY_DENY)
        abort();
    check_decision(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_rules(text);
    fuzz_request(text);
    free(text);
    return 0;
}
