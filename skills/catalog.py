"""The Xid catalog: what each NVIDIA driver Xid means and what a remediator should do about it.

The knowledge lives in ``xid_catalog.yaml`` next to this module; this module validates it and
answers questions about it. It imports nothing from the rest of the project, so LLM tooling, the
planner and the CLI can all read the same catalog.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "EscalationRule",
    "NvidiaBucket",
    "PlatformAction",
    "Sympathy",
    "XidCatalog",
    "XidInfo",
    "XidLevel",
    "load_catalog",
    "recovery_action_to_platform_action",
    "resolve_platform_action",
    "sxid_info",
]

CATALOG_FILE = "xid_catalog.yaml"


class PlatformAction(StrEnum):
    """What an automated remediator should propose; documented in ``xid_catalog.yaml``."""

    NONE = "none"
    RESTART_JOB = "restart_job"
    RESET_GPU = "reset_gpu"
    DRAIN_GPU = "drain_gpu"
    DRAIN_RESET_GPU = "drain_reset_gpu"
    REBOOT_NODE = "reboot_node"
    RUN_DIAGNOSTICS = "run_diagnostics"
    TICKET = "ticket"
    FOLLOW_RECOVERY_ACTION = "follow_recovery_action"
    INVESTIGATE = "investigate"


class NvidiaBucket(StrEnum):
    """NVIDIA's immediate resolution bucket for a code (plus ``UNKNOWN`` for codes not listed)."""

    RESTART_APP = "RESTART_APP"
    IGNORE = "IGNORE"
    RESET_GPU = "RESET_GPU"
    RESTART_BM = "RESTART_BM"
    RESTART_VM = "RESTART_VM"
    CONTACT_SUPPORT = "CONTACT_SUPPORT"
    CHECK_APP = "CHECK_APP"
    WORKFLOW_XID45 = "WORKFLOW_XID45"
    WORKFLOW_XID48 = "WORKFLOW_XID48"
    WORKFLOW_NVLINK = "WORKFLOW_NVLINK"
    WORKFLOW_NVLINK5 = "WORKFLOW_NVLINK5"
    WORKFLOW_XID154 = "WORKFLOW_XID154"
    CHECK_MECHANICALS = "CHECK_MECHANICALS"
    UPDATE_SWFW = "UPDATE_SWFW"
    CHECK_UVM = "CHECK_UVM"
    UNKNOWN = "UNKNOWN"


class XidLevel(StrEnum):
    APPLICATION = "application"
    HARDWARE = "hardware"
    INFORMATIONAL = "informational"


class Sympathy(BaseModel):
    """How a code relates to other Xids seen beside it.

    ``follows``: usually a side effect of the other Xid, so triage the other one first.
    ``summarises``: a summary of the other Xids, so take the action this one names.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    relation: Literal["follows", "summarises"]
    of: list[int] | Literal["any"]
    where: Literal["same_gpu", "link_peer"] = "same_gpu"
    note: str = ""

    def applies_to(self, other_code: int) -> bool:
        return self.of == "any" or other_code in self.of


class EscalationRule(BaseModel):
    """``count`` occurrences within ``window_hours`` on one ``scope`` turn the proposal into ``then``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=1)
    window_hours: float = Field(gt=0)
    scope: Literal["gpu", "link"] = "gpu"
    then: PlatformAction
    note: str = ""


class XidInfo(BaseModel):
    """One Xid code: its meaning and the proposed handling."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int = Field(ge=0)
    mnemonic: str = Field(min_length=1)
    meaning: str = Field(min_length=1)
    nvidia_bucket: NvidiaBucket
    platform_action: PlatformAction
    recommended_action: str = Field(min_length=1)
    level: XidLevel
    sympathetic: Sympathy | None = None
    escalate_after: EscalationRule | None = None
    known: bool = Field(default=True, description="False for the placeholder of a code not in the catalog")
    source: str = Field(default="", description="where the meaning and the immediate action come from")


class XidCatalog(BaseModel):
    """The validated catalog. Use :func:`load_catalog` rather than building one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    platform_actions: dict[PlatformAction, str]
    nvidia_buckets: dict[NvidiaBucket, str]
    xid154_recovery_actions: dict[str, PlatformAction]
    xids: list[XidInfo]

    @model_validator(mode="after")
    def _consistent(self) -> XidCatalog:
        codes = [x.code for x in self.xids]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate Xid codes: {duplicates}")
        # Every enum value the code can produce must be explained to the reader of the YAML.
        undocumented = [a.value for a in PlatformAction if a not in self.platform_actions]
        undocumented += [b.value for b in NvidiaBucket if b not in self.nvidia_buckets]
        if undocumented:
            raise ValueError(f"undocumented enum values: {undocumented}")
        return self

    @functools.cached_property
    def _by_code(self) -> dict[int, XidInfo]:
        return {x.code: x for x in self.xids}

    @functools.cached_property
    def _recovery_actions(self) -> dict[str, PlatformAction]:
        return {_normalise_action_text(k): v for k, v in self.xid154_recovery_actions.items()}

    @property
    def codes(self) -> frozenset[int]:
        return frozenset(self._by_code)

    @property
    def application_level(self) -> frozenset[int]:
        """Codes that usually come from the workload: escalate them only on repetition."""
        return frozenset(x.code for x in self.xids if x.level is XidLevel.APPLICATION)

    def get(self, code: int) -> XidInfo | None:
        return self._by_code.get(code)

    def info_or_unknown(self, code: int) -> XidInfo:
        """The entry for ``code``, or a safe placeholder: a person investigates, nothing automatic."""
        info = self._by_code.get(code)
        if info is not None:
            return info
        return XidInfo(
            code=code,
            mnemonic="UNKNOWN",
            meaning=f"Xid {code} is not in the catalog.",
            nvidia_bucket=NvidiaBucket.UNKNOWN,
            platform_action=PlatformAction.INVESTIGATE,
            # Unknown codes are treated as possible hardware faults so they are not dismissed.
            recommended_action="Look the code up in NVIDIA's Xid documentation before acting.",
            level=XidLevel.HARDWARE,
            known=False,
        )

    def recovery_action(self, text: str | None) -> PlatformAction | None:
        """Map Xid 154's recovery-action text (e.g. ``"GPU Reset Required"``); ``None`` if unrecognised."""
        if text is None:
            return None
        return self._recovery_actions.get(_normalise_action_text(text))


def _normalise_action_text(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split()).casefold()


@functools.cache
def load_catalog() -> XidCatalog:
    """The packaged Xid catalog, parsed and validated once per process."""
    text = resources.files("skills").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return XidCatalog.model_validate(yaml.safe_load(text))


def recovery_action_to_platform_action(text: str | None) -> PlatformAction | None:
    """Xid 154's recovery-action text -> platform action, from the packaged catalog.

    ``"None"`` -> none, ``"Drain P2P"`` -> drain_gpu, ``"Drain and Reset"`` -> drain_reset_gpu,
    ``"GPU Reset Required"`` -> reset_gpu, ``"Node Reboot Required"`` -> reboot_node. Case, extra
    spaces and a trailing full stop are ignored; unrecognised text gives ``None``.
    """
    return load_catalog().recovery_action(text)


def resolve_platform_action(info: XidInfo, recovery_action: str | None = None) -> PlatformAction:
    """The concrete action for one occurrence.

    Where the catalog says ``follow_recovery_action`` and the line carries Xid 154's recovery
    action, that action; unrecognised recovery text asks a person to investigate. Otherwise the
    catalog's action.
    """
    if info.platform_action is not PlatformAction.FOLLOW_RECOVERY_ACTION or recovery_action is None:
        return info.platform_action
    return recovery_action_to_platform_action(recovery_action) or PlatformAction.INVESTIGATE


def sxid_info(code: int) -> XidInfo:
    """A placeholder entry for an NVSwitch SXid.

    SXid codes are a separate numbering from Xids and are not in this catalog; looking them up as
    Xids would give wrong answers.
    """
    return XidInfo(
        code=code,
        mnemonic="NVSWITCH_SXID",
        meaning=f"NVSwitch error SXid {code}; SXid codes are not in the Xid catalog.",
        nvidia_bucket=NvidiaBucket.UNKNOWN,
        platform_action=PlatformAction.INVESTIGATE,
        recommended_action=(
            "Check the fabric manager log and the switch's link; fatal SXids usually need the "
            "affected GPUs' jobs restarted once the fabric is repaired."
        ),
        level=XidLevel.HARDWARE,
        known=False,
    )
