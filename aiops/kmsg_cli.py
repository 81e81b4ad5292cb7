"""``aiops kmsg ...``: kernel log tools (filled in by the parser work)."""

from __future__ import annotations

import typer

kmsg_app = typer.Typer(help="Kernel log tools.", no_args_is_help=True)
