"""The policy gate in front of every mutating MCP tool (Cedar policies, see ``gate``)."""

from mcp_server.policy.gate import PolicyDecision, PolicyError, PolicyGate, Principal, Resource

__all__ = ["PolicyDecision", "PolicyError", "PolicyGate", "Principal", "Resource"]
