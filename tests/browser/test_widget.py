"""The embeddable agent widget in real Chromium: a demo site on another origin than the relay
(``examples/widget_demo``) embeds it with one script tag and talks to a real echo agent."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from veilpost.agent import Agent

from .conftest import CHROMIUM, CHROMIUM_ARGS, ChatRelay, screenshot_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from daphne_nodes import ROOT, free_port

sys.path.insert(0, str(ROOT / "examples" / "widget_demo"))
from serve import serve_demo

pytestmark = pytest.mark.asyncio

WAIT_MS = 30_000
READY_MS = 90_000
LAUNCHER = "[data-veilpost-widget] >> .launcher"  # Playwright's CSS reaches into the shadow root


def _site(relay: ChatRelay, agent: str) -> Iterator[str]:
    # "localhost" against the relay's "127.0.0.1": another origin, and another site.
    server = serve_demo(relay.url, agent, free_port(), host="localhost")
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()


@pytest_asyncio.fixture
async def window(tmp_path: Path) -> AsyncIterator[Any]:
    """A browser window whose settings let sites embedded in others keep (partitioned)
    storage, as Chrome's and Firefox's normal windows do. This Chromium's default profile, like
    a private window or Safari, blocks it: there the widget asks for a window of its own (the
    test with ``browser`` below)."""
    from playwright.async_api import async_playwright

    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    preferences = {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
def demo_site(chat_relay: ChatRelay, echo_agent: Agent) -> Iterator[str]:
    yield from _site(chat_relay, echo_agent.inbox_id)


async def _open_widget(page: Any) -> Any:
    await page.click(LAUNCHER)
    frame = page.frame_locator("[data-veilpost-widget] >> iframe")
    await frame.locator('[data-testid="widget"][data-state="ready"]').wait_for(timeout=READY_MS)
    return frame


async def test_a_visitor_talks_to_the_agent_from_another_site(
    window: Any, chat_relay: ChatRelay, demo_site: str
) -> None:
    page = await window.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(demo_site)
    await page.locator(LAUNCHER).wait_for(timeout=WAIT_MS)
    await asyncio.sleep(0.5)
    # Before the button is pressed: the loader script, nothing else from the relay.
    from_relay = [url for url in requests if url.startswith(chat_relay.url)]
    assert from_relay == [f"{chat_relay.url}/static/widget/veilpost-widget.js"], from_relay
    assert await page.locator("[data-veilpost-widget] >> iframe").count() == 0

    started = time.perf_counter()
    frame = await _open_widget(page)
    elapsed = time.perf_counter() - started
    print(f"\nwidget: button pressed -> conversation shown, first time: {elapsed:.2f} s")
    assert "Harbor" in await frame.locator('[data-testid="widget-title"]').inner_text()
    greeting = frame.locator('[data-testid="widget-greeting"]')
    assert "end-to-end encrypted" in await greeting.inner_text()
    await frame.locator('[data-testid="composer"]').fill("what are your hours?")
    await frame.locator('[data-testid="send-button"]').click()
    answer = frame.locator('[data-testid="message-text"]', has_text="echo: what are your hours?")
    await answer.wait_for(timeout=WAIT_MS)
    await page.screenshot(path=str(screenshot_path("20-widget-open")), animations="disabled")

    # The host page's own script cannot reach the chat: not its DOM, not its storage.
    reach = await page.evaluate(
        """async () => {
          const host = document.querySelector("[data-veilpost-widget]");
          const frame = host.shadowRoot.querySelector("iframe");
          let documentAccess;
          try { documentAccess = frame.contentWindow.document ? "readable" : "none"; }
          catch (error) { documentAccess = error.name; }
          let storageAccess;
          try { storageAccess = frame.contentWindow.localStorage ? "readable" : "none"; }
          catch (error) { storageAccess = error.name; }
          return {
            contentDocument: frame.contentDocument === null,
            documentAccess,
            storageAccess,
            databases: (await indexedDB.databases()).map((d) => d.name),
            caches: await caches.keys(),
            text: document.body.innerText.includes("echo: what are your hours?"),
          };
        }"""
    )
    assert reach == {
        "contentDocument": True,
        "documentAccess": "SecurityError",
        "storageAccess": "SecurityError",
        "databases": [],
        "caches": [],
        "text": False,
    }, reach

    # After a reload the visitor is the same and the history is there.
    await page.reload()
    frame = await _open_widget(page)
    await frame.locator(
        '[data-testid="message-text"]', has_text="echo: what are your hours?"
    ).wait_for(timeout=WAIT_MS)
    await frame.locator('[data-testid="composer"]').fill("and on weekends?")
    await frame.locator('[data-testid="send-button"]').click()
    await frame.locator('[data-testid="message-text"]', has_text="echo: and on weekends?").wait_for(
        timeout=WAIT_MS
    )

    # The relay goes away and comes back: the widget says so, then carries on.
    chat_relay.stop()
    try:
        await frame.locator('[data-testid="offline-banner"]').wait_for(timeout=WAIT_MS)
        status = await frame.locator('[data-testid="widget-status"]').get_attribute("data-state")
        assert status != "connected"
    finally:
        chat_relay.start()
    await frame.locator('[data-testid="offline-banner"]').wait_for(state="hidden", timeout=WAIT_MS)
    await frame.locator('[data-testid="composer"]').fill("still there?")
    await frame.locator('[data-testid="send-button"]').click()
    await frame.locator('[data-testid="message-text"]', has_text="echo: still there?").wait_for(
        timeout=WAIT_MS
    )

    # Closed from inside the chat, opened again from the button.
    await frame.locator('[data-testid="widget-close"]').click()
    await page.locator("[data-veilpost-widget] >> .panel").wait_for(state="hidden", timeout=WAIT_MS)
    await page.click(LAUNCHER)
    await page.locator("[data-veilpost-widget] >> .panel").wait_for(timeout=WAIT_MS)
    assert errors == [], errors


async def test_a_private_window_gets_the_chat_in_a_window_of_its_own(
    browser: Any, chat_relay: ChatRelay, echo_agent: Any, demo_site: str
) -> None:
    """Where the browser blocks storage for embedded sites, the widget says so and offers its
    own window (first-party on the relay's origin), where the chat works."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(demo_site)
    await page.click(LAUNCHER)
    frame = page.frame_locator("[data-veilpost-widget] >> iframe")
    await frame.locator('[data-testid="widget"][data-state="storage-blocked"]').wait_for(
        timeout=WAIT_MS
    )
    await page.screenshot(
        path=str(screenshot_path("22-widget-storage-blocked")), animations="disabled"
    )
    async with context.expect_page() as opened:
        await frame.locator('[data-testid="widget-own-window"]').click()
    popup = await opened.value
    await popup.locator('[data-testid="widget"][data-state="ready"]').wait_for(timeout=READY_MS)
    await popup.locator('[data-testid="composer"]').fill("hello from my own window")
    await popup.locator('[data-testid="send-button"]').click()
    await popup.locator(
        '[data-testid="message-text"]', has_text="echo: hello from my own window"
    ).wait_for(timeout=WAIT_MS)
    # The panel closed itself when the window opened.
    await page.locator("[data-veilpost-widget] >> .panel").wait_for(state="hidden", timeout=WAIT_MS)
    # The window is on the relay's origin, like the web chat, yet the widget's identity is its
    # own (one per agent): the chat's inbox never talked to the agent.
    chat = await context.new_page()
    await chat.goto(chat_relay.url + "/")
    await chat.wait_for_selector('[data-testid="ready"]', timeout=READY_MS)
    chat_inbox = (await chat.inner_text('[data-testid="my-inbox-id"]')).strip()
    peers = {c.peer_inbox_id for c in echo_agent.client.conversations() if c.peer_inbox_id}
    assert peers and chat_inbox not in peers
    await context.close()


async def test_an_unknown_agent_is_said_so(window: Any, chat_relay: ChatRelay) -> None:
    for url in _site(chat_relay, "ab" * 16):
        page = await window.new_page()
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(url)
        await page.click(LAUNCHER)
        frame = page.frame_locator("[data-veilpost-widget] >> iframe")
        await frame.locator('[data-testid="widget"][data-state="unknown-agent"]').wait_for(
            timeout=READY_MS
        )
        title = await frame.locator('[data-testid="widget-problem-title"]').inner_text()
        assert "could not be found" in title
        await page.screenshot(
            path=str(screenshot_path("21-widget-unknown-agent-phone")), animations="disabled"
        )
