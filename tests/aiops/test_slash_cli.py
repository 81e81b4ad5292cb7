"""`aiops slash` from a terminal against a running platform over HTTP, under the token's identity."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from aiops.slash_cli import TerminalConfirmation, plain

OPERATOR_TOKEN = "operator-token-for-slash-cli-3d9e"
VIEWER_TOKEN = "viewer-token-for-slash-cli-81ab"


async def slash(url: str, token: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "AIOPS_MCP_URL": url, "AIOPS_MCP_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiops.cli", "slash", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


@pytest.mark.slow
async def test_the_terminal_runs_commands_as_the_tokens_principal_and_confirms_destructive_ones(
    tmp_path: Path,
):
    tokens = {OPERATOR_TOKEN: "olga:operator", VIEWER_TOKEN: "victor:viewer"}
    settings = Settings(http_port=0, tokens=tokens)
    async with Platform(settings, data_dir=tmp_path, run_clock=False) as platform:
        url, twin = platform.http_url, platform.twin
        read = await slash(url, VIEWER_TOKEN, "/gpu node node-003")
        denied = await slash(url, VIEWER_TOKEN, "/gpu isolate node-003 2", "--yes")
        unconfirmed = await slash(url, OPERATOR_TOKEN, "/gpu isolate node-003 2")
        untouched = twin.gpu("node-003", 2).isolated
        confirmed = await slash(url, OPERATOR_TOKEN, "/gpu isolate node-003 2", "--yes")

    assert read[0] == 0 and "0000:3a:00.0" in read[1]
    assert "policy denied" in denied[1] and "role viewer" in denied[1]
    assert "refused:" in denied[1]  # chatops read the refusal, not the sentence
    assert "not confirmed" in unconfirmed[1] and not untouched
    assert "isolated GPU 2 on node-003" in confirmed[1]
    assert twin.gpu("node-003", 2).isolated


async def test_without_a_terminal_or_yes_the_confirmation_is_declined():
    params = type("P", (), {"message": "Isolate GPU 2 on node-003?"})()
    assert (await TerminalConfirmation(assume_yes=False, ask=None).__call__(None, params)).action == "decline"  # type: ignore[arg-type]
    assert (await TerminalConfirmation(assume_yes=True).__call__(None, params)).action == "accept"  # type: ignore[arg-type]
    said_yes = TerminalConfirmation(assume_yes=False, ask=lambda prompt: "y")
    assert (await said_yes(None, params)).action == "accept"  # type: ignore[arg-type]


async def test_ctrl_c_at_the_question_cancels_and_the_question_is_asked_once():
    params = type("P", (), {"message": "olga: isolate_gpu on GPU 2 on node-003. Go ahead?"})()
    asked: list[str] = []

    def ctrl_c(prompt: str) -> str:
        asked.append(prompt)
        raise KeyboardInterrupt

    confirmation = TerminalConfirmation(assume_yes=False, ask=ctrl_c)
    answer = await confirmation(None, params)  # type: ignore[arg-type]
    assert answer.action == "cancel" and confirmation.cancelled
    assert asked == ["olga: isolate_gpu on GPU 2 on node-003. Go ahead? [y/N] "]


def test_the_terminal_gets_no_slack_markup():
    text = ":red_circle: *mitigated* `inc-1` on 0000:3a:00.0 at 08:16:00 (gpu:node-003/gpu3) :warning: denied"
    assert plain(text) == "mitigated inc-1 on 0000:3a:00.0 at 08:16:00 (gpu:node-003/gpu3) denied"


@pytest.mark.slow
async def test_exit_codes_and_the_slash_left_out(tmp_path: Path):
    tokens = {OPERATOR_TOKEN: "olga:operator", VIEWER_TOKEN: "victor:viewer"}
    settings = Settings(http_port=0, tokens=tokens)
    async with Platform(settings, data_dir=tmp_path, run_clock=False) as platform:
        url = platform.http_url
        without_slash = await slash(url, VIEWER_TOKEN, "gpu status")
        unknown = await slash(url, VIEWER_TOKEN, "/gpu frobnicate")
        denied = await slash(url, VIEWER_TOKEN, "/gpu isolate node-003 2", "--yes")
        wrong_token = await slash(url, "no-such-token-at-all-1234", "/gpu status")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = await slash(f"http://127.0.0.1:{closed}/mcp", OPERATOR_TOKEN, "/gpu status")

    assert without_slash[0] == 0 and "GPUs healthy" in without_slash[1]
    assert unknown[0] == 1 and "/gpu frobnicate is not a command" in unknown[1]
    assert denied[0] == 1 and "role viewer" in denied[1]
    assert ":warning:" not in denied[1] and "`" not in unknown[1]
    assert wrong_token == (1, "error: 401: token not accepted (check --token / AIOPS_MCP_TOKEN)\n")
    assert down[0] == 1 and len(down[1].splitlines()) == 1 and "cannot reach" in down[1]
