"""The fleet console: a web view of the fleet served by ``aiops up`` on its HTTP port (``/console``).

Server-rendered HTML plus one small script (the heatmap canvas and the live feed); every action
goes through the same MCP tools, policy gate and audit as any other caller, as the logged-in person.
"""
