"""Detectors: raw signals (DCGM metrics, training heartbeats) in, typed events out.

The kernel-log path has its own service (``events.kmsg_service``); these cover the faults that print
no Xid line: ECC counters and row remaps, hung collectives, slow ranks and slow switches, and the
training numerics (NaN/Inf, loss and gradient-norm spikes) that silent data corruption shows as.
"""

from events.detectors.dcgm import DcgmDetector
from events.detectors.exposition import (
    ExporterSource,
    MetricSource,
    PrometheusSource,
    ReadingSource,
    Sample,
    TextSource,
)
from events.detectors.hang import HangDetector
from events.detectors.numerics import NumericsDetector
from events.detectors.service import DetectorService
from events.detectors.throughput import ThroughputDetector

__all__ = [
    "DcgmDetector",
    "DetectorService",
    "ExporterSource",
    "HangDetector",
    "MetricSource",
    "NumericsDetector",
    "PrometheusSource",
    "ReadingSource",
    "Sample",
    "TextSource",
    "ThroughputDetector",
]
