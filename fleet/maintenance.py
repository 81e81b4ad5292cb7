"""Maintenance on the fleet twin: drain, GPU reset, node reboot, the warm spare pool, swapping a
spare into a job's gang, and putting repaired nodes back into service.

Durations are those of real HGX H100 nodes, in simulated seconds: a GPU reset (``nvidia-smi -r``)
takes ``RESET_S``; a bare-metal reboot (firmware POST, eight GPUs, NVSwitch fabric manager) takes
``REBOOT_S``. A repair starts when it is asked for and ends when the twin's clock passes its end.

What a repair clears (xid-and-dcgm.md):

- a reset brings a GPU in ``error`` back to healthy, except after the GSP errors 119/120 (on Delta
  99% of them left the GPU in error until a reboot); a GPU that fell off the bus cannot be reset at
  all: the driver no longer reaches it;
- a reboot brings every GPU of the node back, unless the part is defective (``mark_defective``: a
  GPU to replace, which no reset or reboot fixes).

Work goes first: a reset or reboot is refused while a job runs on the node (drain it first), as the
driver refuses to reset a GPU that processes hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from fleet.errors import ActionRefusedError
from fleet.jobs import NodeReplacement, TrainingJob
from fleet.results import ActionResult, Scalar
from fleet.topology import LABEL_POOL, POOL_SPARE, POOL_TRAINING, Node

if TYPE_CHECKING:
    from fleet.twin import FleetTwin

RESET_S = 45.0
REBOOT_S = 480.0
RESET_DOES_NOT_CLEAR: frozenset[int] = frozenset({119, 120})
"""Last Xids after which a GPU reset leaves the GPU in error: a reboot is needed."""
BUSY_STATES = frozenset({"running", "restarting"})

RepairKind = Literal["reset", "reboot"]


@dataclass
class Repair:
    kind: RepairKind
    node: str
    gpu: int | None
    done_at: datetime


@dataclass(frozen=True)
class SpareChoice:
    node: Node
    why: str


class FleetMaintenance:
    """The twin's maintenance actions. Every action is idempotent: repeating it changes nothing more
    and says so (``changed=False``)."""

    def __init__(self, twin: FleetTwin) -> None:
        self._twin = twin
        self._repairs: list[Repair] = []
        self._defective: set[tuple[str, int]] = set()
        self._swapped_out: dict[str, str] = {}

    # -- queries ------------------------------------------------------------------------------------

    def spares(self) -> list[Node]:
        """The warm spare pool, in name order (fit or not)."""
        return self._twin.spare_nodes()

    def fit_spares(self) -> list[Node]:
        """Spares that could take a gang member now: ready, uncordoned, every GPU usable."""
        per_node = self._twin.spec.gpus_per_node
        return [n for n in self.spares() if n.unfit_reason(per_node) is None and not self.repairs_on(n.name)]

    def choose_spare(self, job: str, node: str) -> SpareChoice | None:
        """The spare to put in ``node``'s place in ``job``'s gang: a fit spare on the failed node's
        leaf switch (its collectives stay off the spine), else one on a leaf the gang already uses,
        else any fit spare; the lowest name breaks ties."""
        target, failed = self._twin.job(job), self._twin.node(node)
        gang_leaves = {self._twin.node(n).leaf for n in target.nodes if n != node}
        ranked = sorted(
            self.fit_spares(), key=lambda s: (s.leaf != failed.leaf, s.leaf not in gang_leaves, s.name)
        )
        if not ranked:
            return None
        spare = ranked[0]
        if spare.leaf == failed.leaf:
            why = f"same leaf switch as {node} ({spare.leaf})"
        elif spare.leaf in gang_leaves:
            why = f"{spare.leaf} already carries part of the gang"
        else:
            why = f"no fit spare under {failed.leaf}; {spare.leaf} adds spine hops to the collectives"
        return SpareChoice(spare, why)

    def repairs_on(self, node: str) -> list[Repair]:
        return [r for r in self._repairs if r.node == node]

    def activity(self, node: str) -> str | None:
        """What maintenance runs on the node right now, in words, or None."""
        parts = [
            f"rebooting until {r.done_at:%H:%M:%S}"
            if r.kind == "reboot"
            else f"resetting GPU {r.gpu} until {r.done_at:%H:%M:%S}"
            for r in self.repairs_on(node)
        ]
        return "; ".join(parts) or None

    def is_defective(self, node: str, gpu: int) -> bool:
        return (node, gpu) in self._defective

    def swapped_out_of(self, node: str) -> str | None:
        """The job this node was swapped out of, while it has not returned to service."""
        return self._swapped_out.get(node)

    # -- faults -------------------------------------------------------------------------------------

    def mark_defective(self, node: str, gpu: int) -> None:
        """The GPU's hardware is broken for good: no reset or reboot brings it back (RMA)."""
        self._twin.gpu(node, gpu)
        self._defective.add((node, gpu))

    # -- actions ------------------------------------------------------------------------------------

    def swap_spare(self, job: str, node: str, reason: str) -> ActionResult:
        """Put a warm spare in ``node``'s place in ``job``'s gang (see ``choose_spare``). A running
        gang stops: a changed gang resumes only by a restart from the checkpoint."""
        target, now = self._twin.job(job), self._twin.now()
        self._twin.node(node)
        if node not in target.nodes:
            earlier = next((r for r in reversed(target.replacements) if r.old == node), None)
            if earlier is not None:
                detail = f"{node} was already swapped out of {job} for {earlier.new}; nothing changed"
                same = {"job": job, "node": node, "spare": earlier.new}
                return self._result("swap_spare", f"{job}/{node}", False, detail, same)
            raise ActionRefusedError(f"{node} is not in {job}'s gang ({', '.join(target.nodes)})")
        if not target.active:
            raise ActionRefusedError(f"{job} is {target.state}; there is no gang to swap a spare into")
        choice = self.choose_spare(job, node)
        if choice is None:
            unfit = [
                f"{n.name}: {n.unfit_reason(target.gpus_per_node) or 'in maintenance'}" for n in self.spares()
            ]
            raise ActionRefusedError(
                f"no fit spare node for {job}: " + ("; ".join(unfit) if unfit else "the spare pool is empty")
            )
        spare = choice.node
        spare.spare, spare.labels[LABEL_POOL] = False, POOL_TRAINING
        target.nodes[target.nodes.index(node)] = spare.name
        target.replacements.append(NodeReplacement(time=now, old=node, new=spare.name, reason=reason))
        self._swapped_out[node] = job
        detail = f"swapped {spare.name} into {job} in place of {node} ({choice.why})"
        if target.state in BUSY_STATES and target.stall(
            now, f"gang changed: {node} swapped for {spare.name}"
        ):
            detail += f"; {job} stopped at step {target.step} until it restarts from its checkpoint"
        self._twin._record(now, "action", detail)
        data: dict[str, Scalar] = {
            "job": job,
            "node": node,
            "spare": spare.name,
            "spare_leaf": spare.leaf,
            "same_leaf": spare.leaf == self._twin.node(node).leaf,
            "why": choice.why,
            "spares_left": len(self.fit_spares()),
        }
        return self._result("swap_spare", f"{job}/{node}", True, detail, data)

    def drain_node(self, node: str, owner: str, reason: str) -> ActionResult:
        """Cordon the node (as ``owner``, unless someone cordoned it already) and evict its work: a
        gang with a member here stops and needs a restart, which replaces this member."""
        target, now = self._twin.node(node), self._twin.now()
        cordoned = False
        if not target.cordoned:
            self._twin.cordon_node(node, owner)
            cordoned = True
        evicted = []
        for job in self._twin.jobs_on_node(node):
            if job.state in BUSY_STATES and job.stall(now, f"evicted: {node} drained ({reason})"):
                for gpu in job.gpu_indices:
                    self._twin.telemetry.process_died(job, node, gpu)
                evicted.append(job.name)
        data: dict[str, Scalar] = {
            "node": node,
            "cordon_owner": target.cordon_owner,
            "evicted": ", ".join(evicted) or None,
        }
        if not cordoned and not evicted:
            detail = f"{node} is already drained (cordoned by {target.cordon_owner!r}, no running work)"
            return self._result("drain_node", node, False, detail, data)
        detail = f"drained {node}: " + (f"evicted {', '.join(evicted)}" if evicted else "no running work")
        detail += f"; cordoned by {target.cordon_owner!r}"
        self._twin._record(now, "action", f"{detail} ({reason})")
        return self._result("drain_node", node, True, detail, data)

    def reset_gpu(self, node: str, gpu: int, reason: str) -> ActionResult:
        """Reset one GPU (``RESET_S``). Refused while work runs on the node, while the node reboots,
        and for a GPU off the bus (the driver cannot reach it: reboot the node)."""
        target, now = self._twin.gpu(node, gpu), self._twin.now()
        if any(r.kind == "reboot" for r in self.repairs_on(node)):
            raise ActionRefusedError(f"{node} is rebooting; its GPUs reset with it")
        pending = next((r for r in self.repairs_on(node) if r.gpu == gpu), None)
        data: dict[str, Scalar] = {"node": node, "gpu": gpu, "health_before": target.health}
        if pending is not None:
            detail = f"GPU {gpu} on {node} is already resetting (done at {pending.done_at:%H:%M:%S}); nothing changed"
            return self._result(
                "reset_gpu",
                f"{node}/gpu{gpu}",
                False,
                detail,
                data | {"done_at": pending.done_at.isoformat()},
            )
        self._refuse_while_busy(node, f"reset GPU {gpu} on {node}")
        if target.health == "fallen_off_bus":
            raise ActionRefusedError(
                f"GPU {gpu} on {node} has fallen off the bus: the driver cannot reach it, so it cannot be "
                "reset; reboot the node"
            )
        done = now + timedelta(seconds=RESET_S)
        self._repairs.append(Repair("reset", node, gpu, done))
        detail = f"resetting GPU {gpu} on {node} ({target.pci_bus_id}); done at {done:%H:%M:%S}"
        self._twin._record(now, "action", f"{detail} ({reason})")
        return self._result(
            "reset_gpu",
            f"{node}/gpu{gpu}",
            True,
            detail,
            data | {"done_at": done.isoformat(), "takes_s": RESET_S},
        )

    def reboot_node(self, node: str, reason: str) -> ActionResult:
        """Reboot the node (``REBOOT_S``): it is ``rebooting`` meanwhile; refused while work runs on it."""
        target, now = self._twin.node(node), self._twin.now()
        running = next((r for r in self.repairs_on(node) if r.kind == "reboot"), None)
        if running is not None:
            detail = f"{node} is already rebooting (back at {running.done_at:%H:%M:%S}); nothing changed"
            return self._result(
                "reboot_node", node, False, detail, {"node": node, "done_at": running.done_at.isoformat()}
            )
        self._refuse_while_busy(node, f"reboot {node}")
        self._repairs = [r for r in self._repairs if r.node != node]  # a reboot resets every GPU anyway
        target.state = "rebooting"
        done = now + timedelta(seconds=REBOOT_S)
        self._repairs.append(Repair("reboot", node, None, done))
        detail = f"rebooting {node}; back at {done:%H:%M:%S}"
        self._twin._record(now, "action", f"{detail} ({reason})")
        return self._result(
            "reboot_node",
            node,
            True,
            detail,
            {"node": node, "done_at": done.isoformat(), "takes_s": REBOOT_S},
        )

    def restore_gpus(self, node: str, reason: str) -> ActionResult:
        """Return the node's isolated GPUs that are healthy again to service; unhealthy ones stay out."""
        target, now = self._twin.node(node), self._twin.now()
        restored = [g.index for g in target.gpus if g.isolated and g.health == "healthy"]
        still = [g.index for g in target.gpus if g.isolated and g.health != "healthy"]
        for gpu in target.gpus:
            if gpu.index in restored:
                gpu.isolated, gpu.isolation_reason = False, None
        data: dict[str, Scalar] = {
            "node": node,
            "restored": ", ".join(map(str, restored)) or None,
            "still_isolated": ", ".join(map(str, still)) or None,
        }
        if not restored:
            detail = f"no isolated healthy GPU on {node}; nothing changed"
            return self._result("restore_gpus", node, False, detail, data)
        detail = f"returned GPU {', '.join(map(str, restored))} on {node} to service"
        if still:
            detail += f"; GPU {', '.join(map(str, still))} stay isolated (unhealthy)"
        self._twin._record(now, "action", f"{detail} ({reason})")
        return self._result("restore_gpus", node, True, detail, data)

    def uncordon_node(self, node: str, owner: str) -> ActionResult:
        """Uncordon (only ``owner``'s cordon: the twin refuses anyone else). A node that was swapped
        out of a gang and is fit again rejoins the warm spare pool."""
        result = self._twin.uncordon_node(node, owner)
        target = self._twin.node(node)
        rejoined = False
        if (
            node in self._swapped_out
            and not target.cordoned
            and target.unfit_reason(self._twin.spec.gpus_per_node) is None
            and not self._twin.jobs_on_node(node)
        ):
            del self._swapped_out[node]
            target.spare, target.labels[LABEL_POOL] = True, POOL_SPARE
            rejoined = True
            self._twin._record(self._twin.now(), "action", f"{node} rejoined the warm spare pool")
        detail = result.detail + ("; rejoined the warm spare pool" if rejoined else "")
        data: dict[str, Scalar] = {"node": node, "spare_pool": rejoined}
        return self._result("uncordon_node", node, result.changed or rejoined, detail, data)

    # -- time ---------------------------------------------------------------------------------------

    def complete(self, now: datetime) -> None:
        """Finish the repairs whose time has come (the twin calls this as its clock moves)."""
        due = sorted((r for r in self._repairs if r.done_at <= now), key=lambda r: r.done_at)
        self._repairs = [r for r in self._repairs if r.done_at > now]
        for repair in due:
            if repair.kind == "reset":
                assert repair.gpu is not None
                self._finish_reset(repair.node, repair.gpu, repair.done_at)
            else:
                self._finish_reboot(repair.node, repair.done_at)

    def _finish_reset(self, node: str, index: int, at: datetime) -> None:
        gpu = self._twin.gpu(node, index)
        self._twin.telemetry.gpu_reset(node, index)
        if self.is_defective(node, index):
            outcome = f"still {gpu.health}: the GPU is defective (replace it)"
        elif gpu.health == "error" and gpu.last_xid in RESET_DOES_NOT_CLEAR:
            outcome = f"still in error: a reset does not clear Xid {gpu.last_xid}; reboot the node"
        else:
            gpu.health = "healthy"
            outcome = "healthy"
        self._twin._record(at, "action", f"reset of GPU {index} on {node} done: {outcome}")

    def _finish_reboot(self, node: str, at: datetime) -> None:
        target = self._twin.node(node)
        target.state = "ready"
        self._twin.telemetry.node_rebooted(node)
        broken = []
        for gpu in target.gpus:
            if self.is_defective(node, gpu.index):
                broken.append(gpu.index)
            else:
                gpu.health = "healthy"
        outcome = (
            f"GPU {', '.join(map(str, broken))} still broken (defective)" if broken else "every GPU healthy"
        )
        self._twin._record(at, "action", f"{node} is back from its reboot: {outcome}")

    # -- helpers ------------------------------------------------------------------------------------

    def _refuse_while_busy(self, node: str, what: str) -> None:
        busy: list[TrainingJob] = [j for j in self._twin.jobs_on_node(node) if j.state in BUSY_STATES]
        if busy:
            names = ", ".join(f"{j.name} ({j.state})" for j in busy)
            raise ActionRefusedError(f"cannot {what}: work runs on it ({names}); drain the node first")

    def _result(
        self, action: str, target: str, changed: bool, detail: str, data: Mapping[str, Scalar]
    ) -> ActionResult:
        return ActionResult(
            action=action,
            target=target,
            changed=changed,
            detail=detail,
            time=self._twin.now(),
            data=dict(data),
        )
