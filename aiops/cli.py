"""The ``aiops`` command."""

from __future__ import annotations

import typer

from aiops.kmsg_cli import kmsg_app

app = typer.Typer(help="gpu-aiops: triage and remediation for GPU clusters.", no_args_is_help=True)
app.add_typer(kmsg_app, name="kmsg")


if __name__ == "__main__":
    app()
