/* Methods of Qubes' Admin API that dispenser does not implement. They answer
 * QubesNotImplementedError, which upstream tools catch (qvm-clone's rollback,
 * --ignore-errors), where an unknown name is a protocol error that ends in a traceback.
 * The list is qubes-core-admin's (its Makefile's ADMIN_API_METHODS_SIMPLE, plus the
 * methods served by qubes-rpc scripts and admin.vm.Suspend/Resume). */
#include <string.h>

#include "api.h"

static const char *const UPSTREAM_METHODS[] = {
    "admin.backup.Execute",
    "admin.backup.Info",
    "admin.backup.Cancel",
    "admin.label.Create",
    "admin.label.Get",
    "admin.label.List",
    "admin.label.Index",
    "admin.label.Remove",
    "admin.vm.Console",
    "admin.vm.Stats",
    "admin.vm.device.denied.List",
    "admin.vm.device.denied.Add",
    "admin.vm.device.denied.Remove",
    "admin.vm.firewall.Flush",
    "admin.vm.firewall.Get",
    "admin.vm.firewall.Set",
    "admin.vm.firewall.GetPolicy",
    "admin.vm.firewall.SetPolicy",
    "admin.vm.firewall.Reload",
    "admin.vm.volume.Import",
    "admin.vm.volume.ImportWithSize",
};

/* admin.vm.device.<class>.<op> for the device classes Qubes ships. */
static const char *const DEVICE_CLASSES[] = {"pci", "block", "usb", "mic"};
static const char *const DEVICE_OPS[] = {
    "Assign", "Assigned", "Attach", "Attached", "Available", "Detach", "Set.assignment", "Unassign",
};

static bool is_device_method(const char *name) {
    static const char prefix[] = "admin.vm.device.";
    if (strncmp(name, prefix, strlen(prefix)) != 0)
        return false;
    name += strlen(prefix);
    for (size_t c = 0; c < ELEMENTSOF(DEVICE_CLASSES); c++) {
        size_t len = strlen(DEVICE_CLASSES[c]);
        if (strncmp(name, DEVICE_CLASSES[c], len) != 0 || name[len] != '.')
            continue;
        for (size_t o = 0; o < ELEMENTSOF(DEVICE_OPS); o++)
            if (strcmp(name + len + 1, DEVICE_OPS[o]) == 0)
                return true;
    }
    return false;
}

bool api_is_upstream_method(const char *name) {
    for (size_t i = 0; i < ELEMENTSOF(UPSTREAM_METHODS); i++)
        if (strcmp(name, UPSTREAM_METHODS[i]) == 0)
            return true;
    return is_device_method(name);
}
