"""The Slurm backend: a real Slurm cluster through its client commands (``AIOPS_BACKEND=slurm``).

What each action is in Slurm (README "Run on a Slurm cluster"):

- cordon / drain: ``scontrol update nodename=N state=drain reason="gpu-aiops: ... [by <actor>]"``.
  Running jobs finish (or are requeued by a restart); the reason's prefix marks the drain as this
  platform's, and only such drains does it ``resume``;
- isolate a GPU: lower the node's GPU GRES by one (``gres=gpu:7``) so a job asking for the whole
  node no longer fits, and record the index in the node's comment. Slurm refuses a lower count
  where ``gres.conf`` names device files (``File=``, the usual case): then the node is drained
  instead, and the answer says which (``data.mode`` is ``gres`` or ``drain``);
- restart from checkpoint: ``scontrol requeuehold``, ``ExcNodeList`` += the job's nodes that are
  drained or hold an isolated or unhealthy GPU, ``release``: the job starts again without them once
  Slurm's requeue delay is over (the job credential's lifetime, ``AuthInfo`` ``cred_expire``,
  120 s by default) and its training loop resumes from its newest checkpoint;
- swap a spare: the spare leaves the site's spare partition (joining the job's partition) or spare
  reservation, the failed node is drained, and the job is requeued pinned to its new gang
  (``ReqNodeList``; in Slurm a gang changes only by a requeue);
- reboot: ``scontrol reboot ASAP nextstate=resume reason=...``: Slurm drains the node and reboots
  it only once its jobs have ended, so never under a running job.
"""

from __future__ import annotations

import asyncio

from contracts.tools import ActionChange, owned_by_platform
from mcp_server.backends.base import BackendError, NotFound, older_checkpoint_refused
from mcp_server.backends.slurm.commands import SlurmCommands, SlurmConfig, SlurmError
from mcp_server.backends.slurm.conventions import (
    Json,
    ParseError,
    drain_owner,
    drain_reason,
    node_record,
    with_node_record,
)
from mcp_server.backends.slurm.diagnostics import SlurmDiagnostics
from mcp_server.backends.slurm.parse import (
    SlurmJob,
    SlurmNode,
    expand_hostlist,
    scontrol_records,
    with_gpu_count,
)
from mcp_server.backends.slurm.reads import SlurmReads, now

POLL_S = 0.1


class SlurmBackend(SlurmReads, SlurmDiagnostics):
    """Slurm offers no compare-and-set on a node's comment: this process serialises its own
    read-modify-write of a node's record; two platform replicas isolating GPUs on one node at the
    same moment could still lose one record (the drain or GRES change itself stays)."""

    def __init__(self, commands: SlurmCommands) -> None:
        super().__init__(commands)
        self._records: dict[str, asyncio.Lock] = {}

    def _record_lock(self, node: str) -> asyncio.Lock:
        return self._records.setdefault(node, asyncio.Lock())

    @classmethod
    def connect(cls, config: SlurmConfig) -> SlurmBackend:
        """Finds the client commands now: a missing one is an error at start, not at the first call."""
        return cls(SlurmCommands(config))

    async def _update_node(self, node: str, *settings: str) -> None:
        await self.cmd.run("scontrol", "update", f"nodename={node}", *settings)

    async def _write_record(self, node: SlurmNode, record: Json) -> None:
        await self._update_node(node.name, f"comment={with_node_record(node.comment, record)}")

    def _record(self, node: SlurmNode) -> Json:
        try:
            return node_record(node.comment)
        except ParseError as exc:
            raise BackendError(f"{node.name}: {exc}; fix or clear the node's comment") from exc

    async def _drain(self, node: SlurmNode, reason: str, actor: str) -> ActionChange:
        if node.drained:
            owner = drain_owner(node.reason) or node.reason_by or "slurm"
            return ActionChange(
                changed=False,
                detail=f"{node.name} is already drained by {owner!r} ({node.reason or 'no reason'}); nothing changed",
            )
        await self._update_node(node.name, "state=drain", f"reason={drain_reason(reason, actor)}")
        return ActionChange(
            changed=True, detail=f"drained {node.name} in Slurm: {drain_reason(reason, actor)}"
        )

    # -- GPUs -----------------------------------------------------------------------------------------

    async def isolate_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        async with self._record_lock(node):
            return await self._isolate(node, gpu, reason, actor)

    async def _isolate(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        target = await self._node(node)
        if not any(g.index == gpu for g in self._gpus(target)):
            raise NotFound(f"no GPU {gpu} on {node}")
        record = self._record(target)
        isolated: dict[str, dict[str, str]] = dict(record.get("isolated") or {})
        if str(gpu) in isolated:
            return ActionChange(
                changed=False, detail=f"GPU {gpu} on {node} is already isolated; nothing changed"
            )
        original = int(record.get("gres") or target.gpus)
        lowered = target.gpus - 1
        try:
            await self._update_node(node, f"gres={with_gpu_count(target.gres, lowered)}")
            mode, how = "gres", f"GPU GRES {target.gres} -> {with_gpu_count(target.gres, lowered)}"
        except (SlurmError, ParseError) as refused:
            drained = await self._drain(target, f"GPU {gpu} isolated: {reason}", actor)
            mode = "drain"
            how = f"Slurm would not lower the GPU GRES ({refused}); {drained.detail}"
        isolated[str(gpu)] = {
            "reason": f"{reason} (by {actor})",
            "by": actor,
            "at": now().isoformat(),
            "mode": mode,
        }
        await self._write_record(target, {**record, "isolated": isolated, "gres": original})
        return ActionChange(
            changed=True,
            detail=f"isolated GPU {gpu} on {node}: {how}; recorded in the node comment",
            data={"node": node, "gpu": gpu, "mode": mode},
        )

    async def restore_gpus(self, node: str, reason: str, actor: str) -> ActionChange:
        async with self._record_lock(node):
            return await self._restore(node, reason, actor)

    async def _restore(self, node: str, reason: str, actor: str) -> ActionChange:
        target = await self._node(node)
        record = self._record(target)
        isolated: dict[str, dict[str, str]] = dict(record.get("isolated") or {})
        healthy = {str(g.index) for g in self._gpus(target) if g.health == "healthy"}
        back = sorted((i for i in isolated if i in healthy), key=int)
        if not back:
            return ActionChange(changed=False, detail=f"{node} has no isolated GPU that is healthy again")
        left = {i: v for i, v in isolated.items() if i not in back}
        lowered = sum(1 for i in back if isolated[i].get("mode") == "gres")
        notes = []
        if lowered:
            count = target.gpus + lowered if left else int(record.get("gres") or target.gpus + lowered)
            await self._update_node(node, f"gres={with_gpu_count(target.gres, count)}")
            notes.append(f"GPU GRES back to {count}")
        if any(isolated[i].get("mode") == "drain" for i in back):
            notes.append("the isolation's drain stays until uncordon_node (return-to-service lifts it)")
        rest = {k: v for k, v in record.items() if k not in ("isolated", "gres")}
        await self._write_record(
            target, {**rest, "isolated": left, "gres": record.get("gres")} if left else rest
        )
        return ActionChange(
            changed=True,
            detail=f"GPU {', '.join(back)} on {node} back in service ({reason}, by {actor})"
            + (f"; {'; '.join(notes)}" if notes else ""),
        )

    async def reset_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        raise BackendError(
            "Slurm has no GPU reset: run `nvidia-smi -r -i <gpu>` on the node with its jobs stopped, "
            f"or reboot {node} (reboot_node, which waits for its jobs)"
        )

    # -- nodes ----------------------------------------------------------------------------------------

    async def cordon_node(self, node: str, reason: str, actor: str) -> ActionChange:
        return await self._drain(await self._node(node), reason, actor)

    async def drain_node(self, node: str, reason: str, actor: str) -> ActionChange:
        target = await self._node(node)
        done = await self._drain(target, reason, actor)
        running = self._jobs_by_node(await self._jobs()).get(node, [])
        detail = done.detail
        if running:
            detail += f"; job {', '.join(running)} still run there until they end or are requeued"
        return ActionChange(changed=done.changed, detail=detail, data={"running_jobs": len(running)})

    async def uncordon_node(self, node: str, reason: str, actor: str) -> ActionChange:
        target = await self._node(node)
        if not target.drained:
            return ActionChange(changed=False, detail=f"{node} is not drained; nothing changed")
        owner = drain_owner(target.reason)
        if not owned_by_platform(owner):
            raise BackendError(
                f"{node} was drained by {target.reason_by or 'someone outside gpu-aiops'} "
                f"({target.reason or 'no reason'}); only they can resume it"
            )
        isolated = self._record(target).get("isolated") or {}
        held = sorted(i for i, v in isolated.items() if v.get("mode") == "drain")
        if held:
            raise BackendError(
                f"GPU {', '.join(held)} on {node} is isolated by this drain: restore_gpus first"
            )
        await self._update_node(node, "state=resume")
        detail = f"resumed {node} in Slurm ({reason}, by {actor})"
        if not await self._responding(node):
            detail += f"; slurmctld has not heard from its slurmd within {self.config.timeout_s:g} s since"
        return ActionChange(changed=True, detail=detail)

    async def _responding(self, node: str) -> bool:
        """A resumed node is "not responding" (``idle*``) until slurmctld pings it: wait for that."""
        deadline = asyncio.get_running_loop().time() + self.config.timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if not (await self.cmd.run("sinfo", "-h", "-n", node, "-o", "%T")).strip().endswith("*"):
                return True
            await asyncio.sleep(POLL_S)
        return False

    async def reboot_node(self, node: str, reason: str, actor: str) -> ActionChange:
        target = await self._node(node)
        if target.rebooting:
            return ActionChange(
                changed=False, detail=f"a reboot of {node} is already pending; nothing changed"
            )
        if target.drained and not owned_by_platform(drain_owner(target.reason)):
            raise BackendError(
                f"{node} was drained by {target.reason_by or 'someone else'} ({target.reason}): a reboot "
                "would resume it afterwards; left to its owner"
            )
        running = self._jobs_by_node(await self._jobs()).get(node, [])
        await self.cmd.run(
            "scontrol", "reboot", "ASAP", "nextstate=resume", f"reason={drain_reason(reason, actor)}", node
        )
        waits = f"; it waits for job {', '.join(running)} to end (drained meanwhile)" if running else ""
        return ActionChange(
            changed=True,
            detail=f"reboot of {node} requested (ASAP, resumes after){waits}",
            data={"running_jobs": len(running)},
        )

    # -- jobs -----------------------------------------------------------------------------------------

    async def _bad_nodes(self, nodes: tuple[str, ...]) -> list[str]:
        bad = []
        for target in await self._nodes():
            if target.name in nodes:
                gpus = self._gpus(target)
                if target.drained or any(g.isolated or g.health != "healthy" for g in gpus):
                    bad.append(target.name)
        return sorted(bad)

    async def restart_from_checkpoint(
        self, job: str, reason: str, actor: str, at_or_before_step: int | None = None
    ) -> ActionChange:
        if at_or_before_step is not None:
            older_checkpoint_refused(job, at_or_before_step, (await self.get_job(job)).last_checkpoint_step)
        target = await self._job(job)
        if target.state in ("restarting", "pending", "completed", "failed"):
            return ActionChange(
                changed=False, detail=f"Slurm job {target.job_id} is {target.state}; nothing changed"
            )
        exclude = await self._requeue(target, sorted(await self._bad_nodes(target.nodes)))
        return ActionChange(
            changed=True,
            detail=f"requeued Slurm job {target.job_id} ({target.name}) from its checkpoint"
            + (f", excluding {', '.join(exclude)}" if exclude else "")
            + f" ({reason}, by {actor})",
            data={
                "state": "restarting",
                "excluded": ",".join(exclude) or None,
                "restarts": target.restarts + 1,
                "replaced": ",".join(n for n in target.nodes if n in exclude) or None,
            },
        )

    async def _requeue(self, target: SlurmJob, bad: list[str], gang: list[str] | None = None) -> list[str]:
        """Requeue ``target`` without ``bad`` (on exactly ``gang`` when given); the excluded nodes.

        The job starts again once Slurm's requeue delay is over (the job credential's lifetime,
        ``AuthInfo`` ``cred_expire``, 120 s by default): sooner, a node that ran it would refuse it."""
        jid = str(target.job_id)
        exclude = sorted(set(target.excluded) | set(bad))
        settings = [f"excnodelist={','.join(exclude)}"] if exclude else []
        if gang is not None:
            settings.append(f"reqnodelist={','.join(sorted(gang))}")
        elif set(target.required) & set(exclude):
            settings.append("reqnodelist=")  # pinned to a node now out: let Slurm place it
        await self.cmd.run("scontrol", "requeuehold", jid)
        try:
            if settings:
                await self.cmd.run("scontrol", "update", f"jobid={jid}", *settings)
        finally:
            await self.cmd.run("scontrol", "release", jid)
        return exclude

    async def _take_spare(self, spare: str, partition: str) -> str:
        """Move ``spare`` out of the site's spare pool into ``partition``; what happened."""
        if self.config.spare_partition:
            parts = {
                r["PartitionName"]: expand_hostlist(r.get("Nodes"))
                for r in scontrol_records(await self.cmd.run("scontrol", "show", "partition", "-o"))
            }
            if partition not in parts:
                raise BackendError(f"the job's partition {partition!r} is not in Slurm")
            into = sorted(set(parts[partition]) | {spare})
            await self.cmd.run("scontrol", "update", f"partitionname={partition}", f"nodes={','.join(into)}")
            rest = [n for n in parts.get(self.config.spare_partition, []) if n != spare]
            await self.cmd.run(
                "scontrol",
                "update",
                f"partitionname={self.config.spare_partition}",
                f"nodes={','.join(rest)}",
            )
            return f"{spare} moved from partition {self.config.spare_partition} to {partition}"
        reservation = self.config.spare_reservation
        if not reservation:
            raise BackendError("no spare pool configured: set AIOPS_SLURM_SPARE_PARTITION or _RESERVATION")
        names = sorted(await self._spare_names() - {spare})
        if names:
            await self.cmd.run(
                "scontrol", "update", f"reservationname={reservation}", f"nodes={','.join(names)}"
            )
        else:
            await self.cmd.run("scontrol", "delete", f"reservationname={reservation}")
        return f"{spare} left reservation {reservation}"

    async def swap_spare(self, job: str, node: str, reason: str, actor: str) -> ActionChange:
        """The spare leaves the pool and takes ``node``'s place: the job is requeued onto its new
        gang (in Slurm a gang changes only by a requeue), and ``node`` is drained."""
        target = await self._job(job)
        if node not in target.nodes:
            if node in target.excluded:
                return ActionChange(
                    changed=False, detail=f"{node} was already swapped out of Slurm job {target.job_id}"
                )
            raise BackendError(
                f"{node} is not among the nodes of Slurm job {target.job_id} ({', '.join(target.nodes) or 'none'})"
            )
        if not target.active:
            raise BackendError(f"Slurm job {target.job_id} is {target.state}: there is no gang to swap into")
        pool = await self.spare_pool(job, node)
        if pool.candidate is None:
            unfit = "; ".join(f"{s.name}: {s.why_unfit}" for s in pool.spares) or "the spare pool is empty"
            raise BackendError(f"no fit spare to replace {node} in Slurm job {target.job_id}: {unfit}")
        spare = pool.candidate
        drained = await self._drain(
            await self._node(node), f"swapped out of job {target.job_id}: {reason}", actor
        )
        moved = await self._take_spare(spare, target.partition)
        gang = [n for n in target.nodes if n != node] + [spare]
        await self._requeue(target, [node], gang)
        return ActionChange(
            changed=True,
            detail=f"{moved}; {drained.detail}; requeued Slurm job {target.job_id} onto "
            f"{', '.join(sorted(gang))} ({pool.candidate_why}; {reason}, by {actor})",
            data={
                "job": str(target.job_id),
                "node": node,
                "spare": spare,
                "why": pool.candidate_why,
                "spares_left": pool.fit - 1,
            },
        )
