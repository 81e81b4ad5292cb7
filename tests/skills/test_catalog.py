import ast
from importlib import resources
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from skills.catalog import (
    NvidiaBucket,
    PlatformAction,
    XidCatalog,
    XidLevel,
    load_catalog,
    recovery_action_to_platform_action,
    resolve_platform_action,
    sxid_info,
)

# The table of the domain sheet (shared/domain/xid-and-dcgm.md): code -> mnemonic.
SHEET_MNEMONICS = {
    13: "GR_EXCEPTION",
    31: "MMU_ERR_FLT",
    32: "PBDMA_ERROR",
    43: "RESETCHANNEL_VERIF_ERROR",
    45: "PREEMPTIVE_REMOVAL",
    48: "GPU_ECC_DBE",
    61: "PMU_BREAKPOINT",
    62: "PMU_HALT_ERROR",
    63: "DRAM_RETIREMENT_EVENT",
    64: "DRAM_RETIREMENT_FAILURE",
    68: "NVDEC0_ERROR",
    69: "GR_CLASS_ERROR",
    74: "NVLINK_ERROR",
    79: "GPU_HAS_FALLEN_OFF_THE_BUS",
    92: "EXCESSIVE_SBE_INTERRUPTS",
    94: "CONTAINED_ERROR",
    95: "UNCONTAINED_ERROR",
    109: "CTXSW_TIMEOUT_ERROR",
    119: "GSP_RPC_TIMEOUT",
    120: "GSP_ERROR",
    121: "C2C_ERROR",
    137: "NVLINK_PRIV_ERR",
    140: "UNRECOVERABLE_ECC_ERROR_ESCAPE",
    143: "GPU_INIT_ERROR",
    154: "GPU_RECOVERY_ACTION_CHANGED",
}
NVLINK5_CODES = range(144, 151)
# Codes the sheet lists with only NVIDIA's immediate action (38, 44, 56-58, 110, 136, 155).
ACTION_ONLY_CODES = (38, 44, 56, 57, 58, 110, 136, 155)
SHEET_CODES = sorted([*SHEET_MNEMONICS, *NVLINK5_CODES, *ACTION_ONLY_CODES])

SHEET_BUCKETS = {
    13: NvidiaBucket.RESTART_APP,
    31: NvidiaBucket.RESTART_APP,
    32: NvidiaBucket.RESTART_APP,
    43: NvidiaBucket.IGNORE,
    61: NvidiaBucket.CONTACT_SUPPORT,
    62: NvidiaBucket.RESET_GPU,
    63: NvidiaBucket.IGNORE,
    64: NvidiaBucket.RESET_GPU,
    79: NvidiaBucket.RESTART_BM,
    92: NvidiaBucket.IGNORE,
    94: NvidiaBucket.RESTART_APP,
    95: NvidiaBucket.RESET_GPU,
    121: NvidiaBucket.IGNORE,
    137: NvidiaBucket.IGNORE,
    154: NvidiaBucket.WORKFLOW_XID154,
}

PROJECT_PACKAGES = {"aiops", "agents", "events", "evals", "fleet", "mcp_server", "runbooks"}


@pytest.mark.parametrize("code", SHEET_CODES)
def test_every_code_of_the_sheet_is_in_the_catalog(code: int) -> None:
    info = load_catalog().get(code)
    assert info is not None
    assert info.code == code
    assert info.known
    assert info.meaning and info.recommended_action


def test_the_catalog_holds_every_code_of_nvidias_current_catalog_each_with_its_source() -> None:
    # NVIDIA's "Analyzing Xid Errors with the Xid Catalog" lists codes 1-162 (Ampere and newer).
    catalog = load_catalog()
    assert catalog.codes == frozenset(range(1, 163)) and frozenset(SHEET_CODES) <= catalog.codes
    for code in sorted(catalog.codes):
        info = catalog.info_or_unknown(code)
        assert "NVIDIA" in info.source and "docs.nvidia.com/deploy/xid-errors" in info.source, code


def test_a_code_nvidia_asks_to_report_is_contained_and_ticketed() -> None:
    info = load_catalog().info_or_unknown(9)  # ROBUST_CHANNEL_GR_ERROR_INSTANCE: report the issue
    assert (info.nvidia_bucket, info.platform_action) == (NvidiaBucket.CONTACT_SUPPORT, PlatformAction.TICKET)
    copy_engine = load_catalog().info_or_unknown(41)  # CE2: restart the application
    assert (copy_engine.nvidia_bucket, copy_engine.level) == (NvidiaBucket.RESTART_APP, XidLevel.APPLICATION)
    fatal_timeout = load_catalog().info_or_unknown(158)
    assert fatal_timeout.platform_action is PlatformAction.RESET_GPU


@pytest.mark.parametrize(("code", "mnemonic"), sorted(SHEET_MNEMONICS.items()))
def test_mnemonics_match_the_sheet(code: int, mnemonic: str) -> None:
    info = load_catalog().get(code)
    assert info is not None and info.mnemonic == mnemonic


@pytest.mark.parametrize("code", NVLINK5_CODES)
def test_each_nvlink5_code_is_its_own_entry_following_xid_154(code: int) -> None:
    info = load_catalog().get(code)
    assert info is not None
    assert info.mnemonic.startswith("NVLINK_")
    assert info.nvidia_bucket is NvidiaBucket.WORKFLOW_NVLINK5
    assert info.platform_action is PlatformAction.FOLLOW_RECOVERY_ACTION


@pytest.mark.parametrize(("code", "bucket"), sorted(SHEET_BUCKETS.items()))
def test_immediate_buckets_match_the_sheet(code: int, bucket: NvidiaBucket) -> None:
    info = load_catalog().get(code)
    assert info is not None and info.nvidia_bucket is bucket


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (13, PlatformAction.RESTART_JOB),
        (43, PlatformAction.NONE),
        (45, PlatformAction.NONE),
        (48, PlatformAction.DRAIN_RESET_GPU),
        (61, PlatformAction.TICKET),
        (63, PlatformAction.NONE),
        (79, PlatformAction.REBOOT_NODE),
        (95, PlatformAction.DRAIN_RESET_GPU),
        (119, PlatformAction.RESET_GPU),
        (154, PlatformAction.FOLLOW_RECOVERY_ACTION),
    ],
)
def test_platform_actions_follow_the_sheet(code: int, action: PlatformAction) -> None:
    info = load_catalog().get(code)
    assert info is not None and info.platform_action is action


def test_the_application_level_set_holds_the_device_plugin_list() -> None:
    assert {13, 31, 43, 45, 68, 109} <= load_catalog().application_level


def test_hardware_faults_are_not_application_level() -> None:
    assert not {48, 64, 74, 79, 95, 119, 140} & load_catalog().application_level


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("None", PlatformAction.NONE),
        ("Drain P2P", PlatformAction.DRAIN_GPU),
        ("Drain and Reset", PlatformAction.DRAIN_RESET_GPU),
        ("GPU Reset Required", PlatformAction.RESET_GPU),
        ("Node Reboot Required", PlatformAction.REBOOT_NODE),
        ("gpu reset required", PlatformAction.RESET_GPU),
        ("  Node   Reboot Required. ", PlatformAction.REBOOT_NODE),
    ],
)
def test_xid_154_recovery_text_maps_to_a_platform_action(text: str, action: PlatformAction) -> None:
    assert recovery_action_to_platform_action(text) is action


@pytest.mark.parametrize("text", ["", "Reformat the disk", None])
def test_unrecognised_xid_154_text_maps_to_nothing(text: str | None) -> None:
    assert recovery_action_to_platform_action(text) is None


def test_resolving_xid_154_takes_the_action_its_text_names() -> None:
    catalog = load_catalog()
    xid154 = catalog.info_or_unknown(154)
    assert resolve_platform_action(xid154, "Node Reboot Required") is PlatformAction.REBOOT_NODE
    assert resolve_platform_action(xid154, "something new") is PlatformAction.INVESTIGATE
    assert resolve_platform_action(xid154) is PlatformAction.FOLLOW_RECOVERY_ACTION
    # Other codes keep the catalog's action whatever text comes with them.
    assert resolve_platform_action(catalog.info_or_unknown(48), "None") is PlatformAction.DRAIN_RESET_GPU


def test_an_unknown_code_gets_a_safe_placeholder() -> None:
    catalog = load_catalog()
    assert catalog.get(999) is None
    info = catalog.info_or_unknown(999)
    assert info.code == 999
    assert info.mnemonic == "UNKNOWN"
    assert "999" in info.meaning and "not in the catalog" in info.meaning
    assert info.platform_action is PlatformAction.INVESTIGATE
    assert info.nvidia_bucket is NvidiaBucket.UNKNOWN
    assert not info.known


def test_an_sxid_is_never_read_as_an_xid() -> None:
    info = sxid_info(12028)
    assert info.mnemonic == "NVSWITCH_SXID"
    assert "12028" in info.meaning
    assert info.level is XidLevel.HARDWARE


@pytest.mark.parametrize("code", [45, 94, 95])
def test_cleanup_and_memory_side_effects_follow_another_xid(code: int) -> None:
    info = load_catalog().info_or_unknown(code)
    assert info.sympathetic is not None
    assert info.sympathetic.relation == "follows"
    assert info.sympathetic.where == "same_gpu"
    assert info.sympathetic.applies_to(48)


def test_xid_74_may_be_sympathetic_to_the_other_end_of_the_link() -> None:
    sympathy = load_catalog().info_or_unknown(74).sympathetic
    assert sympathy is not None and sympathy.where == "link_peer"


def test_xid_154_summarises_other_xids() -> None:
    sympathy = load_catalog().info_or_unknown(154).sympathetic
    assert sympathy is not None and sympathy.relation == "summarises" and sympathy.of == "any"


def test_nvsentinel_repetition_rule_is_recorded() -> None:
    rule = load_catalog().info_or_unknown(62).escalate_after
    assert rule is not None
    assert (rule.count, rule.window_hours, rule.scope, rule.then) == (5, 24, "gpu", PlatformAction.TICKET)


@pytest.mark.parametrize("code", [43, 45, 63, 92, 121, 137, 154])
def test_benign_codes_never_escalate(code: int) -> None:
    assert load_catalog().info_or_unknown(code).escalate_after is None


def test_the_same_nvlink_failing_again_escalates_per_link() -> None:
    rule = load_catalog().info_or_unknown(74).escalate_after
    assert rule is not None and rule.scope == "link" and rule.then is PlatformAction.TICKET


def test_the_catalog_is_loaded_once() -> None:
    assert load_catalog() is load_catalog()


def test_every_action_and_bucket_is_documented_in_the_yaml() -> None:
    catalog = load_catalog()
    assert set(catalog.platform_actions) == set(PlatformAction)
    assert set(catalog.nvidia_buckets) == set(NvidiaBucket)


def _raw_catalog() -> dict[str, object]:
    text = resources.files("skills").joinpath("xid_catalog.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def test_a_catalog_with_a_duplicate_code_is_rejected() -> None:
    data = _raw_catalog()
    xids = data["xids"]
    assert isinstance(xids, list)
    data["xids"] = [*xids, xids[0]]
    with pytest.raises(ValidationError, match="duplicate"):
        XidCatalog.model_validate(data)


def test_a_catalog_with_an_undocumented_action_is_rejected() -> None:
    data = _raw_catalog()
    actions = data["platform_actions"]
    assert isinstance(actions, dict)
    del actions["drain_gpu"]
    with pytest.raises(ValidationError, match="undocumented"):
        XidCatalog.model_validate(data)


def test_the_yaml_ships_inside_the_skills_package() -> None:
    assert resources.files("skills").joinpath("xid_catalog.yaml").is_file()


def test_skills_imports_nothing_from_the_other_project_folders() -> None:
    skills_dir = Path(str(resources.files("skills")))
    for source in skills_dir.rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in PROJECT_PACKAGES, f"{source.name} imports {name}"


def test_the_triage_skill_has_front_matter_with_name_and_description() -> None:
    skill = Path(str(resources.files("skills"))) / "xid-triage" / "SKILL.md"
    text = skill.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front_matter = yaml.safe_load(text.split("---\n")[1])
    assert front_matter["name"] == "xid-triage"
    assert len(front_matter["description"]) > 40


# NVIDIA's Xid catalog, immediate action column: 38 and 44 IGNORE; 56, 57, 58 CONTACT_SUPPORT;
# 110, 136, 155 RESET_GPU (issue 15, item 12). Each entry names its source.
NVIDIA_IMMEDIATE = {
    38: "IGNORE",
    44: "IGNORE",
    56: "CONTACT_SUPPORT",
    57: "CONTACT_SUPPORT",
    58: "CONTACT_SUPPORT",
    110: "RESET_GPU",
    136: "RESET_GPU",
    155: "RESET_GPU",
}


def test_the_codes_nvidia_gives_an_immediate_action_are_known_with_that_action_and_a_source():
    from skills.catalog import load_catalog

    catalog = load_catalog()
    for code, bucket in NVIDIA_IMMEDIATE.items():
        info = catalog.info_or_unknown(code)
        assert info.known and info.nvidia_bucket == bucket, code
        assert "NVIDIA" in info.source, code
    assert catalog.info_or_unknown(38).platform_action == "none"
    assert catalog.info_or_unknown(56).platform_action == "ticket"
    assert catalog.info_or_unknown(110).platform_action == "reset_gpu"
