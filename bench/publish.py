#!/usr/bin/env python3
"""Puts one run's results into the documentation (bench/run.sh --publish).

    bench/publish.py RESULTS_DIR [PART...]

Copies the plots, summary.json, table.md and machine.txt to docs/bench/, and replaces
each table of docs/benchmarks.md that sits between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` with the same table of RESULTS_DIR/table.md. With PARTs (e.g.
`vm vm-memory vm-targets`), only those tables are replaced and no file is copied: one
part of a run published beside the rest of another. The prose around the tables quotes
numbers too: read it again after publishing.
"""
import os
import re
import shutil
import sys

# The order of the parts of table.md (bench/report.py, write_table).
PARTS = ["machine", "headline", "echo", "py", "stages", "b2b", "concurrent", "scaling",
         "memory", "targets", "vm", "vm-memory", "vm-targets"]


def main():
    src, only = sys.argv[1], sys.argv[2:]
    unknown = [p for p in only if p not in PARTS]
    if unknown:
        sys.exit(f"publish.py: no such part: {' '.join(unknown)} (parts: {' '.join(PARTS)})")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    dest = os.path.join(root, "docs", "bench")
    os.makedirs(dest, exist_ok=True)
    for f in os.listdir(src) if not only else []:
        if f.endswith(".png") or f in ("summary.json", "table.md", "machine.txt"):
            shutil.copy(os.path.join(src, f), dest)
    with open(os.path.join(src, "table.md")) as f:
        tables = dict(zip(PARTS, f.read().strip().split("\n\n")))
    if only:
        tables = {p: t for p, t in tables.items() if p in only}
    doc_path = os.path.join(root, "docs", "benchmarks.md")
    with open(doc_path) as f:
        doc = f.read()
    for name, table in tables.items():
        doc = re.sub(rf"(<!-- bench:{name} -->\n).*?(\n<!-- /bench:{name} -->)",
                     lambda m: m.group(1) + table + m.group(2), doc, flags=re.S)
    with open(doc_path, "w") as f:
        f.write(doc)
    print(f"published {src} ({' '.join(only) if only else 'all'}) to docs/benchmarks.md")


if __name__ == "__main__":
    main()
