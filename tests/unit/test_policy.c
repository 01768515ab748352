/* The qrexec policy (src/qrexec/policy*.c): one test per rule of the format, against a
 * small fake system of qubes. */
#include "testutil.h"

#include <sys/stat.h>

#include "macro.h"
#include "policy.h"
#include "../common/fake_policy_system.h"

/* ---- a fake system ---- */

static const struct fake_qube qubes[] = {
    {"dom0", "AdminVM", "dom0-tag", "default-dvm", false},
    {"work", "AppVM", "trusted", "default-dvm", false},
    {"personal", "AppVM", "", "", false}, /* no default_dispvm */
    {"vault", "AppVM", "trusted", "default-dvm", false},
    {"odd", "AppVM", "", "work", false}, /* default_dispvm is no disposable template */
    {"default-dvm", "AppVM", "dvm-tag", "", true},
    {"other-dvm", "AppVM", "", "", true},
    {"disp12", "DispVM", "", "default-dvm", false},
};

static const struct policy_system fake = FAKE_POLICY_SYSTEM(qubes);

/* ---- helpers ---- */

static struct policy *parse_ok(const char *text) {
    struct policy_error err;
    struct policy *p = policy_parse(text, "test.policy", &err);
    if (!p)
        fprintf(stderr, "unexpected error %s:%d: %s\n", err.file, err.line, err.msg);
    assert_non_null(p);
    return p;
}

static void parse_fails(const char *text, int line, const char *msg_part) {
    struct policy_error err;
    struct policy *p = policy_parse(text, "bad.policy", &err);
    if (p)
        fprintf(stderr, "accepted: %s\n", text);
    assert_null(p);
    assert_string_equal(err.file, "bad.policy");
    assert_int_equal(err.line, line);
    if (!strstr(err.msg, msg_part))
        fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, msg_part ? msg_part : "");
    assert_non_null(strstr(err.msg, msg_part));
}

static struct policy_decision decide(const struct policy *p, const char *service, const char *arg,
                                     const char *src, const char *tgt) {
    struct policy_decision d;
    assert_int_equal(policy_evaluate(p, &fake, service, arg, src, tgt, &d), 0);
    return d;
}

/* One-rule policy, one request: allowed to want_target, or denied (want_target NULL). */
static void check(const char *text, const char *service, const char *arg, const char *src,
                  const char *tgt, const char *want_target) {
    struct policy *p = parse_ok(text);
    struct policy_decision d = decide(p, service, arg, src, tgt);
    if ((d.action == POLICY_ALLOW) != (want_target != NULL))
        fprintf(stderr, "'%s' for %s+%s %s -> %s: got %s (%s)\n", text, service, arg, src, tgt,
                d.action == POLICY_ALLOW ? "allow" : "deny", d.reason);
    assert_int_equal(d.action, want_target ? POLICY_ALLOW : POLICY_DENY);
    if (want_target)
        assert_string_equal(d.target, want_target);
    else
        assert_true(d.reason[0] != '\0');
    policy_free(p);
}

#define ALLOWS(text, svc, arg, src, tgt, want) check(text, svc, arg, src, tgt, want)
#define DENIES(text, svc, arg, src, tgt) check(text, svc, arg, src, tgt, NULL)

static void assert_reason_has(struct policy_decision d, const char *part) {
    if (!strstr(d.reason, part))
        fprintf(stderr, "reason '%s' lacks '%s'\n", d.reason, part);
    assert_non_null(strstr(d.reason, part));
}

/* ---- actions, order ---- */

static void test_allow_and_deny(void **state) {
    ALLOWS("qubes.VMShell * work vault allow", "qubes.VMShell", "", "work", "vault", "vault");
    DENIES("qubes.VMShell * work vault deny", "qubes.VMShell", "", "work", "vault");
    struct policy *p = parse_ok("\n# comment\n  \nqubes.VMShell * work vault deny\n");
    assert_int_equal(policy_rule_count(p), 1);
    struct policy_decision d = decide(p, "qubes.VMShell", "", "work", "vault");
    assert_string_equal(d.file, "test.policy");
    assert_int_equal(d.line, 4);
    assert_true(d.notify); /* a denial is notified unless notify=no */
    assert_reason_has(d, "test.policy:4");
    policy_free(p);
}

static void test_first_match_wins(void **state) {
    const char *text = "s * work vault deny\n"
                       "s * work vault allow\n"
                       "s * @anyvm @anyvm allow\n";
    DENIES(text, "s", "", "work", "vault");
    ALLOWS(text, "s", "", "personal", "vault", "vault");
    struct policy *p = parse_ok(text);
    assert_int_equal(decide(p, "s", "", "personal", "vault").line, 3);
    policy_free(p);
}

static void test_no_match_denies(void **state) {
    struct policy *p = parse_ok("s * work vault allow\n");
    struct policy_decision d = decide(p, "other", "", "work", "vault");
    assert_int_equal(d.action, POLICY_DENY);
    assert_string_equal(d.file, "");
    assert_reason_has(d, "no policy rule");
    policy_free(p);
    p = parse_ok("");
    assert_int_equal(policy_rule_count(p), 0);
    assert_int_equal(decide(p, "s", "", "work", "vault").action, POLICY_DENY);
    policy_free(p);
}

/* ---- service and argument columns ---- */

static void test_service_wildcard(void **state) {
    ALLOWS("* * work vault allow", "any.Service", "x", "work", "vault", "vault");
    DENIES("qubes.A * work vault allow", "qubes.B", "", "work", "vault");
}

static void test_argument_wildcard(void **state) {
    ALLOWS("s * work vault allow", "s", "", "work", "vault", "vault");
    ALLOWS("s * work vault allow", "s", "anything", "work", "vault", "vault");
}

static void test_argument_empty_plus(void **state) {
    ALLOWS("s + work vault allow", "s", "", "work", "vault", "vault");
    ALLOWS("s + work vault allow", "s", NULL, "work", "vault", "vault");
    DENIES("s + work vault allow", "s", "x", "work", "vault");
}

static void test_argument_specific(void **state) {
    ALLOWS("s +ARG work vault allow", "s", "ARG", "work", "vault", "vault");
    DENIES("s +ARG work vault allow", "s", "ARG2", "work", "vault");
    DENIES("s +ARG work vault allow", "s", "", "work", "vault");
    DENIES("s +ARG work vault allow", "s", "arg", "work", "vault");
    ALLOWS("s +a+b work vault allow", "s", "a+b", "work", "vault", "vault");
}

/* ---- source column ---- */

static void test_source_name(void **state) {
    ALLOWS("s * work vault allow", "s", "", "work", "vault", "vault");
    DENIES("s * work vault allow", "s", "", "personal", "vault");
}

static void test_source_anyvm_not_host(void **state) {
    ALLOWS("s * @anyvm vault allow", "s", "", "personal", "vault", "vault");
    DENIES("s * @anyvm vault allow", "s", "", "dom0", "vault");
}

static void test_source_adminvm(void **state) {
    ALLOWS("s * @adminvm vault allow", "s", "", "dom0", "vault", "vault");
    ALLOWS("s * dom0 vault allow", "s", "", "dom0", "vault", "vault");
    DENIES("s * @adminvm vault allow", "s", "", "work", "vault");
}

static void test_source_wildcard(void **state) {
    ALLOWS("s * * vault allow", "s", "", "dom0", "vault", "vault");
    ALLOWS("s * * vault allow", "s", "", "work", "vault", "vault");
}

static void test_source_tag_and_type(void **state) {
    ALLOWS("s * @tag:trusted personal allow", "s", "", "vault", "personal", "personal");
    DENIES("s * @tag:trusted personal allow", "s", "", "personal", "personal");
    ALLOWS("s * @type:DispVM work allow", "s", "", "disp12", "work", "work");
    DENIES("s * @type:DispVM work allow", "s", "", "vault", "work");
    ALLOWS("s * @type:AdminVM work allow", "s", "", "dom0", "work", "work");
}

static void test_source_dispvm_tokens_parse_but_never_match(void **state) {
    /* upstream compares them with the caller's plain name: no match, ever */
    DENIES("s * @dispvm:default-dvm work allow", "s", "", "disp12", "work");
    DENIES("s * @dispvm:@tag:dvm-tag work allow", "s", "", "disp12", "work");
}

/* ---- target column ---- */

static void test_target_name(void **state) {
    ALLOWS("s * work vault allow", "s", "", "work", "vault", "vault");
    DENIES("s * work vault allow", "s", "", "work", "personal");
}

static void test_target_anyvm(void **state) {
    ALLOWS("s * work @anyvm allow", "s", "", "work", "personal", "personal");
    DENIES("s * work @anyvm allow", "s", "", "work", "dom0");
    /* as upstream: @anyvm also matches @dispvm requests */
    ALLOWS("s * work @anyvm allow", "s", "", "work", "@dispvm", "@dispvm:default-dvm");
}

static void test_target_adminvm(void **state) {
    ALLOWS("s * work @adminvm allow", "s", "", "work", "dom0", "dom0");
    ALLOWS("s * work @adminvm allow", "s", "", "work", "@adminvm", "dom0");
    ALLOWS("s * work dom0 allow", "s", "", "work", "@adminvm", "dom0");
    DENIES("s * work @adminvm allow", "s", "", "work", "vault");
}

static void test_target_wildcard(void **state) {
    ALLOWS("s * work * allow", "s", "", "work", "dom0", "dom0");
    ALLOWS("s * work * allow", "s", "", "work", "vault", "vault");
}

static void test_target_tag_and_type(void **state) {
    ALLOWS("s * work @tag:trusted allow", "s", "", "work", "vault", "vault");
    DENIES("s * work @tag:trusted allow", "s", "", "work", "personal");
    ALLOWS("s * work @type:DispVM allow", "s", "", "work", "disp12", "disp12");
    DENIES("s * work @type:DispVM allow", "s", "", "work", "vault");
    DENIES("s * work @tag:dvm-tag allow", "s", "", "work", "@dispvm:default-dvm");
}

/* ---- disposables ---- */

static void test_dispvm_resolves_through_source(void **state) {
    ALLOWS("s * @anyvm @dispvm allow", "s", "", "work", "@dispvm", "@dispvm:default-dvm");
    ALLOWS("s * @anyvm @dispvm allow", "s", "", "disp12", "@dispvm", "@dispvm:default-dvm");
    /* @dispvm names only the keyword, not a template asked for by name */
    DENIES("s * @anyvm @dispvm allow", "s", "", "work", "@dispvm:default-dvm");
    DENIES("s * @anyvm @dispvm allow", "s", "", "work", "default-dvm");
}

static void test_dispvm_without_default_dispvm(void **state) {
    struct policy *p = parse_ok("s * @anyvm @dispvm allow");
    struct policy_decision d = decide(p, "s", "", "personal", "@dispvm");
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "no default_dispvm");
    d = decide(p, "s", "", "odd", "@dispvm"); /* its default_dispvm is no template */
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "not a disposable template");
    policy_free(p);
}

static void test_dispvm_template_target(void **state) {
    const char *text = "s * @anyvm @dispvm:default-dvm allow";
    ALLOWS(text, "s", "", "work", "@dispvm:default-dvm", "@dispvm:default-dvm");
    ALLOWS(text, "s", "", "work", "@dispvm", "@dispvm:default-dvm"); /* via default_dispvm */
    DENIES(text, "s", "", "work", "@dispvm:other-dvm");
    DENIES(text, "s", "", "personal", "@dispvm"); /* it has no default_dispvm */
}

static void test_dispvm_requested_not_a_template(void **state) {
    struct policy *p = parse_ok("s * @anyvm * allow");
    struct policy_decision d = decide(p, "s", "", "work", "@dispvm:vault");
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "not a disposable template");
    assert_int_equal(decide(p, "s", "", "work", "@dispvm:nosuch").action, POLICY_DENY);
    assert_int_equal(decide(p, "s", "", "work", "@dispvm:@tag:dvm-tag").action, POLICY_DENY);
    policy_free(p);
}

static void test_dispvm_tag_target(void **state) {
    const char *text = "s * @anyvm @dispvm:@tag:dvm-tag allow";
    ALLOWS(text, "s", "", "work", "@dispvm:default-dvm", "@dispvm:default-dvm");
    ALLOWS(text, "s", "", "work", "@dispvm", "@dispvm:default-dvm");
    DENIES(text, "s", "", "work", "@dispvm:other-dvm");
    DENIES(text, "s", "", "work", "default-dvm");
}

/* ---- target= (redirect) ---- */

static void test_redirect_to_qube(void **state) {
    ALLOWS("s * work @anyvm allow target=vault", "s", "", "work", "personal", "vault");
    ALLOWS("s * work @anyvm allow target=dom0", "s", "", "work", "personal", "dom0");
    ALLOWS("s * work @anyvm allow target=@adminvm", "s", "", "work", "personal", "dom0");
    struct policy *p = parse_ok("s * work @anyvm allow target=gone");
    struct policy_decision d = decide(p, "s", "", "work", "personal");
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "does not exist");
    policy_free(p);
}

static void test_redirect_to_dispvm(void **state) {
    ALLOWS("s * work @anyvm allow target=@dispvm:other-dvm", "s", "", "work", "vault",
           "@dispvm:other-dvm");
    /* @dispvm as redirect: the SOURCE's default_dispvm */
    ALLOWS("s * @anyvm @anyvm allow target=@dispvm", "s", "", "work", "vault",
           "@dispvm:default-dvm");
    DENIES("s * @anyvm @anyvm allow target=@dispvm", "s", "", "personal", "vault");
    DENIES("s * @anyvm @anyvm allow target=@dispvm:vault", "s", "", "work", "vault");
}

/* ---- @default ---- */

static void test_default_target(void **state) {
    const char *text = "s * work @default allow target=vault";
    ALLOWS(text, "s", "", "work", "", "vault");
    ALLOWS(text, "s", "", "work", "@default", "vault");
    ALLOWS(text, "s", "", "work", NULL, "vault");
    DENIES(text, "s", "", "work", "vault"); /* @default matches only a missing target */
    parse_fails("s * work @default allow", 1, "must specify target=");
    /* a wider rule that allows without target= has nowhere to send it */
    struct policy *p = parse_ok("s * work @anyvm allow");
    struct policy_decision d = decide(p, "s", "", "work", "");
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "no target");
    policy_free(p);
}

/* ---- ask, options ---- */

static void test_ask_denies_with_reason(void **state) {
    struct policy *p = parse_ok("s * work vault ask default_target=vault");
    struct policy_decision d = decide(p, "s", "", "work", "vault");
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "ask");
    assert_int_equal(d.line, 1);
    policy_free(p);
}

static void test_options(void **state) {
    struct policy *p = parse_ok("s * work vault allow user=root notify=yes autostart=no\n"
                                "s * work personal allow\n"
                                "t * work vault allow notify=true autostart=1\n"
                                "u * work vault deny notify=no\n"
                                "s * work @dispvm allow autostart=no\n");
    struct policy_decision d = decide(p, "s", "", "work", "vault");
    assert_int_equal(d.action, POLICY_ALLOW);
    assert_string_equal(d.user, "root");
    assert_true(d.notify);
    assert_false(d.autostart);
    d = decide(p, "s", "", "work", "personal");
    assert_string_equal(d.user, "");
    assert_false(d.notify);
    assert_true(d.autostart);
    d = decide(p, "t", "", "work", "vault");
    assert_true(d.notify && d.autostart);
    d = decide(p, "u", "", "work", "vault");
    assert_int_equal(d.action, POLICY_DENY);
    assert_false(d.notify);
    d = decide(p, "s", "", "work", "@dispvm"); /* a new disposable always needs starting */
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "autostart=no");
    policy_free(p);
}

/* ---- requests ---- */

static void test_nonexistent_target(void **state) {
    struct policy *p = parse_ok("* * @anyvm * allow");
    struct policy_decision d = decide(p, "s", "", "work", "nosuch");
    assert_int_equal(d.action, POLICY_DENY);
    assert_reason_has(d, "no such qube");
    static const char *const bad[] = {"@anyvm", "@tag:trusted", "@type:AppVM", "*",
                                      "@bogus", "a b",          "@dispvm:"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        assert_int_equal(decide(p, "s", "", "work", bad[i]).action, POLICY_DENY);
    policy_free(p);
}

static void test_malformed_request(void **state) {
    struct policy *p = parse_ok("* * * * allow");
    struct policy_decision d;
    assert_int_equal(policy_evaluate(p, &fake, NULL, "", "work", "vault", &d), -1);
    assert_int_equal(d.action, POLICY_DENY);
    assert_int_equal(policy_evaluate(p, &fake, "", "", "work", "vault", &d), -1);
    assert_int_equal(policy_evaluate(p, &fake, "a b", "", "work", "vault", &d), -1);
    assert_int_equal(policy_evaluate(p, &fake, "s", "x y", "work", "vault", &d), -1);
    assert_int_equal(policy_evaluate(p, &fake, "s", "", "", "vault", &d), -1);
    assert_int_equal(policy_evaluate(p, &fake, "s", "", NULL, "vault", &d), -1);
    assert_int_equal(policy_evaluate(NULL, &fake, "s", "", "work", "vault", &d), -1);
    assert_int_equal(d.action, POLICY_DENY);
    policy_free(p);
}

/* ---- malformed lines ---- */

static void test_malformed_lines(void **state) {
    static const struct {
        const char *line, *msg;
    } cases[] = {
        {"s * work vault maybe", "invalid action"},
        {"s * work vault", "wrong number of fields"},
        {"s *", "wrong number of fields"},
        {"s", "wrong number of fields"},
        {"s * @bogus vault allow", "invalid source token"},
        {"s * work @bogus allow", "invalid target token"},
        {"s * work wo/rk allow", "invalid target token"},
        {"s * @dispvm vault allow", "@dispvm cannot be a source"},
        {"s * @default vault allow", "@default cannot be a source"},
        {"s * @tag: vault allow", "needs a name"},
        {"s * work @dispvm: allow", "needs a name"},
        {"s * work @dispvm:@tag: allow", "needs a name"},
        {"s * work @dispvm:@bogus allow", "invalid target token"},
        {"s * work vault allow notify", "invalid action parameter syntax"},
        {"s * work vault allow notify=maybe", "can be only 'yes' or 'no'"},
        {"s * work vault allow colour=red", "unknown option"},
        {"s * work vault allow user=a user=b", "given twice"},
        {"s * work vault allow user=", "invalid user="},
        {"s * work vault deny target=vault", "not valid for action deny"},
        {"s * work vault deny user=root", "not valid for action deny"},
        {"s * work vault allow default_target=vault", "not valid for action allow"},
        {"s * work vault allow target=@anyvm", "@anyvm cannot be a redirect"},
        {"s * work vault allow target=@tag:x", "@tag: cannot be a redirect"},
        {"s * work vault allow target=@dispvm:@tag:x", "cannot be a redirect"},
        {"s * work vault allow target=@default", "@default cannot be a redirect"},
        {"s ARG work vault allow", "does not start with +"},
        {"* +ARG work vault allow", "only * argument allowed for * service"},
        {"s+x * work vault allow", "service 's+x' contains invalid characters"},
        {"s +a/b work vault allow", "contains invalid characters"},
        {"s * work vault allow # trailing comment", "invalid action parameter syntax"},
        {"!bogus x", "invalid directive"},
        {"!include", "invalid number of params"},
        {"!include-service s * ", "invalid number of params"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char text[256];
        snprintf(text, sizeof(text), "# header\n\n%s\n", cases[i].line);
        parse_fails(text, 3, cases[i].msg);
    }
}

static void test_parse_refuses_include(void **state) {
    parse_fails("!include other.policy\n", 1, "not allowed here");
    parse_fails("s * work vault allow\n!include-dir d\n", 2, "not allowed here");
}

/* ---- files ---- */

static void write_file(const char *dir, const char *name, const char *text) {
    _cleanup_free_ char *path = tu_path(dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_dir(const char *dir, const char *name) {
    _cleanup_free_ char *path = tu_path(dir, name);
    assert_int_equal(mkdir(path, 0700), 0);
}

static void test_load_dir_order_and_filter(void **state) {
    char *dir = tu_mkdtemp();
    write_file(dir, "50-b.policy", "s * work vault deny\n");
    write_file(dir, "30-a.policy", "s * work vault allow\n");
    write_file(dir, "README", "this is not policy\n");
    write_file(dir, ".hidden.policy", "garbage\n");
    write_file(dir, "notes.policy.bak", "garbage\n");
    struct policy_error err;
    struct policy *p = policy_load_dir(dir, &err);
    assert_non_null(p);
    assert_int_equal(policy_rule_count(p), 2);
    struct policy_decision d = decide(p, "s", "", "work", "vault");
    assert_int_equal(d.action, POLICY_ALLOW); /* 30-a before 50-b */
    assert_non_null(strstr(d.file, "30-a.policy"));
    policy_free(p);
    tu_rmdir(dir);
}

static void test_include_and_include_dir(void **state) {
    char *dir = tu_mkdtemp();
    make_dir(dir, "include");
    make_dir(dir, "more");
    write_file(dir, "10-main.policy",
               "a * work vault deny\n"
               "!include include/extra\n"
               "!include-dir more\n"
               "!include-service c + include/c-rules\n"
               "* * @anyvm @anyvm deny\n");
    write_file(dir, "include/extra", "b * work vault allow\n");
    write_file(dir, "more/2-x.policy", "d * work vault allow target=personal\n");
    write_file(dir, "more/1-y.policy", "d * work vault deny\n");
    write_file(dir, "more/ignored.txt", "garbage\n");
    write_file(dir, "include/c-rules", "work vault allow\n$anyvm $anyvm allow,target=personal\n");
    struct policy_error err;
    struct policy *p = policy_load_dir(dir, &err);
    if (!p)
        fprintf(stderr, "%s:%d: %s\n", err.file, err.line, err.msg);
    assert_non_null(p);
    assert_int_equal(policy_rule_count(p), 7);
    assert_int_equal(decide(p, "a", "", "work", "vault").action, POLICY_DENY);
    struct policy_decision d = decide(p, "b", "", "work", "vault");
    assert_int_equal(d.action, POLICY_ALLOW);
    assert_non_null(strstr(d.file, "include/extra"));
    assert_int_equal(d.line, 1);
    assert_int_equal(decide(p, "d", "", "work", "vault").action, POLICY_DENY); /* 1-y first */
    assert_int_equal(decide(p, "c", "", "work", "vault").action, POLICY_ALLOW);
    assert_string_equal(decide(p, "c", "", "vault", "work").target, "personal");
    assert_int_equal(decide(p, "c", "x", "work", "vault").action, POLICY_DENY);
    policy_free(p);
    tu_rmdir(dir);
}

static void test_include_errors(void **state) {
    char *dir = tu_mkdtemp();
    struct policy_error err;
    write_file(dir, "10-main.policy", "# x\n!include nosuch\n");
    assert_null(policy_load_dir(dir, &err));
    assert_non_null(strstr(err.file, "10-main.policy"));
    assert_int_equal(err.line, 2);
    write_file(dir, "10-main.policy", "!include-dir nosuch\n");
    assert_null(policy_load_dir(dir, &err));
    assert_non_null(strstr(err.msg, "not a directory"));
    write_file(dir, "10-main.policy", "!include 10-main.policy\n"); /* a loop */
    assert_null(policy_load_dir(dir, &err));
    assert_non_null(strstr(err.msg, "nested"));
    tu_rmdir(dir);
}

static void test_broken_file_fails_whole_dir(void **state) {
    char *dir = tu_mkdtemp();
    write_file(dir, "10-good.policy", "s * work vault allow\n");
    write_file(dir, "20-broken.policy", "s * work vault allow\n\ns * work vault alow\n");
    write_file(dir, "30-good.policy", "* * @anyvm @anyvm deny\n");
    struct policy_error err;
    assert_null(policy_load_dir(dir, &err));
    assert_non_null(strstr(err.file, "20-broken.policy"));
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, "invalid action"));
    /* a broken included file names itself and its own line */
    write_file(dir, "20-broken.policy", "!include inc\n");
    write_file(dir, "inc", "\nbad line\n");
    assert_null(policy_load_dir(dir, &err));
    assert_non_null(strstr(err.file, "/inc"));
    assert_int_equal(err.line, 2);
    tu_rmdir(dir);
}

static void test_bad_file_name_fails_dir(void **state) {
    char *dir = tu_mkdtemp();
    write_file(dir, "10-Good.policy", "s * work vault allow\n");
    struct policy_error err;
    assert_null(policy_load_dir(dir, &err));
    assert_non_null(strstr(err.msg, "invalid file name"));
    tu_rmdir(dir);
    assert_null(policy_load_dir("/nonexistent/policy.d", &err));
    assert_non_null(strstr(err.msg, "cannot read directory"));
}

static void test_shipped_default_policy(void **state) {
    /* the source tree's policy/ directory, found from this file's path (relative to the
     * build directory, where meson runs the tests) */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *slash = strstr(dir, "tests/unit/test_policy.c");
    assert_non_null(slash);
    strcpy(slash, "policy");
    struct policy_error err;
    struct policy *p = policy_load_dir(dir, &err);
    if (!p)
        fprintf(stderr, "%s: %s:%d: %s\n", dir, err.file, err.line, err.msg);
    assert_non_null(p);
    struct policy_decision d = decide(p, "qubes.VMShell", "", "work", "@dispvm");
    assert_int_equal(d.action, POLICY_ALLOW);
    assert_string_equal(d.target, "@dispvm:default-dvm");
    d = decide(p, "qubes.OpenInVM", "", "work", "@dispvm");
    assert_string_equal(d.target, "@dispvm:default-dvm");
    assert_int_equal(decide(p, "qubes.VMShell", "", "work", "vault").action, POLICY_DENY);
    assert_int_equal(decide(p, "qubes.VMShell", "", "work", "@dispvm:other-dvm").action,
                     POLICY_DENY);
    assert_int_equal(decide(p, "qubes.Filecopy", "", "work", "@dispvm").action, POLICY_DENY);
    assert_int_equal(decide(p, "qubes.VMShell", "", "work", "dom0").action, POLICY_DENY);
    policy_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_and_deny),
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_no_match_denies),
        cmocka_unit_test(test_service_wildcard),
        cmocka_unit_test(test_argument_wildcard),
        cmocka_unit_test(test_argument_empty_plus),
        cmocka_unit_test(test_argument_specific),
        cmocka_unit_test(test_source_name),
        cmocka_unit_test(test_source_anyvm_not_host),
        cmocka_unit_test(test_source_adminvm),
        cmocka_unit_test(test_source_wildcard),
        cmocka_unit_test(test_source_tag_and_type),
        cmocka_unit_test(test_source_dispvm_tokens_parse_but_never_match),
        cmocka_unit_test(test_target_name),
        cmocka_unit_test(test_target_anyvm),
        cmocka_unit_test(test_target_adminvm),
        cmocka_unit_test(test_target_wildcard),
        cmocka_unit_test(test_target_tag_and_type),
        cmocka_unit_test(test_dispvm_resolves_through_source),
        cmocka_unit_test(test_dispvm_without_default_dispvm),
        cmocka_unit_test(test_dispvm_template_target),
        cmocka_unit_test(test_dispvm_requested_not_a_template),
        cmocka_unit_test(test_dispvm_tag_target),
        cmocka_unit_test(test_redirect_to_qube),
        cmocka_unit_test(test_redirect_to_dispvm),
        cmocka_unit_test(test_default_target),
        cmocka_unit_test(test_ask_denies_with_reason),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_nonexistent_target),
        cmocka_unit_test(test_malformed_request),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_parse_refuses_include),
        cmocka_unit_test(test_load_dir_order_and_filter),
        cmocka_unit_test(test_include_and_include_dir),
        cmocka_unit_test(test_include_errors),
        cmocka_unit_test(test_broken_file_fails_whole_dir),
        cmocka_unit_test(test_bad_file_name_fails_dir),
        cmocka_unit_test(test_shipped_default_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
