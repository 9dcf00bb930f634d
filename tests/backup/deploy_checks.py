"""What the deployment kit must cover, read from the source so it cannot drift: every
environment variable the bridge reads and every operator alert it can raise.

A module with a unique name (not conftest) so the test files can import it directly.
"""

from __future__ import annotations

import ast
import contextlib
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "otc_bridge"
#: The dev node and the dev/demo tooling stand in for outside systems or run only on a
#: developer's machine: their settings are not the bridge's.
NOT_DEPLOYED = ("dev",)
#: Variables the bridge reads that are the operating system's, not settings of its own.
GENERIC = frozenset({"PATH", "HOME", "XDG_CACHE_HOME"})
_SETTING = re.compile(r"\b(?:OTC|RUSTCHAIN|RC)_[A-Z0-9_]*[A-Z0-9]\b")
_ENV_READ = re.compile(r"""(?:environ|env)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""")


def deployed_sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in NOT_DEPLOYED)


@cache
def environment_variables() -> frozenset[str]:
    """Every setting the deployed code names (``OTC_*``, ``RUSTCHAIN_*``, ``RC_*`` anywhere in
    its source: a name in a message or a docstring is one an operator may look for, too) and
    every other variable it reads from an environment mapping by name."""
    found: set[str] = set()
    for path in deployed_sources():
        text = path.read_text(encoding="utf-8")
        found.update(_SETTING.findall(text))
        found.update(name for name in _ENV_READ.findall(text) if name not in GENERIC)
    return frozenset(found)


# --- operator alerts ------------------------------------------------------------------------------

def _constants() -> dict[str, dict[str, str]]:
    """Module-level ``NAME = "text"`` assignments: ``{name: {module path: text}}``."""
    out: dict[str, dict[str, str]] = {}
    for path in deployed_sources():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        out.setdefault(target.id, {})[str(path)] = node.value.value
    return out


class _PassedThrough(Exception):
    """The code is a parameter of the function that raises the alert: its callers name it."""


def _text(node: ast.AST, path: Path, constants: dict[str, dict[str, str]], params: frozenset[str] = frozenset()
          ) -> str:
    """The string ``node`` stands for: a literal, a module constant (of this module, or a
    name unique across the package), or ``mod.NAME``; :class:`_PassedThrough` for a
    parameter of the enclosing function; ValueError if it cannot be told."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    base = node.value if isinstance(node, ast.Subscript) else node  # alert[0] of alert=(code, message)
    if isinstance(base, ast.Name) and base.id in params:
        raise _PassedThrough(base.id)
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    values = constants.get(name or "", {})
    if str(path) in values and isinstance(node, ast.Name):
        return values[str(path)]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):  # module.NAME
        values = {where: text for where, text in values.items() if Path(where).stem == node.value.id} or values
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    raise ValueError(f"{path}:{node.lineno}: cannot tell which alert code {ast.dump(node)} is")


def _is_number(node: ast.AST) -> bool:
    """``42`` or ``-32603``: a numeric literal."""
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool)


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


@cache
def alert_codes() -> frozenset[str]:
    """Every operator alert code the deployed code can raise, found in its syntax:

    * a call of any function or method named ``alert``, ``alert_once``, ``_alert_once``,
      ``to_recovery`` (any name ending so) that has a ``code`` parameter, with ``X`` bound to
      it by keyword or by position: ``outbox.alert(tx, order, code=X)``,
      ``step.alert(X, message)``, ``step.to_recovery(reason, X)``, a module's own wrapper;
    * ``alert=(X, message)`` passed to a transition or annotation;
    * an outbox payload ``{"code": X, ...}`` built by hand, where ``X`` may be an f-string
      ``f"{name}_stalled"`` whose ``name`` comes from the calls of the enclosing function;
    * ``ALERT_CODE = X`` constants (a module's one alert, raised through a callable).

    Raises ValueError for a code it cannot resolve, so a new way of raising an alert fails
    the test instead of slipping past it.
    """
    constants = _constants()
    raisers = _raisers()
    codes: set[str] = set()
    templates: list[tuple[str, str, Path]] = []  # (function, f-string pattern, module)
    for path in deployed_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, function in _walk_with_function(tree):
            params = _parameters(function)

            def add(value: ast.AST, params: frozenset[str] = params, path: Path = path) -> None:
                with contextlib.suppress(_PassedThrough):  # its callers are scanned too
                    codes.add(_text(value, path, constants, params))

            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ALERT_CODE"
                                                    for t in node.targets):
                add(node.value)
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "alert" and isinstance(keyword.value, ast.Tuple):
                        add(keyword.value.elts[0])
                for argument in _code_arguments(node, raisers):
                    add(argument)
            # The OpenAPI document describes answers ("code" is a schema there), it raises nothing.
            if isinstance(node, ast.Dict) and path.name != "openapi.py":
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and key.value == "code" and value is not None
                            and not _is_number(value)):  # a number is a JSON-RPC error code, never an alert
                        if isinstance(value, ast.JoinedStr):
                            if function is None:
                                raise ValueError(f"{path}: an f-string alert code outside any function")
                            templates.append((function.name, _pattern(value), path))
                        else:
                            add(value)
    for function, pattern, path in templates:
        codes.update(_fill(function, pattern, path, constants))
    return frozenset(codes)


_RAISER = re.compile(r"(alert|alert_once|to_recovery)$")


def _raisers() -> dict[str, list[tuple[bool, list[str]]]]:
    """Functions that raise an alert given its code: ``{name: [(is a method, positional
    parameters without self)]}`` for every def whose name ends in ``alert``, ``alert_once``
    or ``to_recovery`` and that has a parameter ``code``."""
    found: dict[str, list[tuple[bool, list[str]]]] = {}
    for path in deployed_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and _RAISER.search(node.name) and "code" in _parameters(node):
                positional = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
                method = bool(positional) and positional[0] == "self"
                found.setdefault(node.name, []).append((method, positional[1:] if method else positional))
    return found


def _code_arguments(call: ast.Call, raisers: dict[str, list[tuple[bool, list[str]]]]) -> list[ast.AST]:
    """The expressions a call passes as the ``code`` of an alert-raising function: by
    keyword, or by the position ``code`` has in a matching definition (a method for
    ``obj.name(...)``, a function for ``name(...)``; ``module.name(...)`` may be either)."""
    name = _call_name(call)
    if name not in raisers:
        return []
    by_keyword = [k.value for k in call.keywords if k.arg == "code"]
    if by_keyword:
        return by_keyword
    attribute = isinstance(call.func, ast.Attribute)
    found = []
    for method, positional in raisers[name]:
        if method and not attribute:
            continue
        if "code" in positional and len(call.args) > positional.index("code"):
            found.append(call.args[positional.index("code")])
    # One expression, whichever definition is meant (storage.outbox.alert takes code by keyword only).
    return found[:1]


def _walk_with_function(tree: ast.AST):
    """Every node of ``tree`` with its innermost enclosing function (``None`` at module level)."""
    stack: list[tuple[ast.AST, ast.FunctionDef | None]] = [(tree, None)]
    while stack:
        node, function = stack.pop()
        yield node, function
        inner = node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else function
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _parameters(function: ast.FunctionDef | None) -> frozenset[str]:
    if function is None:
        return frozenset()
    args = function.args
    return frozenset(a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs))


def _pattern(value: ast.JoinedStr) -> str:
    """``f"{name}_stalled"`` as ``"{}_stalled"`` (one placeholder allowed)."""
    parts = ["{}" if isinstance(part, ast.FormattedValue) else part.value for part in value.values]
    if parts.count("{}") != 1:
        raise ValueError(f"alert code f-string with {parts.count('{}')} placeholders")
    return "".join(parts)


def _fill(function: str, pattern: str, defined_in: Path, constants: dict[str, dict[str, str]]) -> set[str]:
    """``pattern`` filled with the second argument (after the database) of every call of
    ``function`` in the package: ``alert_if_stalled(db, reconcile.LEASE_NAME, ...)``."""
    filled = set()
    for path in deployed_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _call_name(node) == function and len(node.args) >= 2:
                filled.add(pattern.format(_text(node.args[1], path, constants)))
    if not filled:
        raise ValueError(f"{defined_in}: {function} builds an alert code {pattern!r} but is never called")
    return filled
