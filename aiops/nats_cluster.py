"""Real nats-servers on loopback for fault tests and benchmarks: a JetStream cluster (or one server),
each node killable and restartable on its own store, at the same ports.

>>> with NatsCluster(tmp_path, size=3) as cluster:
...     cluster.url            # "nats://127.0.0.1:p1,nats://127.0.0.1:p2,nats://127.0.0.1:p3"
...     cluster.kill("n2"); cluster.restart("n2")

Each node has a ``server_name``, a ``cluster { name, listen, routes }`` block naming the others and
a JetStream store dir of its own; ports are free loopback ports picked at construction. ``size=1``
is a single server without a cluster block (restarted on its store at the same URL, unlike
``EmbeddedNats``, which picks a new port each start). Readiness is read from each node's monitoring
endpoint (``/healthz``: JetStream up and, in a cluster, the meta group current).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aiops.nats_server import find_binary

READY_TIMEOUT_S = 30.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open while picking, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    http_port: int
    store: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    def __init__(self, root: Path, size: int = 3, *, name: str = "aiops-test") -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.root = root
        self.size = size
        self.cluster_name = name
        self.nodes: dict[str, Node] = {}
        ports = iter(free_ports(3 * size))
        for i in range(1, size + 1):
            node_name = f"n{i}"
            home = root / node_name
            home.mkdir(parents=True, exist_ok=True)
            self.nodes[node_name] = Node(
                name=node_name,
                port=next(ports),
                cluster_port=next(ports),
                http_port=next(ports),
                store=home / "store",
                config=home / "nats.conf",
                log=home / "nats.log",
            )
        for node in self.nodes.values():
            node.config.write_text(self._config(node))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes.values()]

    @property
    def url(self) -> str:
        """Every server, comma-separated: the form ``AIOPS_NATS_URL`` takes."""
        return ",".join(self.urls)

    def _config(self, node: Node) -> str:
        lines = [
            f"server_name: {node.name}",
            f"listen: 127.0.0.1:{node.port}",
            f"http: 127.0.0.1:{node.http_port}",
            f'jetstream {{ store_dir: "{node.store}" }}',
        ]
        if self.size > 1:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{other.cluster_port}"
                for other in self.nodes.values()
                if other.name != node.name
            )
            lines.append(
                f"cluster {{ name: {self.cluster_name}, listen: 127.0.0.1:{node.cluster_port}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> NatsCluster:
        for node in self.nodes.values():
            self._spawn(node)
        for node in self.nodes.values():
            self._wait_ready(node)
        self._wait_formed()
        return self

    def kill(self, name: str) -> None:
        """SIGKILL one node: no goodbye to its peers or clients, as a crashed machine."""
        node = self.nodes[name]
        if node.proc is not None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
            node.proc = None

    def restart(self, name: str) -> None:
        """Start a killed node again on its own store and ports; returns once it is ready."""
        node = self.nodes[name]
        if node.running:
            raise RuntimeError(f"{name} is running")
        self._spawn(node)
        self._wait_ready(node)
        self._wait_formed()

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
            node.proc = None

    def __enter__(self) -> NatsCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- inspection ---------------------------------------------------------------------------

    def monitor(self, name: str, path: str) -> dict[str, object]:
        """A node's monitoring endpoint (``/varz``, ``/jsz``, ``/healthz``...), parsed."""
        url = f"http://127.0.0.1:{self.nodes[name].http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read() or b"{}"))

    def _spawn(self, node: Node) -> None:
        log = node.log.open("ab")
        node.proc = subprocess.Popen(
            [str(find_binary()), "-c", str(node.config), "-l", str(node.log)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def meta_leader(self) -> str | None:
        """The meta group's leader, as a running node reports it (None while electing)."""
        for name, node in self.nodes.items():
            if node.running:
                try:
                    meta = self.monitor(name, "/jsz").get("meta_cluster")
                except (OSError, ValueError):
                    continue
                if isinstance(meta, dict) and meta.get("leader"):
                    return str(meta["leader"])
        return None

    def wait_offline(self, name: str) -> None:
        """Until the meta leader reports peer ``name`` offline or no longer current (about 10 s after
        it went away): before that, a replicated stream's placement may still count it and succeed."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader is not None and leader != name:
                try:
                    meta = self.monitor(leader, "/jsz").get("meta_cluster")
                except (OSError, ValueError):
                    meta = None
                peers = meta.get("replicas", []) if isinstance(meta, dict) else []
                if any(p.get("name") == name and (p.get("offline") or not p.get("current")) for p in peers):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the meta leader still counts {name} as current after {READY_TIMEOUT_S}s")

    def _wait_formed(self) -> None:
        """Until the meta leader has heard from every running peer: before that, JetStream refuses
        to place a replicated stream ("no suitable peers for placement, peer offline")."""
        if self.size == 1:
            return
        running = {n for n, node in self.nodes.items() if node.running}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader in running:
                try:
                    meta = self.monitor(leader, "/jsz").get("meta_cluster")
                except (OSError, ValueError):
                    meta = None
                peers = meta.get("replicas", []) if isinstance(meta, dict) else []
                current = {p["name"] for p in peers if p.get("current") and not p.get("offline")}
                if running - {leader} <= current:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the NATS cluster did not form within {READY_TIMEOUT_S}s; see {self.root}")

    def _wait_ready(self, node: Node) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if node.proc is None or node.proc.poll() is not None:
                raise RuntimeError(f"nats-server {node.name} exited; see {node.log}")
            try:
                if self.monitor(node.name, "/healthz").get("status") == "ok":
                    return
            except (OSError, ValueError):
                pass  # not listening yet
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {node.name} not ready within {READY_TIMEOUT_S}s; see {node.log}")
