/* What each property means here (admin.vm.property.Help, admin.property.Help, shown by
 * qvm-prefs/qubes-prefs --help-properties): Qubes' meaning, and what it does on each of
 * our engines (container, qemu) where that differs, or that it is kept without effect.
 * One plain-text paragraph each; every property has one (a unit test checks). */
#include "props.h"

static const char *const VM_HELP[PROP_COUNT] = {
    [P_APPVM_DEFAULT_BOOTMODE] = "Boot mode of the qubes based on this template. Read-only: "
                                 "dispenser has no boot modes (Qubes' boot-mode.* features), "
                                 "so it is always default.",
    [P_AUDIOVM] = "Qube that would play and record this qube's sound. Kept for Qubes' tools: "
                  "qubes here get no sound device, whatever it names. Defaults to the global "
                  "default_audiovm.",
    [P_BOOTMODE] = "Boot mode of the qube. Read-only: dispenser has no boot modes, so it is "
                   "always default.",
    [P_DEVICES_DENIED] = "Device interface codes this qube may never be given, as Qubes "
                         "writes them: a class letter (b, u, m, p or *) and six hex digits or "
                         "*, one after another; empty denies nothing.",
    [P_GATEWAY6] = "IPv6 address of the qube's gateway. Read-only and always empty: qubes get "
                   "no IPv6 here.",
    [P_GUIVM] = "Qube that would show this qube's windows. Kept for Qubes' tools: windows of "
                "qubes with a GUI are shown on the host's desktop (docs/gui.md), whatever it "
                "names. Defaults to the global default_guivm.",
    [P_INSTALLED_BY_RPM] = "Whether the qube's image came from a package tracked by the host's "
                           "package manager. Kept for Qubes' tools: templates here are built "
                           "or imported by qvm-template, so it is False unless set.",
    [P_IP6] = "IPv6 address of the qube. Read-only and always empty: qubes get no IPv6 here.",
    [P_KEYBOARD_LAYOUT] = "Keyboard layout of the qube, LAYOUT+VARIANT+OPTIONS as X11 names "
                          "them (us++ by default, or the layout of its guivm).",
    [P_STUBDOM_MEM] = "Memory, in MiB, of the stub domain that runs an HVM qube's emulator "
                      "under Xen. Kept for Qubes' tools: neither engine has stub domains.",
    [P_STUBDOM_UUID] = "Unique id of the qube's stub domain. Read-only and always empty: "
                       "neither engine has stub domains.",
    [P_STUBDOM_XID] = "Domain id of the qube's stub domain. Read-only and always -1: neither "
                      "engine has stub domains.",
    [P_VISIBLE_GATEWAY6] = "IPv6 gateway as the qube sees it. Read-only and always empty: "
                           "qubes get no IPv6 here.",
    [P_VISIBLE_IP6] = "IPv6 address as the qube sees it. Read-only and always empty: qubes "
                      "get no IPv6 here.",
    [P_XID] = "Number of the qube's current run, as Qubes shows a Xen domain id: a new, larger "
              "one at every start, -1 while the qube is halted. Read-only.",
    [P_AUTO_CLEANUP] = "Remove the disposable when it shuts down. True for disposables made by "
                       "admin.vm.CreateDisposable (qvm-run --dispvm).",
    [P_AUTOSTART] = "Start the qube when the host boots. Kept for Qubes' tools: dispenserd does "
                    "not start qubes by itself (preloaded disposables excepted).",
    [P_BACKUP_TIMESTAMP] = "Time of the qube's last backup, in seconds since the epoch. Kept "
                           "for Qubes' tools: dispenser makes no backups.",
    [P_DEBUG] = "Debug mode of the qube. Kept for Qubes' tools: it changes nothing on either "
                "engine.",
    [P_DEFAULT_DISPVM] = "Disposable template used when this qube asks for a disposable "
                         "(@dispvm in qrexec policy, qvm-open-in-dvm). Defaults to the global "
                         "default_dispvm.",
    [P_DEFAULT_USER] = "User that qrexec services and qvm-run run as inside the qube when the "
                       "caller names none; by default user, uid 1000 of the template.",
    [P_DNS] = "Addresses of the DNS servers the qube is given: Qubes' virtual DNS "
              "10.139.1.1 and 10.139.1.2, answered by its netvm. Empty without a netvm. "
              "Read-only.",
    [P_GATEWAY] = "Address of the qube's gateway: its netvm's address as seen from the qube. "
                  "Empty without a netvm. Read-only.",
    [P_IP] = "IPv4 address of the qube, 10.137.0.x from its qid (10.138.x.y for a "
             "disposable), or set by the feature net.fake-ip. Empty without a netvm. "
             "Read-only.",
    [P_MAC] = "MAC address of the qube's network interface; by default Qubes' "
              "00:16:3e:5e:6c:00 (each qube is alone on its link to its netvm).",
    [P_VISIBLE_GATEWAY] = "Gateway address as the qube itself sees it (net.fake-gateway, or "
                          "gateway). Read-only.",
    [P_VISIBLE_IP] = "Address as the qube itself sees it (net.fake-ip, or ip). Read-only.",
    [P_VISIBLE_NETMASK] = "Netmask as the qube itself sees it (net.fake-netmask, or "
                          "255.255.255.255). Read-only.",
    [P_DISPID] = "Number of the disposable, the N of its name dispN. Read-only.",
    [P_ICON] = "Name of the icon that shows the qube's class and label. Read-only.",
    [P_INCLUDE_IN_BACKUPS] = "Whether the qube is backed up by default. Kept for Qubes' tools: "
                             "dispenser makes no backups.",
    [P_IS_PRELOAD] = "True while the disposable is a preloaded one that has not been handed "
                     "out yet. Set by the preload pool only.",
    [P_KERNEL] = "Kernel of a qemu qube: the name of a directory of the engine's kernels "
                 "directory (never a path); empty means the engine's own guest kernel. "
                 "Containers run on the host's kernel and ignore it.",
    [P_KERNELOPTS] = "Options added to the guest kernel's command line of a qemu qube. "
                     "Containers ignore it.",
    [P_KLASS] = "Class of the qube: AdminVM, AppVM, DispVM, StandaloneVM or TemplateVM. "
                "Read-only.",
    [P_LABEL] = "Colour label of the qube, which the tools show as a mark of how much it is "
                "trusted.",
    [P_MANAGEMENT_DISPVM] = "Disposable template that would manage this qube (Qubes' Salt "
                            "management). Defaults to the global management_dispvm.",
    [P_MAXMEM] = "Read-only on dom0, where it is the host's memory. Most memory, in MiB, the qube "
                 "may use; 0 means no more than memory. "
                 "Container: its cgroup's memory limit is the larger of memory and maxmem, "
                 "past which the kernel reclaims and then kills inside the qube. qemu: the "
                 "limit of the VM's cgroup is the larger of the two plus QEMU's own overhead.",
    [P_MEMORY] = "Memory of the qube, in MiB. Container: its cgroup's memory limit when "
                 "maxmem is not larger (there is no memory to reserve up front). qemu: the "
                 "guest's RAM at boot (qemu -m).",
    [P_NAME] = "Name of the qube. It cannot be changed.",
    [P_NETVM] = "Qube that gives this qube its network; none means no network at all. "
                "Defaults to the global default_netvm.",
    [P_PROVIDES_NETWORK] = "Whether the qube gives network to other qubes (can be their "
                           "netvm). Read-only.",
    [P_QID] = "Number of the qube, unique on this host. Read-only.",
    [P_QREXEC_TIMEOUT] = "Seconds a start waits for the qube's agent to be ready (its startup "
                         "scripts done) before the start fails. Defaults to the global "
                         "default_qrexec_timeout.",
    [P_SHUTDOWN_TIMEOUT] = "Seconds a shutdown waits for the qube to stop by itself before it "
                           "is killed. Defaults to the global default_shutdown_timeout.",
    [P_START_TIME] = "When the qube's current run began, in seconds since the epoch; empty "
                     "while it is halted. After a daemon restart, a qube that kept running "
                     "counts from the moment the daemon found it. Read-only.",
    [P_TEMPLATE] = "Template the qube's root filesystem comes from: an AppVM sees a "
                   "throwaway copy of it at every start; for a disposable, the disposable "
                   "template it is made from.",
    [P_TEMPLATE_FOR_DISPVMS] = "Whether disposables can be made from this qube (it is a "
                               "disposable template).",
    [P_UPDATEABLE] = "Whether changes to the qube's root filesystem are kept (templates and "
                     "standalone qubes). Read-only.",
    [P_UUID] = "Unique id of the qube, which never changes. Read-only.",
    [P_VCPUS] = "Number of virtual CPUs. Container: the qube's share of CPU time (a cgroup "
                "weight of 100 per vcpu); it may use every host CPU. qemu: the guest's CPUs "
                "(qemu -smp), also weighted 100 each.",
    [P_VIRT_MODE] = "Engine that runs the qube: container (Linux namespaces and cgroups on "
                    "the host's kernel, Qubes' pv/pvh/hvm have no meaning here) or qemu (a "
                    "micro VM with its own kernel, on KVM when available, else TCG).",
};

static const char *const GLOBAL_HELP[GPROP_COUNT] = {
    [G_CHECK_UPDATES_VM] = "Whether qubes check for updates of their software. Kept for "
                           "Qubes' tools: dispenser does not collect update notices.",
    [G_DEFAULT_AUDIOVM] = "Default of the qubes' audiovm. Kept for Qubes' tools: qubes get no "
                          "sound device.",
    [G_DEFAULT_GUIVM] = "Default of the qubes' guivm. Kept for Qubes' tools: windows are shown "
                        "on the host's desktop.",
    [G_DEFAULT_POOL] = "Storage pool of new volumes (qvm-pool list): dispenser, the on-disk "
                       "pool under the state directory, or another pool of the dir driver; "
                       "a ram pool only through default_pool_volatile.",
    [G_DEFAULT_POOL_KERNEL] = "Storage pool of new kernel volumes; defaults to default_pool.",
    [G_DEFAULT_POOL_PRIVATE] = "Storage pool of new private volumes; defaults to default_pool.",
    [G_DEFAULT_POOL_ROOT] = "Storage pool of new root volumes; defaults to default_pool.",
    [G_DEFAULT_POOL_VOLATILE] = "Storage pool of new volatile volumes, and of the writes a "
                                "stop discards (an AppVM's root, a disposable's volumes); a ram "
                                "pool keeps them off the disk. Defaults to default_pool.",
    [G_MAXMEM] = "Memory of the host, in MiB (MemTotal). Read-only.",
    [G_NO_CPUS] = "Number of the host's online CPUs. Read-only.",
    [G_CLOCKVM] = "Qube that would give the others the time. Kept for Qubes' tools: qubes "
                  "here share the host's clock.",
    [G_DEFAULT_DISPVM] = "Disposable template used by default when a qube or dom0 asks for a "
                         "disposable.",
    [G_DEFAULT_KERNEL] = "Kernel of qemu qubes whose kernel property is not set; empty means "
                         "the engine's own guest kernel.",
    [G_DEFAULT_NETVM] = "Qube that gives network to qubes whose netvm is not set.",
    [G_DEFAULT_QREXEC_TIMEOUT] = "Default of the qubes' qrexec_timeout, in seconds.",
    [G_DEFAULT_SHUTDOWN_TIMEOUT] = "Default of the qubes' shutdown_timeout, in seconds.",
    [G_DEFAULT_TEMPLATE] = "Template of new qubes made without one (qvm-create without "
                           "--template).",
    [G_MANAGEMENT_DISPVM] = "Default of the qubes' management_dispvm.",
    [G_STATS_INTERVAL] = "Seconds between two statistics events of admin.vm.Stats. Kept for "
                         "Qubes' tools: dispenser sends no such events.",
    [G_UPDATEVM] = "Qube that would download updates for dom0. Kept for Qubes' tools.",
};

const char *prop_help(const struct prop_def *def, bool global) {
    const char *text = global ? GLOBAL_HELP[def->id] : VM_HELP[def->id];
    return text ? text : "";
}
