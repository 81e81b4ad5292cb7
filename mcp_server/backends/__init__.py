"""Backends behind the MCP tools: one protocol, an adapter per real system."""

from mcp_server.backends.base import BackendError, ClusterBackend, NotFound

__all__ = ["BackendError", "ClusterBackend", "NotFound"]
