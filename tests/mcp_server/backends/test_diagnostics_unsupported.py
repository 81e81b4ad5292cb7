"""On Kubernetes the silent-data-corruption actions refuse with a readable error (no API call, so no
RBAC grant), and a restart cannot ask the training loop for an older checkpoint than its newest."""

from __future__ import annotations

import pytest

from mcp_server.backends.base import BackendError
from tests.deploy.api_calls import record


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.run_diagnostics("gpu-node-02", 3, "sdc", "olga"),
        lambda b: b.diagnostics_report("gpu-node-02"),
        lambda b: b.stop_job("llm-pretrain", "sdc", "olga"),
    ],
)
async def test_diagnostics_and_stopping_a_job_are_refused_on_kubernetes_without_an_api_call(call) -> None:
    with pytest.raises(BackendError, match="not supported on the Kubernetes backend"):
        await record(call)


async def test_a_restart_before_the_newest_checkpoint_is_refused_on_kubernetes() -> None:
    with pytest.raises(BackendError, match="restores its newest checkpoint"):
        await record(lambda b: b.restart_from_checkpoint("llm-pretrain", "sdc", "olga", at_or_before_step=0))
