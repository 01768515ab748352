/* The QEMU engine's entry in the registry: micro-VMs (QEMU's microvm machine) booting
 * Debian's kernel with our initramfs. Options (--engine-option qemu.KEY=VALUE): binary,
 * guest-dir (vmlinux + initramfs.cpio, from scripts/build-vm-guest.sh), kernels-dir
 * (other guests by name, default GUEST_DIR/kernels), accel=auto|kvm|tcg, vmux (the
 * dispenser-vmux binary, default LIBEXECDIR/dispenser/dispenser-vmux). Per qube
 * (features qemu-KEY): kernel (a name in the kernels dir), kernelopts, init, balloon
 * (0: no virtio-balloon; see qemu_balloon.h). */
#pragma once
#include "backend.h"

struct backend *qemu_backend_new(sd_event *loop, const struct backend_config *cfg,
                                 struct backend_why *why);
