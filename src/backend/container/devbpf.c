/* The cgroup2 device program (devbpf.h). Its context is struct bpf_cgroup_dev_ctx:
 * access_type = (access << 16) | type, major, minor; it returns 1 to allow. For each rule:
 *
 *     if type != T goto next; if major != M goto next; [if minor != m goto next]
 *     if access & ~A goto next; return 1
 *   next: ...
 *     return 0
 *
 * Why raw bpf(2) and not libbpf: libbpf's value is loading compiled BPF objects (clang at
 * build time, BTF); a program this small is a dozen instructions written here, and the
 * four commands it needs (PROG_LOAD, PROG_ATTACH, PROG_QUERY, PROG_DETACH) are a few
 * lines each. The kernel's verifier checks it at every load all the same. */
#include "devbpf.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"

static int sys_bpf(int cmd, union bpf_attr *attr) {
    long r = syscall(SYS_bpf, cmd, attr, sizeof(*attr));
    return r < 0 ? -errno : (int)r;
}

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    return (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}
#define LDX_W(dst, src, off) insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
#define MOV_REG(dst, src) insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define MOV_IMM(dst, imm) insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
#define AND_IMM(dst, imm) insn(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm)
#define RSH_IMM(dst, imm) insn(BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm)
#define JNE_IMM(dst, imm, off) insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
#define EXIT() insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

enum { R0, R1, R2, R3, R4, R5 }; /* R1: the context; R2 access, R3 type, R4 major, R5 minor */

#define PROLOGUE_LEN 6
#define RULE_MAX_LEN 8

static size_t emit_rule(struct bpf_insn *p, const struct devbpf_rule *r) {
    size_t len = r->minor >= 0 ? RULE_MAX_LEN : RULE_MAX_LEN - 1, i = 0;
    /* a jump's offset counts from the next instruction: len - i - 1 lands past the rule */
    p[i] = JNE_IMM(R3, r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR, len - i - 1), i++;
    p[i] = JNE_IMM(R4, (int32_t)r->major, len - i - 1), i++;
    if (r->minor >= 0)
        p[i] = JNE_IMM(R5, r->minor, len - i - 1), i++;
    p[i++] = MOV_REG(R0, R2);
    p[i++] = AND_IMM(R0, (int32_t)(~r->access & 0xffff)); /* access asked beyond the rule's */
    p[i] = JNE_IMM(R0, 0, len - i - 1), i++;
    p[i++] = MOV_IMM(R0, 1);
    p[i++] = EXIT();
    return i;
}

int devbpf_load(const struct devbpf_rule *rules, size_t n) {
    size_t cap = PROLOGUE_LEN + n * RULE_MAX_LEN + 2, k = 0;
    struct bpf_insn *prog = calloc(cap, sizeof(*prog));
    if (!prog)
        return -ENOMEM;
    prog[k++] = LDX_W(R2, R1, offsetof(struct bpf_cgroup_dev_ctx, access_type));
    prog[k++] = MOV_REG(R3, R2);
    prog[k++] = AND_IMM(R3, 0xffff);
    prog[k++] = RSH_IMM(R2, 16);
    prog[k++] = LDX_W(R4, R1, offsetof(struct bpf_cgroup_dev_ctx, major));
    prog[k++] = LDX_W(R5, R1, offsetof(struct bpf_cgroup_dev_ctx, minor));
    for (size_t i = 0; i < n; i++)
        k += emit_rule(prog + k, &rules[i]);
    prog[k++] = MOV_IMM(R0, 0);
    prog[k++] = EXIT();
    union bpf_attr attr = {0};
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uintptr_t)prog;
    attr.insn_cnt = (uint32_t)k;
    attr.license = (uintptr_t) "GPL";
    memcpy(attr.prog_name, "dispenser_dev", sizeof("dispenser_dev"));
    int fd = sys_bpf(BPF_PROG_LOAD, &attr);
    free(prog);
    return fd;
}

static int prog_id(int fd, uint32_t *id) {
    struct bpf_prog_info info = {0};
    union bpf_attr attr = {0};
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = sizeof(info);
    attr.info.info = (uintptr_t)&info;
    int r = sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
    *id = info.id;
    return r;
}

static int detach(int cgroup_fd, int prog_fd) {
    union bpf_attr attr = {0};
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    return sys_bpf(BPF_PROG_DETACH, &attr);
}

/* Every device program attached right at the cgroup but keep (an earlier daemon's). */
static int detach_others(int cgroup_fd, int keep_fd) {
    uint32_t keep, ids[64];
    int r = prog_id(keep_fd, &keep);
    union bpf_attr attr = {0};
    attr.query.target_fd = (uint32_t)cgroup_fd;
    attr.query.attach_type = BPF_CGROUP_DEVICE;
    attr.query.prog_ids = (uintptr_t)ids;
    attr.query.prog_cnt = ELEMENTSOF(ids);
    if (r < 0 || (r = sys_bpf(BPF_PROG_QUERY, &attr)) < 0)
        return r;
    for (uint32_t i = 0; i < attr.query.prog_cnt && r >= 0; i++) {
        if (ids[i] == keep)
            continue;
        union bpf_attr get = {0};
        get.prog_id = ids[i];
        _cleanup_close_ int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &get);
        r = fd < 0 ? fd : detach(cgroup_fd, fd);
    }
    return r;
}

int devbpf_attach(int cgroup_fd, int prog_fd, int old_fd) {
    union bpf_attr attr = {0};
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    /* MULTI: a program of a parent cgroup (systemd's for the daemon's unit) still applies */
    attr.attach_flags = BPF_F_ALLOW_MULTI | (old_fd >= 0 ? BPF_F_REPLACE : 0);
    attr.replace_bpf_fd = old_fd >= 0 ? (uint32_t)old_fd : 0;
    int r = sys_bpf(BPF_PROG_ATTACH, &attr);
    if (r >= 0 && old_fd < 0)
        r = detach_others(cgroup_fd, prog_fd);
    return r < 0 ? r : 0;
}
