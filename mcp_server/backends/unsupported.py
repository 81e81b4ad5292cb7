"""Actions a backend does not implement yet: each refuses with a ``BackendError`` saying why."""

from __future__ import annotations

from typing import ClassVar

from contracts.tools import ActionChange, DiagnosticLevel, DiagnosticsReport
from mcp_server.backends.base import BackendError


class UnsupportedDiagnostics:
    """The silent-data-corruption actions (``stop_job``, ``run_diagnostics``, ``diagnostics_report``)
    refused with the backend's reason (``WHY``), before any API call."""

    WHY: ClassVar[str] = "is not supported on this backend"

    async def stop_job(self, job: str, reason: str, actor: str) -> ActionChange:
        raise BackendError(f"stop_job {self.WHY}")

    async def run_diagnostics(
        self, node: str, level: DiagnosticLevel, reason: str, actor: str
    ) -> ActionChange:
        raise BackendError(f"run_diagnostics {self.WHY}")

    async def diagnostics_report(self, node: str) -> DiagnosticsReport:
        raise BackendError(f"diagnostics_report {self.WHY}")
