"""Reading DCGM metrics: the Prometheus text format, and where a scrape comes from.

Three sources behind one protocol: dcgm-exporter's ``/metrics`` over HTTP (on a node, or the fleet
twin's), a Prometheus that scrapes the exporters (through prometheus-api-client), and text from a
function (the twin in the same process). All return the same ``Sample`` list.

The text parser is hand-written rather than ``prometheus_client``'s: on one scrape of 2,048 GPUs
(8.3 MB) it takes about 0.35 s where ``prometheus_client.parser`` takes about 4.2 s, 12-16x slower
(``evals/benchmarks/exposition_parser.py``), and that one stops at the first malformed line and
renames counter samples ``<name>_total``; this one counts a malformed line and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import aiohttp
from prometheus_api_client import PrometheusConnect

from events.metrics import DCGM_EXPORTER_FAILURES, DCGM_EXPORTER_UP

if TYPE_CHECKING:
    from events.detectors.dcgm import GpuReading

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_TIMESTAMP = re.compile(r"-?\d+")
_LABEL = re.compile(r'\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse_exposition(text: str, names: Container[str] | None = None) -> tuple[list[Sample], int]:
    """Samples in Prometheus text format, and how many lines were malformed (skipped, not fatal).

    With ``names``, only those metrics are parsed; the others are skipped on their name alone.
    Label sets are parsed once per distinct text: an exporter repeats a GPU's labels on every one
    of its metrics, so samples with the same label text share one (read-only) dict.
    """
    samples: list[Sample] = []
    malformed = 0
    label_sets: dict[str, dict[str, str] | None] = {}
    valid_names: dict[str, bool] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # name{labels} value [timestamp], or name value [timestamp]; label values may hold spaces.
        open_at = line.find("{")
        if open_at >= 0:
            close_at = line.rfind("}")
            if close_at < open_at:
                malformed += 1
                continue
            name, body, rest = line[:open_at].rstrip(), line[open_at + 1 : close_at], line[close_at + 1 :]
        else:
            name, _, rest = line.partition(" ")
            body = ""
        if names is not None and name not in names:
            continue
        ok = valid_names.get(name)
        if ok is None:
            ok = valid_names[name] = _NAME.fullmatch(name) is not None
        fields = rest.split()
        if not ok or not 1 <= len(fields) <= 2 or (len(fields) == 2 and not _TIMESTAMP.fullmatch(fields[1])):
            malformed += 1
            continue
        try:
            value = float(fields[0])
        except ValueError:
            malformed += 1
            continue
        if body in label_sets:
            labels = label_sets[body]
        else:
            labels = label_sets[body] = _parse_labels(body)
        if labels is None:
            malformed += 1
            continue
        samples.append(Sample(name, labels, value))
    return samples, malformed


def _parse_labels(body: str) -> dict[str, str] | None:
    """The labels between the braces; None when they are malformed."""
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        lm = _LABEL.match(body, pos)
        if lm is None:
            break
        labels[lm["key"]] = _unescape(lm["value"])
        pos = lm.end()
    if pos < len(body.rstrip()):
        return None
    return labels


class MetricSource(Protocol):
    """Somewhere DCGM samples come from."""

    @property
    def where(self) -> str: ...

    async def scrape(self) -> list[Sample]: ...


@runtime_checkable
class ReadingSource(Protocol):
    """Somewhere DCGM fields come from already per GPU (no samples to parse and group)."""

    @property
    def where(self) -> str: ...

    async def read(self) -> list[GpuReading]: ...


class TextSource:
    """Exposition text from a function in this process (the fleet twin's exporter)."""

    def __init__(self, render: Callable[[], str], *, names: Container[str] | None = None) -> None:
        self._render = render
        self._names = names
        self.malformed = 0

    @property
    def where(self) -> str:
        return "in-process exporter"

    async def scrape(self) -> list[Sample]:
        # Rendered here (the text reads state the event loop owns), parsed in a worker thread.
        text = self._render()
        samples, bad = await asyncio.to_thread(parse_exposition, text, self._names)
        self.malformed += bad
        return samples


class ExporterSource:
    """dcgm-exporter's ``/metrics`` over HTTP: one exporter, or a fleet's (one per node) without a
    Prometheus in between (``AIOPS_DCGM_EXPORTERS``).

    The exporters are fetched concurrently, at most ``concurrency`` at a time, each within
    ``timeout_s``; each answer is parsed in a worker thread. An exporter that cannot be read (refused,
    timed out, an HTTP error) leaves its GPUs out of this round and is reported — ``down`` holds why,
    ``aiops_dcgm_exporter_up`` and ``aiops_dcgm_exporter_scrape_failures_total`` count it, a log line
    marks each change between up and down — but the others still count. Only a round in which no
    exporter answered fails (``OSError``), so a single exporter behaves as before.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout_s: float = 5.0,
        concurrency: int = 32,
        names: Container[str] | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(dict.fromkeys(urls))
        if not self.urls:
            raise ValueError("ExporterSource needs at least one dcgm-exporter URL")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self._timeout = timeout_s
        self._concurrency = concurrency
        self._names = names
        self.malformed = 0
        self.failures = 0
        self.bytes_read = 0
        self.down: dict[str, str] = {}
        """Exporters the last round could not read, and why."""

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def where(self) -> str:
        return self.urls[0] if len(self.urls) == 1 else f"{len(self.urls)} dcgm-exporters"

    async def scrape(self) -> list[Sample]:
        gate = asyncio.Semaphore(self._concurrency)
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            answers = await asyncio.gather(*(self._one(http, gate, url) for url in self.urls))
        samples: list[Sample] = []
        for url, answer in zip(self.urls, answers, strict=True):
            if isinstance(answer, str):
                self._mark_down(url, answer)
            else:
                self._mark_up(url)
                samples += answer
        if len(self.down) == len(self.urls):
            raise OSError(
                f"no dcgm-exporter answered: {'; '.join(f'{u}: {r}' for u, r in self.down.items())}"
            )
        return samples

    async def _one(
        self, http: aiohttp.ClientSession, gate: asyncio.Semaphore, url: str
    ) -> list[Sample] | str:
        """The exporter's samples, or why it could not be read."""
        async with gate:
            try:
                async with http.get(url) as answer:
                    if answer.status != 200:
                        return f"HTTP {answer.status}"
                    body = await answer.read()
            except TimeoutError:
                return f"no answer within {self._timeout:g}s"
            except (aiohttp.ClientError, OSError) as exc:
                return f"{type(exc).__name__}: {exc}"
        self.bytes_read += len(body)
        # Parsed in a worker thread: a node's scrape is thousands of lines, a fleet's far more.
        samples, bad = await asyncio.to_thread(parse_exposition, body.decode("utf-8", "replace"), self._names)
        self.malformed += bad
        return samples

    def _mark_down(self, url: str, reason: str) -> None:
        self.failures += 1
        DCGM_EXPORTER_FAILURES.labels(url).inc()
        DCGM_EXPORTER_UP.labels(url).set(0)
        if url not in self.down:
            log.warning(
                "dcgm-exporter %s cannot be read (%s): its GPUs are left out until it answers", url, reason
            )
        self.down[url] = reason

    def _mark_up(self, url: str) -> None:
        DCGM_EXPORTER_UP.labels(url).set(1)
        if self.down.pop(url, None) is not None:
            log.info("dcgm-exporter %s answers again", url)


DCGM_PROMQL = (
    '{__name__=~"DCGM_FI_DEV_(ECC_.*|RETIRED_.*|ROW_REMAP_.*|.*_REMAPPED_ROWS|XID_ERRORS)'
    '|DCGM_EXP_XID_ERRORS_COUNT"}'
)


class PrometheusSource:
    """The latest DCGM samples of every exporter a Prometheus scrapes (instant query)."""

    def __init__(self, url: str, *, query: str = DCGM_PROMQL, timeout_s: float = 10.0) -> None:
        self.url = url
        self.query = query
        self._prom = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout_s)

    @property
    def where(self) -> str:
        return f"{self.url} ({self.query})"

    async def scrape(self) -> list[Sample]:
        result: list[dict[str, Any]] = await asyncio.to_thread(self._prom.custom_query, self.query)
        samples = []
        for series in result:
            labels = dict(series.get("metric", {}))
            name = labels.pop("__name__", "")
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            samples.append(Sample(name, labels, value))
        return samples
