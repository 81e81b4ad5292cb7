"""A GPU's name: both spellings on the wire read to the same GpuRef, and each is written back."""

from __future__ import annotations

import pytest

from events.gpu_ref import GpuRef


@pytest.mark.parametrize("text", ["node-003/3", "node-003/gpu3"])
def test_both_spellings_name_the_same_gpu(text: str) -> None:
    ref = GpuRef.parse(text)
    assert ref == GpuRef("node-003", 3)
    assert (str(ref), ref.entity_id) == ("node-003/3", "node-003/gpu3")


def test_a_node_name_with_a_slash_keeps_it() -> None:
    assert GpuRef.parse("rack-1/node-003/gpu7") == GpuRef("rack-1/node-003", 7)


@pytest.mark.parametrize(
    "text", ["node-003", "node-003/0000:18:00.0", "/3", "node-003/gpu", "node-003/nvswitch1"]
)
def test_what_names_no_gpu_is_a_readable_error(text: str) -> None:
    with pytest.raises(ValueError, match="names no GPU"):
        GpuRef.parse(text)
    assert GpuRef.maybe(text) is None
