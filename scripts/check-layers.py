#!/usr/bin/env python3
"""Checks the core crate's layering: no import cycle between its top-level modules, and no
`core/src` file over 600 lines.

A module is a top-level file or folder of core/src (`store/` with its files is one module).
An edge A -> B is any `crate::B` path (in `use` lists, braces included, or inline) or, in a
top-level file, `super::B`, found in A's files outside comments; names the crate root
re-exports (`pub use m::Name`) count as edges to `m`. Cycles are the strongly connected
components with more than one module.

    python3 scripts/check-layers.py            report, exit 1 on a cycle or a long file
    python3 scripts/check-layers.py --table    also print the module graph (lines, uses, used by)

While the redesign (issue 17) is under way, `scripts/layers-baseline.txt` lists the cycles
and long files that exist on main; they are reported but do not fail. Anything not in that
list fails (a cycle is known when it lies inside a listed one), and a listed entry that no
longer exists as written fails too, so the list is kept exact and only shrinks.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "core" / "src"
BASELINE = ROOT / "scripts" / "layers-baseline.txt"
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


def module_of(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs") if len(rel.parts) > 1 else rel.stem


def main():
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f) for f in files} - {"lib"}
    lib = strip_comments((SRC / "lib.rs").read_text())
    reexport = {}
    for m, names in re.findall(r"pub use (\w+)::\{?([\w, ]+)\}?;", lib):
        for n in re.split(r"[,\s]+", names):
            if n:
                reexport[n] = m
    edges = {m: set() for m in modules}
    lines = {}
    for f in files:
        raw = f.read_text()
        lines[str(f.relative_to(ROOT))] = raw.count("\n")
        me = module_of(f)
        if me == "lib":
            continue
        text = strip_comments(raw)
        prefixes = [r"crate::"] + ([r"super::"] if f.parent == SRC else [])
        for prefix in prefixes:
            for match in re.finditer(prefix + r"(\{|\w+)", text):
                names = brace_idents(text, match.start(1)) if match.group(1) == "{" else [match.group(1)]
                for n in names:
                    target = n if n in modules else reexport.get(n)
                    if target and target != me:
                        edges[me].add(target)
    cycles = [sorted(c) for c in sccs(edges) if len(c) > 1]
    long_files = sorted(p for p, n in lines.items() if n > MAX_LINES)

    if "--table" in sys.argv:
        used_by = {m: sorted(k for k, v in edges.items() if m in v) for m in modules}
        for m in sorted(modules):
            print(f"{m:16} uses {', '.join(sorted(edges[m])) or '-'}; used by {', '.join(used_by[m]) or '-'}")
    found = {"cycle " + " ".join(c) for c in cycles} | {"long " + p for p in long_files}
    baseline = set()
    if BASELINE.exists():
        baseline = {l.strip() for l in BASELINE.read_text().splitlines() if l.strip() and not l.startswith("#")}
    base_cycles = [set(b.split()[1:]) for b in baseline if b.startswith("cycle ")]
    failures = []
    for item in sorted(found):
        kind, what = item.split(" ", 1)
        detail = f"{what} ({lines[what]} lines, limit {MAX_LINES})" if kind == "long" else what.replace(" ", " <-> ")
        # A cycle inside a known one is known: moving modules out of it is progress.
        known = item in baseline or (kind == "cycle" and any(set(what.split()) <= b for b in base_cycles))
        print(f"{'known' if known else 'NEW'} {kind}: {detail}")
        if not known:
            failures.append(item)
    for item in sorted(baseline - found):
        print(f"STALE, update {BASELINE.name} (the list only shrinks): {item}")
        failures.append(item)
    print(f"layers: {len(modules)} modules, {len(cycles)} cycles, {len(long_files)} files over {MAX_LINES} lines")
    return 1 if failures else 0


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
