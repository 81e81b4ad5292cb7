"""The node's GPUs from NVML (``nvidia-ml-py``, NVIDIA's own bindings).

Without an NVIDIA driver ``nvmlInit()`` raises ``NVMLError`` (library not found, driver not
loaded): the node then has no inventory, which is logged and reported in its entry, not an error —
its kernel lines still ship, with their GPU unknown.
"""

from __future__ import annotations

import contextlib
import logging

from events.inventory import InventoryGpu
from events.kmsg_parser import normalise_pci_bus_id

log = logging.getLogger(__name__)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus() -> tuple[list[InventoryGpu], str | None, str]:
    """(GPUs, driver version, "ok" or why there is no inventory)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.info("no GPU inventory from NVML on this node: %s", exc)
        return [], None, f"NVML unavailable: {exc}"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pci = pynvml.nvmlDeviceGetPciInfo(handle)
            bus = _text(getattr(pci, "busIdLegacy", b"") or pci.busId)
            gpus.append(
                InventoryGpu(
                    index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    pci_bus_id=normalise_pci_bus_id(bus) or bus,
                    model=_text(pynvml.nvmlDeviceGetName(handle)),
                )
            )
        return gpus, driver, "ok"
    except pynvml.NVMLError as exc:
        log.warning("NVML inventory failed part-way: %s", exc)
        return [], None, f"NVML error: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
