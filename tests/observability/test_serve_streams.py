"""``otc-bridge serve`` (gunicorn, buffering gthread worker) with streams open: the API still
answers, the cap answers 503, and in multiprocess mode ``/metrics`` sums the workers. A short
heartbeat lets the server notice closed streams quickly, so the workers stop without waiting."""

from __future__ import annotations

import requests
from bridge_support import open_sell
from sse_capacity import measure, serve, serve_env
from sse_support import SseClient, sample, scrape

from otc_bridge.client import BridgeClient

STREAMS = 6
API_THREADS = 4


def test_serve_holds_its_stream_slots_and_the_api_still_answers(tmp_path, dev_node):
    env = serve_env(dev_node.url, tmp_path, OTC_STREAM_MAX_CLIENTS=str(STREAMS), OTC_STREAM_HEARTBEAT_SECONDS="0.5")
    with serve(env, tmp_path, workers=1, threads=API_THREADS + STREAMS) as url:
        report = measure(url, dev_node, STREAMS + 1, samples=10)
    assert (report["streams_open"], report["streams_refused"], report["streams_stalled"]) == (STREAMS, 1, 0)
    assert report["api_answered"] and report["orderbook_ms_max"] < 2000
    assert report["response_to_all_streams_ms"] < 5000


def test_multiprocess_metrics_sum_every_worker(tmp_path, dev_node, seller):
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    env = serve_env(dev_node.url, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(prom_dir), OTC_STREAM_HEARTBEAT_SECONDS="0.5")
    with serve(env, tmp_path, workers=2, threads=API_THREADS + 2) as url:
        creates = 3
        for n in range(creates):  # a fresh connection each: any worker may take it
            open_sell(BridgeClient(url, session=requests.Session()), seller, amount_micro_rtc=1_000_000 + n)
        with SseClient(url) as sse:
            sse.ready()
            scrapes = [scrape(requests.get(url + "/metrics", timeout=10).text) for _ in range(6)]
    for got in scrapes:
        assert sample(got, "otc_node_calls_total", endpoint="create_job", outcome="ok") == creates
        assert sample(got, "otc_node_call_seconds_count", endpoint="create_job", outcome="ok") == creates
        assert sample(got, "otc_orders", status="open") == creates
        assert sample(got, "otc_stream_clients") == 1
    assert len(list(prom_dir.glob("*.db"))) >= 2  # each worker wrote its own file
