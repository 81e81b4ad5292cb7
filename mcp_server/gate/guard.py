"""The one path every mutating tool takes: idempotency, policy, approvals, breaker, act, audit.

Whoever calls (a person in an MCP client, the triage agent, a slash command), a mutation reaches
the backend only after the policy gate allowed it, and every attempt is audited — denied ones,
ones waiting for approval and the breaker's trips too.

- Approvals: when the gate answers ``approval_required``, the guard records an approval request
  (``mcp_server.gate.approvals``) and refuses the call naming its id; once a person approved it, the
  same call (same caller, tool, arguments, idempotency key) passes with ``context.approved`` and
  uses the approval up. A rejected request refuses the call; an expired one is asked again.
- Breaker: an action that would take the share of nodes taken out within the breaker's window
  past its threshold trips the breaker instead (``mcp_server.gate.breaker``); each take-out that went
  ahead is logged against its node.
- Refusals: a call the gate does not let through raises ``Refused`` with a
  ``contracts.refusal.Refusal`` (kind ``denied``, ``approval_required``, ``breaker_open``,
  ``in_flight`` or ``read_only``, the deciding rule, the reasons, the approval's id and expiry);
  the server answers it as an ``is_error`` result whose structured content is that refusal,
  beside the sentence (``mcp_server.gate.refused``).
- Crash safety: once the idempotency key is claimed, deciding, acting and recording the outcome
  run shielded from the caller's cancellation, so a caller that dies mid-call (its connection
  dropped) cannot leave a mutation done but unrecorded — the retry is answered from the record.
- NATS faults: the guard's own reads and writes (idempotency record, policy facts, breaker log,
  audit) are retried through a transient NATS error (a server of the cluster down, a leader
  election) with backoff, so a mutation done is never left unaudited or unrecorded by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from contracts.refusal import Refusal
from contracts.tools import ActionChange, ActionOutcome, PolicyView
from events.backoff import Backoff, retry_transient
from events.leases import incident_lease
from events.models import utcnow
from mcp_server.backends.base import BackendError
from mcp_server.deps import ServerDeps
from mcp_server.gate import approvals as approval_book
from mcp_server.gate import takeouts
from mcp_server.gate.approvals import ApprovalRequest
from mcp_server.gate.audit import audit
from mcp_server.gate.breaker import TAKES_OUT, BreakerState, TakeOut, share_pct
from mcp_server.gate.idempotency import IdempotencyConflict, KeyInFlight, fingerprint, scope_of
from mcp_server.gate.policy import PolicyDecision, Principal, Resource
from mcp_server.gate.refused import BREAKER_POLICY, Refused, deciding_rule, refusal_kind
from mcp_server.gate.safety import CallFacts, policy_context

log = logging.getLogger(__name__)

Perform = Callable[[], Awaitable[ActionChange]]

# The sentences of refusals start with these (for people; programs read the ``Refusal``).
DENIED = "policy denied"
APPROVAL_REQUIRED = "policy requires approval for"
T = TypeVar("T")
STORE_ATTEMPTS = 40
"""Tries of one of the guard's NATS reads or writes through a NATS fault (backing off up to 2 s)."""


async def steady(op: Callable[[], Awaitable[T]]) -> T:
    """``op()`` (a NATS read or write of the safety core), retried through transient NATS errors."""
    return await retry_transient(op, attempts=STORE_ATTEMPTS, backoff=Backoff(0.1, 2.0))


class MutationGuard:
    def __init__(self, deps: ServerDeps) -> None:
        self.deps = deps

    async def run(
        self,
        *,
        action: str,
        target: str,
        resource: Resource,
        arguments: dict[str, Any],
        idempotency_key: str | None,
        dry_run: bool,
        perform: Perform,
        incident_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> ActionOutcome:
        """Check, act and audit one mutation. ``context`` adds facts only the tool knows (e.g.
        ``own_request`` for an approval) to the policy context."""
        principal = self.deps.identity()
        keyed = bool(idempotency_key) and not dry_run
        scope, fp = scope_of(principal.role, action), fingerprint(arguments)
        lease = incident_lease(incident_id) if incident_id else None
        if keyed:
            assert idempotency_key is not None
            try:
                earlier = await steady(lambda: self.deps.idempotency.claim(scope, idempotency_key, fp, lease))
            except KeyInFlight as exc:
                raise Refused(Refusal(kind="in_flight", reasons=[str(exc)]), str(exc)) from exc
            except IdempotencyConflict as exc:
                raise ToolError(str(exc)) from exc
            if earlier is not None:
                # The same call (by a caller of the same role) passed the gate before.
                replay = earlier.model_copy(update={"replayed": True})
                await self._audit(principal, action, arguments, earlier.policy, replay, ok=True)
                return replay
        call = _Call(
            principal, action, target, resource, arguments, fp, idempotency_key, dry_run, incident_id
        )
        call.extra_context = dict(context or {})
        # Shielded: a caller that goes away mid-call must not cut a mutation off from its record.
        task = asyncio.ensure_future(self._settle(call, perform, scope if keyed else None))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if orphaned
        return await asyncio.shield(task)

    async def _settle(self, call: _Call, perform: Perform, scope: str | None) -> ActionOutcome:
        try:
            outcome = await self._decide_and_act(call, perform)
        except BaseException:
            if scope is not None:
                assert call.idempotency_key is not None
                key = call.idempotency_key
                await steady(lambda: self.deps.idempotency.release(scope, key))
            raise
        if scope is not None:
            assert call.idempotency_key is not None
            key = call.idempotency_key
            await steady(lambda: self.deps.idempotency.complete(scope, key, call.fingerprint, outcome))
        return outcome

    async def _decide_and_act(self, call: _Call, perform: Perform) -> ActionOutcome:
        deps, principal, action = self.deps, call.principal, call.action
        context, facts = await steady(
            lambda: policy_context(
                deps, action, call.resource, dry_run=call.dry_run, incident_id=call.incident_id
            )
        )
        context |= call.extra_context
        if facts.trips_breaker and not call.dry_run:
            await self._trip_breaker(call, facts)
        decision = deps.gate.check(principal, action, call.resource, context)
        grant: ApprovalRequest | None = None
        if decision.decision == "approval_required" and not call.dry_run:
            grant = await self._granted_approval(call, decision, context)
            decision = deps.gate.check(principal, action, call.resource, {**context, "approved": True})
        policy = _view(decision)
        if decision.decision != "allow":
            await self._audit(principal, action, call.arguments, policy, None, ok=False, dry_run=call.dry_run)
            prefix = DENIED if decision.decision == "deny" else APPROVAL_REQUIRED
            kind = refusal_kind(decision.decision, decision.policies)
            rule = deciding_rule(kind, decision.policies)
            raise Refused(
                Refusal(kind=kind, rule=rule, reasons=list(decision.reasons)),
                f"{prefix} {call.describe()}: " + "; ".join(decision.reasons) + f" (rule {rule})",
            )
        if call.dry_run:
            outcome = ActionOutcome(
                action=action,
                target=call.target,
                dry_run=True,
                changed=False,
                detail=f"dry run: policy allows {action} on {call.target}; nothing was changed",
                policy=policy,
            )
            await self._audit(principal, action, call.arguments, policy, outcome, ok=True, dry_run=True)
            return outcome
        reservation = None
        if action in TAKES_OUT and facts.node is not None:
            reservation = await self._reserve_take_out(call, facts)
        # Any other failure keeps the reservation: the take-out may have happened, and the breaker
        # errs towards stopping.
        try:
            change = await perform()
        except BackendError as exc:
            if reservation is not None:
                await steady(lambda: self._release_take_out(reservation))
            await self._audit(principal, action, call.arguments, policy, None, ok=False, error=str(exc))
            raise ToolError(str(exc)) from exc
        data = dict(change.data)
        if grant is not None:
            await self._use_approval(grant)
            data["approval"] = grant.id
            data["approved_by"] = grant.decided_by
        outcome = ActionOutcome(
            action=action,
            target=call.target,
            dry_run=False,
            changed=change.changed,
            detail=change.detail,
            policy=policy,
            data=data,
            idempotency_key=call.idempotency_key,
        )
        if reservation is not None and not change.changed:
            await steady(lambda: self._release_take_out(reservation))  # nothing was taken out
        await self._audit(principal, action, call.arguments, policy, outcome, ok=True)
        return outcome

    # -- approvals ------------------------------------------------------------------------------

    async def _granted_approval(
        self, call: _Call, decision: PolicyDecision, context: dict[str, Any]
    ) -> ApprovalRequest:
        """The approved request for exactly this call; otherwise record one (or name the pending
        one) and refuse the call."""
        book, now = self.deps.approvals, utcnow()
        found = await approval_book.find(
            book, call.principal.id, call.action, call.fingerprint, call.idempotency_key
        )
        status = found.current_status(now) if found else None
        if found is not None and status == "approved":
            return found
        if found is not None and status == "rejected":
            reason = f"approval {found.id} was rejected by {found.decided_by}" + (
                f": {found.comment}" if found.comment else ""
            )
            policy = PolicyView(decision="deny", reasons=[reason], policies=decision.policies)
            await self._audit(call.principal, call.action, call.arguments, policy, None, ok=False)
            refusal = Refusal(
                kind="denied",
                rule=deciding_rule("denied", decision.policies),
                reasons=[reason],
                approval_id=found.id,
            )
            raise Refused(refusal, f"{DENIED} {call.describe()}: {reason}")
        if found is None or status != "pending":
            found = approval_book.new_request(
                ttl_s=self.deps.limits.approval_ttl_s,
                now=now,
                cluster=self.deps.backend.cluster,
                action=call.action,
                target=call.target,
                requested_by=call.principal.id,
                requester_role=call.principal.role,
                arguments=call.arguments,
                fingerprint=call.fingerprint,
                idempotency_key=call.idempotency_key,
                incident_id=call.incident_id,
                reasons=decision.reasons,
                policies=decision.policies,
                evidence={k: v for k, v in context.items() if k != "dry_run"},
            )
            await book.add(found)
            what = "requested"
        else:
            what = "still waiting"
        note = (
            f"approval {found.id} {what} (expires {found.expires_at:%Y-%m-%d %H:%M:%S} UTC): a person "
            f"approves it with approve_action or `aiops approve {found.id}`, then this same call goes ahead"
        )
        policy = PolicyView(
            decision="approval_required", reasons=[*decision.reasons, note], policies=decision.policies
        )
        await self._audit(call.principal, call.action, call.arguments, policy, None, ok=False, result=note)
        refusal = Refusal(
            kind="approval_required",
            rule=deciding_rule("approval_required", decision.policies),
            reasons=list(policy.reasons),
            approval_id=found.id,
            expires_at=found.expires_at,
        )
        raise Refused(refusal, f"{APPROVAL_REQUIRED} {call.describe()}: " + "; ".join(policy.reasons))

    async def _use_approval(self, grant: ApprovalRequest) -> None:
        now = utcnow()

        def use(request: ApprovalRequest) -> None:
            request.status, request.used_at = "used", now

        try:
            await self.deps.approvals.update(grant.id, use)
        except Exception:
            log.exception("could not mark approval %s used", grant.id)

    # -- breaker --------------------------------------------------------------------------------

    async def _trip_breaker(self, call: _Call, facts: CallFacts) -> None:
        limits = self.deps.limits
        pct = share_pct(len(facts.taken_out), facts.cluster_nodes)
        reason = (
            f"{call.action} on {call.target} would have taken {len(facts.taken_out)} of {facts.cluster_nodes} "
            f"nodes ({pct}%) out within {limits.breaker_window_s:g} s, past the threshold of "
            f"{limits.breaker_threshold_pct}%: {', '.join(facts.taken_out)}"
        )

        def trip(state: BreakerState) -> None:
            if not state.open:
                state.open, state.tripped_at, state.trip_reason = True, facts.now, reason
                state.taken_out_at_trip = list(facts.taken_out)
                state.trips += 1

        state = await self.deps.breaker.update(self.deps.backend.cluster, trip)
        if state.tripped_at == facts.now and state.trip_reason == reason:
            policy = PolicyView(
                decision="deny", reasons=[f"circuit breaker tripped: {reason}"], policies=[BREAKER_POLICY]
            )
            await self._audit(
                call.principal,
                "trip_breaker",
                call.arguments,
                policy,
                None,
                ok=True,
                result=policy.reasons[0],
            )

    async def _reserve_take_out(self, call: _Call, facts: CallFacts) -> TakeOut:
        """The take-out logged before it happens (``takeouts.reserve``), or the call refused because
        the breaker is open or this take-out trips it."""
        assert facts.node is not None
        entry = TakeOut(time=facts.now, node=facts.node, action=call.action, principal=call.principal.id)
        verdict = await steady(lambda: takeouts.reserve(self.deps, entry, call.target, facts.cluster_nodes))
        if verdict.refused is None:
            return entry
        reasons = [f"circuit breaker open: {verdict.refused}"]
        if verdict.tripped:
            trip = PolicyView(
                decision="deny",
                reasons=[f"circuit breaker tripped: {verdict.refused}"],
                policies=[BREAKER_POLICY],
            )
            await self._audit(
                call.principal, "trip_breaker", call.arguments, trip, None, ok=True, result=trip.reasons[0]
            )
        policy = PolicyView(decision="deny", reasons=reasons, policies=[BREAKER_POLICY])
        await self._audit(call.principal, call.action, call.arguments, policy, None, ok=False)
        raise Refused(
            Refusal(kind="breaker_open", rule=BREAKER_POLICY, reasons=reasons),
            f"{DENIED} {call.describe()}: " + "; ".join(reasons) + f" (rule {BREAKER_POLICY})",
        )

    async def _release_take_out(self, entry: TakeOut) -> None:
        try:
            await takeouts.release(self.deps, entry)
        except Exception:
            log.exception("could not take back the take-out of %s for the circuit breaker", entry.node)

    # -- audit ----------------------------------------------------------------------------------

    async def _audit(
        self,
        principal: Principal,
        action: str,
        arguments: dict[str, Any],
        policy: PolicyView,
        outcome: ActionOutcome | None,
        *,
        ok: bool,
        dry_run: bool = False,
        error: str | None = None,
        result: str | None = None,
    ) -> None:
        await steady(
            lambda: audit(
                self.deps,
                principal,
                action,
                arguments,
                policy,
                ok=ok,
                dry_run=dry_run,
                result=error or result or (outcome.detail if outcome else "; ".join(policy.reasons)),
                idempotency_key=outcome.idempotency_key if outcome else arguments.get("idempotency_key"),
                replayed=outcome.replayed if outcome else False,
            )
        )


class _Call:
    """One mutating call, as the guard handles it."""

    def __init__(
        self,
        principal: Principal,
        action: str,
        target: str,
        resource: Resource,
        arguments: dict[str, Any],
        fingerprint: str,
        idempotency_key: str | None,
        dry_run: bool,
        incident_id: str | None,
    ) -> None:
        self.principal = principal
        self.action = action
        self.target = target
        self.resource = resource
        self.arguments = arguments
        self.fingerprint = fingerprint
        self.idempotency_key = idempotency_key
        self.dry_run = dry_run
        self.incident_id = incident_id
        self.extra_context: dict[str, Any] = {}

    def describe(self) -> str:
        return f"{self.action} on {self.target} for {self.principal.id} (role {self.principal.role})"


def _view(decision: PolicyDecision) -> PolicyView:
    return PolicyView(decision=decision.decision, reasons=decision.reasons, policies=decision.policies)
