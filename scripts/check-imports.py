#!/usr/bin/env python3
"""Checks that the modules of src/ import each other in one direction.

Reads every `crate::...` path in src/ (use lines and inline paths, tests
excluded), builds the graph between top-level modules (src/X.rs or src/X/),
and fails on any circle, printing it. Also checks the layer order of
ARCHITECTURE.md: a module may use only modules of its own layer or below.

Usage: scripts/check-imports.py [--graph]
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# The layers, bottom up (ARCHITECTURE.md). `error` is the crate's shared
# error type: every layer may use it, and it names the errors of the layers
# it wraps (ipam's, the kernel feature); circles through it still count.
LAYERS = [
    ["error", "family", "feature", "names", "process", "random"],
    ["netlink"],
    ["link", "address", "route", "netns", "sysctl", "capability"],
    ["ipam"],
    ["driver", "mark", "parent", "shim"],
    ["store"],
    ["spec", "endpoint"],
    ["engine"],
    ["network", "host", "docker"],
    ["resolver"],
]
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}
SHARED = {"error"}


def sources():
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                top = rel.split(os.sep)[0].removesuffix(".rs")
                yield top, path


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks and comments.
    text = re.sub(r"//[^\n]*", "", text)
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    if m:
        text = text[: m.start()]
    return text


def main():
    graph = {}
    for top, path in sources():
        # src/bin/: binaries are front ends of their own, built on the
        # public API (`underlay::`), so they have no place in the graph.
        if top in ("lib", "main", "bin"):
            continue
        text = strip_tests(open(path, encoding="utf-8").read())
        deps = graph.setdefault(top, set())
        # crate::x, crate::{x, y::z}
        for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", text):
            group = m.group(1)
            names = re.findall(r"(?:^|[{,\s])(\w+)", group) if group.startswith("{") else [group]
            for name in names:
                if name in ("Error", "Result", "IpFamily", "Host", "Network"):
                    name = {"Error": "error", "Result": "error", "IpFamily": "family",
                            "Host": "host", "Network": "network"}[name]
                if name != top and (name in LAYER):
                    deps.add(name)
    if "--graph" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m]))}")
    problems = []
    unknown = sorted(m for m in graph if m not in LAYER)
    for m in unknown:
        problems.append(f"module {m} is in no layer: add it to LAYERS and ARCHITECTURE.md")
    for m, deps in graph.items():
        for d in deps:
            if m in SHARED or d in SHARED:
                continue
            if m in LAYER and d in LAYER and LAYER[d] > LAYER[m]:
                problems.append(f"{m} (layer {LAYER[m]}) uses {d} (layer {LAYER[d]}), a layer above it")
    # Circles.
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                problems.append("import circle: " + " -> ".join(cycle))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    for p in problems:
        print(f"check-imports: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-imports: {len(graph)} modules, no import circle, every use points down the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
