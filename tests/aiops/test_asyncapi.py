"""docs/asyncapi.yaml is FastStream's document of the subjects as aiops/asyncapi.py declares them:
regenerating it changes nothing, and it names every stream of events/subjects.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from events import subjects

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"


def test_the_committed_asyncapi_document_is_the_generated_one(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "faststream",
            "docs",
            "gen",
            "aiops.asyncapi:app",
            "--yaml",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    # FastStream lists channels in no fixed order: compare the documents, not their text.
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(COMMITTED.read_text()), (
        "docs/asyncapi.yaml is stale: .venv/bin/faststream docs gen aiops.asyncapi:app --yaml --out docs/asyncapi.yaml"
    )


def test_the_document_covers_every_subject_family() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    addresses = {channel["address"].split(".{")[0] for channel in doc["channels"].values()}
    families = {
        "gpu.kmsg",
        "gpu.heartbeat",
        "gpu.dlq",
        "gpu.audit",
        "gpu.tickets",
        "gpu.pages",
        "gpu.incidents",
    }
    assert families | {f"gpu.events.{k}" for k in ("xid", "ecc", "hang", "throughput")} <= addresses
    assert subjects.dlq("x").startswith("gpu.dlq.") and subjects.audit("x").startswith("gpu.audit.")
