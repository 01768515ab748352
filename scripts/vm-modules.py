#!/usr/bin/env python3
"""Prints the kernel modules to load, dependencies first, for the wanted module names.

Reads each module's own `depends=` field (its .modinfo section) rather than modules.dep,
which only depmod makes at install time: the guest kernel is unpacked, never installed.
usage: vm-modules.py MODULES_DIR NAME...  (prints paths relative to MODULES_DIR)
"""
import os
import re
import sys


def index(moddir):
    paths = {}
    for root, _, files in os.walk(os.path.join(moddir, "kernel")):
        for f in files:
            if f.endswith(".ko"):
                paths[f[:-3].replace("-", "_")] = os.path.relpath(os.path.join(root, f), moddir)
    return paths


def depends(path):
    with open(path, "rb") as f:
        m = re.search(rb"(?:^|\0)depends=([^\0]*)", f.read())
    return [d.decode() for d in m.group(1).split(b",") if d] if m else []


def builtin(moddir):
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            return {os.path.basename(l.strip())[:-3].replace("-", "_") for l in f}
    except FileNotFoundError:
        return set()


def main():
    moddir, wanted = sys.argv[1], sys.argv[2:]
    paths, built_in, order = index(moddir), builtin(moddir), []

    def add(name):
        name = name.replace("-", "_")
        if name in built_in or paths.get(name) in order:
            return
        if name not in paths:
            sys.exit(f"vm-modules: {name} is neither built in nor a module in {moddir}")
        for dep in depends(os.path.join(moddir, paths[name])):
            add(dep)
        order.append(paths[name])

    for name in wanted:
        add(name)
    print("\n".join(order))


if __name__ == "__main__":
    main()
