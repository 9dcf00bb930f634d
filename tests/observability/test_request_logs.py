"""Request ids and structured logs: echoed or generated, on every record made during a request,
one access line per request, JSON lines from :func:`otc_bridge.notify.logs.configure_logging`."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from otc_bridge.notify import logs


@pytest.fixture
def logging_app(bridge_app):
    """The test app plus a route that logs a warning (to see the request id on it)."""
    def noisy():
        logging.getLogger("otc_bridge.test").warning("inside the request")
        return {"ok": True}

    bridge_app.add_url_rule("/test-log", view_func=noisy)
    return bridge_app


@pytest.fixture
def root_logging():
    """Restore the root logger after a test reconfigures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("given, echoed", [
    ("abc-123", True), ("a" * 64, True), ("4bf92f3577b34da6a3ce929d0e0e4736", True),
    ("a" * 65, False), ("two words", False), ("quote\"d", False), ("", False),
])
def test_request_id_echoed_only_when_plain(http_client, given, echoed):
    returned = http_client.get("/healthz", headers={"X-Request-Id": given}).headers["X-Request-Id"]
    if echoed:
        assert returned == given
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", returned)


def test_every_record_in_a_request_carries_its_id(logging_app, caplog):
    caplog.handler.addFilter(logs.RequestIdFilter())
    caplog.set_level(logging.INFO)
    response = logging_app.test_client().get("/test-log", headers={"X-Request-Id": "req-77"})
    assert response.headers["X-Request-Id"] == "req-77"
    inside = [r for r in caplog.records if r.name == "otc_bridge.test"]
    assert [r.request_id for r in inside] == ["req-77"]
    access = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    assert len(access) == 1
    line = access[0]
    assert (line.method, line.path, line.status, line.request_id) == ("GET", "/test-log", 200, "req-77")
    assert line.duration_ms >= 0


def test_generated_id_is_the_one_logged(http_client, caplog):
    caplog.set_level(logging.INFO, logger=logs.ACCESS_LOGGER)
    response = http_client.get("/api/orders?pair=NOPE")
    assert response.status_code == 400
    (line,) = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    assert line.request_id == response.headers["X-Request-Id"] and line.status == 400


def test_json_lines_with_request_id_and_extras(logging_app, root_logging):
    out = io.StringIO()
    logs.configure_logging("INFO", stream=out)
    logging_app.test_client().get("/test-log?secret=not-logged", headers={"X-Request-Id": "req-88"})
    logging.getLogger("otc_bridge.test").error("outside", exc_info=ValueError("boom"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    inside = next(x for x in lines if x["message"] == "inside the request")
    assert (inside["level"], inside["logger"], inside["request_id"]) == ("WARNING", "otc_bridge.test", "req-88")
    access = next(x for x in lines if x["logger"] == logs.ACCESS_LOGGER)
    assert access["request_id"] == "req-88" and access["path"] == "/test-log" and access["status"] == 200
    assert "not-logged" not in out.getvalue()
    outside = next(x for x in lines if x["message"] == "outside")
    assert outside["request_id"] is None and "ValueError: boom" in outside["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", outside["ts"])


def test_plain_text_logs_for_a_terminal(root_logging):
    out = io.StringIO()
    logs.configure_logging("INFO", json_lines=False, stream=out)
    logging.getLogger("otc_bridge.test").info("hello")
    assert out.getvalue().rstrip().endswith("INFO otc_bridge.test [None]: hello")
