"""Runs crash scenarios: a real nats-server, the platform in one process, the agent in another; a
GPU falls off the bus under train-01; the agent is SIGKILLed at a chosen point and started again;
then everything the fleet, the incident, the runs and the audit say is collected.

Processes come from a zygote (``crash_zygote``) that forks them already imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from agents.store import IncidentStore
from aiops.nats_server import EmbeddedNats
from events import subjects
from events.incident import Incident
from events.models import AuditRecord
from events.streams import ensure_jetstream
from runbooks.state import KvRunStore, RunState
from tests.agents.crash_platform import FLEET, INJECT
from tests.waiting import eventually

AGENT_TOKEN = "agent-token-crash-4f2a9b7c1d"
FAULT = {"node": "node-003", "gpu": 3, "xid": 79}
ENV = {
    "AIOPS_TOKENS": json.dumps({AGENT_TOKEN: "triage-agent:agent"}),
    # 5 simulated minutes a wall second: train-01's 600 s restart takes 2 s; ranks beat every
    # 2 simulated minutes so the heartbeats stay cheap at that speed.
    "AIOPS_SPEED": "300",
    "AIOPS_HEARTBEAT_INTERVAL_S": "120",
}


@dataclass
class Outcome:
    """What one scenario left behind."""

    kill: tuple[str, ...]
    killed: bool
    incident: Incident | None
    runs: dict[str, RunState]
    fleet: dict[str, Any]
    audit: list[AuditRecord]
    census: list[str] = field(default_factory=list)
    others: list[Incident] = field(default_factory=list)
    """Incidents besides the one of the fault (there should be none)."""

    def mutations(self) -> list[tuple[str, str | None]]:
        """Mutations the server carried out (not replays, not refusals, not dry runs)."""
        return [
            (r.tool, r.idempotency_key)
            for r in self.audit
            if r.ok and r.decision == "allow" and not r.replayed and not r.dry_run
        ]


class Zygote:
    """The process that forks platforms and agents (see ``crash_zygote``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ids = count()
        self.events: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    def _future(self, cid: str, event: str) -> asyncio.Future[dict[str, Any]]:
        return self.events.setdefault((cid, event), asyncio.get_running_loop().create_future())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            future = self._future(message["id"], message["event"])
            if not future.done():
                future.set_result(message)

    async def start(self, kind: str, args: list[str], env: dict[str, str]) -> Child:
        cid = f"{kind}-{next(self.ids)}"
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            (json.dumps({"id": cid, "kind": kind, "args": args, "env": env}) + "\n").encode()
        )
        await self.proc.stdin.drain()
        started = await asyncio.wait_for(self._future(cid, "started"), timeout=30)
        return Child(self, cid, int(started["pid"]))


@dataclass
class Child:
    zygote: Zygote
    id: str
    pid: int

    async def ready(self, within_s: float = 60) -> dict[str, Any]:
        return await asyncio.wait_for(asyncio.shield(self.zygote._future(self.id, "ready")), within_s)

    async def exited(self, within_s: float = 60) -> int:
        message = await asyncio.wait_for(asyncio.shield(self.zygote._future(self.id, "exit")), within_s)
        return int(message["code"])

    async def stop(self) -> None:
        if self.zygote._future(self.id, "exit").done():
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            await self.exited(30)
        except (ProcessLookupError, TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


async def ask(nc: NatsClient, subject: str, payload: bytes, within_s: float = 30) -> Msg:
    """A request to the platform process, again while nobody answers: on a loaded machine its
    connection can be re-established just then (its subscriptions come back with it)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await nc.request(subject, payload, timeout=10)
        except nats.errors.NoRespondersError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@asynccontextmanager
async def zygote(log: Path) -> AsyncIterator[Zygote]:
    with log.open("ab") as errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.agents.crash_zygote",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
        z = Zygote(proc)
        try:
            yield z
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), timeout=60)
            z.reader.cancel()


class Scene:
    """One fleet: its NATS, its platform process, and what the test reads from them."""

    def __init__(self, z: Zygote, nc: NatsClient, env: dict[str, str]) -> None:
        self.z, self.nc, self.env = z, nc, env
        self.mcp_url = ""
        self.incident_id = ""
        self._listed_at = 0.0

    async def agent(self, *args: str) -> Child:
        return await self.z.start("agent", [self.mcp_url, AGENT_TOKEN, *args], self.env)

    async def incident(self) -> Incident | None:
        """The fault's incident. Listing the bucket opens a KV consumer each time: look it up by id
        once known, and list at most every half second until then."""
        store = await IncidentStore.open(self.nc.jetstream())
        if self.incident_id:
            return await store.get_incident(self.incident_id)
        now = time.monotonic()
        if now - self._listed_at < 0.5:
            return None
        self._listed_at = now
        found = next((i for i in await store.list_incidents() if "node-003" in i.affected_nodes), None)
        self.incident_id = found.id if found else ""
        return found

    async def all_incidents(self) -> list[Incident]:
        return await (await IncidentStore.open(self.nc.jetstream())).list_incidents()

    async def runs(self, incident: Incident | None) -> dict[str, RunState]:
        if incident is None or incident.plan is None:
            return {}
        store = await KvRunStore.open(self.nc.jetstream())
        found = {a.runbook: await store.load(f"{incident.id}/{a.runbook}") for a in incident.plan.actions}
        return {name: state for name, state in found.items() if state is not None}

    async def audit(self) -> list[AuditRecord]:
        js = self.nc.jetstream()
        info = await js.stream_info(subjects.STREAM_AUDIT)
        if not info.state.messages:
            return []
        sub = await js.pull_subscribe("gpu.audit.>", durable=None)
        records: list[AuditRecord] = []
        while len(records) < info.state.messages:
            batch = await sub.fetch(info.state.messages - len(records), timeout=5)
            records += [AuditRecord.model_validate_json(m.data) for m in batch]
        await sub.unsubscribe()
        return records

    async def fleet(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((await ask(self.nc, FLEET, b"{}")).data)
        return data


def settled(incident: Incident | None) -> bool:
    """Mitigated, and the swap confirmed: the job trains again at its baseline step time."""
    return (
        incident is not None
        and incident.status == "mitigated"
        and any(e.what == "confirmed" for e in incident.timeline)
    )


async def scenario(z: Zygote, root: Path, *kill: str, census: bool = False) -> Outcome:
    """The fault; the agent killed where ``kill`` says (none: a clean run) and started again."""
    census_file = _prepare(root)
    with EmbeddedNats(root / "nats") as server:
        nc = await nats.connect(server.url)
        await ensure_jetstream(nc.jetstream())
        scene = Scene(z, nc, {**ENV, "AIOPS_NATS_URL": server.url})
        platform = await z.start("platform", [], scene.env)
        children = [platform]
        try:
            scene.mcp_url = (await platform.ready())["mcp_url"]
            first = await scene.agent(*kill, *(["--census", str(census_file)] if census else []))
            children.append(first)
            await ask(nc, INJECT, json.dumps(FAULT).encode())
            killed = False
            if kill:
                with contextlib.suppress(TimeoutError):  # a kill point never reached: see Outcome.killed
                    killed = await first.exited(60) == -signal.SIGKILL
                children.append(await scene.agent())
            try:
                await eventually(
                    lambda: _settled(scene), within_s=90, what=f"the incident to settle after {kill}"
                )
            except AssertionError:
                incident = await scene.incident()
                timeline = [(e.what, e.detail) for e in incident.timeline] if incident else None
                raise AssertionError(
                    f"not settled after {kill}: {incident and incident.status} {timeline}"
                ) from None
            incident = await scene.incident()
            return Outcome(
                kill=kill,
                killed=killed,
                incident=incident,
                runs=await scene.runs(incident),
                fleet=await scene.fleet(),
                audit=await scene.audit(),
                census=_lines(census_file),
                others=[i for i in await scene.all_incidents() if incident is None or i.id != incident.id],
            )
        finally:
            for child in reversed(children):
                await child.stop()
            await nc.drain()


async def _settled(scene: Scene) -> bool:
    return settled(await scene.incident())


def _prepare(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root / "census.txt"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
