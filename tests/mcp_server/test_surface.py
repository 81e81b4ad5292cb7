"""How tools look to a client: clean descriptions and compact output schemas that accept exactly
what the original schemas accept."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]  # mcp's own dependency
import pytest
from mcp import Client

from contracts.tools import NodeDetail
from events.incident import Incident
from mcp_server.surface import compact_schema
from tests.mcp_server.support import sample_incidents


async def test_tool_descriptions_carry_no_docstring_indentation(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        assert tool.description, tool.name
        lines = tool.description.splitlines()
        assert not lines[0].startswith(" "), tool.name
        assert not any(line.startswith("        ") for line in lines), tool.name


async def test_prompt_descriptions_are_clean_too(client: Client) -> None:
    for prompt in (await client.list_prompts()).prompts:
        assert prompt.description and not prompt.description.startswith(" "), prompt.name


async def test_output_schemas_are_published_without_refs_or_generated_titles(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        text = str(tool.output_schema)
        assert "$ref" not in text and "'$defs'" not in text, tool.name
        assert "'title': 'Gpus Total'" not in text, tool.name


def _cases() -> list[tuple[dict[str, Any], Any]]:
    node = NodeDetail.model_validate(
        {
            "name": "node-003",
            "state": "ready",
            "rack": "rack-01",
            "leaf_switch": "leaf-01",
            "cordoned": False,
            "spare": False,
            "gpus_total": 1,
            "gpus_healthy": 1,
            "gpus_isolated": 0,
            "gpus": [
                {
                    "index": 0,
                    "uuid": "GPU-1",
                    "pci_bus_id": "0000:18:00.0",
                    "health": "healthy",
                    "isolated": False,
                }
            ],
        }
    )
    incident = sample_incidents()[1]
    return [
        (NodeDetail.model_json_schema(), node.model_dump(mode="json")),
        (Incident.model_json_schema(), incident.model_dump(mode="json")),
    ]


@pytest.mark.parametrize(("schema", "instance"), _cases())
def test_a_compact_schema_accepts_and_refuses_what_the_original_does(
    schema: dict[str, Any], instance: Any
) -> None:
    compact = compact_schema(schema)
    jsonschema.validate(instance, schema)
    jsonschema.validate(instance, compact)
    broken = dict(instance) | {"name" if "name" in instance else "id": 7}
    for variant in (schema, compact):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, variant)


def test_a_nullable_enum_keeps_null_as_a_member() -> None:
    schema = {
        "properties": {"d": {"anyOf": [{"enum": ["allow", "deny"], "type": "string"}, {"type": "null"}]}}
    }
    compact = compact_schema(schema)
    assert compact["properties"]["d"] == {"enum": ["allow", "deny", None], "type": ["string", "null"]}
    jsonschema.validate({"d": None}, compact)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"d": "maybe"}, compact)


def test_a_recursive_schema_is_left_with_its_refs() -> None:
    schema = {
        "$defs": {
            "Tree": {
                "properties": {"kids": {"items": {"$ref": "#/$defs/Tree"}, "type": "array"}},
                "type": "object",
            }
        },
        "$ref": "#/$defs/Tree",
    }
    assert compact_schema(schema)["$ref"] == "#/$defs/Tree"
