"""The Slurm backend (``AIOPS_BACKEND=slurm``): ``backend`` (the ``ClusterBackend``), ``reads``
(its views), ``commands`` (the client commands as subprocesses), ``parse`` (Slurm's JSON and the
gpu-aiops conventions in node and job comments)."""

from mcp_server.backends.slurm.backend import SlurmBackend
from mcp_server.backends.slurm.commands import SlurmConfig, SlurmError

__all__ = ["SlurmBackend", "SlurmConfig", "SlurmError"]
