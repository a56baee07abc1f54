#!/usr/bin/env python3
"""The library's module graph, read from its `crate::` paths, and any cycle in it.

    python3 scripts/module_graph.py          # edges, then "no cycles" or each cycle; exit 1 on a cycle
    python3 scripts/module_graph.py --dot    # the same graph in Graphviz form

A module is a top-level file or folder of `src/` (so `plot/charts.rs` counts as `plot`).
Every `crate::name` in code counts, in `use` lines and inline paths alike; comments do not.
Names that `lib.rs` re-exports (`crate::Config`, `crate::Result`) resolve to their module.
The binary (`main.rs`, `cli/`) sits on top of the library and is left out.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
BINARY = {"main", "cli"}


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def code_lines(path: Path):
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield stripped.split("//")[0] if "\"" not in stripped else stripped


def modules() -> set:
    lib = (SRC / "lib.rs").read_text()
    return set(re.findall(r"^pub mod (\w+);", lib, re.M))


def reexports(mods: set) -> dict:
    """`pub use module::{A, B}` in lib.rs: name -> module."""
    names = {}
    lib = (SRC / "lib.rs").read_text()
    for m in re.finditer(r"^pub use (\w+)::(\{[^}]*\}|\w+);", lib, re.M):
        module, items = m.group(1), m.group(2).strip("{}")
        if module in mods:
            for item in items.split(","):
                item = item.strip().split(" as ")[-1].strip()
                if item:
                    names[item] = module
    return names


def graph() -> dict:
    mods = modules()
    names = reexports(mods)
    edges = {m: set() for m in mods}
    for path in sorted(SRC.rglob("*.rs")):
        src = module_of(path)
        if src in BINARY or src == "lib":
            continue
        for line in code_lines(path):
            # `use crate::{a, b::c}` lists several roots at once.
            for group in re.findall(r"crate::\{([^}]*)\}", line):
                for part in group.split(","):
                    root = part.strip().split("::")[0]
                    target = root if root in mods else names.get(root)
                    if target and target != src:
                        edges[src].add(target)
            for root in re.findall(r"crate::(\w+)", line):
                target = root if root in mods else names.get(root)
                if target and target != src:
                    edges[src].add(target)
    return edges


def cycles(edges: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    edges = graph()
    if "--dot" in sys.argv[1:]:
        print("digraph modules {")
        for src in sorted(edges):
            for dst in sorted(edges[src]):
                print(f'  "{src}" -> "{dst}";')
        print("}")
        return 0
    for src in sorted(edges):
        print(f"{src:12} -> {', '.join(sorted(edges[src])) or '(none)'}")
    found = cycles(edges)
    if not found:
        print(f"\n{len(edges)} modules, {sum(map(len, edges.values()))} edges, no cycles")
        return 0
    print(f"\n{len(found)} cycle(s):")
    for comp in found:
        print("  " + " <-> ".join(comp))
    return 1


if __name__ == "__main__":
    sys.exit(main())
