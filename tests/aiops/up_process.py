"""``aiops up`` as a real child process for tests: its stderr in a file, its banner parsed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.waiting import eventually


class UpProcess:
    """``with UpProcess(tmp_path, ["--fleet-nodes", "128"]) as up: await up.ready()``."""

    def __init__(self, home: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.home = home
        self.log = home / "aiops-up.log"
        self.args = args
        self.env = {
            **os.environ,
            "AIOPS_DATA_DIR": str(home / ".aiops"),
            "AIOPS_METRICS_PORT": "0",
            "COLUMNS": "240",  # the banner on one line per entry
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> UpProcess:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aiops.cli", "up", "--port", "0", *self.args],
                cwd=self.home,  # no developer .env
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def found(self, pattern: str) -> list[re.Match[str]]:
        return list(re.finditer(pattern, self.text(), re.M))

    def exited(self) -> bool:
        assert self.proc is not None
        return self.proc.poll() is not None

    async def ready(self, within_s: float = 120.0) -> None:
        def up() -> bool:
            if self.exited():
                raise AssertionError(f"aiops up exited early:\n{self.text()}")
            return "Ctrl-C stops everything." in self.text()

        await eventually(up, within_s=within_s, what="the aiops up banner")

    @property
    def mcp_url(self) -> str:
        return self.found(r"MCP \(HTTP\)\s+(\S+)")[0].group(1)

    @property
    def token(self) -> str:
        return self.found(r"token\s+(\S+) \(role operator")[0].group(1)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
