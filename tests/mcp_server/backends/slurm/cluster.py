"""A real Slurm cluster on loopback in a temporary directory: ``munged`` with a generated key,
``slurmctld`` and emulated ``slurmd -N`` nodes, each with eight GPU GRES backed by empty files.

Debian's ``slurm-wlm`` (22.05) emulates several nodes on one host: every node has its own port
in ``slurm.conf`` and runs its own ``slurmd -N <node>``. Everything runs as the current user
(root in CI) and is stopped by pid file at exit; a slurmd with a running step may need SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = "apt-get install -y --no-install-recommends slurm-wlm munge"
SLURMCTLD = shutil.which("slurmctld") or (
    "/usr/sbin/slurmctld" if Path("/usr/sbin/slurmctld").exists() else None
)
SBIN = Path(SLURMCTLD).parent if SLURMCTLD else Path("/usr/sbin")
GPUS_PER_NODE = 8
START_S = 30.0
CRED_EXPIRE_S = 5


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class SlurmCluster:
    root: Path
    nodes: list[str] = field(default_factory=lambda: [f"gpu-node-{i:03d}" for i in range(1, 5)])
    spare_partition: str = "spares"
    spares: list[str] = field(default_factory=list)
    pidfiles: list[Path] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def _write(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "log", "run", "dev"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        key = root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        (root / "munge").chmod(0o700)
        for i in range(GPUS_PER_NODE):
            (root / "dev" / f"nvidia{i}").touch()
        ctld_port, *node_ports = free_ports(1 + len(self.nodes))
        host = socket.gethostname().split(".")[0]
        workers = [n for n in self.nodes if n not in self.spares]
        lines = [
            "ClusterName=loopback",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "AuthType=auth/munge",
            # A requeued job waits out the job credential's lifetime before it starts again.
            f"AuthInfo=socket={root / 'munge' / 'socket'},cred_expire={CRED_EXPIRE_S}",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}/%n",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run'}/slurmd-%n.pid",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log'}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "GresTypes=gpu",
            "JobRequeue=1",
            f"RebootProgram={shutil.which('true') or '/bin/true'}",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=2",
            "MinJobAge=300",
            "SchedulerParameters=sched_interval=1",
            "MessageTimeout=5",
        ]
        for node, port in zip(self.nodes, node_ports, strict=True):
            lines.append(
                f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname={host} Port={port} "
                f"CPUs=2 RealMemory=1000 Gres=gpu:{GPUS_PER_NODE} State=UNKNOWN"
            )
        lines.append(f"PartitionName=gpu Nodes={','.join(workers)} Default=YES MaxTime=INFINITE State=UP")
        if self.spares:
            lines.append(
                f"PartitionName={self.spare_partition} Nodes={','.join(self.spares)} MaxTime=INFINITE State=UP"
            )
        self.conf.write_text("\n".join(lines) + "\n")
        gres = [
            f"NodeName={node} Name=gpu File={root / 'dev'}/nvidia[0-{GPUS_PER_NODE - 1}]"
            for node in self.nodes
        ]
        (root / "gres.conf").write_text("\n".join(gres) + "\n")
        for node in self.nodes:
            (root / "spool" / node).mkdir(exist_ok=True)

    def start(self) -> None:
        self._write()
        root = self.root
        munge = root / "munge"
        self._daemon(
            [
                str(SBIN / "munged"),
                "--key-file",
                str(munge / "munge.key"),
                "--socket",
                str(munge / "socket"),
                "--pid-file",
                str(munge / "munged.pid"),
                "--log-file",
                str(munge / "munged.log"),
                "--seed-file",
                str(munge / "seed"),
                "--force",
            ],
            munge / "munged.pid",
        )
        self._daemon([str(SBIN / "slurmctld"), "-f", str(self.conf), "-i"], root / "run" / "slurmctld.pid")
        # Ready when it answers (through munged: the ping is authenticated), not when it has forked.
        self.wait_until(self.controller_up, "slurmctld to answer `scontrol ping`")
        for node in self.nodes:
            self._daemon(
                [str(SBIN / "slurmd"), "-f", str(self.conf), "-N", node], root / "run" / f"slurmd-{node}.pid"
            )
        self.wait_until(lambda: self.idle_nodes() == set(self.nodes), "every node to register idle in sinfo")

    def _daemon(self, argv: list[str], pidfile: Path) -> None:
        """Start a daemon (it forks and returns) and wait for its pid file, which ``stop`` reads;
        whether it serves is for the caller to wait on."""
        self.pidfiles.append(pidfile)
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} did not start: {done.stderr.strip() or done.stdout.strip()}")
        self.wait_until(pidfile.exists, f"{pidfile.name}")

    def controller_up(self) -> bool:
        """``scontrol ping`` has slurmctld answering (``Slurmctld(primary) at <host> is UP``)."""
        return " is UP" in self.run("scontrol", "ping", check=False)

    def idle_nodes(self) -> set[str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False)
        return {line.split()[0] for line in out.splitlines() if line.split()[1:] == ["idle"]}

    def wait_until(self, check: object, what: str, within_s: float = START_S) -> None:
        deadline = time.monotonic() + within_s
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; logs in {self.root / 'log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Jobs first (their slurmstepd outlive slurmd), then every daemon by its pid file, slurmds
        first; SIGKILL what outlives SIGTERM, and any process left that runs under this cluster."""
        if self.pidfiles:
            self.run("scancel", "--quiet", "--user", str(os.getuid()), check=False)
            with contextlib.suppress(RuntimeError):  # the sweep below kills what is left
                self.wait_until(lambda: not self.run("squeue", "-h", check=False).strip(), "jobs to end", 15)
        pids = []
        for pidfile in reversed(self.pidfiles):
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except (OSError, ValueError, IndexError):
                continue
        deadline = time.monotonic() + 10
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        strays = self._strays()
        for pid in strays:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.stopped = pids + strays
        with contextlib.suppress(RuntimeError):  # leftovers() tells the caller
            self.wait_until(lambda: not self.leftovers(), "killed processes to go", 5)

    def leftovers(self) -> list[int]:
        """Processes of this cluster still alive after ``stop`` (there should be none)."""
        return [pid for pid in self.stopped if _alive(pid)] + [p for p in self._strays() if _alive(p)]

    def _strays(self) -> list[int]:
        """Processes of this cluster still running: slurmstepd and job scripts carry its SLURM_CONF."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
        return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a daemon's zombie waits for init to reap it
