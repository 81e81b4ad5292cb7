"""Silent-data-corruption actions on Kubernetes: not supported yet, and the answer says so.

What they would be: ``run_diagnostics`` a Job pinned to the node (``nodeName``, every GPU of it
requested, the DCGM image) running ``dcgmi diag -r <level> -j`` and ``diagnostics_report`` its JSON
from the pod's log; ``stop_job`` suspending the training job (``spec.suspend`` of a batch Job,
the Volcano job's ``abort`` command). Each needs verbs the ClusterRole does not grant (create
``batch/jobs``, get ``pods/log``), so they refuse with a ``BackendError`` rather than half-work.
A person runs ``dcgmi diag -r 3`` on the node and isolates what fails.
"""

from __future__ import annotations

from mcp_server.backends.unsupported import UnsupportedDiagnostics

REASON = (
    "is not supported on the Kubernetes backend yet (it needs a DCGM diagnostics Job pinned to the node "
    "and verbs the ClusterRole does not grant): run `dcgmi diag -r 3 -j` on the node by hand"
)


class KubernetesDiagnostics(UnsupportedDiagnostics):
    WHY = REASON
