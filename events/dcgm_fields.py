"""The DCGM field vocabulary: every dcgm-exporter metric the platform reads or the twin exports.

Names, Prometheus types and help texts as in dcgm-exporter's counter CSVs; units as NVIDIA's DCGM
field documentation gives them. ``sample`` names the per-GPU reading a field fills (the twin's
series, the DCGM detector's reading). One place: the exporter of the twin, the DCGM detector, the
telemetry backends and the telemetry tools all take their names from here.

A leaf module: it imports nothing of the project, so even the simulated fleet may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DcgmFieldName = Literal[
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DEV_ROW_REMAP_PENDING",
]

SM_CLOCK: DcgmFieldName = "DCGM_FI_DEV_SM_CLOCK"
GPU_TEMP: DcgmFieldName = "DCGM_FI_DEV_GPU_TEMP"
MEMORY_TEMP: DcgmFieldName = "DCGM_FI_DEV_MEMORY_TEMP"
POWER_USAGE: DcgmFieldName = "DCGM_FI_DEV_POWER_USAGE"
CLOCKS_EVENT_REASONS: DcgmFieldName = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"
GR_ENGINE_ACTIVE: DcgmFieldName = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
XID_ERRORS: DcgmFieldName = "DCGM_FI_DEV_XID_ERRORS"
"""The last Xid a GPU reported (a gauge; a change of value is a new Xid)."""
ECC_SBE_VOL: DcgmFieldName = "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"
ECC_DBE_VOL: DcgmFieldName = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
ECC_SBE_AGG: DcgmFieldName = "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL"
ECC_DBE_AGG: DcgmFieldName = "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"
RETIRED_SBE: DcgmFieldName = "DCGM_FI_DEV_RETIRED_SBE"
RETIRED_DBE: DcgmFieldName = "DCGM_FI_DEV_RETIRED_DBE"
RETIRED_PENDING: DcgmFieldName = "DCGM_FI_DEV_RETIRED_PENDING"
REMAPPED_ROWS_UNCORRECTABLE: DcgmFieldName = "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"
REMAPPED_ROWS_CORRECTABLE: DcgmFieldName = "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"
ROW_REMAP_FAILURE: DcgmFieldName = "DCGM_FI_DEV_ROW_REMAP_FAILURE"
ROW_REMAP_PENDING: DcgmFieldName = "DCGM_FI_DEV_ROW_REMAP_PENDING"

# DCGM_FI_DEV_CLOCKS_EVENT_REASONS (field 112, formerly DCGM_FI_DEV_CLOCK_THROTTLE_REASONS) is a
# bitmask, a 1:1 map of NVML's nvmlClocksEventReasons (DCGM API "Field Constants",
# DCGM_CLOCKS_EVENT_REASON_*; NVML API reference 4.31 "NvmlClocksEventReasons").
CLOCKS_GPU_IDLE = 0x1
CLOCKS_SW_POWER_CAP = 0x4
CLOCKS_HW_SLOWDOWN = 0x8
"""HW slowdown: clocks cut by half or more (temperature, an external power brake, fast-trigger power)."""
CLOCKS_SW_THERMAL = 0x20
"""SW thermal slowdown: the GPU or memory temperature is above its maximum operating temperature."""
CLOCKS_HW_THERMAL = 0x40
"""HW thermal slowdown: clocks cut by half or more because the temperature is too high."""
CLOCKS_HW_POWER_BRAKE = 0x80
"""HW power brake slowdown: clocks cut by half or more by an external power brake assertion."""
THERMAL_SLOWDOWN_BITS = CLOCKS_SW_THERMAL | CLOCKS_HW_THERMAL | CLOCKS_HW_POWER_BRAKE
"""The slowdowns the hardware forces to protect itself from heat or a failing power supply: never
the workload's choice (unlike the idle, power-cap and application-clock reasons)."""

XID_COUNT = "DCGM_EXP_XID_ERRORS_COUNT"
"""dcgm-exporter's own Xid counter over its window (labelled by ``xid``); not a DCGM field."""
XID_COUNT_HELP = "Count of XID Errors within user-specified time window (see xid-count-window-size param)."


@dataclass(frozen=True)
class DcgmField:
    name: DcgmFieldName
    kind: Literal["gauge", "counter"]
    unit: str
    help: str
    sample: str


FIELDS: tuple[DcgmField, ...] = (
    DcgmField(SM_CLOCK, "gauge", "MHz", "SM clock frequency (in MHz).", "sm_clock"),
    DcgmField(GPU_TEMP, "gauge", "C", "GPU temperature (in C).", "gpu_temp_c"),
    DcgmField(MEMORY_TEMP, "gauge", "C", "Memory temperature (in C).", "memory_temp_c"),
    DcgmField(POWER_USAGE, "gauge", "W", "Power draw (in W).", "power_w"),
    DcgmField(
        CLOCKS_EVENT_REASONS,
        "gauge",
        "bitmask",
        "Current clock event reasons (bitmask).",
        "clock_event_reasons",
    ),
    DcgmField(
        GR_ENGINE_ACTIVE, "gauge", "ratio", "Ratio of time the graphics engine is active.", "gr_active"
    ),
    DcgmField(XID_ERRORS, "gauge", "last Xid", "Value of the last XID error encountered.", "last_xid"),
    DcgmField(
        ECC_SBE_VOL, "counter", "count", "Total number of single-bit volatile ECC errors.", "sbe_volatile"
    ),
    DcgmField(
        ECC_DBE_VOL, "counter", "count", "Total number of double-bit volatile ECC errors.", "dbe_volatile"
    ),
    DcgmField(
        ECC_SBE_AGG, "counter", "count", "Total number of single-bit persistent ECC errors.", "sbe_aggregate"
    ),
    DcgmField(
        ECC_DBE_AGG, "counter", "count", "Total number of double-bit persistent ECC errors.", "dbe_aggregate"
    ),
    DcgmField(
        RETIRED_SBE,
        "counter",
        "pages",
        "Total number of retired pages due to single-bit errors.",
        "retired_sbe",
    ),
    DcgmField(
        RETIRED_DBE,
        "counter",
        "pages",
        "Total number of retired pages due to double-bit errors.",
        "retired_dbe",
    ),
    DcgmField(
        RETIRED_PENDING, "counter", "pages", "Total number of pages pending retirement.", "retired_pending"
    ),
    DcgmField(
        REMAPPED_ROWS_UNCORRECTABLE,
        "counter",
        "rows",
        "Number of remapped rows for uncorrectable errors",
        "remap_uncorrectable",
    ),
    DcgmField(
        REMAPPED_ROWS_CORRECTABLE,
        "counter",
        "rows",
        "Number of remapped rows for correctable errors",
        "remap_correctable",
    ),
    DcgmField(ROW_REMAP_FAILURE, "gauge", "flag", "Whether remapping of rows has failed", "remap_failure"),
    DcgmField(ROW_REMAP_PENDING, "gauge", "flag", "Whether remapping of rows is pending", "remap_pending"),
)
BY_NAME: dict[str, DcgmField] = {f.name: f for f in FIELDS}
UNITS: dict[str, str] = {name: BY_NAME[name].unit for name in get_args(DcgmFieldName)}

MEMORY_HEALTH: tuple[DcgmFieldName, ...] = (
    ECC_SBE_VOL,
    ECC_DBE_VOL,
    ECC_SBE_AGG,
    ECC_DBE_AGG,
    RETIRED_SBE,
    RETIRED_DBE,
    RETIRED_PENDING,
    REMAPPED_ROWS_CORRECTABLE,
    REMAPPED_ROWS_UNCORRECTABLE,
    ROW_REMAP_PENDING,
    ROW_REMAP_FAILURE,
)
"""ECC counts, retired pages and row remaps: what DCGM's memory-health verdict reads."""

assert set(BY_NAME) == set(get_args(DcgmFieldName))
