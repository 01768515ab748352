/* The Admin API dispatcher (src/daemon/api*.c) against recorded exchanges
 * (/work/shared/spec/admin-api-golden.txt; numbers refer to its entries). */
#include "testutil.h"

#include <ctype.h>

#include "api.h"
#include "app.h"
#include "strbuf.h"

struct fixture {
    char *dir;
    char *db;
    struct app app;
    struct strbuf reply;
};

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = tu_mkdtemp();
    assert_non_null(f->dir);
    f->db = tu_path(f->dir, "qubes.db");
    struct qerr err = {0};
    f->app.host_mem_mib = 4096;
    assert_int_equal(app_open(&f->app, f->db, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    app_close(&f->app);
    strbuf_free(&f->reply);
    free(f->db);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

/* Parses the raw request bytes and dispatches them; the reply is in f->reply. */
static enum api_result call(struct fixture *f, const char *req, size_t len) {
    uint8_t *buf = malloc(len + 1);
    memcpy(buf, req, len);
    struct wire_request r;
    assert_int_equal(wire_parse_request(buf, len, &r), 0);
    strbuf_reset(&f->reply);
    enum api_result res = api_dispatch(&f->app, &r, &f->reply);
    free(buf);
    return res;
}

/* One exchange, byte-exact. */
#define EXPECT(f, req, want)                                              \
    do {                                                                  \
        assert_int_equal(call((f), BYTES(req)), API_REPLIED);             \
        assert_bytes_equal((f)->reply.data, (f)->reply.len, BYTES(want)); \
    } while (0)

/* An error reply whose message is ours to word: the exception and framing must match. */
#define EXPECT_ERROR(f, req, exc)                                                             \
    do {                                                                                      \
        assert_int_equal(call((f), BYTES(req)), API_REPLIED);                                 \
        assert_true((f)->reply.len > sizeof("2\0" exc "\0\0"));                               \
        assert_memory_equal((f)->reply.data, "2\0" exc "\0\0", sizeof("2\0" exc "\0\0") - 1); \
        assert_int_equal((f)->reply.data[(f)->reply.len - 1], '\0');                          \
    } while (0)

#define CREATE_TPL "admin.vm.Create.TemplateVM+ dom0 name dom0\0name=tpl label=black"
#define CREATE_WORK "admin.vm.Create.AppVM+tpl dom0 name dom0\0name=work label=red"

static void make_tpl_work(struct fixture *f) {
    EXPECT(f, CREATE_TPL, "0\0");  /* 7 */
    EXPECT(f, CREATE_WORK, "0\0"); /* 11 */
}

static void test_list_fresh(void **state) { /* 1 */
    struct fixture *f = *state;
    EXPECT(f, "admin.vm.List+ dom0 name dom0\0",
           "0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n");
}

static void test_labels(void **state) { /* 3, 4, 5, 6 */
    struct fixture *f = *state;
    EXPECT(f, "admin.label.List+ dom0 name dom0\0",
           "0\0red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n");
    EXPECT(f, "admin.label.Get+red dom0 name dom0\0",
           "0\0"
           "0xcc0000");
    EXPECT(f, "admin.label.Index+red dom0 name dom0\0",
           "0\0"
           "1");
    EXPECT(f, "admin.label.Index+black dom0 name dom0\0",
           "0\0"
           "8");
    EXPECT(f, "admin.label.Get+nosuch dom0 name dom0\0",
           "2\0QubesLabelNotFoundError\0\0Label does not exist: nosuch\0");
}

static void test_vmclass_list(void **state) {
    /* The recording (2) also lists RemoteVM, a Qubes 4.4 class; the spec page and the
     * issue list these five, which is what dispenser implements. */
    struct fixture *f = *state;
    EXPECT(f, "admin.vmclass.List+ dom0 name dom0\0",
           "0\0AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n");
}

static void test_create_errors(void **state) { /* 8, 9, 10, 12 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.Create.AppVM+tpl dom0 name dom0\0name=1bad label=red",
           "2\0QubesValueError\0\0VM name cannot start with hyphen, underscore, dot or numbers\0");
    EXPECT(f, "admin.vm.Create.AppVM+tpl dom0 name dom0\0name=x label=nosuchlabel",
           "2\0ProtocolError\0\0Creation requested without key: label\0");
    EXPECT(f, "admin.vm.Create.AppVM+tpl dom0 name dom0\0name=x",
           "2\0ProtocolError\0\0Creation requested without key: label\0");
    EXPECT(f, CREATE_WORK, "2\0QubesVMAlreadyExistsError\0\0Qube already exists: work\0");
    assert_int_equal(f->app.n_qubes, 3);
}

static void test_list_after_create(void **state) { /* 13, 14 */
    struct fixture *f = *state;
    make_tpl_work(f);
    _cleanup_strbuf_ struct strbuf want = STRBUF_INIT;
    strbuf_append(&want, "0", 2);
    strbuf_printf(&want,
                  "dom0 class=AdminVM state=Running uuid=%s\n"
                  "tpl class=TemplateVM state=Halted uuid=%s\n"
                  "work class=AppVM state=Halted uuid=%s\n",
                  app_dom0(&f->app)->uuid, app_find(&f->app, "tpl")->uuid,
                  app_find(&f->app, "work")->uuid);
    assert_int_equal(call(f, BYTES("admin.vm.List+ dom0 name dom0\0")), API_REPLIED);
    assert_bytes_equal(f->reply.data, f->reply.len, want.data, want.len);
    assert_int_equal(call(f, BYTES("admin.vm.List+ dom0 name work\0")), API_REPLIED);
    assert_memory_equal(f->reply.data, "0", 2);
    assert_non_null(memmem(want.data, want.len, f->reply.data + 2, f->reply.len - 2));
}

static void test_generic_errors(void **state) { /* 15, 16, 17, 18 */
    struct fixture *f = *state;
    EXPECT(f, "admin.vm.List+ dom0 name nosuchvm\0",
           "2\0QubesVMNotFoundError\0\0No such domain: 'nosuchvm'\0");
    EXPECT(f, "admin.vm.List+ dom0 name 1bad\0",
           "2\0QubesValueError\0\0VM name cannot start with hyphen, underscore, dot or numbers\0");
    EXPECT(f, "admin.no.such.method+ dom0 name dom0\0",
           "2\0ProtocolError\0\0no such method: 'admin.no.such.method'\0");
    EXPECT(f, "admin.vm.List+ dom0 name dom0\0x", "2\0ProtocolError\0\0unexpected payload\0");
}

/* Methods of Qubes' Admin API that dispenser lacks: a Qubes error the tools can catch. */
static void test_not_implemented(void **state) {
    struct fixture *f = *state;
    EXPECT(f, "admin.backup.Info+x dom0 name dom0\0",
           "2\0QubesNotImplementedError\0\0`admin.backup.Info` is not implemented by dispenser\0");
    EXPECT(f, "admin.vm.volume.Import+private dom0 name dom0\0x",
           "2\0QubesNotImplementedError\0\0`admin.vm.volume.Import` is not implemented by "
           "dispenser\0");
    /* names Qubes does not have stay protocol errors */
    EXPECT_ERROR(f, "admin.vm.notes.Frob+ dom0 name dom0\0", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.Create.AdminVM+ dom0 name dom0\0", "ProtocolError");
    /* the destination is resolved first, as for every method */
    EXPECT_ERROR(f, "admin.backup.Info+x dom0 name nosuchvm\0", "QubesVMNotFoundError");
}

/* admin.vm.notes.*: qubesd's framing; unsafe code points stored as '_'; bad input
 * changes nothing. */
static void test_notes(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.notes.Get+ dom0 name work\0", "0\0");
    EXPECT(f, "admin.vm.notes.Set+ dom0 name work\0line\tone\nk\xc3\xbc\x1b[0m\xe2\x80\xae", "0\0");
    EXPECT(f, "admin.vm.notes.Get+ dom0 name work\0", "0\0line\tone\nk\xc3\xbc_[0m_");
    EXPECT_ERROR(f, "admin.vm.notes.Set+ dom0 name work\0\xff", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.notes.Set+x dom0 name work\0y", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.notes.Get+ dom0 name dom0\0", "ProtocolError");
    EXPECT(f, "admin.vm.notes.Get+ dom0 name work\0", "0\0line\tone\nk\xc3\xbc_[0m_");
    EXPECT(f, "admin.vm.notes.Set+ dom0 name work\0", "0\0"); /* empty: deleted */
    EXPECT(f, "admin.vm.notes.Get+ dom0 name work\0", "0\0");
}

/* admin.vm.volume.* framing and checks that come before any engine. */
static void test_volume_calls(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    assert_int_equal(call(f, BYTES("admin.vm.volume.CloneFrom+root dom0 name tpl\0")), API_REPLIED);
    assert_int_equal(f->reply.len, 2 + 32);
    assert_memory_equal(f->reply.data, "0\0", 2);
    for (size_t i = 2; i < f->reply.len; i++)
        assert_true(isalnum((unsigned char)f->reply.data[i]));
    EXPECT(f, "admin.vm.volume.CloneTo+root dom0 name work\0nosuchtoken",
           "2\0QubesVolumeCopyTokenNotFoundError\0\0Token to clone volume of qube was not "
           "found\0");
    EXPECT_ERROR(f, "admin.vm.volume.CloneTo+root dom0 name work\0", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.volume.CloneFrom+swap dom0 name tpl\0", "PermissionDenied");
    EXPECT_ERROR(f, "admin.vm.volume.Revert+root dom0 name tpl\0a/b", "PermissionDenied");
    EXPECT_ERROR(f, "admin.vm.volume.Revert+root dom0 name tpl\0x",
                 "QubesVolumeRevisionNotFoundError");
    EXPECT_ERROR(f,
                 "admin.vm.volume.Resize+private dom0 name work\0"
                 "12x",
                 "ProtocolError");
    EXPECT_ERROR(f,
                 "admin.vm.volume.Resize+volatile dom0 name work\0"
                 "1",
                 "QubesValueError");
    EXPECT_ERROR(f, "admin.vm.volume.Set.rw+root dom0 name tpl\0maybe", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.volume.Set.revisions_to_keep+root dom0 name tpl\0-1",
                 "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.volume.ListSnapshots+root dom0 name dom0\0", "ProtocolError");
}

static void test_shape_errors(void **state) {
    struct fixture *f = *state;
    EXPECT_ERROR(f, "admin.vm.List+x dom0 name dom0\0", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.property.Get+ dom0 name dom0\0", "ProtocolError");
    EXPECT_ERROR(f, "admin.label.List+ dom0 name dom0\0x", "ProtocolError");
    EXPECT_ERROR(f, "admin.vm.Start+ dom0 name dom0\0", "ProtocolError");
    EXPECT(f, "admin.vm.List+ dom0 keyword adminvm\0",
           "0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n");
}

static void test_source_must_be_dom0(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT_ERROR(f, "admin.vm.List+ work name dom0\0", "PermissionDenied");
    EXPECT_ERROR(f, "admin.vm.List+ ghost name dom0\0", "QubesVMNotFoundError");
}

static void test_property_get(void **state) { /* 19-25, 27, 28 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.property.Get+name dom0 name work\0", "0\0default=False type=str work");
    EXPECT(f, "admin.vm.property.Get+memory dom0 name work\0", "0\0default=True type=int 400");
    EXPECT(f, "admin.vm.property.Get+qid dom0 name work\0", "0\0default=False type=int 2");
    EXPECT(f, "admin.vm.property.Get+include_in_backups dom0 name work\0",
           "0\0default=True type=bool True");
    EXPECT(f, "admin.vm.property.Get+template dom0 name work\0", "0\0default=False type=vm tpl");
    EXPECT(f, "admin.vm.property.Get+netvm dom0 name work\0", "0\0default=True type=vm ");
    EXPECT(f, "admin.vm.property.Get+label dom0 name work\0", "0\0default=False type=label red");
    EXPECT(f, "admin.vm.property.Get+backup_timestamp dom0 name work\0",
           "0\0default=True type=int ");
    EXPECT(f, "admin.vm.property.Get+nosuch dom0 name work\0",
           "2\0QubesNoSuchPropertyError\0\0Invalid property 'nosuch' of work\0");
    EXPECT(f, "admin.vm.property.Get+maxmem dom0 name dom0\0", "0\0default=True type=int 4096");
}

static void test_property_get_default(void **state) { /* 29, 30 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.property.GetDefault+label dom0 name work\0", "0\0");
    EXPECT(f, "admin.vm.property.GetDefault+memory dom0 name work\0", "0\0type=int 400");
}

static void test_property_set(void **state) { /* 31-34 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.property.Set+label dom0 name work\0nosuchlabel",
           "2\0QubesLabelNotFoundError\0\0Label does not exist: nosuchlabel\0");
    EXPECT(f, "admin.vm.property.Set+memory dom0 name work\0abc",
           "2\0QubesValueError\0\0Failed to parse property value as int\0");
    EXPECT(f, "admin.vm.property.Get+memory dom0 name work\0", "0\0default=True type=int 400");
    EXPECT(f, "admin.vm.property.Set+label dom0 name work\0blue", "0\0");
    EXPECT(f, "admin.vm.property.Get+label dom0 name work\0", "0\0default=False type=label blue");
    EXPECT(f, "admin.vm.property.Reset+label dom0 name work\0x",
           "2\0ProtocolError\0\0unexpected payload\0");
}

static void test_property_set_nul_in_payload(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT_ERROR(f, "admin.vm.property.Set+kernelopts dom0 name work\0a\0b", "QubesValueError");
    EXPECT(f, "admin.vm.property.Get+kernelopts dom0 name work\0", "0\0default=True type=str ");
}

static void test_features(void **state) { /* 36-41 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.feature.Get+foo dom0 name work\0",
           "2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: foo\0");
    EXPECT(f, "admin.vm.feature.Set+foo dom0 name work\0bar", "0\0");
    EXPECT(f, "admin.vm.feature.Get+foo dom0 name work\0", "0\0bar");
    EXPECT(f, "admin.vm.feature.List+ dom0 name work\0", "0\0foo\n");
    EXPECT_ERROR(f, "admin.vm.feature.Set+preload-dispvm dom0 name work\0x", "PermissionDenied");
    EXPECT(f, "admin.vm.feature.Remove+nosuch dom0 name work\0",
           "2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: nosuch\0");
}

static void test_feature_bad_input(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.feature.Set+a/b dom0 name work\0x",
           "2\0QubesValueError\0\0feature name contains a disallowed character ('/' at offset "
           "1): feature names are made of A-Z a-z 0-9 _ . -\0");
    EXPECT(f, "admin.vm.feature.Set+foo dom0 name work\0caf\xc3\xa9",
           "2\0QubesValueError\0\0feature value contains a disallowed character (byte 0xc3 at "
           "offset 3): values are printable ASCII (0x20-0x7e)\0");
    EXPECT_ERROR(f, "admin.vm.feature.Set+foo dom0 name work\0a\nb", "QubesValueError");
    EXPECT(f, "admin.vm.feature.List+ dom0 name work\0", "0\0");
}

/* Length is not a character problem, and a name with a space or non-ASCII bytes gets
 * a Qubes error (not a dropped connection) whose message stays printable ASCII. */
static void test_feature_and_tag_limits(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    char req[512];
    int n = snprintf(req, sizeof(req), "admin.vm.feature.Set+%0300d dom0 name work", 0);
    req[n] = '\0';
    req[n + 1] = 'x';
    assert_int_equal(call(f, req, (size_t)n + 2), API_REPLIED);
    assert_bytes_equal(f->reply.data, f->reply.len,
                       BYTES("2\0QubesValueError\0\0feature name is 300 characters long: the "
                             "limit is 255\0"));
    EXPECT(f, "admin.vm.feature.Get+w\xc3\xb6rd dom0 name work\0",
           "2\0QubesValueError\0\0feature name contains a disallowed character (byte 0xc3 at "
           "offset 1): feature names are made of A-Z a-z 0-9 _ . -\0");
    EXPECT(f, "admin.vm.tag.Set+a b dom0 name work\0",
           "2\0QubesInvalidTagError\0\0tag contains a disallowed character (' ' at offset 1): "
           "tags are made of A-Z a-z 0-9 _ -\0");
    EXPECT(f, "admin.vm.property.Get+la bel dom0 name work\0",
           "2\0QubesValueError\0\0the argument of admin.vm.property.Get contains a disallowed "
           "character (' ' at offset 2): arguments are printable ASCII without spaces\0");
    EXPECT(f, "admin.vm.List+ dom0 name w\xc3\xb6rk\0",
           "2\0QubesValueError\0\0VM name contains illegal characters\0");
    EXPECT(f, "admin.vm.feature.List+ dom0 name work\0", "0\0");
    EXPECT(f, "admin.vm.tag.List+ dom0 name work\0", "0\0created-by-dom0\n");
}

static void test_feature_check_with_template(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.feature.Set+os dom0 name tpl\0Linux", "0\0");
    EXPECT(f, "admin.vm.feature.CheckWithTemplate+os dom0 name work\0", "0\0Linux");
    EXPECT_ERROR(f, "admin.vm.feature.Get+os dom0 name work\0", "QubesFeatureNotFoundError");
}

static void test_tags(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.tag.List+ dom0 name work\0", "0\0created-by-dom0\n");
    EXPECT(f, "admin.vm.tag.Set+t1 dom0 name work\0", "0\0");
    EXPECT(f, "admin.vm.tag.Get+t1 dom0 name work\0",
           "0\0"
           "1");
    EXPECT(f, "admin.vm.tag.Remove+t1 dom0 name work\0", "0\0");
    EXPECT(f, "admin.vm.tag.Get+t1 dom0 name work\0",
           "0\0"
           "0");
    EXPECT_ERROR(f, "admin.vm.tag.Remove+t1 dom0 name work\0", "QubesTagNotFoundError");
    EXPECT_ERROR(f, "admin.vm.tag.Set+a.b dom0 name work\0", "QubesInvalidTagError");
}

static void test_remove_and_globals(void **state) { /* 42, 59, 67, 70, 71, 74, 75 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT_ERROR(f, "admin.vm.Remove+ dom0 name tpl\0", "QubesVMInUseError");
    EXPECT(f, "admin.vm.property.Set+template_for_dispvms dom0 name work\0True", "0\0");
    EXPECT(f, "admin.property.Set+default_dispvm dom0 name dom0\0work", "0\0");
    EXPECT_ERROR(f, "admin.vm.Remove+ dom0 name work\0", "QubesVMInUseError");
    EXPECT(f, "admin.property.Reset+default_dispvm dom0 name dom0\0", "0\0");
    EXPECT(f, "admin.vm.Remove+ dom0 name work\0", "0\0");
    EXPECT(f, "admin.vm.Remove+ dom0 name work\0",
           "2\0QubesVMNotFoundError\0\0No such domain: 'work'\0");
}

static void test_global_get(void **state) { /* 47 */
    struct fixture *f = *state;
    EXPECT(f, "admin.property.Get+default_template dom0 name dom0\0", "0\0default=True type=vm ");
    EXPECT(f, "admin.property.Get+default_qrexec_timeout dom0 name dom0\0",
           "0\0default=True type=int 60");
    EXPECT_ERROR(f, "admin.property.Get+nosuch dom0 name dom0\0", "QubesNoSuchPropertyError");
}

static void test_current_state(void **state) { /* 43 */
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT(f, "admin.vm.CurrentState+ dom0 name work\0",
           "0\0mem=0 mem_static_max=0 cputime=0 power_state=Halted");
}

static void test_lifecycle_without_engine(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    EXPECT_ERROR(f, "admin.vm.Start+ dom0 name work\0", "QubesException");
    EXPECT_ERROR(f, "admin.vm.Shutdown+force+wait dom0 name work\0", "QubesVMNotStartedError");
    EXPECT_ERROR(f, "admin.vm.Pause+ dom0 name work\0", "QubesVMNotRunningError");
    EXPECT_ERROR(f, "admin.vm.Shutdown+bogus dom0 name work\0", "PermissionDenied");
}

/* qubesd sorts GetAll by (load_stage, order, name), so the qube-valued and
 * template-dependent properties come last (recording 35). */
static void test_getall_order_matches_recording(void **state) {
    struct fixture *f = *state;
    make_tpl_work(f);
    assert_int_equal(call(f, BYTES("admin.vm.property.GetAll+ dom0 name work\0")), API_REPLIED);
    strbuf_str(&f->reply);
    const char *tail = "audiovm default=True type=vm dom0\n"
                       "bootmode default=True type=str default\n"
                       "default_dispvm default=True type=vm \n"
                       "guivm default=True type=vm dom0\n"
                       "kernelopts default=True type=str \n"
                       "management_dispvm default=True type=vm \n"
                       "netvm default=True type=vm \n"
                       "template default=False type=vm tpl\n";
    size_t tl = strlen(tail);
    assert_true(f->reply.len > tl);
    assert_bytes_equal(f->reply.data + f->reply.len - tl, tl, tail, tl);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_list_fresh),
        T(test_labels),
        T(test_vmclass_list),
        T(test_create_errors),
        T(test_list_after_create),
        T(test_generic_errors),
        T(test_shape_errors),
        T(test_not_implemented),
        T(test_notes),
        T(test_volume_calls),
        T(test_source_must_be_dom0),
        T(test_property_get),
        T(test_property_get_default),
        T(test_property_set),
        T(test_property_set_nul_in_payload),
        T(test_features),
        T(test_feature_bad_input),
        T(test_feature_and_tag_limits),
        T(test_feature_check_with_template),
        T(test_tags),
        T(test_remove_and_globals),
        T(test_global_get),
        T(test_current_state),
        T(test_lifecycle_without_engine),
        T(test_getall_order_matches_recording),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
