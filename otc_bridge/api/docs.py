"""``/openapi.json`` and ``/docs``: the API's OpenAPI document and a reference page made from it.

The page is plain HTML rendered here from the same document (:mod:`otc_bridge.api.openapi`):
no script, no stylesheet, nothing fetched from elsewhere, so it works offline and under the
app's Content-Security-Policy. Both are built once per app (the document depends only on the
configuration) and cached.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from flask import Blueprint, Response, current_app

from otc_bridge.api import openapi

bp = Blueprint("docs", __name__)

_EXTENSION = "otc_openapi"
_METHODS = ("get", "post", "put", "patch", "delete")


def _cached() -> dict[str, Any]:
    """``{"document": dict, "json": bytes, "html": str}`` for this app, built on first use."""
    cache = current_app.extensions.get(_EXTENSION)
    if cache is None:
        doc = openapi.document(current_app.extensions["otc_bridge"].config)
        cache = {"document": doc, "json": json.dumps(doc, indent=1).encode(), "html": render(doc)}
        current_app.extensions[_EXTENSION] = cache
    return cache


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document (application/json)."""
    response = Response(_cached()["json"], mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/docs")
def docs_page():
    """The API reference as one HTML page (text/html)."""
    response = Response(_cached()["html"], mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


# --- rendering ------------------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(markdownish: str) -> str:
    """Escaped paragraphs, with the document's two inline marks: `code` and **bold**."""
    out = []
    for paragraph in re.split(r"\n\s*\n", markdownish.strip()):
        text = _e(" ".join(paragraph.split()))
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
        text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
        out.append(f"<p>{text}</p>")
    return "\n".join(out)


def _anchor(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A one-line description of a schema's type: `string`, `integer | null`, a linked schema name."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    if "oneOf" in schema:
        return " | ".join(_type(s) for s in schema["oneOf"])
    if "const" in schema:
        return f"<code>{_e(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{_e(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if isinstance(kind, list):
        return " | ".join(_e(k) for k in kind)
    return _e(kind or "any")


_LIMITS = (("minimum", "≥ {}"), ("maximum", "≤ {}"), ("minLength", "length ≥ {}"), ("maxLength", "length ≤ {}"),
           ("pattern", "matches <code>{}</code>"), ("default", "default <code>{}</code>"))


def _limits(schema: dict[str, Any]) -> str:
    found = []
    for key, text in _LIMITS:
        if key in schema:
            value = schema[key] if key != "default" else json.dumps(schema[key])
            found.append(text.format(_e(value)))
    return "; ".join(found)


def _schema_table(schema: dict[str, Any]) -> str:
    """Rows of an object schema's properties: name, type, required, limits, description."""
    properties = schema.get("properties")
    if not properties:
        return f"<p>{_type(schema)} {_e(schema.get('description', ''))}</p>"
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in properties.items():
        rows.append(f"<tr><td><code>{_e(name)}</code></td><td>{_type(prop)}</td>"
                    f"<td>{'yes' if name in required else ''}</td><td>{_limits(prop)}</td>"
                    f"<td>{_e(prop.get('description', ''))}</td></tr>")
    extra = schema.get("additionalProperties")
    tail = "" if extra is False else "<p>Other keys may appear.</p>"
    alternatives = "".join(
        "<p>At least one of: " + ", ".join(f"<code>{_e(r)}</code>" for a in group["anyOf"] for r in a["required"])
        + "</p>" for group in schema.get("allOf", ()) if "anyOf" in group)
    return ("<table><thead><tr><th>field</th><th>type</th><th>required</th><th>limits</th><th>meaning</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>{alternatives}{tail}")


def _parameter(doc: dict[str, Any], param: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in param:
        return doc["components"]["parameters"][_ref_name(param["$ref"])]
    return param


def _operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any], shared: list) -> str:
    anchor = _anchor("op", method, path)
    parts = [f'<section id="{anchor}"><h3>{_e(method.upper())} <code>{_e(path)}</code></h3>',
             f"<p><strong>{_e(op.get('summary', ''))}</strong></p>", _text(op.get("description", ""))]
    signed = op.get("x-wallet-signature")
    if signed:
        bound = ", ".join(f"<code>{_e(b)}</code>" for b in signed["bound_fields"]) or "none"
        parts.append(f"<p>Signed by the wallet: action <code>{_e(signed['action'])}</code>, order_id "
                     f"{_e(signed['order_id'])}, bound fields {bound}.</p>")
    if "security" in op:
        schemes = [" + ".join(s) or "none" for s in (list(item) for item in op["security"])]
        parts.append(f"<p>Authorization: {_e(' or '.join(schemes))}.</p>")
    params = [_parameter(doc, p) for p in (*shared, *op.get("parameters", ()))]
    if params:
        rows = "".join(f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                       f"<td>{'yes' if p.get('required') else ''}</td><td>{_type(p.get('schema', {}))}</td>"
                       f"<td>{_limits(p.get('schema', {}))}</td><td>{_text(p.get('description', ''))}</td></tr>"
                       for p in params)
        parts.append("<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>required</th><th>type</th>"
                     f"<th>limits</th><th>meaning</th></tr></thead><tbody>{rows}</tbody></table>")
    body = op.get("requestBody")
    if body:
        for media, content in body["content"].items():
            parts.append(f"<h4>Request body ({_e(media)})</h4><p>{_type(content['schema'])}</p>")
    rows = []
    for status, response in op["responses"].items():
        media = ", ".join(f"{_e(m)}: {_type(c.get('schema', {}))}" for m, c in response.get("content", {}).items())
        rows.append(f"<tr><td>{_e(status)}</td><td>{_e(response['description'])}</td><td>{media}</td></tr>")
    parts.append("<h4>Responses</h4><table><thead><tr><th>status</th><th>when</th><th>body</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table></section>")
    return "\n".join(parts)


def render(doc: dict[str, Any]) -> str:
    """The whole reference page (an HTML document) for the OpenAPI ``doc``."""
    info = doc["info"]
    toc, sections = [], []
    for tag in [t["name"] for t in doc.get("tags", ())]:
        entries, blocks = [], []
        for path, item in doc["paths"].items():
            for method in _METHODS:
                op = item.get(method)
                if op is None or tag not in op.get("tags", ()):
                    continue
                entries.append(f'<li><a href="#{_anchor("op", method, path)}">{_e(method.upper())} '
                               f"<code>{_e(path)}</code></a> {_e(op.get('summary', ''))}</li>")
                blocks.append(_operation(doc, path, method, op, item.get("parameters", [])))
        if entries:
            toc.append(f"<li>{_e(tag)}<ul>{''.join(entries)}</ul></li>")
            sections.append(f'<h2 id="tag-{_e(tag)}">{_e(tag)}</h2>' + "\n".join(blocks))
    schemas = "\n".join(f'<section id="schema-{_e(name)}"><h3>{_e(name)}</h3>{_text(schema.get("description", ""))}'
                        f"{_schema_table(schema)}</section>"
                        for name, schema in doc["components"]["schemas"].items())
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(info['title'])} {_e(info['version'])}</title></head><body>\n"
            f"<h1>{_e(info['title'])} <small>{_e(info['version'])}</small></h1>\n{_text(info['description'])}\n"
            '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>\n'
            f"<nav><ul>{''.join(toc)}<li><a href=\"#schemas\">schemas</a></li></ul></nav>\n"
            + "\n".join(sections) + f'\n<h2 id="schemas">Schemas</h2>\n{schemas}\n</body></html>\n')
