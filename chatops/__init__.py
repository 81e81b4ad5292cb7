"""On-call slash commands: ``/gpu ...`` from chat (Slack's protocols) and from a terminal.

Each command maps to MCP tool calls under the chat user's identity, so the same policy gate and
audit trail apply as for every other caller.
"""
