"""Debian's Chromium under Playwright (its own browser download cannot be reached here)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path(os.environ.get("AIOPS_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]


def need_chromium() -> None:
    """Skip without Chromium locally; fail under CI, which installs it (.ci/run)."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def log_in(browser: Browser, base: str, token: str) -> Page:
    """A fresh browser context (its own cookies) logged in with ``token``, on the fleet page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.fill("input[name=token]", token)
    await page.click("form.login button[type=submit]")
    await page.wait_for_url(f"{base}/")
    return page
