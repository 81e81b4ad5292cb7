"""Block Kit pieces for replies and notifications (Slack's message layout format)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Block = dict[str, Any]
MAX_SECTION = 2900  # Slack refuses section text over 3,000 characters


class Reply(BaseModel):
    """What a command answers: plain text (for terminals and notifications) plus blocks."""

    text: str
    blocks: list[Block] = Field(default_factory=list)
    response_type: Literal["ephemeral", "in_channel"] = "ephemeral"
    ok: bool = Field(
        default=True, exclude=True, description="false: the command was not understood or failed"
    )

    def slack(self) -> dict[str, Any]:
        return {"response_type": self.response_type, "text": self.text[:MAX_SECTION], "blocks": self.blocks}


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION] or " "}}


def fields(pairs: list[tuple[str, str]]) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in pairs[:10]],
    }


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_SECTION]}]}


def approval_buttons(approval_id: str, summary: str) -> Block:
    """Approve / reject buttons; their value carries the approval id back to us."""
    return {
        "type": "actions",
        "block_id": f"approval:{approval_id}"[:255],
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": approval_id,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Approve this action?"},
                    "text": {"type": "mrkdwn", "text": summary[:300]},
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            },
            {
                "type": "button",
                "action_id": "reject",
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject"},
                "value": approval_id,
            },
        ],
    }


def code(text: str) -> str:
    return "```" + text.replace("```", "'''")[: MAX_SECTION - 6] + "```"
