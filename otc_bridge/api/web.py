"""The web page and the liveness probe."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    """The trading page (served from our own origin under a strict CSP)."""
    return current_app.send_static_file("index.html")


@bp.get("/healthz")
def healthz():
    """Liveness: the process is up and serving."""
    return jsonify(ok=True)
