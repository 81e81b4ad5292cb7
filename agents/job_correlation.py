"""Correlation of job-level signals: hangs, slowdowns and suspected silent data corruption.

One incident per job episode; a resumed hang, a job back at its baseline speed or numerics back in
range cancel it. A hang or slow rank on a node with an open (or recent) hardware incident joins it:
only a hardware fault explains a stall (``agents.grouping.explains_stall``). A signal that names
shared parts (switches, racks) goes to topology, which may blame one part for many jobs.
"""

from __future__ import annotations

from agents.grouping import explains_stall
from agents.incident_book import Correlation, IncidentBook, OpenIncident
from agents.topology import SignalClass
from events.fabric import Part
from events.models import HangEvent, NumericsEvent, ThroughputEvent


class JobCorrelator(IncidentBook):
    """The job-level paths of ``agents.correlator.Correlator``."""

    # -- hangs and slowdowns: one job ----------------------------------------------------------------

    def _hang(self, event: HangEvent) -> Correlation:
        job_key = f"job:{event.job}"
        current = self._find([job_key])
        if event.resumed:
            if current is None or "hang" not in current.tags:
                return Correlation("", "ignored", f"{event.job} progresses again; no open hang")
            self._touch(current, event.time)
            current.tags.discard("hang")
            return Correlation(self._root(current.incident_id), "cancel", f"{event.job} progresses again")
        summary = (
            f"{event.job} hung at step {event.last_step}, first stalled on {', '.join(event.nodes) or '?'}"
        )
        return self._job_signal(
            event, current, "hang", "network", tuple(event.nodes), summary, decisive=False
        )

    def _throughput(self, event: ThroughputEvent) -> Correlation:
        job_key = f"job:{event.job}"
        current = self._find([job_key])
        if event.recovered:
            if current is None or "slow" not in current.tags:
                return Correlation("", "ignored", f"{event.job} is back at baseline; no open slowdown")
            self._touch(current, event.time)
            current.tags.discard("slow")
            return Correlation(
                self._root(current.incident_id), "cancel", f"{event.job} is back at its baseline"
            )
        where = ", ".join(event.suspect_switches or event.suspect_nodes) or "no suspect"
        summary = f"{event.job} {event.slowdown:.2f}x slower ({event.signature or 'unattributed'}: {where})"
        if event.signature == "network":
            parts: tuple[Part, ...] = tuple(("switch", s) for s in event.suspect_switches)
            nodes = tuple(event.suspect_nodes or event.nodes)
            return self._job_signal(
                event, current, "slow", "network", nodes, summary, parts, decisive=len(parts) == 1
            )
        if event.signature == "straggler":
            return self._job_signal(event, current, "slow", "compute", tuple(event.suspect_nodes), summary)
        return self._job_signal(event, current, "slow", None, (), summary)

    def _numerics(self, event: NumericsEvent) -> Correlation:
        """Suspected silent data corruption: one incident per job episode; a later numerics event of
        the job joins it, ``cleared`` cancels it (like a slowdown's recovery)."""
        job_key = f"job:{event.job}"
        current = self._find([job_key])
        if event.cleared:
            if current is None or "numerics" not in current.tags:
                return Correlation("", "ignored", f"{event.job}'s numerics are back in range; nothing open")
            self._touch(current, event.time)
            current.tags.discard("numerics")
            return Correlation(
                self._root(current.incident_id), "cancel", f"{event.job}'s numerics are back in range"
            )
        summary = f"{event.job}: {event.signature} at step {event.first_bad_step}"
        if event.suspect_gpus:
            summary += f" (suspect {', '.join(event.suspect_gpus)})"
        if current is not None:
            self._touch(current, event.time)
            if "numerics" in current.tags:
                return self._duplicate(current, f"{summary} again")
            current.tags.add("numerics")
            return self._join(current, summary)
        incident_id = self._new_id(event.cluster, job_key, event.event_id)
        self._remember(OpenIncident(incident_id, "numerics", None, event.time, [job_key], tags={"numerics"}))
        return Correlation(incident_id, "new", summary, "numerics", keys=(job_key,))

    def _job_signal(
        self,
        event: HangEvent | ThroughputEvent,
        current: OpenIncident | None,
        tag: str,
        klass: SignalClass | None,
        nodes: tuple[str, ...],
        summary: str,
        parts: tuple[Part, ...] | None = None,
        *,
        decisive: bool = False,
    ) -> Correlation:
        job_key = f"job:{event.job}"
        if current is not None:
            self._touch(current, event.time)
            fresh = tag not in current.tags
            current.tags.add(tag)
            if fresh:
                return self._join(current, summary)
            return self._duplicate(current, f"{event.job} again: {summary}")
        # A node with an open hardware incident explains a hang or a slow rank on it.
        for suspect in nodes if len(nodes) <= 2 else ():
            cause = self._find([f"node:{suspect}"])
            if cause is None or not explains_stall(cause.kind, cause.xids, cause.tags):
                cause = self._recent_hardware(suspect, event.time)
            if cause is not None and explains_stall(cause.kind, cause.xids, cause.tags):
                self._touch(cause, event.time)
                cause.tags.add(tag)
                self._alias(job_key, cause)
                return self._join(cause, f"{summary}; {suspect} already has a hardware incident")
        if len(nodes) > 2:
            # Every rank stopped at once: a hardware fault open on exactly one node of them explains it.
            causes = {
                c.incident_id: c
                for n in nodes
                if (c := self._find([f"node:{n}"])) is not None and explains_stall(c.kind, c.xids, c.tags)
            }
            if len(causes) == 1:
                [cause] = causes.values()
                self._touch(cause, event.time)
                cause.tags.add(tag)
                self._alias(job_key, cause)
                return self._join(cause, f"{summary}; {cause.node} has an open hardware incident")
        incident_id = self._new_id(event.cluster, job_key, event.event_id)
        node = nodes[0] if len(nodes) == 1 else None
        opened = OpenIncident(incident_id, event.kind, node, event.time, [job_key], tags={tag})
        if klass is not None and nodes:
            verdict = self._signal(
                event, klass, nodes, parts, incident_id, summary, job=event.job, decisive=decisive
            )
            if verdict is not None:
                return self._to_shared(verdict, event.time, tag, [job_key])
        self._remember(opened)
        repeat = None
        if klass is not None and len(nodes) == 1:
            repeat = self.offenders.record([nodes[0]], event.time)
        return Correlation(incident_id, "new", summary, event.kind, hold=True, repeat=repeat, keys=(job_key,))
