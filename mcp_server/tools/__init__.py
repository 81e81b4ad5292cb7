"""MCP tools, one module per family: cluster, scheduler, incidents."""
