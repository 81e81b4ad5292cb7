import pytest

from chatops.grammar import SPECS, UsageError, parse, usage


@pytest.mark.parametrize(
    "text,name,args",
    [
        ("status", "status", {}),
        ("/gpu incidents", "incidents", {}),
        ("/gpu incidents --all", "incidents", {}),
        ("gpu incidents", "incidents", {}),
        ("incident inc-1a2b", "incident", {"id": "inc-1a2b"}),
        ("NODE node-003", "node", {"name": "node-003"}),
        ("isolate node-003 3", "isolate", {"node": "node-003", "gpu": "3"}),
        ("approve apr-77", "approve", {"action": "apr-77"}),
        ("", "help", {}),
    ],
)
def test_commands_parse_into_their_arguments(text, name, args):
    command = parse(text)
    assert command.name == name and command.args == args


def test_runbook_takes_key_value_parameters_and_the_dry_run_flag():
    command = parse("runbook isolate-gpu node=node-003 gpu=3 --dry-run")
    assert command.args == {"name": "isolate-gpu"}
    assert command.params == {"node": "node-003", "gpu": "3"}
    assert command.flags == {"--dry-run"}


@pytest.mark.parametrize(
    "text,hint",
    [
        ("frobnicate", "not a command I know"),
        ("isolate node-003", "Usage: `/gpu isolate <node> <gpu>`"),
        ("isolate node-003 three", "index on the node"),
        ("node a b", "Usage: `/gpu node <name>`"),
        ("runbook isolate-gpu node", "key=value"),
        ("status --force", "has no option --force"),
        ('node "unclosed', "could not read"),
        ("node " + "x" * 3000, "too long"),
    ],
)
def test_malformed_commands_get_a_helpful_usage_reply(text, hint):
    with pytest.raises(UsageError, match=None) as err:
        parse(text)
    assert hint in str(err.value)


def test_help_lists_every_command():
    text = usage()
    assert all(f"/gpu {name}" in text for name in SPECS)
