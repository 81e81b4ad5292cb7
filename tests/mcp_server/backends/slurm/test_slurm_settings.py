"""Choosing the Slurm backend from settings: bad settings are errors at start, never a silent
fallback; and what the backend asks of Slurm where this machine's Slurm cannot answer (a site
whose gres.conf lets the GPU count drop), with stand-in commands that replay captured answers."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from aiops.backends import build_backends
from aiops.settings import Settings
from mcp_server.backends.slurm import SlurmBackend, SlurmConfig, SlurmError

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "slurm"


def test_one_spare_pool_and_an_existing_slurm_conf_or_an_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        Settings(backend="slurm", slurm_spare_partition="spares", slurm_spare_reservation="spare-pool")
    with pytest.raises(ValidationError, match=r"AIOPS_SLURM_CONF=.*missing.conf is not a file"):
        Settings(backend="slurm", slurm_conf=tmp_path / "missing.conf")


def test_missing_client_commands_are_an_error_at_start_naming_the_fix(tmp_path: Path) -> None:
    settings = Settings(backend="slurm", slurm_bin_dir=tmp_path)

    with pytest.raises(
        SlurmError, match=r"'sinfo' is not in .*: install Slurm's client .* AIOPS_SLURM_BIN_DIR"
    ):
        build_backends(settings)


def replaying(bin_dir: Path) -> Path:
    """sinfo/squeue answering the captured JSON; scontrol recording its arguments."""
    log = bin_dir / "scontrol.log"
    for command, answer in (("sinfo", "sinfo.json"), ("squeue", "squeue.json")):
        script = bin_dir / command
        script.write_text(f"#!/bin/sh\ncat {shlex.quote(str(FIXTURES / answer))}\n")
        script.chmod(0o755)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n')
    scontrol.chmod(0o755)
    return log


def test_build_backends_gives_the_slurm_backend_with_its_settings(tmp_path: Path) -> None:
    replaying(tmp_path)
    backends = build_backends(
        Settings(backend="slurm", cluster="hpc-a", slurm_bin_dir=tmp_path, slurm_spare_partition="spares")
    )

    assert isinstance(backends.cluster, SlurmBackend)
    assert (backends.cluster.kind, backends.cluster.cluster) == ("slurm", "hpc-a")
    assert backends.cluster.config.spare_partition == "spares" and backends.twin is None


async def test_where_slurm_lowers_the_gpu_count_isolation_keeps_the_node_in_service(tmp_path: Path) -> None:
    log = replaying(tmp_path)
    backend = SlurmBackend.connect(SlurmConfig(bin_dir=tmp_path))

    done = await backend.isolate_gpu("gpu-node-002", 5, "Xid 48 (DBE)", "olga")

    assert done.changed and done.data["mode"] == "gres"
    assert "GPU GRES gpu:8 -> gpu:7" in done.detail
    lowered, recorded = log.read_text().splitlines()
    assert lowered == "update nodename=gpu-node-002 gres=gpu:7"
    assert recorded.startswith('update nodename=gpu-node-002 comment=gpu-aiops:{"gres":8,"isolated":{"5":')
    assert "state=drain" not in log.read_text()
