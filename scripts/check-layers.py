#!/usr/bin/env python3
"""Checks the core crate's layering: no import cycle between its top-level modules, no module
that uses one of a higher layer, and no `core/src` file over 600 lines.

A module is a top-level file or folder of core/src (`store/` with its files is one module).
An edge A -> B is any `crate::B` path (in `use` lists, braces included, or inline) or, in a
top-level file, `super::B`, found in A's files outside comments; names the crate root
re-exports (`pub use m::Name`) count as edges to `m`. Cycles are the strongly connected
components with more than one module.

The layers are lib.rs's own: a comment line `// L<n> ...` opens layer n, and each `mod m;`
after it (until the next such line) is in it. Once lib.rs names layers, every module must
have one, and an edge A -> B with B's layer above A's fails.

    python3 scripts/check-layers.py              report, exit 1 on a cycle, an upward or unlayered module, a long file
    python3 scripts/check-layers.py --table      also print the module graph (lines, uses, used by)
    python3 scripts/check-layers.py --self-test  show that each of those fails on small trees

The debts the redesign (issue 17) started from (one cycle of eight modules, five long files)
are paid, so there is no list of known ones any more: any cycle or long file fails.
"""
import pathlib
import re
import sys

import tempfile

MAX_LINES = 600


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def brace_idents(text, start):
    """Top-level identifiers of the `{...}` group opening at text[start]."""
    depth, names, token, i = 0, [], "", start
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
            if depth == 1:
                token = ""
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1:
            if c == ",":
                token = ""
            elif (c.isalnum() or c == "_") and token is not None:
                token += c
            elif token:
                names.append(token)
                token = None
        i += 1
    if token:
        names.append(token)
    return [n for n in names if n]


def layers_of(lib_raw):
    """Module -> layer number, from lib.rs's `// L<n>` comment lines and the `mod` lines after
    them."""
    layer, out = None, {}
    for line in lib_raw.splitlines():
        m = re.match(r"\s*//\s*L(\d+)\b", line)
        if m:
            layer = int(m.group(1))
            continue
        m = re.match(r"\s*(?:pub(?:\([\w:]+\))?\s+)?mod\s+(\w+)\s*;", line)
        if m and layer is not None:
            out[m.group(1)] = layer
    return out


def check(root, table=False):
    """Reports the layering of `root/core/src`; returns the number of failures."""
    src = root / "core" / "src"

    def module_of(path):
        rel = path.relative_to(src)
        return rel.parts[0].removesuffix(".rs") if len(rel.parts) > 1 else rel.stem

    files = sorted(src.rglob("*.rs"))
    modules = {module_of(f) for f in files} - {"lib"}
    lib_raw = (src / "lib.rs").read_text()
    layer = layers_of(lib_raw)
    lib = strip_comments(lib_raw)
    reexport = {}
    for m, names in re.findall(r"pub use (\w+)::\{?([\w, ]+)\}?;", lib):
        for n in re.split(r"[,\s]+", names):
            if n:
                reexport[n] = m
    edges = {m: set() for m in modules}
    lines = {}
    for f in files:
        raw = f.read_text()
        lines[str(f.relative_to(root))] = raw.count("\n")
        me = module_of(f)
        if me == "lib":
            continue
        text = strip_comments(raw)
        prefixes = [r"crate::"] + ([r"super::"] if f.parent == src else [])
        for prefix in prefixes:
            for match in re.finditer(prefix + r"(\{|\w+)", text):
                names = brace_idents(text, match.start(1)) if match.group(1) == "{" else [match.group(1)]
                for n in names:
                    target = n if n in modules else reexport.get(n)
                    if target and target != me:
                        edges[me].add(target)
    cycles = [sorted(c) for c in sccs(edges) if len(c) > 1]
    long_files = sorted(p for p, n in lines.items() if n > MAX_LINES)
    unlayered = sorted(modules - set(layer)) if layer else []
    upward = sorted(
        (a, b) for a, bs in edges.items() for b in bs if a in layer and b in layer and layer[b] > layer[a]
    )

    if table:
        used_by = {m: sorted(k for k, v in edges.items() if m in v) for m in modules}
        for m in sorted(modules):
            print(f"{m:16} uses {', '.join(sorted(edges[m])) or '-'}; used by {', '.join(used_by[m]) or '-'}")
    for c in cycles:
        print("cycle: " + " <-> ".join(c))
    for p in long_files:
        print(f"long: {p} ({lines[p]} lines, limit {MAX_LINES})")
    for m in unlayered:
        print(f"unlayered: {m} (no `// L<n>` line above its `mod` in lib.rs)")
    for a, b in upward:
        print(f"upward: {a} (L{layer[a]}) uses {b} (L{layer[b]})")
    print(
        f"layers: {len(modules)} modules in {len(set(layer.values()))} layers, {len(cycles)} cycles, "
        f"{len(upward)} upward edges, {len(unlayered)} unlayered, {len(long_files)} files over {MAX_LINES} lines"
    )
    return len(cycles) + len(long_files) + len(unlayered) + len(upward)


def self_test():
    """Small trees the check must fail (a cycle through each kind of edge, a long file) and
    pass (the same trees without them, a file of exactly the limit)."""

    def expect(files, failures, what):
        with tempfile.TemporaryDirectory() as d:
            root = pathlib.Path(d)
            for name, text in files.items():
                path = root / "core" / "src" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            got = check(root)
            if got != failures:
                raise SystemExit(f"check-layers self-test: {what}: {got} failures, expected {failures}")

    lib = "mod a;\nmod b;\nmod c;\npub use c::Thing;\n"
    expect({"lib.rs": lib, "a.rs": "use crate::b::x;\n", "b/mod.rs": "mod y;\n",
            "b/y.rs": "use crate::{c::z, a::w};\n", "c.rs": "\n" * (MAX_LINES + 1)},
           2, "a cycle through a folder and a brace list, and a long file")
    expect({"lib.rs": lib, "a.rs": "use crate::b::x;\n", "b/mod.rs": "// use crate::a;\nmod y;\n",
            "b/y.rs": "use crate::Thing;\n", "c.rs": "pub struct Thing;\n" + "\n" * (MAX_LINES - 1)},
           0, "no cycle (a comment is no edge), a file of exactly the limit")
    expect({"lib.rs": lib, "a.rs": "fn f() -> crate::Thing { todo!() }\n", "b/mod.rs": "",
            "c.rs": "use crate::a::f;\n"},
           1, "a cycle through a name the crate root re-exports")
    expect({"lib.rs": lib, "a.rs": "use super::c::z;\n", "b/mod.rs": "", "c.rs": "use crate::a::f;\n"},
           1, "a cycle through super:: in a top-level file")
    layered = "// L0 base\nmod a;\n// L1 above\npub mod b;\nmod c;\n"
    expect({"lib.rs": layered, "a.rs": "use crate::b::x;\n", "b.rs": "use crate::a::y;\n", "c.rs": ""},
           2, "an edge to a higher layer (and the cycle it closes)")
    expect({"lib.rs": layered, "a.rs": "use crate::c::x;\n", "b.rs": "", "c.rs": ""},
           1, "an edge to a higher layer alone")
    expect({"lib.rs": layered + "mod d;\n// not a layer\n", "a.rs": "", "b.rs": "use crate::a::y;\n",
            "c.rs": "use crate::b::z;\n", "d.rs": "", "e.rs": ""},
           1, "downward and same-layer edges pass; a module with no layer fails")
    print("check-layers self-test passed")
    return 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
    root = pathlib.Path(__file__).resolve().parent.parent
    return 1 if check(root, table="--table" in sys.argv) else 0


def sccs(graph):
    """Tarjan's strongly connected components."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
