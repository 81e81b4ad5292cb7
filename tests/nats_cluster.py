"""The loopback NATS cluster of fault tests and benchmarks lives in aiops/nats_cluster.py (the
benchmarks use it too, and nothing imports ``tests``); tests keep importing it from here."""

from aiops.nats_cluster import READY_TIMEOUT_S, NatsCluster, Node, free_ports

__all__ = ["READY_TIMEOUT_S", "NatsCluster", "Node", "free_ports"]
