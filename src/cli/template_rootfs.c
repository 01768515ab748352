/* Root file systems for templates: busybox (seconds, the test template), Debian through
 * debootstrap, or an imported tar archive (e.g. `docker export`). */
#include "template_rootfs.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strbuf.h"

#define BUSYBOX "/bin/busybox"
#define USER_ID 1000
#define DEBIAN_MIRROR "http://deb.debian.org/debian"

_printf_(2, 3) static int fail(struct cli_err *e, const char *fmt, ...) {
    va_list ap;
    snprintf(e->exc, sizeof(e->exc), "QubesException");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_errno(struct cli_err *e, const char *what, const char *path) {
    return fail(e, "%s %s: %s", what, path, strerror(errno));
}

static char *path_in(const char *root, const char *rel) {
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "%s/%s", root, rel);
    strbuf_str(&sb);
    return sb.data;
}

/* mkdir -p root/rel; the last component gets mode and owner (explicitly: no umask). */
static int make_dir(const char *root, const char *rel, mode_t mode, uid_t owner,
                    struct cli_err *e) {
    _cleanup_free_ char *p = path_in(root, rel);
    for (char *s = p + strlen(root) + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        int r = mkdir(p, 0755);
        *s = '/';
        if (r < 0 && errno != EEXIST)
            return fail_errno(e, "cannot create", p);
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return fail_errno(e, "cannot create", p);
    if (chmod(p, mode) < 0 || chown(p, owner, owner) < 0)
        return fail_errno(e, "cannot set mode/owner of", p);
    return 0;
}

static int write_text(const char *root, const char *rel, const char *text, mode_t mode,
                      struct cli_err *e) {
    _cleanup_free_ char *p = path_in(root, rel);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) < 0)
        return fail_errno(e, "cannot write", p);
    return 0;
}

static int append_text(const char *root, const char *rel, const char *text, struct cli_err *e) {
    _cleanup_free_ char *p = path_in(root, rel);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len)
        return fail_errno(e, "cannot append to", p);
    return 0;
}

static int wait_child(pid_t pid, const char *name, int *status, struct cli_err *e) {
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR)
            return fail_errno(e, "cannot wait for", name);
    return 0;
}

/* The last lines of what a quiet child wrote, to stderr: why it failed. */
static void show_tail(int fd, const char *name) {
    char buf[4096];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
    if (n <= 0)
        return;
    buf[n] = '\0';
    const char *start = from > 0 && strchr(buf, '\n') ? strchr(buf, '\n') + 1 : buf;
    fprintf(stderr, "%s: the end of %s's output:\n%s", cli_prog, name, start);
    if (buf[n - 1] != '\n')
        fputc('\n', stderr);
}

/* Runs argv (PATH lookup); fails unless it exits 0. quiet: its output (stdout and
 * stderr) is kept aside and shown only if it fails. Like system(), we ignore ^C while
 * the child runs: the child dies of it and we live to tell the daemon and remove the
 * unfinished template. */
static int run(char *const argv[], bool quiet, struct cli_err *e) {
    int out = quiet ? memfd_create("output", MFD_CLOEXEC) : -1;
    fflush(stdout);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    pid_t pid = fork();
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        if (out >= 0) {
            dup2(out, STDOUT_FILENO);
            dup2(out, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "%s: cannot run %s: %s\n", cli_prog, argv[0], strerror(errno));
        _exit(127);
    }
    int status, r = pid < 0 ? fail_errno(e, "cannot fork for", argv[0])
                            : wait_child(pid, argv[0], &status, e);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    bool ok = r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (out >= 0) {
        if (r == 0 && !ok)
            show_tail(out, argv[0]);
        close(out);
    }
    if (r < 0)
        return r;
    if (ok)
        return 0;
    if (WIFEXITED(status))
        return fail(e, "%s failed with exit status %d", argv[0], WEXITSTATUS(status));
    return fail(e, "%s killed by signal %d", argv[0], WTERMSIG(status));
}

/* ---- pieces every template gets ---- */

/* Mount points the engine needs (/rw is where the private volume goes: made here, the
 * engine need not create it in the template's upper, which would look like a change and
 * make a new revision at every start), and the directories the agent reads services
 * and start-up scripts from. An imported archive may lack any of them. */
static int ensure_skeleton(const char *root, struct cli_err *e) {
    static const struct {
        const char *rel;
        mode_t mode;
    } dirs[] = {
        {"dev", 0755},  {"proc", 0555},          {"sys", 0555},
        {"tmp", 01777}, {"run", 0755},           {"var/tmp", 01777},
        {"rw", 0755},   {"etc/qubes-rpc", 0755}, {"etc/dispenser/startup.d", 0755},
    };
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        _cleanup_free_ char *p = path_in(root, dirs[i].rel);
        struct stat st;
        if (lstat(p, &st) == 0)
            continue; /* keep what the archive/debootstrap made */
        if (make_dir(root, dirs[i].rel, dirs[i].mode, 0, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- qrexec: services and the client, in every template ---- */

/* qubes.Filecopy: a tar stream (what qvm-copy-to-vm sends) into
 * ~/QubesIncoming/<caller>/. The names are checked before anything is unpacked (tar's
 * own defaults differ between busybox and GNU), it is unpacked into an empty staging
 * directory, and nothing already there is overwritten. */
static const char filecopy_sh[] =
    "#!/bin/sh\n"
    "# qubes.Filecopy (dispenser): unpacks the tar stream on stdin into\n"
    "# ~/QubesIncoming/<calling qube>/. Absolute names and '..' are refused before anything\n"
    "# is written; existing files are never overwritten.\n"
    "set -eu\n"
    "from=${QREXEC_REMOTE_DOMAIN:-}\n"
    "case $from in ''|.*|*/*) echo \"qubes.Filecopy: bad caller name '$from'\" >&2; exit 1 ;; "
    "esac\n"
    "incoming=\"${HOME:-/tmp}/QubesIncoming\"\n"
    "dest=\"$incoming/$from\"\n"
    "mkdir -p \"$dest\"\n"
    "stage=$(mktemp -d \"$incoming/.filecopy.XXXXXX\")\n"
    "trap 'rm -rf \"$stage\"' EXIT\n"
    "cat >\"$stage/stream.tar\"\n"
    "# busybox tar lists names already stripped of '/' and '../', with a warning\n"
    "tar -tf \"$stage/stream.tar\" >\"$stage/names\" 2>\"$stage/warnings\"\n"
    "if [ -s \"$stage/warnings\" ]; then\n"
    "    echo \"qubes.Filecopy: refusing unsafe archive: $(head -n 1 \"$stage/warnings\")\" >&2\n"
    "    exit 1\n"
    "fi\n"
    "while IFS= read -r name; do\n"
    "    case \"/$name/\" in\n"
    "    //*|*/../*) echo \"qubes.Filecopy: refusing unsafe name: $name\" >&2; exit 1 ;;\n"
    "    esac\n"
    "done <\"$stage/names\"\n"
    "mkdir \"$stage/files\"\n"
    "tar -xf \"$stage/stream.tar\" -C \"$stage/files\"\n"
    "status=0\n"
    "for f in \"$stage/files\"/* \"$stage/files\"/.[!.]* \"$stage/files\"/..?*; do\n"
    "    [ -e \"$f\" ] || [ -L \"$f\" ] || continue\n"
    "    name=${f##*/}\n"
    "    if [ -e \"$dest/$name\" ] || [ -L \"$dest/$name\" ]; then\n"
    "        echo \"qubes.Filecopy: $dest/$name exists: not overwritten\" >&2\n"
    "        status=1\n"
    "        continue\n"
    "    fi\n"
    "    mv \"$f\" \"$dest/\"\n"
    "done\n"
    "exit $status\n";

/* qubes.OpenInVM: the file on stdin, its name in the argument. The handler's stdout
 * goes back to the caller; without any handler, a description of the file does. */
static const char openinvm_sh[] =
    "#!/bin/sh\n"
    "# qubes.OpenInVM (dispenser): stdin is the file, QREXEC_SERVICE_ARGUMENT its name.\n"
    "# Saved to a temporary directory and opened with /etc/dispenser/open-handler if it is\n"
    "# executable, else mimeopen -n or xdg-open, else described; stdout goes to the caller.\n"
    "set -u\n"
    "name=${QREXEC_SERVICE_ARGUMENT:-file}\n"
    "name=${name##*/}\n"
    "case $name in ''|.|..) name=file ;; esac\n"
    "dir=$(mktemp -d \"${TMPDIR:-/tmp}/openinvm.XXXXXX\") || exit 1\n"
    "trap 'rm -rf \"$dir\"' EXIT\n"
    "file=\"$dir/$name\"\n"
    "cat >\"$file\" || exit 1\n"
    "if [ -x /etc/dispenser/open-handler ]; then\n"
    "    /etc/dispenser/open-handler \"$file\"\n"
    "elif command -v mimeopen >/dev/null 2>&1; then\n"
    "    mimeopen -n \"$file\"\n"
    "elif command -v xdg-open >/dev/null 2>&1; then\n"
    "    xdg-open \"$file\"\n"
    "else\n"
    "    echo \"name: $name\"\n"
    "    echo \"size: $(wc -c <\"$file\" | tr -d ' ') bytes\"\n"
    "    if command -v file >/dev/null 2>&1; then\n"
    "        echo \"type: $(file -b \"$file\")\"\n"
    "    else\n"
    "        echo \"type: unknown (no 'file' here); first bytes:\"\n"
    "        head -c 200 \"$file\"\n"
    "        echo\n"
    "    fi\n"
    "fi\n";

static const char getdate_sh[] = "#!/bin/sh\n"
                                 "# qubes.GetDate (dispenser): the qube's time, UTC.\n"
                                 "exec date -u +%FT%T\n";

/* The engine binds the agent into every qube at /run/dispenser/bin; /usr/bin gets the
 * name programs expect. An imported Qubes template's own qrexec-client-vm speaks vchan,
 * which no qube here has: replaced. */
static int link_client_vm(const char *root, struct cli_err *e) {
    _cleanup_free_ char *p = path_in(root, "usr/bin/qrexec-client-vm");
    struct stat st;
    if (make_dir(root, "usr/bin", 0755, 0, e) < 0)
        return -1;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return fail(e, "%s is a directory", p);
    if ((unlink(p) < 0 && errno != ENOENT) ||
        symlink("/run/dispenser/bin/qrexec-client-vm", p) < 0 || lchown(p, 0, 0) < 0)
        return fail_errno(e, "cannot create", p);
    return 0;
}

/* Ours replace any the template had: qvm-copy-to-vm here sends tar, not Qubes' qfile
 * protocol. */
static int qrexec_services(const char *root, struct cli_err *e) {
    static const struct {
        const char *rel, *text;
    } services[] = {
        {"etc/qubes-rpc/qubes.Filecopy", filecopy_sh},
        {"etc/qubes-rpc/qubes.OpenInVM", openinvm_sh},
        {"etc/qubes-rpc/qubes.GetDate", getdate_sh},
    };
    for (size_t i = 0; i < ELEMENTSOF(services); i++) {
        _cleanup_free_ char *p = path_in(root, services[i].rel);
        if (unlink(p) < 0 && errno != ENOENT) /* never write through a planted symlink */
            return fail_errno(e, "cannot replace", p);
        if (write_text(root, services[i].rel, services[i].text, 0755, e) < 0)
            return -1;
        if (chown(p, 0, 0) < 0)
            return fail_errno(e, "cannot set the owner of", p);
    }
    return link_client_vm(root, e);
}

/* What every template gets last, whatever built it. */
static int rootfs_finish(const char *root, struct cli_err *e) {
    if (ensure_skeleton(root, e) < 0)
        return -1;
    return qrexec_services(root, e);
}

/* ---- busybox ---- */

/* The template has no libc: a dynamically linked busybox (package "busybox") would not
 * run in it. A PT_INTERP program header is what makes an ELF file dynamic. */
static bool elf_has_interp(const char *path) {
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    Elf64_Ehdr eh;
    if (fd < 0 || pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
        return true; /* not something we can vouch for */
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        off_t off = (off_t)eh.e_phoff + (off_t)i * eh.e_phentsize;
        if (pread(fd, &ph, sizeof(ph), off) != sizeof(ph) || ph.p_type == PT_INTERP)
            return true;
    }
    return false;
}

static int busybox_dirs(const char *root, struct cli_err *e) {
    static const struct {
        const char *rel;
        mode_t mode;
        uid_t owner;
    } dirs[] = {
        {"bin", 0755, 0},      {"sbin", 0755, 0}, {"usr/bin", 0755, 0},
        {"usr/sbin", 0755, 0}, {"etc", 0755, 0},  {"var", 0755, 0},
        {"root", 0700, 0},     {"home", 0755, 0}, {"home/user", 0755, USER_ID},
    };
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
        if (make_dir(root, dirs[i].rel, dirs[i].mode, dirs[i].owner, e) < 0)
            return -1;
    return ensure_skeleton(root, e);
}

static int link_applet(const char *root, const char *rel, struct cli_err *e) {
    _cleanup_free_ char *p = path_in(root, rel);
    /* "linuxrc" (no directory) is for initramfs use; bin/busybox is the binary itself */
    if (!strchr(rel, '/') || streq(rel, "bin/busybox"))
        return 0;
    if (symlink(BUSYBOX, p) < 0 && errno != EEXIST)
        return fail_errno(e, "cannot create", p);
    return 0;
}

/* One symlink per applet, where `busybox --list-full` says it lives. */
static int busybox_applets(const char *root, struct cli_err *e) {
    FILE *f = popen(BUSYBOX " --list-full", "r");
    if (!f)
        return fail_errno(e, "cannot run", BUSYBOX);
    char line[256];
    int r = 0;
    while (r == 0 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *rel = line + strspn(line, "/");
        if (*rel)
            r = link_applet(root, rel, e);
    }
    int status = pclose(f);
    if (r == 0 && status != 0)
        return fail(e, "%s --list-full failed", BUSYBOX);
    return r;
}

static int busybox_etc(const char *root, struct cli_err *e) {
    if (write_text(root, "etc/passwd",
                   "root:x:0:0:root:/root:/bin/sh\n"
                   "user:x:1000:1000:user:/home/user:/bin/sh\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                   0644, e) < 0 ||
        write_text(root, "etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", 0644, e) < 0 ||
        write_text(root, "etc/hostname", "", 0644, e) < 0 ||
        write_text(root, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0644, e) < 0 ||
        write_text(root, "etc/os-release",
                   "NAME=\"BusyBox\"\nID=busybox\n"
                   "PRETTY_NAME=\"BusyBox (dispenser template)\"\n",
                   0644, e) < 0)
        return -1;
    return 0;
}

int rootfs_build_busybox(const char *dir, struct cli_err *err) {
    if (access(BUSYBOX, X_OK) < 0)
        return fail(err, "%s not found: install the Debian package 'busybox-static'", BUSYBOX);
    if (elf_has_interp(BUSYBOX))
        return fail(err,
                    "%s is not statically linked: install the Debian package "
                    "'busybox-static' (it replaces 'busybox')",
                    BUSYBOX);
    if (busybox_dirs(dir, err) < 0)
        return -1;
    _cleanup_free_ char *dest = path_in(dir, "bin/busybox");
    char *const cp[] = {"cp", "--", BUSYBOX, dest, NULL};
    if (run(cp, false, err) < 0)
        return -1;
    if (chmod(dest, 0755) < 0)
        return fail_errno(err, "cannot chmod", dest);
    if (busybox_applets(dir, err) < 0 || busybox_etc(dir, err) < 0)
        return -1;
    return rootfs_finish(dir, err);
}

/* ---- Debian ---- */

static bool in_path(const char *prog) {
    static const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                       "/usr/bin",        "/sbin",          "/bin"};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        _cleanup_free_ char *p = path_in(dirs[i], prog);
        if (access(p, X_OK) == 0)
            return true;
    }
    return false;
}

static int debootstrap(const char *dir, const struct rootfs_debian *o, bool quiet,
                       struct cli_err *e) {
    _cleanup_strbuf_ struct strbuf include = STRBUF_INIT;
    char *argv[8];
    size_t n = 0;
    argv[n++] = "debootstrap";
    argv[n++] = "--variant=minbase";
    if (o->packages && *o->packages) {
        strbuf_printf(&include, "--include=%s", o->packages);
        argv[n++] = (char *)strbuf_str(&include);
    }
    argv[n++] = (char *)o->suite;
    argv[n++] = (char *)dir;
    argv[n++] = (char *)(o->mirror ? o->mirror : DEBIAN_MIRROR);
    argv[n] = NULL;
    return run(argv, quiet, e);
}

/* The qube's user (uid 1000, as in Qubes), added by editing the databases directly:
 * no need to run the guest's adduser under chroot. No password: the agent runs the
 * user's services without logging in. */
static int debian_user(const char *dir, struct cli_err *e) {
    if (append_text(dir, "etc/passwd", "user:x:1000:1000:user:/home/user:/bin/bash\n", e) < 0 ||
        append_text(dir, "etc/group", "user:x:1000:\n", e) < 0 ||
        append_text(dir, "etc/shadow", "user:*:19000:0:99999:7:::\n", e) < 0 ||
        append_text(dir, "etc/gshadow", "user:!::\n", e) < 0 ||
        make_dir(dir, "home/user", 0755, USER_ID, e) < 0)
        return -1;
    _cleanup_free_ char *skel = path_in(dir, "etc/skel/.");
    _cleanup_free_ char *home = path_in(dir, "home/user");
    char *const cp[] = {"cp", "-a", "--", skel, home, NULL};
    char *const chown[] = {"chown", "-R", "--no-dereference", "1000:1000", "--", home, NULL};
    if (run(cp, false, e) < 0 || run(chown, false, e) < 0)
        return -1;
    return 0;
}

/* Downloaded packages and package lists are tens of MB that every qube would carry;
 * `apt-get update` in the template brings the lists back when needed. */
static int debian_clean(const char *dir, struct cli_err *e) {
    _cleanup_free_ char *archives = path_in(dir, "var/cache/apt/archives");
    _cleanup_free_ char *lists = path_in(dir, "var/lib/apt/lists");
    _cleanup_free_ char *cache = path_in(dir, "var/cache/apt");
    char *const find[] = {"find", archives, cache,   lists,   "-maxdepth", "1",     "-type",
                          "f",    "(",      "-name", "*.deb", "-o",        "-name", "*.bin",
                          "-o",   "-name",  "*_*",   ")",     "-delete",   NULL};
    if (run(find, false, e) < 0)
        return -1;
    return write_text(dir, "etc/hostname", "", 0644, e);
}

int rootfs_build_debian(const char *dir, const struct rootfs_debian *o, bool quiet,
                        struct cli_err *err) {
    if (!in_path("debootstrap"))
        return fail(err, "debootstrap not found: install the Debian package 'debootstrap'");
    printf("Running debootstrap (%s, minbase%s%s) into %s%s ...\n", o->suite,
           o->packages ? " + " : "", o->packages ? o->packages : "", dir,
           quiet ? "; its output with -v" : "");
    if (debootstrap(dir, o, quiet, err) < 0)
        return -1;
    printf("Adding user 'user' (1000) and cleaning the apt caches ...\n");
    if (debian_user(dir, err) < 0 || debian_clean(dir, err) < 0)
        return -1;
    return rootfs_finish(dir, err);
}

/* ---- import ---- */

/* tar picks the decompressor itself from the data (-f on a file). Owners are numeric:
 * the archive's ids are the qube's ids, whatever names the host has. File capabilities
 * travel as xattrs; everything else (SELinux labels, ...) is left behind. */
int rootfs_import_tar(const char *dir, const char *tarball, struct cli_err *err) {
    if (access(tarball, R_OK) < 0)
        return fail_errno(err, "cannot read", tarball);
    printf("Extracting %s ...\n", tarball);
    char *const tar[] = {"tar",
                         "-x",
                         "--numeric-owner",
                         "-p",
                         "--xattrs",
                         "--xattrs-include=security.capability",
                         "-f",
                         (char *)tarball,
                         "-C",
                         (char *)dir,
                         NULL};
    if (run(tar, false, err) < 0)
        return -1;
    return rootfs_finish(dir, err);
}
