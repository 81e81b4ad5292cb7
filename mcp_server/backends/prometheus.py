"""Telemetry from a Prometheus that scrapes dcgm-exporter (prometheus-api-client).

Series are found by dcgm-exporter's labels: ``Hostname`` (the node) and ``gpu`` (the index). Xid
history comes from ``DCGM_EXP_XID_ERRORS_COUNT`` (a count per code over the exporter's window: an
increase between samples is that many new Xids) and, where an exporter does not export it, from
the last-Xid gauge ``DCGM_FI_DEV_XID_ERRORS`` (a change of value is a new Xid). The client is
synchronous (requests), so every query runs in a worker thread and has a timeout.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests import RequestException

from events import dcgm_fields
from mcp_server.backends.base import BackendError
from mcp_server.backends.telemetry import MAX_POINTS, MAX_PROMQL_SERIES
from mcp_server.metrics import (
    DCGM_FIELDS,
    EccCounters,
    GpuFaults,
    MetricSeries,
    PromqlResult,
    PromqlSeries,
    Sample,
    StepCount,
    XidOccurrence,
    judge_ecc,
)
from skills.catalog import load_catalog

QUERY_TIMEOUT_S = 15
XID_COUNT = dcgm_fields.XID_COUNT
XID_GAUGE = dcgm_fields.XID_ERRORS
MIN_STEP_S = 5

# The memory-health fields, by the EccCounters attribute each fills.
_ECC_FIELDS = {
    dcgm_fields.ECC_SBE_VOL: "sbe_volatile",
    dcgm_fields.ECC_DBE_VOL: "dbe_volatile",
    dcgm_fields.ECC_SBE_AGG: "sbe_aggregate",
    dcgm_fields.ECC_DBE_AGG: "dbe_aggregate",
    dcgm_fields.RETIRED_SBE: "retired_sbe",
    dcgm_fields.RETIRED_DBE: "retired_dbe",
    dcgm_fields.RETIRED_PENDING: "retired_pending",
    dcgm_fields.REMAPPED_ROWS_CORRECTABLE: "remapped_rows_correctable",
    dcgm_fields.REMAPPED_ROWS_UNCORRECTABLE: "remapped_rows_uncorrectable",
    dcgm_fields.ROW_REMAP_PENDING: "row_remap_pending",
    dcgm_fields.ROW_REMAP_FAILURE: "row_remap_failure",
}


def label_value(text: str) -> str:
    """``text`` as a PromQL string literal's body."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _selector(node: str | None, gpus: Sequence[int] | None = None) -> str:
    parts = []
    if node is not None:
        parts.append(f'Hostname="{label_value(node)}"')
    if gpus:
        parts.append(f'gpu=~"{"|".join(str(int(g)) for g in gpus)}"')
    return "{" + ",".join(parts) + "}"


def _samples(values: list[list[Any]]) -> list[Sample]:
    out = []
    for stamp, text in values:
        value = float(text)
        if not math.isnan(value):
            out.append(Sample(time=datetime.fromtimestamp(float(stamp), UTC), value=value))
    return out


def _gpu(labels: dict[str, str]) -> int | None:
    try:
        return int(labels.get("gpu", ""))
    except ValueError:
        return None


class PrometheusTelemetry:
    def __init__(self, url: str, *, client: PrometheusConnect | None = None) -> None:
        self.url = url
        self._prom = client or PrometheusConnect(url=url, disable_ssl=True, timeout=QUERY_TIMEOUT_S)
        self._catalog = load_catalog()

    @property
    def kind(self) -> str:
        return "prometheus"

    # -- the two queries everything goes through ------------------------------------------------

    async def _instant(self, query: str, at: datetime | None = None) -> list[dict[str, Any]]:
        params = {"timeout": f"{QUERY_TIMEOUT_S}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        rows: list[dict[str, Any]] = await self._call(lambda: self._prom.custom_query(query, params=params))
        return rows

    async def _range(self, query: str, start: datetime, end: datetime, step_s: float) -> list[dict[str, Any]]:
        # The client sends whole seconds, and Prometheus evaluates at start, start + step, ...: anchor
        # that grid on a whole second just past ``end`` so the newest scrape (the "last" value a tool
        # reports) is always inside it.
        step = max(MIN_STEP_S, math.ceil(step_s))
        last = math.ceil(end.timestamp()) + 1
        first = last - max(1, math.ceil((end - start).total_seconds() / step)) * step
        params = {"timeout": f"{QUERY_TIMEOUT_S}s"}
        rows: list[dict[str, Any]] = await self._call(
            lambda: self._prom.custom_query_range(
                query,
                datetime.fromtimestamp(first, UTC),
                datetime.fromtimestamp(last, UTC),
                f"{step}s",
                params=params,
            )
        )
        return rows

    async def _call(self, query: Any) -> Any:
        try:
            return await asyncio.to_thread(query)
        except PrometheusApiClientException as exc:
            raise BackendError(f"Prometheus at {self.url} refused the query: {exc}") from exc
        except RequestException as exc:
            raise BackendError(f"Prometheus at {self.url} did not answer: {exc}") from exc

    # -- the telemetry protocol -----------------------------------------------------------------

    async def gpu_metrics(
        self, node: str, gpus: Sequence[int] | None, fields: Sequence[str], window_s: float, step_s: float
    ) -> list[MetricSeries]:
        end = datetime.now(UTC)
        start = end - timedelta(seconds=window_s)
        step = max(step_s, window_s / MAX_POINTS)
        out: list[MetricSeries] = []
        for field in fields:
            if field not in DCGM_FIELDS:
                raise BackendError(f"unknown DCGM field {field!r}; known: {', '.join(DCGM_FIELDS)}")
            for series in await self._range(f"{field}{_selector(node, gpus)}", start, end, step):
                index = _gpu(series["metric"])
                if index is None:
                    continue
                samples = _samples(series.get("values", []))
                values = [s.value for s in samples]
                out.append(
                    MetricSeries(
                        node=node,
                        gpu=index,
                        field=field,
                        unit=DCGM_FIELDS[field],
                        samples=samples,
                        last=values[-1] if values else None,
                        min=min(values) if values else None,
                        max=max(values) if values else None,
                    )
                )
        out.sort(key=lambda s: (s.gpu, list(fields).index(s.field)))
        return out

    async def xid_history(self, node: str | None, gpu: int | None, window_s: float) -> list[XidOccurrence]:
        end = datetime.now(UTC)
        start = end - timedelta(seconds=window_s)
        step = max(MIN_STEP_S, window_s / MAX_POINTS)
        selector = _selector(node, [gpu] if gpu is not None else None)
        found: list[XidOccurrence] = []
        counted = await self._range(f"{XID_COUNT}{selector}", start, end, step)
        for series in counted[:MAX_PROMQL_SERIES]:
            labels = series["metric"]
            try:
                code = int(labels.get("xid", ""))
            except ValueError:
                continue
            previous = 0.0
            for sample in _samples(series.get("values", [])):
                for _ in range(int(max(0.0, sample.value - previous))):
                    found.append(self._occurrence(sample.time, labels, code))
                previous = sample.value
        if not counted:  # an exporter without the windowed count: fall back to the last-Xid gauge
            for series in (await self._range(f"{XID_GAUGE}{selector}", start, end, step))[:MAX_PROMQL_SERIES]:
                last = None
                for sample in _samples(series.get("values", [])):
                    if sample.value and sample.value != last:
                        found.append(self._occurrence(sample.time, series["metric"], int(sample.value)))
                    last = sample.value
        found.sort(key=lambda o: o.time, reverse=True)
        return found

    def _occurrence(self, at: datetime, labels: dict[str, str], code: int) -> XidOccurrence:
        return XidOccurrence(
            time=at,
            node=labels.get("Hostname", "?"),
            gpu=_gpu(labels),
            xid=code,
            mnemonic=self._catalog.info_or_unknown(code).mnemonic,
            message=labels.get("err_msg", ""),
        )

    async def ecc_counters(self, node: str, gpu: int | None) -> list[EccCounters]:
        names = "|".join(_ECC_FIELDS)
        selector = _selector(node, [gpu] if gpu is not None else None)[1:-1]
        rows = await self._instant(f'{{__name__=~"{names}",{selector}}}')
        per_gpu: dict[int, dict[str, int]] = {}
        for row in rows:
            index = _gpu(row["metric"])
            name = row["metric"].get("__name__", "")
            if index is None or name not in _ECC_FIELDS:
                continue
            per_gpu.setdefault(index, {})[_ECC_FIELDS[name]] = int(float(row["value"][1]))
        if not per_gpu:
            raise BackendError(
                f"Prometheus has no ECC series for {node}"
                + (f" GPU {gpu}" if gpu is not None else "")
                + " (is dcgm-exporter exporting the ECC fields there?)"
            )
        return [
            judge_ecc(
                node,
                index,
                **{k: v for k, v in counts.items() if not k.startswith("row_remap")},
                row_remap_pending=bool(counts.get("row_remap_pending")),
                row_remap_failure=bool(counts.get("row_remap_failure")),
            )
            for index, counts in sorted(per_gpu.items())
        ]

    async def gpu_faults(self, window_s: float) -> list[GpuFaults]:
        faults: dict[tuple[str, int], GpuFaults] = {}
        for occurrence in await self.xid_history(None, None, window_s):
            if occurrence.gpu is None:
                continue
            entry = faults.setdefault(
                (occurrence.node, occurrence.gpu), GpuFaults(node=occurrence.node, gpu=occurrence.gpu)
            )
            entry.xids += 1
            entry.by_code[str(occurrence.xid)] = entry.by_code.get(str(occurrence.xid), 0) + 1
        window = f"{max(MIN_STEP_S, int(window_s))}s"
        for field, attr in (
            (dcgm_fields.ECC_DBE_VOL, "dbe"),
            (dcgm_fields.ECC_SBE_VOL, "sbe"),
        ):
            for row in await self._instant(f"max_over_time({field}[{window}]) > 0"):
                labels, index = row["metric"], _gpu(row["metric"])
                if index is None:
                    continue
                key = (labels.get("Hostname", "?"), index)
                entry = faults.setdefault(key, GpuFaults(node=key[0], gpu=index))
                setattr(entry, attr, int(float(row["value"][1])))
        return list(faults.values())

    async def step_count(self, job: str, window_s: float) -> StepCount | None:
        return None  # DCGM knows GPUs, not training steps

    async def promql(
        self, query: str, *, at: datetime | None, start: datetime | None, end: datetime | None, step_s: float
    ) -> PromqlResult:
        if start is not None and end is not None:
            rows: Any = await self._range(
                query, start, end, max(step_s, (end - start).total_seconds() / MAX_POINTS)
            )
            kind = "matrix"
        else:
            rows = await self._instant(query, at)
            if rows and isinstance(rows, list) and not isinstance(rows[0], dict):
                # A scalar or string answer comes as [time, "value"].
                value = [Sample(time=datetime.fromtimestamp(float(rows[0]), UTC), value=float(rows[1]))]
                return PromqlResult(
                    query=query,
                    result_type="scalar",
                    series=[PromqlSeries(labels={}, samples=value)],
                    truncated=False,
                )
            kind = "vector"
        truncated = len(rows) > MAX_PROMQL_SERIES
        series = []
        for row in rows[:MAX_PROMQL_SERIES]:
            values = row.get("values") or ([row["value"]] if "value" in row else [])
            samples = _samples(values)
            truncated = truncated or len(samples) > MAX_POINTS
            series.append(PromqlSeries(labels=dict(row.get("metric", {})), samples=samples[-MAX_POINTS:]))
        return PromqlResult(query=query, result_type=kind, series=series, truncated=truncated)
