"""Reading DCGM metrics: the Prometheus text format, and where a scrape comes from.

Three sources behind one protocol: dcgm-exporter's ``/metrics`` over HTTP (on a node, or the fleet
twin's), a Prometheus that scrapes the exporters (through prometheus-api-client), and text from a
function (the twin in the same process). All return the same ``Sample`` list.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_api_client import PrometheusConnect


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_LINE = re.compile(
    r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+-?\d+)?\s*$"
)
_LABEL = re.compile(r'\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse_exposition(text: str, names: Container[str] | None = None) -> tuple[list[Sample], int]:
    """Samples in Prometheus text format, and how many lines were malformed (skipped, not fatal).

    With ``names``, only those metrics are parsed (the label parsing is the costly part).
    """
    samples: list[Sample] = []
    malformed = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            malformed += 1
            continue
        if names is not None and m["name"] not in names:
            continue
        try:
            value = float(m["value"])
        except ValueError:
            malformed += 1
            continue
        labels: dict[str, str] = {}
        body = m["labels"] or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if lm is None:
                break
            labels[lm["key"]] = _unescape(lm["value"])
            pos = lm.end()
        if pos < len(body.rstrip()):
            malformed += 1
            continue
        samples.append(Sample(m["name"], labels, value))
    return samples, malformed


class MetricSource(Protocol):
    """Somewhere DCGM samples come from."""

    @property
    def where(self) -> str: ...

    async def scrape(self) -> list[Sample]: ...


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
        samples, bad = parse_exposition(self._render(), self._names)
        self.malformed += bad
        return samples


class ExporterSource:
    """dcgm-exporter's ``/metrics`` over HTTP."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, names: Container[str] | None = None) -> None:
        self.url = url
        self._timeout = timeout_s
        self._names = names
        self.malformed = 0

    @property
    def where(self) -> str:
        return self.url

    def _fetch(self) -> str:
        with urllib.request.urlopen(self.url, timeout=self._timeout) as resp:
            body: bytes = resp.read()
            return body.decode("utf-8", "replace")

    async def scrape(self) -> list[Sample]:
        text = await asyncio.to_thread(self._fetch)
        samples, bad = parse_exposition(text, self._names)
        self.malformed += bad
        return samples


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
