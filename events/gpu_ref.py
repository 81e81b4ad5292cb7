"""One GPU, named: a node and the GPU's index on it (nvidia-smi order).

Two spellings are on the wire and stay there: ``node-003/3`` in an incident's ``affected_gpus``
and in events' GPU lists, and ``node-003/gpu3`` as an entity id (an incident's root cause, a
policy resource, the correlator's keys). ``GpuRef.parse`` reads both; ``str(ref)`` and
``ref.entity_id`` write each. Parse here, not with ``split("/")`` at each use.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class GpuRef:
    node: str
    index: int

    @classmethod
    def parse(cls, text: str) -> GpuRef:
        """``node/3`` or ``node/gpu3``; a ``ValueError`` that quotes the text otherwise."""
        node, sep, gpu = str(text).rpartition("/")
        digits = gpu.removeprefix("gpu")
        if not sep or not node or not digits.isdigit():
            raise ValueError(f"{text!r} names no GPU: expected '<node>/<index>' or '<node>/gpu<index>'")
        return cls(node, int(digits))

    @classmethod
    def maybe(cls, text: str) -> GpuRef | None:
        """The GPU ``text`` names, or None (a node, a PCI bus id, an NVSwitch)."""
        try:
            return cls.parse(text)
        except ValueError:
            return None

    @property
    def entity_id(self) -> str:
        """``node/gpu3``: the spelling of entity ids and policy resources."""
        return f"{self.node}/gpu{self.index}"

    def __str__(self) -> str:
        """``node/3``: the spelling of ``affected_gpus``."""
        return f"{self.node}/{self.index}"
