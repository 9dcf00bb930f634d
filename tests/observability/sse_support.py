"""A small Server-Sent Events reader for the tests and the capacity script.

Every read is bounded: the socket read timeout bounds each wait for bytes, and the
server's heartbeat (a fraction of a second in the tests) guarantees a frame arrives often
enough for the deadlines below to be checked. No sleeps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Frame:
    """One SSE frame: ``event``/``id``/``data`` fields, or a ``comment`` (heartbeat)."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data or "null")


@dataclass
class SseClient:
    """``GET /api/stream`` with ``params`` (and ``Last-Event-ID``), read frame by frame."""

    base_url: str
    params: dict[str, str] = field(default_factory=dict)
    last_event_id: int | None = None
    read_timeout: float = 5.0

    def __post_init__(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        self.response = requests.get(self.base_url + "/api/stream", params=self.params, headers=headers,
                                     stream=True, timeout=(5, self.read_timeout))
        self._lines = self.response.iter_lines(chunk_size=None) if self.response.status_code == 200 else iter(())

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.response.close()

    def next_frame(self) -> Frame:
        """The next complete frame; StopIteration when the server ended the stream."""
        frame, seen = Frame(), False
        for raw in self._lines:
            line = raw.decode()
            if line == "":
                if seen:
                    return frame
                continue
            seen = True
            if line.startswith(":"):
                frame.comment = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            setattr(frame, name, value[1:] if value.startswith(" ") else value)
        raise StopIteration

    def read_until(self, done: Callable[[list[Frame]], bool], timeout: float = 15.0) -> list[Frame]:
        """Order frames (``event: order``) until ``done(frames)``; AssertionError after ``timeout``."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while not done(frames):
            assert time.monotonic() < deadline, f"stream: condition not met; got {[f.data for f in frames]}"
            frame = self.next_frame()
            if frame.event == "order":
                frames.append(frame)
        return frames

    def ready(self) -> Frame:
        """The first frame, ``event: ready`` (the subscription is in place once it arrived)."""
        frame = self.next_frame()
        assert frame.event == "ready", frame
        return frame


def reached(order_id: str, status: str) -> Callable[[list[Frame]], bool]:
    """``done`` for :meth:`SseClient.read_until`: the order's transition to ``status`` was seen."""
    def done(frames: list[Frame]) -> bool:
        return any(f.json()["order_id"] == order_id and f.json()["event"]["to_status"] == status for f in frames)
    return done


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> ``{(sample name, sorted label items): value}`` via prometheus_client's parser."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
