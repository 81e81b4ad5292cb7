"""The one path every mutating tool takes: idempotency, policy, dry run, act, audit.

Whoever calls (a person in an MCP client, the triage agent, a slash command), a mutation reaches
the backend only after the policy gate allowed it, and every attempt is audited — denied ones too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from events.models import AuditRecord
from mcp_server.backends.base import BackendError
from mcp_server.deps import ServerDeps
from mcp_server.idempotency import IdempotencyConflict, fingerprint
from mcp_server.models import ActionChange, ActionOutcome, PolicyView
from mcp_server.policy import PolicyDecision, Principal, Resource

log = logging.getLogger(__name__)

Perform = Callable[[], Awaitable[ActionChange]]

# Tool errors for policy refusals start with these, so a client (the runbook engine) can tell a
# refusal from a failure without parsing prose.
DENIED = "policy denied"
APPROVAL_REQUIRED = "policy requires approval for"


class MutationGuard:
    def __init__(self, deps: ServerDeps) -> None:
        self.deps = deps

    async def policy_context(self, dry_run: bool) -> dict[str, int | bool | str]:
        fleet = await self.deps.backend.fleet_context()
        return {
            "isolations_last_hour": fleet.isolations_last_hour,
            "max_isolations_per_hour": self.deps.limits.max_isolations_per_hour,
            "cluster_nodes": fleet.cluster_nodes,
            "nodes_out_of_service": fleet.nodes_out_of_service,
            "dry_run": dry_run,
        }

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
    ) -> ActionOutcome:
        principal = self.deps.identity()
        keyed = bool(idempotency_key) and not dry_run
        scope, fp = f"{principal.id}:{action}", fingerprint(arguments)
        if keyed:
            assert idempotency_key is not None
            try:
                earlier = await self.deps.idempotency.claim(scope, idempotency_key, fp)
            except IdempotencyConflict as exc:
                raise ToolError(str(exc)) from exc
            if earlier is not None:
                # The same principal made the same call before and passed the gate then.
                replay = earlier.model_copy(update={"replayed": True})
                await self._audit(principal, action, arguments, earlier.policy, replay, ok=True)
                return replay
        try:
            outcome = await self._decide_and_act(
                principal, action, target, resource, arguments, dry_run, perform, idempotency_key
            )
        except BaseException:
            if keyed:
                assert idempotency_key is not None
                await self.deps.idempotency.release(scope, idempotency_key)
            raise
        if keyed:
            assert idempotency_key is not None
            await self.deps.idempotency.complete(scope, idempotency_key, fp, outcome)
        return outcome

    async def _decide_and_act(
        self,
        principal: Principal,
        action: str,
        target: str,
        resource: Resource,
        arguments: dict[str, Any],
        dry_run: bool,
        perform: Perform,
        idempotency_key: str | None,
    ) -> ActionOutcome:
        decision = self.deps.gate.check(principal, action, resource, await self.policy_context(dry_run))
        policy = _view(decision)
        if decision.decision != "allow":
            await self._audit(principal, action, arguments, policy, None, ok=False, dry_run=dry_run)
            prefix = DENIED if decision.decision == "deny" else APPROVAL_REQUIRED
            raise ToolError(
                f"{prefix} {action} on {target} for {principal.id} (role {principal.role}): "
                + "; ".join(decision.reasons)
            )
        if dry_run:
            outcome = ActionOutcome(
                action=action,
                target=target,
                dry_run=True,
                changed=False,
                detail=f"dry run: policy allows {action} on {target}; nothing was changed",
                policy=policy,
            )
            await self._audit(principal, action, arguments, policy, outcome, ok=True, dry_run=True)
            return outcome
        try:
            change = await perform()
        except BackendError as exc:
            await self._audit(principal, action, arguments, policy, None, ok=False, error=str(exc))
            raise ToolError(str(exc)) from exc
        outcome = ActionOutcome(
            action=action,
            target=target,
            dry_run=False,
            changed=change.changed,
            detail=change.detail,
            policy=policy,
            data=change.data,
            idempotency_key=idempotency_key,
        )
        await self._audit(principal, action, arguments, policy, outcome, ok=True)
        return outcome

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
    ) -> None:
        result = error or (outcome.detail if outcome else "; ".join(policy.reasons))
        entry = AuditRecord(
            cluster=self.deps.backend.cluster,
            principal=principal.id,
            role=principal.role,
            tool=action,
            arguments=arguments,
            decision=policy.decision,
            reasons=policy.reasons,
            dry_run=dry_run,
            idempotency_key=outcome.idempotency_key if outcome else arguments.get("idempotency_key"),
            replayed=outcome.replayed if outcome else False,
            ok=ok,
            result=result,
        )
        try:
            await self.deps.audit.record(entry)
        except Exception:
            # The action already happened (or was refused); losing the record must be loud.
            log.exception("could not write audit record for %s by %s", action, principal.id)


def _view(decision: PolicyDecision) -> PolicyView:
    return PolicyView(decision=decision.decision, reasons=decision.reasons, policies=decision.policies)
