"""Where a real backend's DCGM detector reads is decided explicitly: AIOPS_DCGM_SOURCE, else the one
of AIOPS_PROMETHEUS_URL and AIOPS_DCGM_EXPORTERS that is set. Both, neither, a source without its
setting or a setting left unused is an error at start, never a guess."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from aiops.cli import app
from aiops.detection import DcgmSettingError, dcgm_choice
from aiops.settings import Settings

PROM = "http://prometheus:9090"
EXPORTERS = "http://gpu-node-01:9400/metrics, http://gpu-node-02:9400/metrics"


def kube(**kw: object) -> Settings:
    return Settings(backend="kubernetes", **kw)  # type: ignore[arg-type]


def test_the_one_url_setting_that_is_set_names_the_source() -> None:
    assert dcgm_choice(kube(prometheus_url=PROM)) == "prometheus"
    settings = kube(dcgm_exporters=EXPORTERS)
    assert dcgm_choice(settings) == "exporters"
    assert settings.dcgm_exporter_urls == [
        "http://gpu-node-01:9400/metrics",
        "http://gpu-node-02:9400/metrics",
    ]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"prometheus_url": PROM, "dcgm_exporters": EXPORTERS},
            "both AIOPS_PROMETHEUS_URL and AIOPS_DCGM_EXPORTERS",
        ),
        ({}, "no DCGM source"),
        ({"dcgm_source": "prometheus"}, "needs AIOPS_PROMETHEUS_URL"),
        ({"dcgm_source": "exporters", "prometheus_url": PROM}, "needs AIOPS_DCGM_EXPORTERS"),
        ({"dcgm_source": "nodes", "dcgm_exporters": EXPORTERS}, "leaves it unused"),
    ],
    ids=["both", "neither", "prometheus without url", "exporters without urls", "unused exporters"],
)
def test_both_neither_or_a_source_without_its_setting_is_an_error(
    settings: dict[str, str], says: str
) -> None:
    with pytest.raises(DcgmSettingError, match=says):
        dcgm_choice(kube(**settings))


def test_an_explicit_source_settles_both_and_nodes_or_off_need_no_url() -> None:
    both = {"prometheus_url": PROM, "dcgm_exporters": EXPORTERS}
    assert dcgm_choice(kube(dcgm_source="exporters", **both)) == "exporters"
    assert dcgm_choice(kube(dcgm_source="nodes", prometheus_url=PROM)) == "nodes"
    assert dcgm_choice(kube(dcgm_source="off")) == "off"


def test_exporter_urls_must_be_urls_and_the_twin_takes_no_dcgm_source() -> None:
    with pytest.raises(ValidationError, match="http"):
        kube(dcgm_exporters="gpu-node-01:9400")
    with pytest.raises(ValidationError, match="for a real backend"):
        Settings(dcgm_source="nodes")


def test_aiops_up_on_a_real_backend_without_a_dcgm_source_exits_before_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AIOPS_PROMETHEUS_URL", "AIOPS_DCGM_EXPORTERS", "AIOPS_DCGM_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["up", "--backend", "kubernetes"])
    assert result.exit_code == 2
    assert "no DCGM source" in result.output and "AIOPS_DCGM_SOURCE=nodes" in result.output
    result = CliRunner().invoke(
        app,
        ["up", "--backend", "kubernetes", "--dcgm-source", "prometheus",
         "--dcgm-exporter", "http://gpu-node-01:9400/metrics"],
    )  # fmt: skip
    assert result.exit_code == 2 and "needs AIOPS_PROMETHEUS_URL" in result.output
