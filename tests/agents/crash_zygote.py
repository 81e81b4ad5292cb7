"""Starts platform and agent processes for the crash tests by forking a process that has already
imported everything: a new agent is up in a fraction of a second instead of the seconds a fresh
interpreter spends importing, so many kill points fit in one test run.

Each child is a real process with its own sockets, NATS connection and MCP session — SIGKILL ends
it the way a crashed agent ends. Protocol (JSON lines): the test writes
``{"id": "a1", "kind": "platform"|"agent", "args": [...], "env": {...}}`` on stdin; this process
answers ``{"id", "event": "started", "pid"}``, the child ``{"id", "event": "ready", ...}`` when it
serves (platform), and this process ``{"id", "event": "exit", "code"}`` when the child ends
(``code`` negative: killed by that signal).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import sys
import traceback
from typing import Any

import tests.agents.crash_agent as crash_agent
import tests.agents.crash_platform as crash_platform


def say(message: dict[str, Any]) -> None:
    os.write(sys.stdout.fileno(), (json.dumps(message) + "\n").encode())


def child(command: dict[str, Any]) -> None:
    os.environ.update(command.get("env", {}))
    sys.argv = [command["kind"], *command.get("args", [])]
    try:
        if command["kind"] == "platform":
            asyncio.run(
                crash_platform.main(lambda url: say({"id": command["id"], "event": "ready", "mcp_url": url}))
            )
        else:
            asyncio.run(crash_agent.main())
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def main() -> None:
    children: dict[int, str] = {}
    buffer = b""
    while True:
        readable, _, _ = select.select([sys.stdin.fileno()], [], [], 0.02)
        if readable:
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:  # the test went away
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    child(command)
                children[pid] = command["id"]
                say({"id": command["id"], "event": "started", "pid": pid})
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            say({"id": children.pop(pid), "event": "exit", "code": os.waitstatus_to_exitcode(status)})
    for pid in children:
        os.kill(pid, 9)


if __name__ == "__main__":
    main()
