"""A loopback HTTP server that speaks the Messages API with scripted turns.

The real ``anthropic`` SDK points at it with ``base_url``; nothing leaves the machine and no key is
needed. Each ``POST /v1/messages`` is answered by the next turn of the script that matches the
request: investigation requests (they offer the ``submit_triage`` tool) take the next scripted
investigation turn; anything else (summaries) gets the summary turn. Every request is recorded with
its headers for the test to inspect.

Token counts in the replies are estimates — a quarter of the request's and the reply's JSON length
in characters, near what Claude's tokenizer gives for English and JSON — so the planner's meter and
the benchmark see realistic magnitudes.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.claude.prompt import ANSWER_TOOL

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Raw:
    """A reply given as it is: any status, any body (to make malformed answers)."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Hang:
    """Hold the request open until the server closes (a model that never answers)."""


Reply = dict[str, Any] | Raw | Hang
Turn = Reply | Callable[[dict[str, Any]], Reply]

_ids = itertools.count(1)


def message(
    content: list[dict[str, Any]], stop_reason: str, *, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A Messages API response body; ``usage`` overrides the estimated token counts."""
    return {
        "id": f"msg_loopback_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": "claude-loopback",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def tool_use(name: str, tool_input: dict[str, Any], *, say: str = "") -> dict[str, Any]:
    """A turn that calls one tool (optionally after some text)."""
    blocks = [{"type": "text", "text": say}] if say else []
    blocks.append({"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": name, "input": tool_input})
    return message(blocks, "tool_use")


def submit(**answer: Any) -> dict[str, Any]:
    """A turn that submits the final answer."""
    return tool_use(ANSWER_TOOL, answer)


def text(words: str, stop_reason: str = "end_turn") -> dict[str, Any]:
    return message([{"type": "text", "text": words}], stop_reason)


def refusal() -> dict[str, Any]:
    return message([], "refusal")


def is_investigation(request: dict[str, Any]) -> bool:
    return any(t.get("name") == ANSWER_TOOL for t in request.get("tools", []))


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class ScriptedModel:
    """The script: investigation turns in order, and the reply to every other request."""

    turns: list[Turn] = field(default_factory=list)
    summary: Turn = field(default_factory=lambda: text("Scripted summary of the incident."))

    def reply(self, request: dict[str, Any]) -> Reply:
        if not is_investigation(request):
            turn = self.summary
        elif self.turns:
            turn = self.turns.pop(0)
        else:
            return Raw(
                500, b'{"type": "error", "error": {"type": "api_error", "message": "script exhausted"}}'
            )
        return turn(request) if callable(turn) else turn


class LoopbackMessagesServer:
    """``with LoopbackMessagesServer() as server:`` — ``server.url`` is the SDK's ``base_url``."""

    def __init__(self, model: ScriptedModel | None = None) -> None:
        self.model = model or ScriptedModel()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="loopback messages",
            daemon=True,
        )
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def script(self, *turns: Turn, summary: Turn | None = None) -> None:
        """Replace the script."""
        self.model = ScriptedModel(list(turns), summary or ScriptedModel().summary)

    @property
    def investigation_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if is_investigation(r.body)]

    def __enter__(self) -> LoopbackMessagesServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # releases hanging requests first
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _answer(self, request: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Recorded(request, headers))
            reply = self.model.reply(request)
        if isinstance(reply, dict) and reply.get("usage") is None:
            reply = {**reply, "usage": _estimate(request, reply)}
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if self.path.split("?")[0] != "/v1/messages":
                    return self._send(Raw(404, b'{"type": "error", "error": {"type": "not_found_error"}}'))
                try:
                    request = json.loads(raw)
                except ValueError:
                    return self._send(
                        Raw(400, b'{"type": "error", "error": {"type": "invalid_request_error"}}')
                    )
                self._send(server._answer(request, {k.lower(): v for k, v in self.headers.items()}))

            def _send(self, reply: Reply) -> None:
                if isinstance(reply, Hang):
                    server._closing.wait(timeout=60)
                    return
                if isinstance(reply, dict):
                    reply = Raw(200, json.dumps(reply).encode())
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (its time-out): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _estimate(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, int]:
    sent = len(json.dumps({k: request.get(k) for k in ("system", "tools", "messages")}))
    said = len(json.dumps(reply.get("content", [])))
    return {
        "input_tokens": math.ceil(sent / CHARS_PER_TOKEN),
        "output_tokens": math.ceil(said / CHARS_PER_TOKEN),
    }
