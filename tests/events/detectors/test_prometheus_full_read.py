"""The changes source's full read (the detector's baseline) on a fleet too big for it: when
Prometheus answers the per-field questions with its query timeout, the round asks for the changes
instead, the rounds go on, and the full read is tried again after ``retry_full_s``.

A Prometheus that times out on demand cannot be had (test_prometheus_changes.py runs the real one
for everything else): this loopback server answers Prometheus's HTTP API with its own JSON — the
timeout error for a bare metric name, one changed GPU for any other question."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from events.detectors.prometheus_changes import PrometheusChangesSource

TIMEOUT = {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}
ONE_GPU = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {
                "metric": {"__name__": "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Hostname": "node-7", "gpu": "3"},
                "value": [1765000000.0, "1"],
            }
        ],
    },
}


@pytest.fixture
def prometheus_api() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("query", [""])[0]
            asked.append(query)
            bare = query.isidentifier()
            body = json.dumps(TIMEOUT if bare else ONE_GPU).encode()
            self.send_response(503 if bare else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()


async def test_a_full_read_past_the_query_timeout_leaves_the_rounds_of_changes_going(
    prometheus_api: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    url, asked = prometheus_api
    source = PrometheusChangesSource(url, retry_full_s=3600)
    samples = await source.scrape()
    assert source.last is not None and source.last.kind == "changes"
    assert [(s.labels["Hostname"], s.labels["gpu"]) for s in samples] == [("node-7", "3")]
    assert asked[0].isidentifier() and not asked[-1].isidentifier()  # a field first, then the changes
    assert any("query timed out in expression evaluation" in r.getMessage() for r in caplog.records)

    before = len(asked)
    await source.scrape()
    # changes only, no full read: which GPUs, then their fields
    assert len(asked) == before + 2 and not any(q.isidentifier() for q in asked[before:])

    eager = PrometheusChangesSource(url, retry_full_s=0)
    await eager.scrape()
    before = len(asked)
    await eager.scrape()
    assert asked[before].isidentifier()  # its retry is due: the full read tried again
    assert eager.last is not None and eager.last.kind == "changes"
