"""Claude as triage planner and investigator.

``ClaudePlanner`` sits behind the same ``Planner`` protocol as the rules: it investigates an
incident with a hand-written tool-use loop over the MCP server's read-only tools, and answers with
a validated structured plan that names known runbooks — which then run, like every other plan,
through the runbook engine and the policy gate. Limits bound each incident's steps, time, tokens
and dollars; on any failure the rules decide. Module map: ``loop`` (the loop), ``toolbox`` (which
calls may run), ``answer`` (the final answer and its checks), ``prompt`` (what the model reads, and
the data fences), ``limits`` (the meter), ``client`` (the SDK client), ``planner`` (the protocol).
"""

from agents.claude.answer import TriageAnswer
from agents.claude.client import make_client
from agents.claude.limits import ClaudeLimits, Usage
from agents.claude.loop import Outcome
from agents.claude.planner import ClaudePlanner

__all__ = ["ClaudeLimits", "ClaudePlanner", "Outcome", "TriageAnswer", "Usage", "make_client"]
