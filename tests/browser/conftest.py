"""Fixtures of the browser tests: a relay serving the web chat (Daphne, SQLite, static files
from the relay itself) and Debian's Chromium driven by Playwright for Python.

Chromium comes from Debian (`./dev test` installs it); Playwright cannot download browsers
here. Without it the tests are skipped with the reason, except under CI, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from daphne_nodes import (
    CAPTURE_APP,
    ROOT,
    capture_settings,
    migrate,
    sqlite_env,
    start_daphne,
    stop,
    wait_up,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SCREENSHOTS = ROOT / "tests" / "browser" / "screenshots"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


@dataclass
class ChatRelay:
    url: str
    port: int
    database: Path
    log: Path
    env: dict[str, str]
    capture: Path  # every HTTP body and WebSocket frame the relay received or sent
    processes: list[Any]

    def stop(self) -> None:
        """Stop the relay (every connection to it drops)."""
        stop(self.processes)
        self.processes.clear()

    def start(self) -> None:
        """Start the relay again, on the same port with the same database."""
        _port, process = start_daphne(self.env, self.log, CAPTURE_APP, port=self.port)
        self.processes.append(process)
        if not wait_up(process, self.port, 60):
            raise RuntimeError(f"the relay did not start again: {self.log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def chat_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatRelay]:
    """A relay that serves the web chat and its static files (Pyodide, the wheel), and
    records what it receives and sends (tests/messaging/capture_asgi.py) for the operator
    test."""
    if not (ROOT / "static" / "wasm" / "manifest.json").exists():
        _unavailable("no veilpost wheel in static/wasm/: run ./dev setup")
    if not (ROOT / "node_modules" / "pyodide" / "pyodide.mjs").exists():
        _unavailable("no Pyodide in node_modules/: run ./dev setup")
    base = tmp_path_factory.mktemp("chat-relay")
    database = base / "relay.sqlite3"
    capture = base / "capture.jsonl"
    env = sqlite_env(
        database,
        VEILPOST_SERVE_STATIC="1",
        VEILPOST_CLAIM_RATE="1000",
        VEILPOST_CLAIM_BURST="1000",
        **capture_settings(capture),
    )
    migrate(env, timeout=120)
    log = base / "daphne.log"
    port, process = start_daphne(env, log, CAPTURE_APP)
    relay = ChatRelay(f"http://127.0.0.1:{port}", port, database, log, env, capture, [process])
    try:
        if not wait_up(process, port, 60):
            raise RuntimeError(f"the relay did not start: {log.read_text()[-3000:]}")
        yield relay
    finally:
        relay.stop()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium (headless), one per test; each test makes its own contexts (profiles)."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            await instance.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


@pytest_asyncio.fixture
async def echo_agent(chat_relay: ChatRelay, tmp_path: Path) -> AsyncIterator[Any]:
    """A real echo agent on the chat relay: answers every text with ``echo: <text>``."""
    from veilpost.agent import Agent, MessageContext
    from veilpost.client.storage import new_key

    agent = Agent(
        db_path=str(tmp_path / "echo.sqlite3"), db_key=new_key(), relay_url=chat_relay.url
    )

    @agent.on_text
    async def echo(ctx: MessageContext) -> None:
        await ctx.reply(f"echo: {ctx.text}")

    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 30)
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
