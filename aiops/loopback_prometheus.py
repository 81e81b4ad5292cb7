"""A real Prometheus (Debian's ``prometheus``) and the dcgm-exporter answers it scrapes, on loopback,
for tests and benchmarks (the benchmarks use them too, and nothing imports ``tests``).

>>> with LoopbackExporter(body) as exporter, prometheus(tmp_path, exporter.target) as url:
...     exporter.body = changed     # the next scrape reads it
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from aiops.nats_cluster import free_ports

INSTALL = "sudo apt-get install -y prometheus"
STOP_TIMEOUT_S = 60.0
"""How long a stopping Prometheus may take to write its head block before it is killed."""


class LoopbackExporter:
    """An HTTP server on a free loopback port, answering every GET as a dcgm-exporter would.

    With ``bodies`` empty, every path answers ``body``; otherwise ``/<name>/...`` answers
    ``bodies[name]`` (404 for a name without one: one server standing in for many exporters).
    ``scrapes`` counts the requests answered."""

    def __init__(self, body: bytes = b"") -> None:
        self.body = body
        self.bodies: dict[str, bytes] = {}
        self.scrapes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if outer.bodies:
                    body = outer.bodies.get(self.path.split("/")[1], b"")
                    status = 200 if body else 404
                else:
                    body, status = outer.body, 200
                outer.scrapes += 1
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        """``host:port``, as a Prometheus scrape config names it."""
        self.base = f"http://{self.target}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackExporter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def prometheus_binary() -> str:
    """The ``prometheus`` on PATH; an error naming how to install it when there is none."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError(f"prometheus is not installed: {INSTALL}")
    return binary


@contextlib.contextmanager
def prometheus(
    data: Path,
    target: str,
    *,
    rule_files: tuple[Path, ...] = (),
    scrape_interval_s: int = 1,
    scrape_timeout_s: int | None = None,
    evaluation_interval_s: int | None = None,
) -> Iterator[str]:
    """A Prometheus on a free loopback port scraping ``target`` (``host:port``, job ``dcgm``), its
    config and TSDB under ``data``; yields its URL. Stopped (killed if it will not stop) on exit."""
    binary = prometheus_binary()
    [port] = free_ports(1)
    settings = [f"scrape_interval: {scrape_interval_s}s"]
    if scrape_timeout_s is not None:
        settings.append(f"scrape_timeout: {scrape_timeout_s}s")
    if evaluation_interval_s is not None:
        settings.append(f"evaluation_interval: {evaluation_interval_s}s")
    rules = f"rule_files: {[str(f) for f in rule_files]}\n" if rule_files else ""
    config = data / "prometheus.yml"
    config.write_text(
        f"global: {{{', '.join(settings)}}}\n"
        f"{rules}"
        "scrape_configs:\n"
        f"  - job_name: dcgm\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
