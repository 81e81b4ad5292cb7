"""The triage agent as a process (``aiops agent``), with a kill switch for the crash tests.

``python -m tests.agents.crash_agent <mcp url> <token> [--kill-at SIGNATURE | --kill-after-answer TOOL]``

- ``--kill-at``: SIGKILL this process right after it persisted a runbook run whose state has that
  signature (``signature``: the runbook, the run's status and every step's status) — so at exactly
  one point between the persisted steps of a run;
- ``--kill-after-answer``: SIGKILL it right after the MCP server answered a call of that tool,
  before the agent persisted the answer (the mutation happened; the agent does not know it).
- ``--census FILE``: kill nothing; append every signature to FILE (the kill points to try).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiops.agent_process import run_agent
from aiops.settings import Settings
from contracts.client import McpToolClient, ToolResult
from runbooks.state import RunState, RunStore


def signature(state: RunState) -> str:
    steps = ",".join(f"{s.id}={s.status}" for s in state.steps)
    return f"{state.runbook}:{state.status}:{state.confirm_status}:{steps}"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtSave:
    """A run store that dies right after persisting a chosen state (or records every state)."""

    def __init__(self, inner: RunStore, kill_at: str | None, census: Path | None) -> None:
        self.inner, self.kill_at, self.census = inner, kill_at, census

    async def load(self, run_id: str) -> RunState | None:
        return await self.inner.load(run_id)

    async def save(self, state: RunState) -> None:
        await self.inner.save(state)
        sig = signature(state)
        if self.census is not None:
            with self.census.open("a") as out:
                out.write(sig + "\n")
        if sig == self.kill_at:
            die()


class KillAfterAnswer(McpToolClient):
    def __init__(self, inner: McpToolClient, tool: str) -> None:
        self.__dict__.update(inner.__dict__)
        self.tool = tool

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        result = await super().call(tool, arguments)
        if tool == self.tool and not arguments.get("dry_run"):
            die()
        return result


def _dump_tasks() -> None:
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


async def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # a stuck agent shows where it is
    parser = argparse.ArgumentParser()
    parser.add_argument("mcp_url")
    parser.add_argument("token")
    parser.add_argument("--kill-at")
    parser.add_argument("--kill-after-answer")
    parser.add_argument("--census", type=Path)
    args = parser.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
    await run_agent(
        Settings(),
        mcp_url=args.mcp_url,
        token=args.token,
        stop=stop,
        wrap_runs=lambda runs: KillAtSave(runs, args.kill_at, args.census),
        wrap_tools=(lambda t: KillAfterAnswer(t, args.kill_after_answer)) if args.kill_after_answer else None,
    )


if __name__ == "__main__":
    asyncio.run(main())
