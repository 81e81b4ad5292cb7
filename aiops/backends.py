"""Which backends the MCP tools talk to, from configuration (``AIOPS_BACKEND``, ``AIOPS_PROMETHEUS_URL``).

The tools never know: they get a ``ClusterBackend`` and a ``TelemetrySource``.

- ``twin`` (default): the embedded fleet twin; telemetry from its own counters, or from a
  Prometheus when ``prometheus_url`` is set (one that scrapes the twin's exporter).
- ``kubernetes``: the cluster from the Kubernetes API (in-cluster or kubeconfig); telemetry from
  the Prometheus that scrapes dcgm-exporter (none without ``prometheus_url``).
- ``slurm``: the cluster through Slurm's client commands (``slurm_*`` settings); telemetry as for
  Kubernetes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiops.settings import Settings
from fleet import FleetSpec, FleetTwin
from mcp_server.backends.base import ClusterBackend
from mcp_server.backends.telemetry import NoTelemetry, TelemetrySource
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.backends.twin.telemetry import TwinTelemetry


@dataclass
class Backends:
    cluster: ClusterBackend
    telemetry: TelemetrySource
    twin: FleetTwin | None = None
    sampler: TwinTelemetry | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    async def run_sampler(self, stop: asyncio.Event) -> None:
        """Keep the twin's telemetry history filling while ``stop`` is unset (no-op otherwise)."""
        if self.sampler is not None:
            await self.sampler.run(stop)

    def close(self) -> None:
        for closer in self._closers:
            closer()


def fleet_spec(settings: Settings) -> FleetSpec:
    """The fleet twin ``settings`` ask for: ``AIOPS_FLEET_NODES`` nodes (unset = the 16-node twin)."""
    spec = FleetSpec.sized(settings.fleet_nodes or 16, seed=settings.seed)
    return spec.model_copy(update={"cluster": settings.cluster})


def twin_for(settings: Settings) -> FleetTwin:
    return FleetTwin(fleet_spec(settings))


class TwinGpuResolver:
    """Bus id -> GPU through the fleet twin (the embedded platform's ``GpuResolver``; a real fleet
    resolves through the node agents' inventory, events/inventory.py). Unknown -> None, never raises."""

    def __init__(self, twin: FleetTwin) -> None:
        self.twin = twin

    def gpu_index(self, node: str, pci_bus_id: str) -> int | None:
        if node not in self.twin.nodes:
            return None
        return self.twin.gpu_index(node, pci_bus_id)


def build_backends(
    settings: Settings, twin: FleetTwin | None = None, *, always_sample: bool = False
) -> Backends:
    """The cluster backend and telemetry source ``settings`` ask for. ``always_sample``: the twin's
    telemetry comes from its own counters even when a Prometheus is configured (``aiops up``).
    A Kubernetes backend that cannot be configured raises ``BackendError``: never a twin instead."""
    if settings.backend == "kubernetes":
        from mcp_server.backends.kubernetes.backend import KubernetesBackend, KubernetesConfig

        cluster: ClusterBackend = KubernetesBackend.connect(
            KubernetesConfig(
                cluster=settings.cluster,
                job_kind=settings.kube_job_kind,
                job_namespace=settings.kube_job_namespace,
            ),
            context=settings.kube_context,
            in_cluster=settings.kube_in_cluster,
        )
        telemetry: TelemetrySource = NoTelemetry()
        if settings.prometheus_url:
            telemetry = _prometheus(settings.prometheus_url)
        return Backends(cluster=cluster, telemetry=telemetry)

    if settings.backend == "slurm":
        from mcp_server.backends.slurm import SlurmBackend, SlurmConfig

        slurm = SlurmBackend.connect(
            SlurmConfig(
                cluster=settings.cluster,
                conf=settings.slurm_conf,
                bin_dir=settings.slurm_bin_dir,
                timeout_s=settings.slurm_timeout_s,
                spare_partition=settings.slurm_spare_partition,
                spare_reservation=settings.slurm_spare_reservation,
            )
        )
        return Backends(
            cluster=slurm,
            telemetry=_prometheus(settings.prometheus_url) if settings.prometheus_url else NoTelemetry(),
        )

    twin = twin if twin is not None else twin_for(settings)
    if settings.prometheus_url and not always_sample:
        return Backends(cluster=TwinBackend(twin), telemetry=_prometheus(settings.prometheus_url), twin=twin)
    sampler = TwinTelemetry(twin)
    return Backends(
        cluster=TwinBackend(twin), telemetry=sampler, twin=twin, sampler=sampler, _closers=[sampler.close]
    )


def _prometheus(url: str) -> TelemetrySource:
    from mcp_server.backends.prometheus import PrometheusTelemetry

    return PrometheusTelemetry(url)
