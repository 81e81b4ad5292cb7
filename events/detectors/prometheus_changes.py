"""DCGM at fleet scale: ask Prometheus only for the GPUs whose fields changed.

A 10,000-GPU cluster exports on the order of a hundred thousand DCGM series; pulling every one each
round (``PrometheusSource``) moves them all over the wire and through the detector, though almost
none changed. This source asks one PromQL question per round — the current DCGM fields of every GPU
for which, within ``window``:

- an error counter rose (``increase(...) > 0``: ECC single- and double-bit counts, retired pages,
  remapped rows, the exporter's Xid count) — counter resets are not increases;
- a state field changed (``changes(...) > 0``: a row remap or page retirement pending or cleared, a
  remap failure, the last Xid);
- a threshold holds (evaluated in PromQL, DCGM's own limits): a remap failure, retired pages at the
  soft limit, 512 uncorrectable remapped rows, single-bit errors above ``sbe_per_hour``;

and the answer is what the detector compares, as before. Once at start and every ``resync_s`` it
reads every GPU (the detector's baseline: one question per DCGM field, each a series a GPU; a full
read that fails, e.g. Prometheus's query timeout on a huge fleet, leaves the rounds of changes going
and is retried after ``retry_full_s``); between resyncs the bytes and the detector's work grow
with the faults, not with the fleet. Each round's bytes and Prometheus evaluation time are kept
(``last``) for the benchmark (evals/benchmarks/dcgm_fleet.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from events.detectors.dcgm import (
    DEFAULT_SBE_PER_HOUR,
    LAST_XID,
    METRIC_NAMES,
    RETIRED_PAGES_SOFT_LIMIT,
    UNCORRECTABLE_ROWS_LIMIT,
    XID_COUNT,
)
from events.detectors.exposition import DCGM_PROMQL, Sample

COUNTERS = (
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    XID_COUNT,
)
STATES = (
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    LAST_XID,
)


log = logging.getLogger(__name__)

NODES_PER_QUERY = 200
RECORDED = "gpu:dcgm_attention"
"""The recording rule (deploy/prometheus/recording-rules.yml) holding ``attention_expr("1m")``."""


def changed_query(
    window: str = "2m",
    *,
    keys: str = "Hostname, gpu",
    sbe_per_hour: float = DEFAULT_SBE_PER_HOUR,
    recorded: bool = False,
) -> str:
    """One PromQL expression: the DCGM fields of the GPUs that changed within ``window`` or are past
    a threshold. ``recorded``: the GPUs come from the recording rule ``gpu:dcgm_attention``, which
    Prometheus evaluates at its own rule interval (cheap to ask; the rule's window is 1m)."""
    which = RECORDED if recorded else f"({attention_expr(window, keys=keys, sbe_per_hour=sbe_per_hour)})"
    return f"{DCGM_PROMQL} and on ({keys}) {which}"


def attention_expr(
    window: str = "2m", *, keys: str = "Hostname, gpu", sbe_per_hour: float = DEFAULT_SBE_PER_HOUR
) -> str:
    """The GPUs (by ``keys``) that changed within ``window`` or are past a DCGM limit."""
    by = f"max by ({keys})"
    # One term per field: a range function drops the metric name, and series of different fields
    # with the same labels may not meet inside one function call.
    changed = " or ".join(
        [
            *(f"{by} (increase({name}[{window}])) > 0" for name in COUNTERS),
            *(f"{by} (changes({name}[{window}])) > 0" for name in STATES),
            f"{by} (DCGM_FI_DEV_ROW_REMAP_FAILURE) > 0",
            f"{by} (DCGM_FI_DEV_ROW_REMAP_PENDING) > 0",
            f"{by} (DCGM_FI_DEV_RETIRED_PENDING) > 0",
            f"{by} (DCGM_FI_DEV_RETIRED_SBE + DCGM_FI_DEV_RETIRED_DBE) >= {RETIRED_PAGES_SOFT_LIMIT}",
            f"{by} (DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS) >= {UNCORRECTABLE_ROWS_LIMIT}",
            f"{by} (rate(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL[1h]) * 3600) > {sbe_per_hour:g}",
        ]
    )
    return changed


_REGEX_META = re.compile(r"([.^$*+?()\[\]{}|\\])")


def _literal(name: str) -> str:
    """``name`` as a regex matching itself, inside a PromQL double-quoted string (so ``.`` becomes
    ``\\.``: the regex's backslash, escaped once more for the string)."""
    return _REGEX_META.sub(lambda m: "\\\\" + m.group(1), name)


class PrometheusRefused(OSError):
    """An HTTP error answer of Prometheus, with the reason its body gives (an ``OSError``, as the
    ``HTTPError`` it replaces: a Prometheus still starting answers 503)."""


@dataclass
class Round:
    kind: str
    """``full`` (every GPU: the baseline) or ``changes``."""
    series: int
    bytes: int
    wall_s: float
    eval_s: float | None
    """Prometheus's own evaluation time (``stats=all``), when it reports one."""


class PrometheusChangesSource:
    """``MetricSource`` for ``DetectorService``: a full read every ``resync_s``, changes otherwise."""

    def __init__(
        self,
        url: str,
        *,
        window: str = "2m",
        resync_s: float = 3600.0,
        keys: str = "Hostname, gpu",
        timeout_s: float = 30.0,
        sbe_per_hour: float = DEFAULT_SBE_PER_HOUR,
        recorded: bool = False,
        prefer_recorded: bool = False,
        retry_full_s: float = 300.0,
    ) -> None:
        """``recorded``: always read the recording rule; ``prefer_recorded``: read it when this
        Prometheus has it loaded (checked at each full read), else ask the question at query time."""
        self.url = url.rstrip("/")
        self.recorded = recorded
        self.prefer_recorded = prefer_recorded
        self.keys = [k.strip() for k in keys.split(",")]
        self.query = changed_query(window, keys=keys, sbe_per_hour=sbe_per_hour, recorded=recorded)
        self.resync_s = resync_s
        self.retry_full_s = retry_full_s
        self.timeout_s = timeout_s
        self.last: Round | None = None
        self._synced_at: float | None = None

    @property
    def where(self) -> str:
        return f"{self.url} (changes only)"

    def rule_loaded(self) -> bool:
        """Whether this Prometheus evaluates the ``gpu:dcgm_attention`` recording rule."""
        with urllib.request.urlopen(f"{self.url}/api/v1/rules?type=record", timeout=self.timeout_s) as answer:
            groups = json.loads(answer.read()).get("data", {}).get("groups", [])
        return any(rule.get("name") == RECORDED for group in groups for rule in group.get("rules", []))

    async def scrape(self) -> list[Sample]:
        now = time.monotonic()
        full = self._synced_at is None or now - self._synced_at >= self.resync_s
        if full:
            try:
                samples, self.last = await asyncio.to_thread(self.ask_full)
                self._synced_at = now
            except OSError as exc:
                # Too big to read whole within Prometheus's query timeout (or Prometheus is down):
                # the rounds of changes go on without the baseline (states and DCGM limits are found
                # on first sight; deltas from the next change on), and the full read is tried again.
                self._synced_at = now - self.resync_s + min(self.resync_s, self.retry_full_s)
                log.warning("the full DCGM read failed (%s); reading changes, full read again later", exc)
                samples, self.last = await asyncio.to_thread(self.ask, self.query, "changes")
            if self.prefer_recorded and not self.recorded and await asyncio.to_thread(self.rule_loaded):
                # The rules of deploy/prometheus/ are loaded: ask their answer (a lookup), not the
                # whole question again (a scan of every series each round).
                self.recorded = True
                log.info("DCGM rounds read the recording rule %s", RECORDED)
        elif self.recorded:
            samples, self.last = await asyncio.to_thread(self.ask_recorded)
        else:
            samples, self.last = await asyncio.to_thread(self.ask, self.query, "changes")
        return samples

    def ask_full(self) -> tuple[list[Sample], Round]:
        """Every GPU's DCGM fields (the baseline), one question per field: each answer is one series
        a GPU, so no single query has to gather and encode the whole fleet (at 100k GPUs one
        query for all of them outlasted Prometheus's 2-minute query timeout on a 2-core machine)."""
        samples: list[Sample] = []
        rounds = []
        for name in sorted(METRIC_NAMES):
            got, done = self.ask(name, "full")
            samples += got
            rounds.append(done)
        return samples, _total("full", len(samples), rounds)

    def ask_recorded(self) -> tuple[list[Sample], Round]:
        """Two small questions instead of one big one: which GPUs the recording rule marked, then
        the DCGM fields of their nodes only (a label lookup, not a scan of every series)."""
        marked, first = self.ask(RECORDED, "recorded")
        wanted = {tuple(s.labels.get(k, "") for k in self.keys) for s in marked}
        nodes = sorted({w[0] for w in wanted})
        samples: list[Sample] = []
        rounds = [first]
        for at in range(0, len(nodes), NODES_PER_QUERY):
            chunk = "|".join(_literal(n) for n in nodes[at : at + NODES_PER_QUERY])
            fields, done = self.ask(f'{DCGM_PROMQL[:-1]}, {self.keys[0]}=~"{chunk}"}}', "recorded")
            samples += [f for f in fields if tuple(f.labels.get(k, "") for k in self.keys) in wanted]
            rounds.append(done)
        return samples, _total("recorded", len(samples), rounds)

    def ask(self, query: str, kind: str = "changes") -> tuple[list[Sample], Round]:
        """One instant query, with its size and Prometheus's evaluation time."""
        params = urllib.parse.urlencode({"query": query, "stats": "all"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/query?{params}", timeout=self.timeout_s
            ) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            # Prometheus says why in the body (a timeout, too many samples): keep it in the error.
            said = exc.read(2048).decode("utf-8", "replace")
            raise PrometheusRefused(f"Prometheus refused the DCGM query ({exc.code}): {said}") from exc
        wall = time.perf_counter() - started
        data: dict[str, Any] = json.loads(body)
        if data.get("status") != "success":
            raise ValueError(f"Prometheus refused the DCGM query: {data.get('error', data)}")
        result = data["data"]["result"]
        samples = []
        for series in result:
            labels = dict(series.get("metric", {}))
            name = labels.pop("__name__", "")
            try:
                samples.append(Sample(name, labels, float(series["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        timings = (data["data"].get("stats") or {}).get("timings") or {}
        evaluated = timings.get("evalTotalTime")
        return samples, Round(
            kind, len(result), len(body), wall, float(evaluated) if evaluated is not None else None
        )


def _total(kind: str, series: int, rounds: list[Round]) -> Round:
    """Several questions as one round: bytes, wall time and evaluation time summed."""
    evals = [r.eval_s for r in rounds if r.eval_s is not None]
    return Round(
        kind,
        series,
        sum(r.bytes for r in rounds),
        sum(r.wall_s for r in rounds),
        sum(evals) if evals else None,
    )
