#!/usr/bin/env python3
"""modgraph.py: the module graph of gateway/ and device-client/, and its circles.

    python3 tests/tools/modgraph.py BUILD_DIR [--tap] [--root DIR]

A module is one source file (gateway/gw.c is "gw"). Module A uses module B when
A's object (BUILD_DIR/obj/<dir>/A.o) leaves undefined a global symbol that B's
object defines (`nm -g`). Headers alone show no circle (every gateway/*.c
includes gateway/gw.h); the calls between the files do, and a circle of calls
is what makes a file impossible to read, test or replace on its own. Calls
through a function pointer (a hook a lower module calls to tell a higher one)
are not edges: that is the way out of a circle.

Prints each directory's edges ("A -> B: symbols") in layers, lowest first,
then each circle (a strongly connected set of two or more modules) with the
edges inside it. Exit status 1 when a circle remains after removing the
KNOWN edges below (each with its reason), 2 on a usage or nm error.
--tap: one "ok - ..." / "not ok - ..." line per directory (tests/run.sh).
--root DIR (default: this script's tree): the headers are checked too, for a
circle of #include "..." lines among the files of each directory.
"""
import collections
import glob
import os
import re
import subprocess
import sys

DIRS = ("gateway", "device-client")

# Edges (dir, from, to) a circle may keep for now, each with the reason. Empty:
# none is known.
KNOWN = {}


def symbols(obj):
    """(defined, undefined) global symbol names of one object."""
    out = subprocess.run(["nm", "-g", obj], capture_output=True, text=True,
                         check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] in ("U", "w"):
            undefined.add(f[1])
        elif len(f) == 3 and f[1] not in ("U", "w", "v"):
            defined.add(f[2])
    return defined, undefined


def graph(build, root, d):
    """{module: {module it uses: {symbols}}} of directory d. An object
    whose source is gone (a file removed since the build) is left out."""
    objs = sorted(glob.glob(os.path.join(build, "obj", d, "*.o")))
    if not objs:
        raise FileNotFoundError("no objects in %s/obj/%s" % (build, d))
    owner, uses = {}, {}
    for o in objs:
        m = os.path.basename(o)[:-2]
        if not os.path.exists(os.path.join(root, d, m + ".c")):
            print("# %s: %s left out (no %s/%s.c)" % (d, o, d, m))
            continue
        defined, undefined = symbols(o)
        uses[m] = undefined
        for s in defined:
            owner[s] = m
    edges = {m: collections.defaultdict(set) for m in uses}
    for m, undefined in uses.items():
        for s in undefined:
            t = owner.get(s)
            if t is not None and t != m:
                edges[m][t].add(s)
    return edges


def circles(edges):
    """Strongly connected sets of two or more modules (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layers(edges):
    """Modules by height: 0 uses nothing here, n uses at most height n-1
    (modules in a circle share the height of the circle)."""
    height = {}

    def h(v, seen):
        if v in height:
            return height[v]
        if v in seen:
            return 0
        seen.add(v)
        height[v] = max([h(w, seen) + 1 for w in edges[v]] or [0])
        return height[v]

    for v in sorted(edges):
        h(v, set())
    return height


def includes(root, d):
    """{file: {file of d it includes}} over d's .c and .h files."""
    edges = {}
    files = sorted(glob.glob(os.path.join(root, d, "*.[ch]")))
    for f in files:
        name = os.path.relpath(f, root)
        edges[name] = collections.defaultdict(set)
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if m and m.group(1).startswith(d + "/"):
                    edges[name][m.group(1)].add("#include")
    for ts in list(edges.values()):
        for t in ts:
            edges.setdefault(t, collections.defaultdict(set))
    return edges


def check_includes(root, d, tap):
    found = circles(includes(root, d))
    for scc in found:
        print("# %s: include circle: %s" % (d, " ".join(scc)))
    if tap:
        print("%s - no include circle among the files of %s/" %
              ("not ok" if found else "ok", d))
    return not found


def check(build, root, d, tap):
    edges = graph(build, root, d)
    height = layers(edges)
    print("# %s: %d modules" % (d, len(edges)))
    for m in sorted(edges, key=lambda v: (height[v], v)):
        targets = " ".join(sorted(edges[m])) or "-"
        print("#   [%d] %s -> %s" % (height[m], m, targets))
    kept = {m: {t: s for t, s in ts.items() if (d, m, t) not in KNOWN}
            for m, ts in edges.items()}
    found = circles(kept)
    for scc in found:
        print("# %s: circle of %d modules: %s" % (d, len(scc), " ".join(scc)))
        for m in scc:
            for t in sorted(kept[m]):
                if t in scc:
                    print("#     %s -> %s: %s" % (m, t,
                                                  " ".join(sorted(kept[m][t]))))
    for (kd, m, t), why in sorted(KNOWN.items()):
        if kd == d and t in edges.get(m, {}):
            print("# %s: known edge %s -> %s (%s)" % (d, m, t, why))
    if tap:
        print("%s - module graph of %s/ has no circle%s" %
              ("not ok" if found else "ok", d,
               " (%d found)" % len(found) if found else ""))
    return not found


def main(argv):
    args = [a for a in argv[1:] if a != "--tap"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    if len(args) == 3 and args[1] == "--root":
        root = args.pop(2)
        args.pop(1)
    if len(args) != 1:
        print("usage: modgraph.py BUILD_DIR [--tap] [--root DIR]",
              file=sys.stderr)
        return 2
    ok = True
    try:
        for d in DIRS:
            ok = check(args[0], root, d, "--tap" in argv) and ok
            ok = check_includes(root, d, "--tap" in argv) and ok
    except (OSError, subprocess.CalledProcessError) as e:
        print("modgraph.py: %s" % e, file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
