"""Silent-data-corruption actions on Slurm: not supported yet, and the answer says so.

What they would be: ``run_diagnostics`` ``srun -w <node> --exclusive dcgmi diag -r <level> -j`` (a
step of its own, its JSON parsed into ``DiagnosticsReport``); ``stop_job`` ``scontrol hold`` plus
``scancel --signal``. A level-3 run holds the node for about 15 minutes, longer than a tool call
may block, so it needs a batch job and a way to read its output back; until then they refuse with
a ``BackendError``. A person runs ``dcgmi diag -r 3`` on the node and isolates what fails.
"""

from __future__ import annotations

from mcp_server.backends.unsupported import UnsupportedDiagnostics

REASON = (
    "is not supported on the Slurm backend yet (a level-3 run holds the node ~15 minutes: it needs a "
    "batch job whose JSON is read back): run `srun -w <node> dcgmi diag -r 3 -j` by hand"
)


class SlurmDiagnostics(UnsupportedDiagnostics):
    WHY = REASON
