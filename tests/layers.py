#!/usr/bin/env python3
"""Checks postern's sources against the layering in docs/architecture.md.

The document holds two fenced code blocks. The one whose info string is
`layers` lists the layers, top first, one per line; the modules on one line
are peers. The one whose info string is `modules` maps a module to the files
whose names do not say it (`http: h1_parse.c http_msg.c`). Every other file's
module is its stem: src/X.c, src/X.h and include/postern/X.h belong to X.
A header named X-t.h holds only types: it belongs to X, but including it is
not a dependency, so any layer may include it.

Rules, each failure printed as `file:line: what is wrong`:
  (a) every .c and .h file under src/ and include/postern/ belongs to a module
      named in the layers block;
  (b) a file of module M that includes a header (other than -t.h) of module N
      needs N on M's line or below;
  (c) the graph of those includes between modules, peers included, has no
      cycle;
  (d) every function whose name starts with pst_conn_ is defined in a
      source file of the conn module: src/conn.c, or one the modules block
      maps to conn (its connection's other jobs, src/conn_text.c).

Usage: tests/layers.py [--root DIR]   (default: the repository holding this
file). Exit status 0 when every rule holds, 1 otherwise. Python 3 standard
library only.
"""

import argparse
import os
import re
import sys
from collections import defaultdict, deque

DOC = "docs/architecture.md"
SOURCE_DIRS = ("src", "include/postern")
CONN_FILE = "src/conn.c"

FENCE_RE = re.compile(r"^(`{3,}|~{3,})\s*([^`\s]*)\s*$")
INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.MULTILINE)
# A definition starts at column 0: an optional return type (on this line or
# the one before), the name, its parameter list, then `{` before any `;`.
CONN_DEF_RE = re.compile(r"^(?!#)(?:[A-Za-z_][\w \t*]*?[ \t*])?(pst_conn_\w+)[ \t]*\(",
                         re.MULTILINE)


class Problems:
    """Collects `path:line: message` lines; warnings do not fail the check."""

    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, path, line, msg):
        self.errors.append((path, line, msg))

    def warn(self, path, line, msg):
        self.warnings.append((path, line, "warning: " + msg))


def fenced_blocks(text):
    """Yields (info string, first content line number, content lines) for
    every fenced code block of a Markdown text."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2)
        body_start = i + 1
        j = body_start
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            j += 1
        yield info, body_start + 1, lines[body_start:j]
        i = j + 1


class Layout:
    """The layers and the module map read from docs/architecture.md."""

    def __init__(self):
        self.layer_of = {}     # module -> index of its line, 0 = top
        self.layers = []       # the modules of each line
        self.file_module = {}  # file name (no directory) -> module
        self.map_line = {}     # file name -> line of docs/architecture.md


def read_layout(root, problems):
    """Parses DOC under root. Returns a Layout, or None when the document or
    its layers block is missing (reported to problems)."""
    path = os.path.join(root, DOC)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        problems.error(DOC, 1, "cannot read: %s" % e.strerror)
        return None
    layout = Layout()
    blocks = {}
    for info, first, body in fenced_blocks(text):
        if info in ("layers", "modules"):
            if info in blocks:
                problems.error(DOC, first - 1, "a second fenced block with info string %r" % info)
                continue
            blocks[info] = (first, body)
    if "layers" not in blocks:
        problems.error(DOC, 1, "no fenced code block with info string 'layers'")
        return None

    first, body = blocks["layers"]
    for n, line in enumerate(body):
        names = line.split()
        if not names:
            continue
        index = len(layout.layers)
        for name in names:
            if name in layout.layer_of:
                problems.error(DOC, first + n, "module %s is listed twice in the layers" % name)
                continue
            layout.layer_of[name] = index
        layout.layers.append(names)
    if not layout.layers:
        problems.error(DOC, first - 1, "the layers block is empty")
        return None

    if "modules" in blocks:
        first, body = blocks["modules"]
        for n, line in enumerate(body):
            if not line.strip():
                continue
            module, colon, files = line.partition(":")
            module = module.strip()
            if not colon or not re.fullmatch(r"[A-Za-z_]\w*", module):
                problems.error(DOC, first + n, "expected 'module: file file ...', not %r" % line)
                continue
            if module not in layout.layer_of:
                problems.error(DOC, first + n,
                               "module %s is not in %s's layers" % (module, DOC))
            for name in files.split():
                if name in layout.file_module:
                    problems.error(DOC, first + n, "%s is mapped to two modules, %s and %s" %
                                   (name, layout.file_module[name], module))
                    continue
                layout.file_module[name] = module
                layout.map_line[name] = first + n
    return layout


def strip_comments(text):
    """Returns text with C comments blanked out (newlines kept, so line
    numbers hold); string and character literals are kept as they are."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def source_files(root):
    """The .c and .h files under SOURCE_DIRS, as sorted root-relative paths."""
    found = []
    for d in SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, d)):
            dirnames.sort()
            for name in filenames:
                if name.endswith((".c", ".h")):
                    found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def module_of(layout, path):
    """Returns (module, types_only) for a source path."""
    name = os.path.basename(path)
    stem = name[:-2]
    types_only = name.endswith("-t.h")
    if name in layout.file_module:
        return layout.file_module[name], types_only
    if types_only:
        stem = stem[:-2]
    return stem, types_only


def resolve_include(root, path, target):
    """The root-relative path of the project header that `#include "target"`
    in path names, as the compiler finds it (the includer's directory, then
    -Iinclude), or None for a header outside SOURCE_DIRS."""
    for base in (os.path.dirname(path), "include"):
        cand = os.path.normpath(os.path.join(base, target))
        if os.path.isfile(os.path.join(root, cand)):
            if any(cand.startswith(d + os.sep) for d in SOURCE_DIRS):
                return cand
            return None
    return None


def conn_definitions(text):
    """Yields (name, offset) for each pst_conn_ function defined in text
    (comments already stripped)."""
    for m in CONN_DEF_RE.finditer(text):
        if "typedef" in (m.group(0) or ""):
            continue
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        brace, semi = text.find("{", i), text.find(";", i)
        if brace >= 0 and (semi < 0 or brace < semi):
            yield m.group(1), m.start(1)


def find_cycles(graph):
    """Returns the cycles of a directed graph ({node: set of nodes}) as lists
    of nodes, the first node repeated at the end: for each strongly connected
    component of two or more nodes, the shortest cycle through each of its
    nodes, each cycle once, starting at its smallest node."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def connect(v):  # Tarjan's algorithm; the graph is small, recursion is fine
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles, seen = [], set()
    for comp in comps:
        if len(comp) < 2:
            continue
        for start in sorted(comp):
            # Breadth-first from start's successors back to start.
            prev = {start: None}
            queue = deque([start])
            found = None
            while queue and found is None:
                v = queue.popleft()
                for w in sorted(graph.get(v, ())):
                    if w not in comp:
                        continue
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        queue.append(w)
            path = [found]
            while path[-1] != start:
                path.append(prev[path[-1]])
            path.reverse()  # start ... found
            low_at = path.index(min(path))
            path = path[low_at:] + path[:low_at]
            if tuple(path) not in seen:
                seen.add(tuple(path))
                cycles.append(path + [path[0]])
    return sorted(cycles)


def check(root):
    """Runs every rule on the tree at root. Returns a Problems."""
    problems = Problems()
    layout = read_layout(root, problems)
    if layout is None:
        return problems
    files = source_files(root)
    present = {os.path.basename(p) for p in files}
    for name, line in sorted(layout.map_line.items()):
        if name not in present:
            problems.warn(DOC, line, "%s is mapped to module %s but no such file is under %s" %
                          (name, layout.file_module[name], " or ".join(SOURCE_DIRS)))

    edges = defaultdict(list)  # (M, N) -> [(path, line, include)]
    for path in files:
        module, _ = module_of(layout, path)
        if module not in layout.layer_of:
            problems.error(path, 1, "module %s is not in %s's layers" % (module, DOC))
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            text = strip_comments(f.read())

        for m in INCLUDE_RE.finditer(text):
            target = resolve_include(root, path, m.group(1))
            if target is None:
                continue
            other, types_only = module_of(layout, target)
            if types_only or other == module:
                continue
            line = line_of(text, m.start())
            edges[(module, other)].append((path, line, m.group(1)))
            if module in layout.layer_of and other in layout.layer_of:
                lm, lo = layout.layer_of[module], layout.layer_of[other]
                if lo < lm:
                    problems.error(path, line, "%s (layer %d) includes %s of %s (layer %d), "
                                   "a layer above it" % (module, lm + 1, m.group(1), other, lo + 1))

        for name, pos in conn_definitions(text):
            if path != CONN_FILE and not (path.startswith("src/") and module == "conn"):
                problems.error(path, line_of(text, pos),
                               "%s is defined here; every pst_conn_ function is defined in %s "
                               "or another source file of the conn module" % (name, CONN_FILE))

    graph = defaultdict(set)
    for (a, b) in edges:
        graph[a].add(b)
    for cycle in find_cycles(graph):
        where = []
        for a, b in zip(cycle, cycle[1:]):
            path, line, inc = min(edges[(a, b)])
            where.append("%s:%d includes %s" % (path, line, inc))
        path, line, _ = min(edges[(cycle[0], cycle[1])])
        problems.error(path, line, "cycle: %s (%s)" % (" -> ".join(cycle), "; ".join(where)))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="the repository to check (default: the one holding this script)")
    args = parser.parse_args(argv)
    problems = check(args.root)
    for path, line, msg in sorted(problems.warnings) + sorted(problems.errors):
        print("%s:%d: %s" % (path, line, msg))
    if problems.errors:
        print("layers: %d problem(s); layer 1 is the top line of %s's layers block" %
              (len(problems.errors), DOC), file=sys.stderr)
        return 1
    print("layers: ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
