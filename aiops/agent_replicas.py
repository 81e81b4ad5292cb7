"""``aiops up --agents N``: N triage agents as separate OS processes (``aiops agent``), supervised.

Each replica is ``python -m aiops.cli agent`` against the platform's NATS and MCP endpoint with the
platform's agent token and an agent id of its own (``<AIOPS_AGENT_ID>-<i>``), exactly what an agent
on another machine or a Kubernetes pod runs (docs/replicas.md). The supervisor

- starts them all, and logs every start with its pid;
- restarts a replica that exits without being asked, after a backoff (1 s doubling to 30 s; a
  replica that ran a minute without dying starts over at 1 s), and logs why (its exit status);
- on stop, sends every replica SIGTERM (the agent's own graceful stop), and SIGKILL to one that is
  still running after ``grace_s``.

Replicas run in their own session, so a Ctrl-C in the terminal reaches the parent alone and the
parent stops them in order; on Linux each replica also gets SIGTERM from the kernel if the parent
dies without stopping them (``PR_SET_PDEATHSIG``), so no replica outlives its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0
"""A replica that ran this long before dying is restarted after the first backoff again."""
_PR_SET_PDEATHSIG = 1


def agent_command(verbose: bool = False) -> list[str]:
    """The command of one replica: this interpreter running ``aiops agent``."""
    return [sys.executable, "-m", "aiops.cli", "agent", *(["--verbose"] if verbose else [])]


def replica_env(
    base: Mapping[str, str], *, nats_url: str, mcp_url: str, token: str, agent_id: str
) -> dict[str, str]:
    """The environment of one replica: the parent's, plus where the platform is and who it is."""
    env = {k: v for k, v in base.items() if k != "AIOPS_AGENTS"}
    env.update(
        AIOPS_NATS_URL=nats_url,
        AIOPS_MCP_URL=mcp_url,
        AIOPS_AGENT_TOKEN=token,
        AIOPS_AGENT_ID=agent_id,
        AIOPS_EMBEDDED_AGENT="false",
    )
    return env


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Replica:
    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None or self.process.returncode is not None else self.process.pid


@dataclass
class AgentReplicas:
    """Supervise ``replicas`` until ``stop`` is set: ``await AgentReplicas(...).run(stop)``."""

    replicas: list[Replica]
    command: list[str]
    grace_s: float = 15.0
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    on_start: Callable[[Replica], None] | None = None
    log_dir: Path | None = None
    """Each replica's output appended to ``<log_dir>/<name>.log``; None = this process's stdout/stderr."""

    @classmethod
    def for_platform(
        cls,
        count: int,
        *,
        nats_url: str,
        mcp_url: str,
        token: str,
        agent_id: str,
        verbose: bool = False,
        base_env: Mapping[str, str] | None = None,
    ) -> AgentReplicas:
        env = os.environ if base_env is None else base_env
        replicas = [
            Replica(
                name=f"{agent_id}-{i}",
                env=replica_env(
                    env, nats_url=nats_url, mcp_url=mcp_url, token=token, agent_id=f"{agent_id}-{i}"
                ),
            )
            for i in range(1, count + 1)
        ]
        return cls(replicas=replicas, command=agent_command(verbose))

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._keep(r, stop), name=f"replica {r.name}") for r in self.replicas]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(self._terminate(r) for r in self.replicas))

    async def _keep(self, replica: Replica, stop: asyncio.Event) -> None:
        backoff = self.backoff_first_s
        while not stop.is_set():
            started = time.monotonic()
            process = await self._spawn(replica)
            stopping = asyncio.ensure_future(stop.wait())
            exited = asyncio.ensure_future(process.wait())
            await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not exited.done():
                exited.cancel()
                return  # asked to stop: run() terminates it
            code = exited.result()
            replica.exits.append(code)
            if stop.is_set():
                return
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                backoff = self.backoff_first_s
            log.warning(
                "agent replica %s (pid %d) exited unasked (%s); restarting in %.0f s",
                replica.name,
                process.pid,
                _status(code),
                backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _spawn(self, replica: Replica) -> asyncio.subprocess.Process:
        with contextlib.ExitStack() as files:
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = files.enter_context((self.log_dir / f"{replica.name}.log").open("ab"))
            replica.process = await asyncio.create_subprocess_exec(
                *self.command,
                env=replica.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        replica.starts += 1
        log.info(
            "agent replica %s started (pid %d)%s",
            replica.name,
            replica.process.pid,
            "" if replica.starts == 1 else f", start {replica.starts}",
        )
        if self.on_start is not None:
            self.on_start(replica)
        return replica.process

    async def _terminate(self, replica: Replica) -> None:
        process = replica.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self.grace_s)
        except TimeoutError:
            log.warning("agent replica %s (pid %d) ignored SIGTERM; killing it", replica.name, process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("agent replica %s stopped (%s)", replica.name, _status(process.returncode or 0))


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
