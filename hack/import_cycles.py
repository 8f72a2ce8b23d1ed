#!/usr/bin/env python3
"""File-level import cycles in the workspace's Rust crates.

An edge A -> B means a file A names a path (`use`, or an inline `crate::x::y`/`super::x`) that
resolves to the module file B of the same crate. A parent naming its own child by the child's
bare name (`pub use things::Things` in a module front, `view::run`) is not counted: that is the
facade pattern of a module and its parts; run with EDGEWAY_STRICT_CYCLES=1 to count it too. A module declaring its children (`mod x;`) is
not an edge, and neither is a child naming its own parent's items through `super::` when the
parent is only a re-exporting front (`mod.rs`/`lib.rs` that holds no items of its own is
skipped as a target). Test modules (`tests.rs`, `*_tests.rs`, `tests/`) are left out: they
import what they test by nature.

Prints each strongly connected component of more than one file; exits 1 if any that is not
allowed below (a true recursive type, whose halves cannot be ordered).
Usage: python3 hack/import_cycles.py [CRATE_DIR...]   (default: every workspace member)
"""
import os
import re
import sys

# A Primitive can hold an InfoTable whose rows hold Primitives: one recursive type in two files.
ALLOWED = [{'protocol/src/infotable.rs', 'protocol/src/primitive.rs'}]

PATH_RE = re.compile(r'\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)')
USE_BLOCK_RE = re.compile(r'\buse\s+((?:crate|super|self)::[^;]*);', re.S)


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ('mod', 'lib', 'main'):
        rel = rel[:-1]
    return rel


def file_of(src, mod):
    """The file of module path `mod` (list), or None."""
    if not mod:
        return os.path.join(src, 'lib.rs')
    base = os.path.join(src, *mod)
    for cand in (base + '.rs', os.path.join(base, 'mod.rs')):
        if os.path.exists(cand):
            return cand
    return None


def resolve(src, cur_mod, path):
    parts = path.split('::')
    if parts[0] == 'crate':
        mod = []
    elif parts[0] == 'self':
        mod = list(cur_mod)
        parts = ['x'] + parts[1:]
    else:
        mod = list(cur_mod)
        while parts and parts[0] == 'super':
            mod = mod[:-1]
            parts = parts[1:]
        parts = ['x'] + parts
    best = None
    for i in range(1, len(parts)):
        cand = mod + parts[1:i + 1]
        f = file_of(src, cand)
        if f:
            best = f
    return best or file_of(src, mod)


def expand_use(tree):
    """`a::{b, c::{d}}` -> ['a::b', 'a::c::d'] (enough for module resolution)."""
    tree = re.sub(r'\s+', '', tree)
    out = []

    def rec(prefix, t):
        if '{' not in t:
            for item in split_top(t):
                item = item.split(' as ')[0]
                out.append(prefix + item if item not in ('self', '*') else prefix.rstrip(':'))
            return
        i = t.index('{')
        head = t[:i]
        body = t[i + 1:t.rindex('}')]
        for item in split_top(body):
            rec(prefix + head, item)

    rec('', tree)
    return [p for p in out if p]


def split_top(s):
    depth, cur, out = 0, '', []
    for ch in s:
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
        if ch == ',' and depth == 0:
            out.append(cur)
            cur = ''
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def is_test_file(path):
    b = os.path.basename(path)
    return b == 'tests.rs' or b.endswith('_tests.rs') or f'{os.sep}tests{os.sep}' in path


def only_front(path):
    """A lib.rs/mod.rs that declares modules and re-exports, but defines nothing."""
    text = open(path).read()
    code = [l for l in text.splitlines() if l.strip() and not l.strip().startswith('//')]
    return all(re.match(r'\s*(#!?\[.*\]|(pub(\(crate\))?\s+)?(mod|use)\b.*|[}{)(;,]*|[A-Za-z_:{}, ]*[,;}]\s*)$', l) for l in code)


def crate_edges(src):
    edges = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'):
                continue
            path = os.path.join(root, f)
            if is_test_file(path):
                continue
            text = open(path).read()
            text = re.sub(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*', '', text, flags=re.S)
            text = re.sub(r'//[^\n]*', '', text)
            cur = module_of(src, path)
            targets = set()
            paths = []
            for m in USE_BLOCK_RE.finditer(text):
                paths += expand_use(m.group(1))
            paths += PATH_RE.findall(USE_BLOCK_RE.sub('', text))
            if os.environ.get('EDGEWAY_STRICT_CYCLES') == '1':
                for child in re.findall(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', text, re.M):
                    if re.search(r'(?<![:\w])' + child + r'::', text):
                        paths.append('self::' + child + '::x')
            for p in paths:
                t = resolve(src, cur, p)
                if t and t != path and not is_test_file(t) and not only_front(t):
                    targets.add(t)
            edges[path] = targets
    return edges


def sccs(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
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

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            strong(v)
    return [c for c in out if len(c) > 1]


def main():
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = sys.argv[1:] or [d for d in ('protocol', 'runtime', 'testkit', 'sidecar', 'platform', 'operator', 'e2e')
                              if os.path.isdir(os.path.join(top, d, 'src'))]
    found = 0
    for c in crates:
        src = os.path.join(top, c, 'src')
        edges = crate_edges(src)
        for comp in sccs(edges):
            if {os.path.relpath(p, top) for p in comp} in ALLOWED:
                print(f'{c}: allowed (recursive type): ' + ' <-> '.join(sorted(os.path.relpath(p, top) for p in comp)))
                continue
            found += 1
            print(f'{c}: cycle: ' + ' <-> '.join(sorted(os.path.relpath(p, top) for p in comp)))
            for a in sorted(comp):
                for b in sorted(edges[a] & set(comp)):
                    print(f'    {os.path.relpath(a, top)} -> {os.path.relpath(b, top)}')
    print(f'{found} cycle(s)')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
