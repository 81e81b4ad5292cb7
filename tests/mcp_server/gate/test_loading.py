"""Loading policies: typos are refused at load with a readable error; ids map to the right policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mcp_server.gate.policy import POLICY_DIR, PolicyError, PolicyGate, Principal, Resource
from tests.mcp_server.gate.cases import AGENT, CALM, CLUSTER, GPU, NODE, OPERATOR

OK = '@id("ok")\n@reason("fine")\npermit (principal, action, resource);\n'


def write_policies(directory: Path, **files: str) -> Path:
    for name, text in files.items():
        (directory / f"{name}.cedar").write_text(text)
    return directory


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            '@id("iso-limit")\n@reason("r")\nforbid (principal, action == Aiops::Action::"isolate_gpu", resource)\n'
            "when { context has isolations_last_hr && context.isolations_last_hr > 3 };\n",
            [
                "typo.cedar: policy 'iso-limit' refers to context.isolations_last_hr, which the schema does not declare"
            ],
            id="unknown context attribute behind a has guard",
        ),
        pytest.param(
            '@id("iso-limit")\n@reason("r")\nforbid (principal, action == Aiops::Action::"isolate_gpu", resource)\n'
            "when { context.isolations_last_hr > 3 };\n",
            [
                "typo.cedar: policy 'iso-limit' does not match the schema",
                "`isolations_last_hr` in context",
                "not found",
            ],
            id="unknown context attribute",
        ),
        pytest.param(
            '@id("rack-r7")\n@reason("r")\nforbid (principal, action == Aiops::Action::"drain_node", resource)\n'
            'when { resource has rackk && resource.rackk == "r7" };\n',
            ["policy 'rack-r7' refers to resource.rackk"],
            id="unknown resource attribute behind a has guard",
        ),
        pytest.param(
            '@id("nuke")\n@reason("r")\nforbid (principal, action == Aiops::Action::"nuke_cluster", resource);\n',
            ["typo.cedar", "policy 'nuke'", 'unrecognized action `Aiops::Action::"nuke_cluster"`'],
            id="unknown action",
        ),
        pytest.param(
            '@id("by-rank")\n@reason("r")\npermit (principal, action, resource) when { principal.rank == "x" };\n',
            ["policy 'by-rank'", "rank"],
            id="unknown principal attribute",
        ),
        pytest.param(
            '@id("unguarded")\n@reason("r")\nforbid (principal, action == Aiops::Action::"isolate_gpu", resource)\n'
            "when { context.isolations_last_hour > 3 };\n",
            ["policy 'unguarded'", "optional attribute `isolations_last_hour`"],
            id="optional attribute read without has",
        ),
        pytest.param(
            '@id("ok")\n@reason("fine")\npermit (principal, action, resource);\n\n'
            '// the next one is broken\n@id("broken")\n@reason("r")\npermit (principal, action, resource) when { 1 + };\n',
            [
                "typo.cedar: Cedar syntax error in the policy starting at line 6 (@id 'broken')",
                "unexpected token",
            ],
            id="syntax error",
        ),
        pytest.param(
            '@reason("r")\npermit (principal, action, resource);\n',
            ["typo.cedar: policy #1 (permit) has no @id"],
            id="missing id",
        ),
        pytest.param(
            '@id("quiet")\npermit (principal, action, resource);\n',
            ["policy 'quiet' has no @reason"],
            id="missing reason",
        ),
        pytest.param(
            '@id("admin-may-do-everything")\n@reason("r")\npermit (principal, action, resource);\n',
            ["@id 'admin-may-do-everything' is already used in roles.cedar"],
            id="duplicate id",
        ),
        pytest.param(
            '@id("p")\n@approval("true")\n@reason("r")\npermit (principal, action, resource);\n',
            ["policy 'p'", "only makes sense on a forbid"],
            id="approval on a permit",
        ),
        pytest.param(
            '@id("f")\n@approval("maybe")\n@reason("r")\nforbid (principal, action, resource);\n',
            ["policy 'f'", '@approval must be "true" or "false"'],
            id="approval neither true nor false",
        ),
        pytest.param(
            '@id("f")\n@reason("{context.isolation} done")\nforbid (principal, action, resource);\n',
            ["policy 'f'", "@reason refers to {context.isolation}"],
            id="unknown placeholder in reason",
        ),
    ],
)
def test_a_broken_policy_is_refused_at_load_with_a_readable_error(
    tmp_path: Path, policy: str, expected: list[str]
) -> None:
    for bundled in POLICY_DIR.glob("*.cedar"):
        shutil.copy(bundled, tmp_path)
    write_policies(tmp_path, typo=policy)

    with pytest.raises(PolicyError) as raised:
        PolicyGate.from_directory(tmp_path)

    message = str(raised.value)
    assert str(tmp_path) in message
    for part in expected:
        assert part in message
    for other in ("roles.cedar:", "blast_radius.cedar:", "approvals.cedar:"):
        assert other not in message  # only the broken file is blamed


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write_policies(
        tmp_path,
        a='@id("x")\n@reason("r")\npermit (principal, action, resource) when { principal.rank == "x" };\n',
        b='@id("y")\npermit (principal, action, resource);\n',
    )

    with pytest.raises(PolicyError) as raised:
        PolicyGate.from_directory(tmp_path)

    assert "a.cedar: policy 'x'" in str(raised.value)
    assert "b.cedar: policy 'y' has no @reason" in str(raised.value)


def test_a_missing_or_empty_policy_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        PolicyGate.from_directory(tmp_path / "nowhere")
    with pytest.raises(PolicyError, match=r"no \*\.cedar file"):
        PolicyGate.from_directory(tmp_path)


def test_a_broken_schema_is_refused(tmp_path: Path) -> None:
    write_policies(tmp_path, ok=OK)
    schema = tmp_path / "schema.cedarschema"
    schema.write_text("namespace Aiops { entity Principal = { role: Strin }; }")

    with pytest.raises(PolicyError, match="schema"):
        PolicyGate.from_directory(tmp_path, schema=schema)


def test_each_policy_is_reported_under_its_own_id_across_files(tmp_path: Path) -> None:
    def permit(role: str) -> str:
        return f'@id("p-{role}")\n@reason("{role} ok")\npermit (principal, action, resource) when {{ principal.role == "{role}" }};\n'

    write_policies(tmp_path, b=permit("admin") + permit("agent"), a=permit("viewer") + permit("operator"))
    gate = PolicyGate.from_directory(tmp_path)

    assert list(gate.policies) == [
        "p-viewer",
        "p-operator",
        "p-admin",
        "p-agent",
    ]  # file-name, then file order
    for role in ("viewer", "operator", "admin", "agent"):
        decision = gate.check(Principal(id="x", role=role), "cordon_node", NODE)
        assert decision.policies == [f"p-{role}"]
        assert decision.reasons == [f"{role} ok"]


def test_a_policy_that_cannot_be_evaluated_denies(tmp_path: Path) -> None:
    write_policies(
        tmp_path,
        ok=OK,
        overflow='@id("overflow")\n@reason("r")\nforbid (principal, action, resource)\n'
        "when { context has cluster_nodes && context.cluster_nodes + 9223372036854775807 < 0 };\n",
    )
    gate = PolicyGate.from_directory(tmp_path)

    decision = gate.check(OPERATOR, "cordon_node", NODE, {"cluster_nodes": 1})

    assert decision.decision == "deny"
    assert decision.policies == ["overflow"]
    assert "could not be evaluated" in decision.reasons[0]
    assert gate.check(OPERATOR, "cordon_node", NODE, {"cluster_nodes": 0}).allowed


def test_an_unknown_action_raises(gate: PolicyGate) -> None:
    with pytest.raises(PolicyError, match=r"unknown action 'format_disk'.*isolate_gpu"):
        gate.check(OPERATOR, "format_disk", NODE, CALM)


@pytest.mark.parametrize(
    ("action", "resource", "context", "expected"),
    [
        pytest.param(
            "isolate_gpu", NODE, CALM, "resource type `Aiops::Node` is not valid", id="wrong resource type"
        ),
        pytest.param(
            "cordon_node",
            NODE,
            {"isolation_last_hour": 1},
            "`isolation_last_hour` should not exist",
            id="context typo",
        ),
        pytest.param(
            "cordon_node",
            NODE,
            {"dry_run": "yes"},
            'is not valid for `Aiops::Action::"cordon_node"`',
            id="wrong type",
        ),
        pytest.param(
            "isolate_gpu",
            Resource(type="Gpu", id="n1/0", attrs={"node": "n1"}),
            CALM,
            "to have attribute `index`",
            id="missing resource attribute",
        ),
        pytest.param(
            "acknowledge_incident",
            Resource(type="Cluster", id="c1", attrs={"size": 3}),
            CALM,
            "attribute `size`",
            id="undeclared resource attribute",
        ),
        pytest.param(
            "cordon_node", NODE, {"nodes_out_of_service": 0.25}, "no floating-point type", id="float"
        ),
    ],
)
def test_a_request_that_does_not_fit_the_schema_raises(
    gate: PolicyGate, action: str, resource: Resource, context: dict[str, object], expected: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        gate.check(OPERATOR, action, resource, context)  # type: ignore[arg-type]

    assert expected in str(raised.value)


def test_floats_with_a_whole_value_become_longs_and_others_are_refused() -> None:
    assert Resource(type="Job", id="j", attrs={"gpus": 8.0}).attrs == {"gpus": 8}
    with pytest.raises(ValueError, match="no floating-point type"):
        Resource(type="Job", id="j", attrs={"gpus": 0.5})


def test_context_is_optional_for_tools_that_need_none(gate: PolicyGate) -> None:
    assert gate.check(OPERATOR, "acknowledge_incident", CLUSTER).allowed
    assert gate.check(AGENT, "isolate_gpu", GPU).decision == "deny"  # blast radius unknown
