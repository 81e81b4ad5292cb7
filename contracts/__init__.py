"""The contracts at the MCP seam: tool output models, refusals, and the ToolClient protocol. Imports only `events` (the wire models)."""
