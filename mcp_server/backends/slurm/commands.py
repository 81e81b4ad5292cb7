"""Slurm's client commands (``sinfo``, ``squeue``, ``scontrol``) as ``asyncio`` subprocesses with a
time-out; a refusal or a hung controller becomes a ``SlurmError`` a person can read."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_server.backends.base import BackendError, NotFound

COMMANDS = ("sinfo", "squeue", "scontrol")


class SlurmError(BackendError):
    """A Slurm command failed or timed out; the message says which and what Slurm said."""


@dataclass(frozen=True)
class SlurmConfig:
    cluster: str = "slurm"
    conf: Path | None = None
    """``slurm.conf`` for the client commands (``SLURM_CONF``); None = Slurm's default."""
    bin_dir: Path | None = None
    """Where ``sinfo``/``squeue``/``scontrol`` live; None = ``PATH``."""
    timeout_s: float = 30.0
    spare_partition: str | None = None
    spare_reservation: str | None = None


class SlurmCommands:
    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self.paths = {name: self._which(name) for name in COMMANDS}
        self.env: Mapping[str, str] = (
            {**os.environ, "SLURM_CONF": str(config.conf)} if config.conf else dict(os.environ)
        )

    def _which(self, name: str) -> str:
        where = self.config.bin_dir
        found = shutil.which(name, path=str(where)) if where else shutil.which(name)
        if found is None:
            place = f"in {where}" if where else "on PATH"
            raise SlurmError(
                f"the Slurm client command {name!r} is not {place}: install Slurm's client "
                "(Debian: apt-get install slurm-client) or set AIOPS_SLURM_BIN_DIR"
            )
        return found

    async def run(self, command: str, *args: str) -> str:
        """The command's stdout; ``SlurmError`` with Slurm's own words when it fails."""
        argv = [self.paths[command], *args]
        shown = " ".join([command, *args])
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(self.env),
            )
        except OSError as exc:
            raise SlurmError(f"cannot run {shown}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.config.timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SlurmError(
                f"{shown} did not answer within {self.config.timeout_s:g} s (is slurmctld up?)"
            ) from None
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        if process.returncode != 0:
            said = " ".join((err or out).decode(errors="replace").split()) or f"exit {process.returncode}"
            said = said.removeprefix("slurm_update error: ").removeprefix("scontrol: error: ")
            if "Invalid node name" in said or "Invalid job id" in said:
                raise NotFound(f"{shown}: {said}")
            raise SlurmError(f"Slurm refused `{shown}`: {said}")
        return out.decode(errors="replace")

    async def json(self, command: str, *args: str) -> dict[str, Any]:
        text = await self.run(command, *args, "--json")
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise SlurmError(f"{command} --json answered something other than JSON: {text[:120]!r}") from exc
        if not isinstance(doc, dict):
            raise SlurmError(f"{command} --json answered {type(doc).__name__}, not an object")
        errors = [e for e in doc.get("errors") or [] if e]
        if errors:
            raise SlurmError(f"{command} --json reported: {errors}")
        return doc
