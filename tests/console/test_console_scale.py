"""The heatmap at 16,384 GPUs (2,048 nodes, 64 leaf switches) in a real browser: every GPU drawn,
a fault visible; the draw time and the feed's size are written to evals/out/console_render.json
(measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet import FleetSpec
from fleet.spec import JobSpec
from tests.console.browser import chromium, log_in, need_chromium
from tests.console.support import OPERATOR, console_platform, console_url

pytestmark = pytest.mark.slow

OUT = Path(__file__).resolve().parents[2] / "evals" / "out"
REDRAWS = 20
BIG = FleetSpec(
    leaf_switches=64,
    nodes_per_leaf=32,
    nodes_per_rack=4,
    spare_nodes=32,
    jobs=[
        JobSpec(
            name=f"train-{i:02d}",
            nodes=64,
            step_time_s=2.0,
            checkpoint_interval_s=1800,
            checkpoint_write_s=30,
        )
        for i in range(30)
    ],
)


async def test_the_heatmap_draws_16384_gpus_and_shows_a_fault(tmp_path: Path) -> None:
    need_chromium()
    async with console_platform(tmp_path, spec=BIG, tick=False) as platform, chromium() as browser:
        page = await log_in(browser, console_url(platform), OPERATOR)
        await page.wait_for_function("() => document.getElementById('heatmap').dataset.gpus", timeout=60_000)
        first_ms = float(await page.get_attribute("#heatmap", "data-render-ms") or "nan")
        platform.twin.inject_xid("node-1500", 5, 79)
        await page.wait_for_function(
            "() => window.aiopsConsole.cell('node-1500', 5).state === 'f'", timeout=60_000
        )
        redraws: list[float] = [
            await page.evaluate("() => window.aiopsConsole.redraw()") for _ in range(REDRAWS)
        ]
        drawn = int(await page.get_attribute("#heatmap", "data-gpus") or "0")
        fleet = platform.console.feed.map
        layout_bytes = len(fleet.model_dump_json().encode()) if fleet else 0
        states_bytes = len(json.dumps({"states": fleet.states}).encode()) if fleet else 0
        chromium_version = browser.version

    redraws.sort()
    figures = {
        "gpus": drawn,
        "nodes": 2048,
        "first_draw_ms": round(first_ms, 2),
        "redraw_ms_median": round(redraws[len(redraws) // 2], 2),
        "redraw_ms_max": round(redraws[-1], 2),
        "redraws": REDRAWS,
        "layout_event_bytes": layout_bytes,
        "states_event_bytes": states_bytes,
        "browser": f"Chromium {chromium_version} headless, --disable-gpu",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "console_render.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(figures)
    assert drawn == 16384
