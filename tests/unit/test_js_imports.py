"""The page's ES modules (otc_bridge/web/static/js) import each other without a cycle.

A cycle between ES modules loads, but the module evaluated first sees the other's bindings
uninitialised (a TDZ ReferenceError at import time, or a silently undefined function when
the cycle runs through a callback registered early): the kind of bug that depends on which
module the browser happens to reach first. So the static import graph must be acyclic, and
every relative specifier must name a file that exists (a 404 stops the whole page).

Pure Python: the ``import``/``export ... from`` statements are read with regular expressions
(good enough for this code base: every statement starts a line). A static import the
parser does not understand fails the test rather than being skipped silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

JS_ROOT = Path(__file__).resolve().parents[2] / "otc_bridge" / "web" / "static" / "js"
EXCLUDED_DIRS = {"vendor"}

# A block comment that starts a line (JSDoc and friends): blanked out before scanning, so
# an example import inside one is not taken for a real one. Line comments need no
# stripping: a statement is only recognised at the start of a line, and ``// import`` is not.
_BLOCK_COMMENT = re.compile(r"^[ \t]*/\*.*?\*/", re.M | re.S)
# What may stand between ``import``/``export`` and ``from``: names, ``*``, ``as``, braces,
# commas, whitespace (newlines too: multi-line binding lists) and comments.
_CLAUSE = r"(?:[\w$*{},\s]|//[^\n]*|/\*.*?\*/)*?"


def _spec(tag: str = "") -> str:
    """A quoted module specifier, captured as ``spec<tag>``."""
    return rf"""(?P<q{tag}>['"])(?P<spec{tag}>[^'"\n]+)(?P=q{tag})"""


_SPEC = _spec()
# import './a.js'; import x from './a.js'; import {a, b} from "./a.js"; import * as m from './a.js'
_IMPORT = re.compile(rf"^[ \t]*import(?:\s*{_spec('bare')}|\b\s*{_CLAUSE}\bfrom\s*{_SPEC})", re.M | re.S)
# export * from './a.js'; export * as m from './a.js'; export {a, b as c} from './a.js'
_REEXPORT = re.compile(rf"^[ \t]*export\s*(?:\*|\{{){_CLAUSE}\bfrom\s*{_SPEC}", re.M | re.S)
# Every line that starts a static import (not ``import(`` nor ``import.meta``) or an
# ``export *``/``export {`` statement: each must be understood by the patterns above
# (an ``export {...}`` of local names, without ``from``, is fine).
_IMPORT_START = re.compile(r"^[ \t]*import(?!\s*[(.])\b", re.M)
_EXPORT_LIST_START = re.compile(r"^[ \t]*export\s*[*{]", re.M)
_LOCAL_EXPORT_LIST = re.compile(rf"[ \t]*export\s*\{{{_CLAUSE}\}}\s*(?!\s*from\b)(?:;|$)", re.M | re.S)
# import('./x.js') with a literal: not part of the static graph, but the file must exist.
_DYNAMIC = re.compile(rf"\bimport\s*\(\s*{_SPEC}\s*\)")


def static_specifiers(source: str, name: str = "<source>") -> list[str]:
    """The specifiers of ``source``'s static ``import``/``export ... from`` statements, in
    order. Raises ``ValueError`` for a statement start the patterns do not understand."""
    text = _BLOCK_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)
    found: dict[int, str] = {}
    for match in _IMPORT.finditer(text):
        found[match.start()] = match.group("specbare") or match.group("spec")
    for match in _REEXPORT.finditer(text):
        found[match.start()] = match.group("spec")
    for start in _IMPORT_START.finditer(text):
        if start.start() not in found:
            raise ValueError(f"{name}: cannot parse the import at line {text.count(chr(10), 0, start.start()) + 1}")
    for start in _EXPORT_LIST_START.finditer(text):
        if start.start() not in found and not _LOCAL_EXPORT_LIST.match(text, start.start()):
            raise ValueError(f"{name}: cannot parse the export at line {text.count(chr(10), 0, start.start()) + 1}")
    return [found[pos] for pos in sorted(found)]


def dynamic_specifiers(source: str) -> list[str]:
    text = _BLOCK_COMMENT.sub("", source)
    return [m.group("spec") for m in _DYNAMIC.finditer(text)]


def module_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.js") if not EXCLUDED_DIRS & set(p.relative_to(root).parts[:-1]))


def resolve(importer: Path, spec: str) -> Path:
    if not spec.startswith(("./", "../")):
        raise ValueError(f"{importer.name}: only relative specifiers are understood here, got {spec!r}")
    return (importer.parent / spec).resolve()


def import_graph(root: Path) -> tuple[dict[Path, list[Path]], list[str]]:
    """``{module: [imported module, ...]}`` over ``root``'s modules, and the problems found
    (a specifier naming no file, an unparsable statement, a non-relative specifier)."""
    graph: dict[Path, list[Path]] = {}
    problems: list[str] = []
    for path in module_files(root):
        path = path.resolve()
        source = path.read_text(encoding="utf-8")
        rel = path.relative_to(root.resolve())
        graph[path] = []
        try:
            statics = static_specifiers(source, str(rel))
            for spec in statics:
                target = resolve(path, spec)
                if not target.is_file():
                    problems.append(f"{rel}: imports {spec!r}, but {target} does not exist")
                else:
                    graph[path].append(target)
            for spec in dynamic_specifiers(source):
                target = resolve(path, spec)
                if not target.is_file():
                    problems.append(f"{rel}: import({spec!r}), but {target} does not exist")
        except ValueError as exc:
            problems.append(str(exc))
    return graph, problems


def find_cycles(graph: dict[Path, list[Path]]) -> list[list[Path]]:
    """One cycle (``[a, b, ..., a]``) per back edge found by a depth-first search; only
    edges between modules of the graph count (vendor code is outside it)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[Path] = []
    cycles: list[list[Path]] = []

    def visit(node: Path) -> None:
        colour[node] = grey
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in graph:
                continue
            if colour[nxt] == grey:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif colour[nxt] == white:
                visit(nxt)
        stack.pop()
        colour[node] = black

    for node in sorted(graph):
        if colour[node] == white:
            visit(node)
    return cycles


def describe(cycle: list[Path], root: Path) -> str:
    return " -> ".join(str(p.relative_to(root.resolve())) for p in cycle)


# --- the real modules -----------------------------------------------------------------------


def test_the_page_modules_are_found_and_parsed():
    graph, problems = import_graph(JS_ROOT)
    assert not problems, "\n".join(problems)
    names = {p.name for p in graph}
    assert {"app.js", "order.js", "actions.js"} <= names, sorted(names)
    # The parser must see real edges, or an empty graph would pass the cycle check trivially.
    edges = {(a.name, b.name) for a, targets in graph.items() for b in targets}
    assert ("app.js", "order.js") in edges
    assert ("order.js", "actions.js") in edges
    assert ("trade.js", "money.js") in edges  # a multi-line import list


def test_no_import_cycle_between_the_page_modules():
    graph, problems = import_graph(JS_ROOT)
    assert not problems, "\n".join(problems)
    cycles = find_cycles(graph)
    assert not cycles, "ES module import cycle(s):\n" + "\n".join(describe(c, JS_ROOT) for c in cycles)


# --- the checker itself ---------------------------------------------------------------------


def test_parser_reads_every_static_form_and_ignores_comments_and_strings():
    source = """
// import {x} from './commented.js';
/** An example: import {y} from './in-jsdoc.js'; */
import {a,
  b, // the second
  c} from './multi.js';
import d from "./default.js";
import * as ns from './star.js';
import './side-effect.js';
export {e} from './reexport.js';
export * from './reexport-all.js';
export * as m from './reexport-ns.js';
export {local, other as renamed};
export function fromHex(hex) { return hex; }
const hint = 'create or import a wallet from "./not-an-import.js"';
const lazy = () => import('./dynamic.js');
"""
    assert static_specifiers(source) == ["./multi.js", "./default.js", "./star.js", "./side-effect.js",
                                         "./reexport.js", "./reexport-all.js", "./reexport-ns.js"]
    assert dynamic_specifiers(source) == ["./dynamic.js"]


def test_parser_refuses_an_import_it_does_not_understand():
    with pytest.raises(ValueError, match="line 2"):
        static_specifiers("\nimport {a} from someVariable;\n")


def test_checker_finds_a_cycle_and_a_missing_file(tmp_path):
    (tmp_path / "a.js").write_text("import {b} from './b.js';\nexport const a = 1;\n")
    (tmp_path / "b.js").write_text("import {c} from './c.js';\nexport const b = 2;\n")
    (tmp_path / "c.js").write_text("export {a} from './a.js';\nimport './gone.js';\nexport const c = 3;\n")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "v.js").write_text("import './a.js';\nimport './nowhere.js';\n")  # excluded
    graph, problems = import_graph(tmp_path)
    assert len(graph) == 3
    assert problems == [f"c.js: imports './gone.js', but {(tmp_path / 'gone.js').resolve()} does not exist"]
    assert [describe(c, tmp_path) for c in find_cycles(graph)] == ["a.js -> b.js -> c.js -> a.js"]
